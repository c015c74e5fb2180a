"""How the in-process runner (:mod:`.local`) cuts its arrays into blocks and its passes into
tasks: one block per thread or more, equal blocks, block pairs ordered largest first."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

#: Rows per block at most: a block pair's scores are LOCAL_BLOCK^2 float32 per thread.
LOCAL_BLOCK = 2048
#: Smaller blocks cost more in Python and in GEMM efficiency than they give in parallelism.
MIN_LOCAL_BLOCK = 256
#: Real-pass block pairs per thread that balance the threads without one block per thread.
PAIRS_PER_THREAD = 2
#: Threads of a problem of W GEMM multiply-adds: sqrt(W / WORK_SCALE) (:func:`useful_threads`).
WORK_SCALE = 7e8
#: Where the scores stay on a GPU (:mod:`.device_scores`): blocks of up to DEVICE_SCALE x the
#: caller's block size within LOCAL_BLOCK (8 192 rows by default), on DEVICE_THREADS threads.
#: Each pair there costs a few launches and synchronisations, whatever its size, and the
#: threads' host work (limits, exact distances, merges) is small: fewer, larger pairs win.
#: Measured on an H100 machine (16 cores, Gaussian features, ``benchmarks/bench_gpu.py``):
#: 2 048-row blocks on 16 threads 1.40 s at N = M = 20 000, D = 512; 8 192 on 4 threads 0.30 s
#: (on 8 threads 0.41 s); the scores copied to the host instead, 0.92 s. A pair's scores and
#: the masks of its passes take about 1 GB of the GPU's memory at 8 192 x 8 192 (estimated,
#: not measured).
DEVICE_SCALE = 4
DEVICE_THREADS = 4


def device_layout(block_size: int, cores: int) -> tuple[int, int]:
    """(rows per block at most, threads) of the in-process runner where the scores stay on a
    GPU, for the caller's ``block_size`` (within LOCAL_BLOCK, as on the CPU: a cluster's large
    blocks do not become larger still) on ``cores`` cores (see DEVICE_SCALE)."""
    return DEVICE_SCALE * min(block_size, LOCAL_BLOCK), min(DEVICE_THREADS, cores)


def useful_threads(work: float, n_threads: int) -> int:
    """Threads for a problem of ``work`` GEMM multiply-adds on ``n_threads`` cores.

    A thread more shares the GEMMs (time W / (T R) at R multiply-adds a second per thread) but
    adds blocks, whose Python runs one thread at a time (the GIL): about h seconds a thread.
    W / (T R) + T h is least at T = sqrt(W / (R h)); R h = WORK_SCALE, measured on 16 cores
    (``benchmarks/bench_threads.py``: N = M = 2 000, D = 512 on 2 or 3 threads 2.4-3.9x faster
    than on 16; N = 10 000 best on 8; N = 20 000 on 16). That count rounded down to a power of
    two (the process keeps a pool per thread count: :func:`.threads.pool`), at least two where
    there are two cores (a small problem's time is short either way), at most ``n_threads``
    (also for a work that is not finite).
    """
    if not math.isfinite(work):
        return n_threads
    wanted = math.ceil(math.sqrt(max(work, 0.0) / WORK_SCALE))
    if wanted >= n_threads:
        return n_threads
    return max(min(2, n_threads), 1 << max(wanted.bit_length() - 1, 0))


def pass_work(n_real: int, n_synthetic: int, dim: int, *, radii: bool = True) -> float:
    """GEMM multiply-adds of the radii pass (the symmetric half, N (N + 1) / 2 pairs; without
    it when ``radii`` is False: cached radii) and the comparison (N M pairs) over ``dim``
    features (code positions stand in for them with Hamming codes)."""
    pairs = n_real * (n_real + 1) / 2 if radii else 0.0
    return float(dim) * (pairs + n_real * n_synthetic)


def block_starts(n: int, block_size: int, n_threads: int) -> list[int]:
    """First row of each block of an n-row array, plus n: equal blocks within block_size (the
    runner's: at most LOCAL_BLOCK, larger where the scores stay on a GPU), as many as the
    threads need.

    The real pass scores each diagonal block with half a GEMM
    (:func:`.euclidean.symmetric_candidates`), so B blocks make B (B + 1) / 2 pairs that
    balance on the threads; fewer, larger pairs cost less in Python and in GEMM efficiency.
    On a few threads that is a block per thread. On many, :func:`pair_blocks` blocks: a block
    per thread made many small pairs whose Python (under the GIL, one thread at a time)
    outweighed their GEMMs.
    """
    enough = pair_blocks(n_threads)
    rows = min(block_size, max(MIN_LOCAL_BLOCK, math.ceil(n / enough)))
    few = enough < n_threads  # fewer blocks than threads give the threads enough pairs
    return _equal_starts(n, rows, lambda count: count % n_threads == 0 or few and count >= enough)


def pair_blocks(n_threads: int) -> int:
    """Blocks for ``n_threads``: one per thread, or fewer where their real-pass pairs (B (B +
    1) / 2) give every thread PAIRS_PER_THREAD."""
    blocks = 1
    while blocks * (blocks + 1) // 2 < PAIRS_PER_THREAD * n_threads and blocks < n_threads:
        blocks += 1
    return blocks


def _equal_starts(n: int, rows: int, balanced: Callable[[int], bool]) -> list[int]:
    """Starts of equal blocks of at most ``rows`` rows of an n-row array, plus n: the fewest
    blocks, or a few more (up to twice as many) if that makes ``balanced(count)`` true (work
    that the threads share evenly), and not below MIN_LOCAL_BLOCK rows by more blocks."""
    if n == 0:
        return [0]
    count = math.ceil(n / rows)
    for more in range(count, 2 * count + 1):
        if balanced(more) and (more == count or n / more >= MIN_LOCAL_BLOCK):
            count = more
            break
    rows = math.ceil(n / count)
    return [*range(0, n, rows), n]


def equal_cuts(n: int, pieces: int) -> list[tuple[int, int]]:
    """``pieces`` consecutive ranges ``(first, last)`` of nearly equal length covering
    ``[0, n)`` (some empty when ``pieces > n``): one per thread of a split pass."""
    cuts = np.linspace(0, n, max(1, pieces) + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]


def column_starts(m: int, row_blocks: int, block_size: int, n_threads: int) -> list[int]:
    """:func:`block_starts` of the synthetic array of a comparison with ``row_blocks`` real
    blocks: blocks as wide as one pair per thread allows (within block_size).

    The comparison has no symmetry to exploit, so fewer, wider pairs only save the fixed cost
    of each pair (its Python and NumPy calls: as much as its GEMM at 500 x 500). With one
    real block per thread (:func:`block_starts`), a small comparison is one pair per thread.
    """
    wanted = max(1, math.ceil(n_threads / row_blocks))
    rows = min(block_size, max(MIN_LOCAL_BLOCK, math.ceil(m / wanted)))
    return _equal_starts(m, rows, lambda count: (count * row_blocks) % n_threads == 0)


def radii_tasks(spans: list[tuple[int, int]], n_threads: int) -> list[tuple[int, int, int, int]]:
    """(i, j, first, last): rows first:last of real block i scored with block j (i <= j),
    largest first. A diagonal pair weighs half (half a GEMM); off-diagonal pairs are cut in
    row halves where they are fewer than two per thread (two blocks: one off-diagonal pair
    and two diagonal ones, each half of it, would leave a thread idle for half a pair)."""
    nb = len(spans)
    cut = nb * (nb - 1) // 2 < 2 * n_threads
    tasks = []
    for i, (start, stop) in enumerate(spans):
        size = stop - start
        tasks.append((i, i, 0, size))
        for j in range(i + 1, nb):
            halves = [0, size // 2, size] if cut and size >= 2 * MIN_LOCAL_BLOCK else [0, size]
            tasks += [(i, j, a, b) for a, b in zip(halves[:-1], halves[1:], strict=True)]

    def weight(task: tuple[int, int, int, int]) -> float:
        i, j, first, last = task
        cols = spans[j][1] - spans[j][0]
        return -(last - first) * cols / (2 if i == j else 1)

    return sorted(tasks, key=weight)


def larger_first(rows: list[tuple[int, int]], cols: list[tuple[int, int]] | None = None):
    """Sort key of block pairs: the largest first, so no thread is left with a big one last."""
    cols = rows if cols is None else cols
    return lambda pair: (
        -(rows[pair[0]][1] - rows[pair[0]][0]) * (cols[pair[1]][1] - cols[pair[1]][0])
    )
