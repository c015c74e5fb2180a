"""The ``medsyn-dask`` command line: one module per sub-command, each with ``add_parser``.

A sub-command module defines ``add_parser(subparsers)`` that registers its parser and sets
``func`` (called with the parsed namespace, returns the exit code).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

#: Sub-command modules under ``medsyn_dask.cli``, in the order ``--help`` lists them.
COMMANDS = ("demo", "extract", "analyze")


class UsageError(Exception):
    """A bad option or input: printed as one line, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medsyn-dask",
        description="Audit synthetic medical images for fidelity, variety and privacy on Dask.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except (UsageError, ValueError, FileNotFoundError, PermissionError) as exc:
        print(f"medsyn-dask {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
