"""Progress messages of long work: one place, so every stage reports the same way.

Messages go to the ``medsyn_dask.progress`` logger and, when ``enabled``, to stderr. On a
terminal a counter rewrites its line (``\\r``); in a pipe, a log file or a batch system's output
file it prints one line per step of about a tenth of the work, so logs stay readable.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

log = logging.getLogger("medsyn_dask.progress")


def _stream() -> TextIO:
    return sys.stderr


def bars_wanted() -> bool:
    """Whether redrawn progress bars may be shown: only on a terminal (a bar's ``\r`` turns
    a piped log or a batch system's output file into one huge line)."""
    return sys.stdout.isatty() and _stream().isatty()


def stage(message: str, *, enabled: bool = True) -> None:
    """Announce a stage of the job (one line)."""
    log.info(message)
    if enabled:
        print(message, file=_stream(), flush=True)


class Counter:
    """``label: i/total UNIT`` progress of ``total`` steps; use :meth:`step` then :meth:`close`."""

    def __init__(self, label: str, total: int, unit: str = "", *, enabled: bool = True) -> None:
        self.label, self.total, self.unit = label, total, f" {unit}" if unit else ""
        self.enabled = enabled and total > 0
        self.done = 0
        self._tty = _stream().isatty()
        self._every = max(1, total // 10)
        self._shown = False

    def step(self, n: int = 1) -> None:
        self.done += n
        if not self.enabled:
            return
        text = f"{self.label}: {self.done}/{self.total}{self.unit}"
        if self._tty:
            print(f"\r{text}", end="", file=_stream(), flush=True)
            self._shown = True
        elif self.done % self._every == 0 or self.done == self.total:
            print(text, file=_stream(), flush=True)
        log.debug(text)

    def close(self) -> None:
        if self._shown:
            print(file=_stream(), flush=True)
            self._shown = False

    def __enter__(self) -> Counter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
