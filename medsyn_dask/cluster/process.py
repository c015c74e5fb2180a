"""Worker-process tuning (malloc, imports ahead of need) and the client a call runs on."""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import threading
from collections.abc import Iterator, Sequence
from importlib import import_module
from typing import Any

from distributed import WorkerPlugin

from .local import connect

_MALLOC_TUNED = False
#: glibc mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
#: Free heap kept by a worker (bytes) and the allocation size served by mmap instead (the
#: largest glibc accepts).
_TRIM_BYTES, _MMAP_BYTES = 256 * 2**20, 32 * 2**20


def relax_malloc_trim() -> None:
    """Undo, in this worker process, the small malloc trim threshold set by Dask's nanny.

    The nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536`` so that freed memory goes
    back to the OS at once; glibc then also stops adapting its mmap threshold. Extraction frees
    and reallocates image-sized arrays and model activations every batch, so each of them was
    page-faulted afresh: measured 1.5x (images) to 2x (a small CNN) the CPU time per image of a
    plain process. Keeping up to 256 MiB of free heap (the working set of a batch) removes
    that cost; memory beyond it still goes back to the OS.
    """
    global _MALLOC_TUNED
    if _MALLOC_TUNED:
        return
    _MALLOC_TUNED = True
    current = os.environ.get("MALLOC_TRIM_THRESHOLD_", "")
    if not sys.platform.startswith("linux") or not current.isdigit():
        return
    if int(current) >= _TRIM_BYTES:
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_BYTES)
        libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_BYTES)
    except (OSError, AttributeError):  # not glibc (e.g. musl): nothing to tune
        pass


class ImportAhead(WorkerPlugin):
    """Import ``modules`` on every worker in a background thread, as the worker joins.

    A job that will extract with torch registers it before its first task: both workers then
    load torch (about a second each) at once, while the driver plans, instead of one after the
    other inside the first tasks. A task that imports the module meanwhile waits for the
    same import (Python's import lock), never for a second one.
    """

    name = "medsyn-import-ahead"

    def __init__(self, modules: Sequence[str]) -> None:
        self.modules = tuple(modules)

    def setup(self, worker: object) -> None:
        def run() -> None:
            for module in self.modules:
                with contextlib.suppress(ImportError):  # the task that needs it says so
                    import_module(module)

        threading.Thread(target=run, name="medsyn-import-ahead", daemon=True).start()


@contextlib.contextmanager
def current_client(client: Any = None) -> Iterator[Any]:
    """Yield ``client``, else the current default client, else a LocalCluster for the call."""
    if client is not None:
        yield client
        return
    from distributed import default_client

    try:
        current = default_client()
    except ValueError:  # no client yet: a LocalCluster for this call
        current = None
    if current is not None:
        yield current
        return
    with connect(quiet=True) as cl:
        yield cl
