"""Shared helpers of the benchmarks: memory, isolation, timing, the cluster, quick mode, JSON.

- :class:`TreeMemory`, :class:`OtherLoad`: peak RSS of this process tree, CPU of everyone else;
- :func:`run_isolated`: a baseline in a fresh spawned process, with its RSS high-water mark;
- :func:`timed`, :func:`repeat` (:class:`Spread`: min/median/max of repeats), :class:`Stages`
  (seconds and peak RSS per named stage, also split at the job's own progress messages);
- :func:`local_cluster`: the LocalCluster every benchmark runs medsyn-dask on;
- :func:`blas_threads`, :func:`worker_blas_threads`, :func:`jsonable`, :func:`quick_note`.

The synthetic features live in ``_features.py``.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import resource
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import psutil

#: What every benchmark prints in --quick mode, instead of verdicts against its targets.
QUICK_NOTE = "quick mode: sizes too small for the targets; run without --quick to check them"


# --- Memory and isolation ----------------------------------------------------------------------


class TreeMemory:
    """Samples the summed RSS of this process and all its descendants in a thread.

    With a LocalCluster the scheduler runs in this process and the nannies and workers are its
    descendants, so the sum covers driver, scheduler and workers.
    """

    def __init__(self, interval: float = 0.2):
        self.interval = interval
        self.peak = 0
        self.start_rss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def current() -> tuple[int, int, int]:
        """(total RSS, this process's RSS, largest descendant's RSS) in bytes."""
        root = psutil.Process()
        own = root.memory_info().rss
        others = []
        for proc in root.children(recursive=True):
            try:
                others.append(proc.memory_info().rss)
            except psutil.Error:
                pass
        return own + sum(others), own, max(others, default=0)

    def _sample(self) -> None:
        total, own, child = self.current()
        self.peak = max(self.peak, total)
        self.peak_driver = max(self.peak_driver, own)
        self.peak_child = max(self.peak_child, child)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> TreeMemory:
        self.start_rss = self.current()[0]
        self.peak = self.peak_driver = self.peak_child = 0
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


class OtherLoad:
    """CPU time that processes outside this process tree used during a measurement, in cores.

    The machine is shared: other programs running at the same time slow every method down. The
    figure is ``(their CPU seconds) / (wall seconds)``; short-lived processes that start and end
    within the window are missed, so it is a lower bound.
    """

    def __init__(self):
        self.cores = 0.0

    @staticmethod
    def _snapshot() -> dict[int, float]:
        root = psutil.Process()
        mine = {root.pid, *(p.pid for p in root.children(recursive=True))}
        out = {}
        for proc in psutil.process_iter(["cpu_times"]):
            times = proc.info["cpu_times"]
            if proc.pid not in mine and times is not None:
                out[proc.pid] = times.user + times.system
        return out

    def __enter__(self) -> OtherLoad:
        self._start, self._t0 = self._snapshot(), time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        end, wall = self._snapshot(), time.perf_counter() - self._t0
        used = sum(t - self._start.get(pid, 0.0) for pid, t in end.items())
        self.cores = max(0.0, used) / max(wall, 1e-9)


def _child(queue, func: Callable, args: tuple) -> None:
    try:
        result = func(*args)
        result["peak_rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        queue.put(result)
    except BaseException as exc:  # report any failure to the parent instead of hanging it
        queue.put({"error": f"{type(exc).__name__}: {exc}"})
        raise


def run_isolated(func: Callable, *args) -> dict:
    """``func(*args)`` (a dict) in a fresh spawned process, plus its RSS high-water mark.

    ``peak_rss`` is the child's ``ru_maxrss``: interpreter, libraries, its copy of the features
    and every temporary, measured cleanly apart from the benchmark driver.
    """
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(queue, func, args))
    with OtherLoad() as load:
        proc.start()
        result = queue.get()
    proc.join()
    result["other_load"] = load.cores
    return result


# --- Timing ------------------------------------------------------------------------------------


def timed(func: Callable, *args, **kwargs):
    """(result, seconds) of one call."""
    start = time.perf_counter()
    out = func(*args, **kwargs)
    return out, time.perf_counter() - start


@dataclass(frozen=True)
class Spread:
    """The spread of repeated measurements (any unit): min, median, max and the count."""

    values: tuple[float, ...]

    @property
    def min(self) -> float:
        return min(self.values)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def max(self) -> float:
        return max(self.values)

    def format(self, spec: str = ".2f") -> str:
        """``median`` alone for one value, else ``median [min-max]``."""
        text = format(self.median, spec)
        if len(self.values) > 1:
            text += f" [{self.min:{spec}}-{self.max:{spec}}]"
        return text

    def to_dict(self) -> dict:
        return {"min": self.min, "median": self.median, "max": self.max, "n": len(self.values)}


def repeat(func: Callable, repeats: int, *args, warmup: bool = False, **kwargs):
    """(last result, :class:`Spread` of seconds) of ``repeats`` calls, after one untimed call
    when ``warmup``."""
    if warmup:
        func(*args, **kwargs)
    out, seconds = None, []
    for _ in range(max(1, repeats)):
        out, s = timed(func, *args, **kwargs)
        seconds.append(s)
    return out, Spread(tuple(seconds))


class Stages:
    """Seconds and peak tree RSS (:class:`TreeMemory`) of named stages, in ``rows``.

    ``with stages("name"): ...`` times one stage. ``with stages.at_progress(name_of): ...`` times
    the stages that medsyn-dask announces itself: a message of the ``medsyn_dask.progress``
    logger (``progress.stage``) for which ``name_of(message)`` gives a name ends the current
    stage and starts that one (``None``: not a stage boundary), so a job function is split
    where it says it moves on, without copying its loop.
    """

    def __init__(self, memory: bool = True) -> None:
        self.rows: dict[str, dict] = {}
        self.memory = memory
        self._open: tuple[str, float, TreeMemory | None] | None = None

    def start(self, name: str) -> None:
        self.stop()
        memory = TreeMemory().__enter__() if self.memory else None
        self._open = (name, time.perf_counter(), memory)

    def stop(self) -> None:
        if self._open is None:
            return
        name, start, memory = self._open
        seconds = time.perf_counter() - start
        row: dict = {"seconds": seconds}
        if memory is not None:
            memory.__exit__(None, None, None)
            row["peak_rss"] = memory.peak
        self.rows[name] = row
        self._open = None

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        self.start(name)
        try:
            yield
        finally:
            self.stop()

    @contextlib.contextmanager
    def at_progress(self, name_of: Callable[[str], str | None]) -> Iterator[None]:
        stages = self

        class Split(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                name = name_of(record.getMessage())
                if name is not None:
                    stages.start(name)

        log = logging.getLogger("medsyn_dask.progress")
        handler, level = Split(logging.INFO), log.level
        log.addHandler(handler)
        log.setLevel(logging.INFO)  # stage() logs at INFO; the default level hides it
        try:
            yield
        finally:
            log.removeHandler(handler)
            log.setLevel(level)
            self.stop()


# --- Cluster, threads, output ------------------------------------------------------------------


@contextlib.contextmanager
def local_cluster(workers: int = 2) -> Iterator:
    """A Client on a new LocalCluster of ``workers`` single-thread processes (loopback).

    ``medsyn_dask.cluster.connect``, as the CLI starts it, but never attached to a scheduler
    named by DASK_SCHEDULER_ADDRESS: a benchmark measures the cluster it describes.
    """
    import dask

    from medsyn_dask.cluster import connect

    with dask.config.set({"scheduler-address": None}), connect(workers=workers, quiet=True) as c:
        yield c


def blas_threads() -> list[int]:
    """Threads of each BLAS library loaded in this process (threadpoolctl)."""
    from threadpoolctl import threadpool_info

    return [p["num_threads"] for p in threadpool_info() if p.get("user_api") == "blas"]


def worker_blas_threads(client) -> list[int]:
    """The largest BLAS thread count of each worker, sorted."""
    return sorted(max(t, default=0) for t in client.run(blas_threads).values())


def jsonable(obj):
    """``obj`` with NumPy scalars as Python numbers and keys as strings, for ``json.dumps``;
    arrays are left out (``None``): results files hold figures, not data."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return None
    return obj


def quick_note(quick: bool) -> None:
    """Say at the start of a --quick run what it checks (that the benchmark runs)."""
    if quick:
        print("quick mode: checks that the benchmark runs, not its targets", flush=True)
