"""The in-process runner's threads (:mod:`.local`): the process's pools (one per thread
count, started once), BLAS held to one thread while the pool's threads run GEMMs, a short
interpreter switch interval, a progress step per task."""

from __future__ import annotations

import functools
import os
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from typing import Any

from ..progress import Counter


def threads() -> int:
    """Threads of the pool: the cores this process may use (hyperthreads of one core count
    once: two GEMMs on one core's two threads take as long as one after the other)."""
    try:
        cpus = os.sched_getaffinity(0)
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
    return physical_cores(frozenset(cpus))


@functools.cache
def physical_cores(cpus: frozenset[int], sysfs: str = "/sys/devices/system/cpu") -> int:
    """Physical cores among the logical CPUs ``cpus``: the distinct sets of hyperthreads
    (Linux's ``thread_siblings_list``) they belong to, or how many ``cpus`` there are where
    the topology cannot be read."""
    cores = set()
    for cpu in cpus:
        try:
            with open(f"{sysfs}/cpu{cpu}/topology/thread_siblings_list") as f:
                cores.add(f.read().strip())
        except OSError:
            return len(cpus)
    return max(1, len(cores))


@functools.cache
def pool(n_threads: int) -> ThreadPoolExecutor:
    """The process's pool of ``n_threads`` threads, started once: starting threads costs
    milliseconds per call, as much as a small problem's whole computation. A task never
    waits on a task queued behind it, so callers in several threads share it without
    deadlock (a task may wait on one that is already running)."""
    return ThreadPoolExecutor(n_threads, thread_name_prefix="medsyn-neighbours")


@functools.cache
def _blas_controller() -> Any:
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


@contextmanager
def one_gemm_thread() -> Iterator[None]:
    """BLAS held to one thread (the pool has one thread per core) while the context lasts.
    torch's int8 GEMMs hold their own thread to one (:func:`one_torch_thread`)."""
    try:
        blas = _blas_controller().limit(limits=1, user_api="blas")
    except ImportError:  # BLAS keeps its threads: oversubscribed, still correct
        blas = nullcontext()
    with blas:
        yield


@functools.cache
def _openmp_controller() -> Any:
    """threadpoolctl's handle on the OpenMP libraries loaded (torch's among them: the first
    call comes after torch is imported)."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController().select(user_api="openmp")


@contextmanager
def one_torch_thread(torch: Any) -> Iterator[None]:
    """torch's intra-op threads (OpenMP's) held to one in the calling thread alone while the
    context lasts: the callers (the runner's pool, a worker's threads) run blocks side by side.

    OpenMP's thread count is per thread: the pool's threads took its default, a team of a
    thread per core for every int8 GEMM beside the other threads' teams (on 2 cores: 7 threads
    in the process instead of 5, and one call of N = M = 2 000, D = 512 seen at 85 ms against
    45). ``torch.set_num_threads`` is not used: it also sets the count that every thread takes
    when it first runs torch, the user's and Dask's threads included."""
    torch.get_num_threads()  # torch's own set-up of this thread first: it would undo the limit
    try:
        limit = _openmp_controller().limit(limits=1)
    except ImportError:  # no threadpoolctl: OpenMP keeps its default, still correct
        limit = nullcontext()
    with limit:
        yield


#: The interpreter's switch interval while a runner is active: a thread back from a compiled
#: pass or a GEMM (no GIL held) waits for the GIL at most this long while the other thread runs
#: NumPy steps, instead of the default 5 ms (seen: N = M = 5000, D = 512, 171 -> 166 ms).
SWITCH_INTERVAL = 2e-4
_switch = {"active": 0, "saved": 0.0}
_switch_lock = threading.Lock()


@contextmanager
def short_switch_interval() -> Iterator[None]:
    """SWITCH_INTERVAL while the context lasts (in any thread: the first to enter sets it, the
    last to leave restores the interpreter's value)."""
    with _switch_lock:
        if _switch["active"] == 0:
            _switch["saved"] = sys.getswitchinterval()
            sys.setswitchinterval(min(SWITCH_INTERVAL, _switch["saved"]))
        _switch["active"] += 1
    try:
        yield
    finally:
        with _switch_lock:
            _switch["active"] -= 1
            if _switch["active"] == 0:
                sys.setswitchinterval(_switch["saved"])


def counted(fn: Callable, counter: Counter) -> Callable:
    """``fn`` that steps ``counter`` once per call (from any thread)."""
    lock = threading.Lock()

    def step(item):
        out = fn(item)
        with lock:
            counter.step()
        return out

    return step
