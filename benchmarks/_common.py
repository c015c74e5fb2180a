"""Shared helpers of the benchmarks: synthetic feature generators, memory sampling, isolation.

Features are generated block by block from (seed, block index), so the engine can build them on
its Dask workers (nothing travels through the scheduler) and a baseline subprocess can build the
very same arrays in NumPy.
"""

from __future__ import annotations

import multiprocessing as mp
import resource
import threading
import time
from collections.abc import Callable

import numpy as np
import psutil

#: Clusters of the Euclidean features and templates of the Hamming codes.
N_CLUSTERS = 64
#: Rank of each cluster's low-rank variation (Euclidean).
CLUSTER_RANK = 16
#: Per-dimension noise of real features, and the extra noise of synthetic ones.
REAL_NOISE = 0.3
ARTEFACT_NOISE = 0.85
#: Copies planted in every synthetic block: exact copies, then near copies of real rows.
EXACT_COPIES = 2
NEAR_COPIES = 2


def block_rows(n: int, block: int) -> list[tuple[int, int]]:
    """(index, rows) of each row block of an n-row array."""
    return [(i, min(block, n - s)) for i, s in enumerate(range(0, n, block))]


# --- Euclidean features: clustered, low-rank, post-ReLU like a CNN's pooled activations ---------


def _euclidean_structure(seed: int, dim: int):
    rng = np.random.default_rng([seed, 0])
    centres = rng.standard_normal((N_CLUSTERS, dim), dtype=np.float32)
    basis = rng.standard_normal((N_CLUSTERS, CLUSTER_RANK, dim), dtype=np.float32) * 0.35
    return centres, basis


def _euclidean_rows(seed: int, kind: int, index: int, rows: int, dim: int) -> np.ndarray:
    centres, basis = _euclidean_structure(seed, dim)
    rng = np.random.default_rng([seed, kind, index])
    # Synthetic (kind 1) drops a quarter of the clusters and carries generator artefacts
    # (extra noise): about half of it is "real" and under 10 % "copies" by the method.
    clusters = rng.integers(0, N_CLUSTERS if kind == 0 else (3 * N_CLUSTERS) // 4, rows)
    noise = REAL_NOISE if kind == 0 else np.hypot(REAL_NOISE, ARTEFACT_NOISE)
    latent = rng.standard_normal((rows, CLUSTER_RANK), dtype=np.float32)
    out = centres[clusters] + np.einsum("nr,nrd->nd", latent, basis[clusters])
    out += rng.standard_normal((rows, dim), dtype=np.float32) * np.float32(noise)
    return np.maximum(out, 0.0)


def euclidean_block(seed: int, kind: int, index: int, rows: int, dim: int) -> np.ndarray:
    """Rows of block ``index``: kind 0 = real, 1 = synthetic (rows float32, ``dim`` columns).

    Every real block holds one exact duplicate pair (so some radius_1 are 0); every synthetic
    block holds EXACT_COPIES exact and NEAR_COPIES near copies (1e-4 relative noise) of rows of
    the real block with the same index.
    """
    out = _euclidean_rows(seed, kind, index, rows, dim)
    if kind == 0 and rows >= 2:
        out[1] = out[0]
    n_copy = EXACT_COPIES + NEAR_COPIES
    if kind == 1 and rows >= n_copy + 8:
        real = _euclidean_rows(seed, 0, index, n_copy + 8, dim)
        out[:n_copy] = real[8 : 8 + n_copy]
        noise = np.random.default_rng([seed, 2, index]).standard_normal((NEAR_COPIES, dim))
        near = out[EXACT_COPIES:n_copy]
        near += (noise * 1e-4 * np.abs(near).mean()).astype(np.float32)
    return out


# --- Hamming codes: VQ-VAE-like code maps with a black border ----------------------------------


def _zipf_codes(rng: np.random.Generator, n_codes: int, size) -> np.ndarray:
    """Codes 1..n_codes-1 with a Zipf-like frequency (a few codes are very common)."""
    weights = 1.0 / (np.arange(1, n_codes) + 5.0) ** 1.1
    return rng.choice(np.arange(1, n_codes), size=size, p=weights / weights.sum())


def hamming_block(seed: int, kind: int, index: int, rows: int, side: int, n_codes: int):
    """Code maps of block ``index`` (rows x side*side int16, values 0..n_codes-1).

    Construction: a ``side x side`` code map whose outside of a centred disc (about half the
    positions) is background code 0 in every image, like a black border. The disc radius varies
    by +-6 % per image, so a ring of positions is background in some images only. Inside, each
    image is one of N_CLUSTERS template maps with 15-45 % of its positions redrawn from a
    Zipf-like code distribution. Synthetic blocks plant exact and near (20 positions changed)
    copies of real rows, as in :func:`euclidean_block`.
    """
    out = _hamming_rows(seed, kind, index, rows, side, n_codes)
    n_copy = EXACT_COPIES + NEAR_COPIES
    if kind == 1 and rows >= n_copy + 8:
        real = _hamming_rows(seed, 0, index, n_copy + 8, side, n_codes)
        out[:n_copy] = real[8 : 8 + n_copy]
        rng = np.random.default_rng([seed, 2, index])
        for row in range(EXACT_COPIES, n_copy):
            pos = rng.choice(out.shape[1], 20, replace=False)
            out[row, pos] = rng.integers(1, n_codes, 20)
    return out


def _hamming_rows(seed: int, kind: int, index: int, rows: int, side: int, n_codes: int):
    templates = _zipf_codes(np.random.default_rng([seed, 0]), n_codes, (N_CLUSTERS, side * side))
    rng = np.random.default_rng([seed, kind, index])
    codes = templates[rng.integers(0, N_CLUSTERS, rows)]
    redraw = rng.random((rows, side * side)) < rng.uniform(0.15, 0.45, (rows, 1))
    codes[redraw] = _zipf_codes(rng, n_codes, int(redraw.sum()))
    yy, xx = np.mgrid[:side, :side]
    dist = np.hypot(yy - (side - 1) / 2, xx - (side - 1) / 2).ravel()
    radius = side * 0.399 * rng.uniform(0.94, 1.06, (rows, 1))  # disc of ~50 % of the map
    codes[dist[None, :] > radius] = 0
    return codes.astype(np.int16)


# --- Assembling blocks ---------------------------------------------------------------------------


def numpy_features(make: Callable, n: int, block: int, *args) -> np.ndarray:
    """The whole array in NumPy: ``make(seed, kind, index, rows, ...)`` per block, stacked."""
    return np.concatenate([make(*args[:2], i, rows, *args[2:]) for i, rows in block_rows(n, block)])


def dask_features(make: Callable, n: int, block: int, width: int, dtype, *args):
    """The same array as a Dask array whose blocks are generated where they are computed."""
    import dask
    import dask.array as da

    parts = [
        da.from_delayed(
            dask.delayed(make, pure=True)(*args[:2], i, rows, *args[2:]), (rows, width), dtype
        )
        for i, rows in block_rows(n, block)
    ]
    return da.concatenate(parts, axis=0)


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


def timed(func: Callable, *args, **kwargs):
    """(result, seconds) of one call."""
    start = time.perf_counter()
    out = func(*args, **kwargs)
    return out, time.perf_counter() - start
