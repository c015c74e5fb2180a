"""The ``medsyn-dask`` command line: one module per sub-command, each with ``add_parser``.

A sub-command module defines ``add_parser(subparsers)`` that registers its parser and sets
``func`` (called with the parsed namespace, returns the exit code). :func:`run_command` turns
what a user caused (a bad setting or input: exit status 2; Ctrl-C: 130) and storage that
stopped answering (1) into one line; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import logging
import sys
from collections.abc import Callable

from ..errors import unreachable_errors

#: Sub-command modules under ``medsyn_dask.cli``, in the order ``--help`` lists them.
COMMANDS = ("demo", "extract", "analyze", "report", "train_vqvae")
#: Exit status of storage that cannot be reached, of a user error (bad setting, bad input)
#: and of an interrupted run.
EXIT_UNREACHABLE, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130
#: What the interruption and the unreachable-storage lines add: the way on from there.
RESUMES = "rerunning the same command resumes from the finished feature partitions"


def _version() -> str:
    from .. import __version__

    return __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medsyn-dask",
        description="Audit synthetic medical images for fidelity, variety and privacy on Dask.",
    )
    parser.add_argument("--version", action="version", version=f"medsyn-dask {_version()}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    parser.add_argument(
        "--debug", action="store_true", help="show full tracebacks of errors (for bug reports)"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").add_parser(sub)
    return parser


def user_errors() -> tuple[type[BaseException], ...]:
    """The exceptions a user causes: shown as one line, never as a traceback."""
    from ..errors import MedsynError

    return (MedsynError, FileNotFoundError, NotADirectoryError, PermissionError)


def run_command(prog: str, func: Callable[[], int], *, debug: bool = False) -> int:
    """Run ``func``; a user error or Ctrl-C becomes one line on stderr and an exit status.

    Meanwhile Dask's own reports of the same error or interruption (a failed task's dump from
    a local worker, shutdown warnings after Ctrl-C) are kept off the console unless ``debug``
    (:mod:`.console`).
    """
    from .console import quiet_console

    try:
        with quiet_console(debug=debug):
            return int(func() or 0)
    except KeyboardInterrupt as exc:
        # A run interrupted after its results were written says so (see cli.analyze.run_job).
        done = f"; {_one_line(exc)}" if exc.args else f", and {RESUMES}"
        print(
            f"{prog}: interrupted; nothing incomplete is left marked complete{done}",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    except user_errors() as exc:
        if debug:
            raise
        print(f"{prog}: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except unreachable_errors() as exc:
        if debug:
            raise
        print(f"{prog}: error: storage unreachable: {_one_line(exc)}; {RESUMES}", file=sys.stderr)
        return EXIT_UNREACHABLE


def _one_line(exc: BaseException) -> str:
    from ..sources.anonymise import redact  # a root URL may carry a password: never shown

    text = str(exc).strip() or type(exc).__name__
    return redact(" ".join(text.split("\n")))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s: %(message)s",
    )
    code = run_command(f"medsyn-dask {args.command}", lambda: args.func(args), debug=args.debug)
    # The interpreter's teardown would garbage-collect every object of the run (0.4 s after a
    # job); everything is written and closed by now, so the collector is told to skip them.
    gc.freeze()
    return code


if __name__ == "__main__":
    sys.exit(main())
