"""What reaches the console during a command: one line per user error or Ctrl-C, not Dask's noise.

The worker processes of the embedded LocalCluster share the driver's terminal: its stderr, and
the SIGINT a terminal sends its whole foreground process group on Ctrl-C. For the duration of
a command, :func:`quiet_console` gives the workers started from this process a preload (this
module's :func:`dask_setup`) that

- ignores SIGINT in the worker: the driver handles Ctrl-C and closes its workers (a worker
  interrupted on its own prints a ``KeyboardInterrupt`` traceback and dies mid-partition);
- drops distributed's ``Compute Failed`` dump (key, state, task, exception, traceback) of a
  failed task, and its warnings about tasks cancelled when the driver stops on an error or
  Ctrl-C: the driver reports that error as one line (everything is shown with ``--debug``).

Workers started elsewhere (``dask worker`` processes, batch jobs) do not get the preload (the
configuration does not travel to them) and keep their full logs in their own log files. After
Ctrl-C, the driver also drops the warnings of distributed's shutdown (workers still busy,
connections closed), which say nothing the one interruption line does not.
"""

from __future__ import annotations

import contextlib
import gc
import inspect
import logging
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

import dask

log = logging.getLogger(__name__)

#: This module, as a worker preload (imported by name in the worker process).
PRELOAD = __name__
#: Dask configuration key telling the preloaded workers to keep task failures off the console.
QUIET_KEY = "medsyn-dask.quiet-task-errors"
#: Loggers whose messages after Ctrl-C are shutdown noise.
NOISY_LOGGERS = ("distributed", "tornado", "asyncio")


class _DropReported(logging.Filter):
    """A worker's reports of what the driver reports itself: a failed task, a cancelled one."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = str(record.msg)
        return not (text.startswith("Compute Failed") or "CancelledError" in record.getMessage())


class _DropAbandonedTasks(logging.Filter):
    """asyncio's "Task exception was never retrieved" reports (logger ``asyncio``), kept at
    DEBUG: when storage stops answering, the async libraries' pending writes are abandoned
    (e.g. aiohttp's on a closing connection) and their tasks fail unawaited. The command
    reports the storage error itself, as one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage().startswith("Task exception was never retrieved"):
            log.debug("abandoned task: %s", record.getMessage().splitlines()[-1])
            return False
        return True


#: The filter on asyncio's logger while a command runs (the driver) or for a worker's life.
DROP_ABANDONED_TASKS = _DropAbandonedTasks()


class _DropNoisy(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.name.split(".")[0] not in NOISY_LOGGERS


@contextlib.contextmanager
def quiet_console(*, debug: bool = False) -> Iterator[None]:
    """Within: local workers get the preload (module docstring); Ctrl-C is noted, so that the
    shutdown it starts stays quiet (everything is shown with ``debug``)."""
    preload = list(dask.config.get("distributed.worker.preload", []) or [])
    settings: dict[str, Any] = {
        "distributed.worker.preload": preload if PRELOAD in preload else [*preload, PRELOAD],
        QUIET_KEY: not debug,
    }
    with dask.config.set(settings):
        if debug or threading.current_thread() is not threading.main_thread():
            yield
        else:
            with _quiet_after_interrupt(), _quiet_abandoned_coroutines():
                yield


@contextlib.contextmanager
def _quiet_abandoned_coroutines() -> Iterator[None]:
    """Drop Python's "Exception ignored in: <coroutine ...>" reports and asyncio's "Task
    exception was never retrieved" ones (both kept at DEBUG): when storage stops answering,
    zarr's other pending reads and writes are abandoned and their cleanup fails in the async
    libraries (e.g. aiobotocore's context reset). The command reports the storage error
    itself, as one line; these tracebacks say nothing more."""
    previous = sys.unraisablehook
    tasks = logging.getLogger("asyncio")

    def hook(unraisable: Any) -> None:
        if inspect.iscoroutine(unraisable.object):
            log.debug("abandoned coroutine %r: %r", unraisable.object, unraisable.exc_value)
            return
        previous(unraisable)

    sys.unraisablehook = hook
    tasks.addFilter(DROP_ABANDONED_TASKS)
    try:
        yield
    except BaseException:
        gc.collect()  # finalise the abandoned coroutines and tasks while the filters are in place
        raise
    finally:
        # After a success nothing was abandoned; a full collection would cost 0.2 s.
        sys.unraisablehook = previous
        tasks.removeFilter(DROP_ABANDONED_TASKS)


@contextlib.contextmanager
def _quiet_after_interrupt() -> Iterator[None]:
    """On SIGINT, drop the noisy loggers' records from then on, and raise KeyboardInterrupt."""
    drop, handlers = _DropNoisy(), []

    def on_sigint(signum: int, frame: Any) -> None:
        if not handlers:
            handlers.extend(_handlers())
            for handler in handlers:
                handler.addFilter(drop)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        for handler in handlers:
            handler.removeFilter(drop)


def _handlers() -> list[logging.Handler]:
    """The handlers the noisy loggers' records reach: their own (distributed's does not
    propagate) and the root logger's."""
    found: list[logging.Handler] = []
    for name in (*NOISY_LOGGERS, None):
        for handler in logging.getLogger(name).handlers:
            if handler not in found:
                found.append(handler)
    return found


def quiet_worker(worker: Any = None) -> None:
    """In a worker process: ignore SIGINT; keep failed tasks' dumps, and the reports of async
    tasks abandoned when storage stops answering, off the shared console."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    if dask.config.get(QUIET_KEY, False):
        drop = _DropReported()
        for handler in _handlers():
            handler.addFilter(drop)
        logging.getLogger("asyncio").addFilter(DROP_ABANDONED_TASKS)


def dask_setup(worker: Any) -> None:
    """The preload's entry point, run by each worker process as it starts."""
    quiet_worker(worker)
