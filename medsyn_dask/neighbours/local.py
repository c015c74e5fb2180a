"""In-process neighbourhoods for features in this process's memory: the block maths of
:mod:`.graph` run in a thread pool, without a graph, a scheduler or a scatter.

For NumPy inputs a Dask graph costs more than it gives: the inputs are hashed and shipped, every
task recomputes its blocks' centred float32 forms, and a small problem waits on scheduling.
Here each block is prepared once (``metric.prepare``) and reused by every pair it is in, block
pairs run on one thread per core with one BLAS thread each, and the candidates of a block are
merged as soon as its pairs are done. The block functions are the graph's (``block_bounds``,
``row_candidates``, ``keep_smallest``, ``compare_block``, ``merge_synthetic``,
``exact_distances``...), so results are the same to the last bit.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from typing import Any

import numpy as np

from ..progress import Counter
from .reductions import (
    Candidates,
    RealPartial,
    SyntheticPartial,
    column_minimum,
    combine_real,
    compare_block,
    keep_smallest,
    merge_synthetic,
    row_candidates,
    smallest_values,
)
from .registry import get_metric

#: Rows per block at most: a block pair's scores are LOCAL_BLOCK^2 float32 per thread.
LOCAL_BLOCK = 2048
#: Smaller blocks cost more in Python and in GEMM efficiency than they give in parallelism.
MIN_LOCAL_BLOCK = 256
#: With a distributed Client active, in-memory inputs of at most this many blocks of
#: ``block_size`` rows (real and synthetic each) still run here: shipping them costs more.
LOCAL_BLOCKS = 4


def runs_here(arrays: Sequence[Any], block_size: int) -> bool:
    """True when ``arrays`` are NumPy arrays that should be computed in this process.

    Dask, Zarr and other lazy arrays keep the graph (their blocks are read where they are
    computed). NumPy arrays run here unless a distributed Client is active and they are larger
    than LOCAL_BLOCKS blocks: then the cluster's cores pay for the scatter.
    """
    if not all(isinstance(a, np.ndarray) and a.ndim == 2 for a in arrays):
        return False
    if max(len(a) for a in arrays) <= LOCAL_BLOCKS * block_size:
        return True
    try:
        from distributed import get_client

        get_client()
    except (ImportError, ValueError):
        return True
    return False


def threads() -> int:
    """Threads of the pool: the cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def block_starts(n: int, block_size: int, n_threads: int) -> list[int]:
    """First row of each block of an n-row array, plus n: at least two blocks per thread
    (parallelism, and the real pass's symmetry halves more of the work), within block_size."""
    rows = min(block_size, LOCAL_BLOCK, max(MIN_LOCAL_BLOCK, math.ceil(n / (2 * n_threads))))
    return [*range(0, n, rows), n]


@contextmanager
def _pool(n_threads: int) -> Iterator[Callable]:
    """``map(fn, items)`` on ``n_threads`` threads, BLAS held to one thread each meanwhile."""
    try:
        from threadpoolctl import threadpool_limits

        limits = threadpool_limits(1, user_api="blas") if n_threads > 1 else nullcontext()
    except ImportError:  # BLAS keeps its threads: oversubscribed, still correct
        limits = nullcontext()
    with limits, ThreadPoolExecutor(n_threads) as pool:
        yield lambda fn, items: list(pool.map(fn, items))


class _Blocks:
    """Row blocks of one array: bounds, and each block prepared once for the metric."""

    def __init__(self, array: np.ndarray, starts: list[int], metric: Any, centre, run) -> None:
        self.array, self.starts = array, starts
        self.spans = list(zip(starts[:-1], starts[1:], strict=True))
        self.prepared = run(lambda s: metric.prepare(array[s[0] : s[1]], centre), self.spans)

    def __len__(self) -> int:
        return len(self.spans)


def radii(
    real: np.ndarray,
    metric: str,
    centre: np.ndarray | None,
    nearest_k: int,
    backend: str,
    *,
    block_size: int = LOCAL_BLOCK,
    progress: bool = False,
) -> np.ndarray:
    """(N, nearest_k + 1) float64: the nearest_k + 1 smallest distances of each real image to
    all real images, self included, ascending (as :func:`.graph.radii_graph`, in one array).

    Only block pairs I <= J are scored; pair (I, J) serves the rows of I and, through its
    transpose, the rows of J.
    """
    kind, n_threads = get_metric(metric), threads()
    with _pool(n_threads) as run:
        blocks = _Blocks(real, block_starts(len(real), block_size, n_threads), kind, centre, run)
        nb, n = len(blocks), nearest_k + 1
        pairs = [(i, j) for i in range(nb) for j in range(i, nb)]

        def candidates(pair: tuple[int, int]) -> tuple[Candidates, Candidates | None]:
            i, j = pair
            block = kind.block_bounds(
                blocks.prepared[i], blocks.prepared[j], centre, backend=backend
            )
            (oi, _), (oj, _) = blocks.spans[i], blocks.spans[j]
            rows = row_candidates(block, n).shifted(rows=oi, cols=oj)
            cols = None if i == j else row_candidates(block.transpose(), n).shifted(oj, oi)
            return rows, cols

        with Counter("real radii", len(pairs), "block pairs", enabled=progress) as counter:
            found = dict(zip(pairs, run(_counted(candidates, counter), pairs), strict=True))

        def merge(i: int) -> np.ndarray:
            """The n smallest of block i's rows, from its candidates in every pair."""
            parts = [found[(i, j)][0] for j in range(i, nb)] + [found[(j, i)][1] for j in range(i)]
            kept = keep_smallest(Candidates.concat(parts), n)
            values = kind.exact_distances(real, real, kept.row, kept.col)
            start, stop = blocks.spans[i]
            return smallest_values(kept.row - start, values, stop - start, n)

        return np.concatenate(run(merge, range(nb)))


def compare(
    real: np.ndarray,
    synthetic: np.ndarray,
    smallest: np.ndarray,
    margin: float,
    nearest_k: int,
    metric: str,
    centre: np.ndarray | None,
    backend: str,
    *,
    block_size: int = LOCAL_BLOCK,
    progress: bool = False,
) -> tuple[list[RealPartial], list[SyntheticPartial]]:
    """Per real block a RealPartial and per synthetic block a SyntheticPartial, as
    :func:`.graph.compare_graph` computes them; ``smallest`` is the (N, nearest_k + 1) array of
    :func:`radii` (column ``nearest_k`` is radius_k, column 1 radius_1)."""
    kind, n_threads = get_metric(metric), threads()
    copy_threshold = smallest[:, 1] + margin
    with _pool(n_threads) as run:
        reals = _Blocks(real, block_starts(len(real), block_size, n_threads), kind, centre, run)
        synths = _Blocks(
            synthetic, block_starts(len(synthetic), block_size, n_threads), kind, centre, run
        )
        pairs = [(i, j) for i in range(len(reals)) for j in range(len(synths))]

        def reduce(pair: tuple[int, int]):
            i, j = pair
            block = kind.block_bounds(
                reals.prepared[i], synths.prepared[j], centre, backend=backend
            )
            start, stop = reals.spans[i]
            rows = slice(start, stop)
            return compare_block(block, smallest[rows, nearest_k], copy_threshold[rows], start)

        with Counter("real x synthetic", len(pairs), "block pairs", enabled=progress) as counter:
            found = dict(zip(pairs, run(_counted(reduce, counter), pairs), strict=True))

        def per_synthetic(j: int) -> SyntheticPartial:
            merged = merge_synthetic([found[(i, j)][1] for i in range(len(reals))])
            start, stop = synths.spans[j]
            block = synthetic[start:stop]
            near, ratio = merged.nearest, merged.ratio
            near_d = kind.exact_distances(real, block, near.row, near.col)
            ratio_d = kind.exact_distances(real, block, ratio.row, ratio.col)
            nearest_distance, nearest_real = column_minimum(
                near.col, near.row, near_d, stop - start
            )
            copy_ratio, _ = column_minimum(
                ratio.col, ratio.row, ratio_d / copy_threshold[ratio.row], stop - start
            )
            return SyntheticPartial(
                merged.is_real, merged.is_copy, nearest_distance, nearest_real, copy_ratio
            )

        per_real = [
            combine_real([found[(i, j)][0] for j in range(len(synths))]) for i in range(len(reals))
        ]
        return per_real, run(per_synthetic, range(len(synths)))


def _counted(fn: Callable, counter: Counter) -> Callable:
    """``fn`` that steps ``counter`` once per call (from any thread)."""
    lock = threading.Lock()

    def step(item):
        out = fn(item)
        with lock:
            counter.step()
        return out

    return step
