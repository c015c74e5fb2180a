"""Euclidean scores from exact int8 GEMMs: the fast path on CPUs with int8 matrix units.

On a CPU with AMX int8 tiles (Intel Xeon since its 4th generation) torch's int8 matmul
(oneDNN) runs five to ten times the float32 GEMM's rate, and it is exact: int8 products summed
in int32. Each centred row ``x`` (float64, :mod:`.centring`'s shift) is written as
``x = step * (128 H + L) + e`` with ``step = max|x_j| / (127 * 128)``, ``H`` in [-127, 127]
and ``L`` in [-64, 64] (int8 both) and ``e`` what the fixed point leaves (``|e_j| <= step / 2``
up to float64's rounding, which the bound of ``|e|`` takes in). Two int8 GEMMs give
``P1 = H . H'`` and ``P2 = H . L' + L . H'`` exactly, and

    g = step_x step_y (16384 P1 + 128 P2)  =  x . y - step_x step_y L . L' - e_x . y - x^ . e_y

so ``|x . y - g| <= low_x low_y + err_x |y| + (|x| + err_x) err_y`` with ``low = step |L|`` and
``err = |e|`` per row (Cauchy-Schwarz), plus the float64 rounding of ``g``. The score is
``|x|^2 + |y|^2 - 2 g`` in float32, as the float32 GEMM's; its envelope (:func:`envelopes`)
bounds that error per row and per column, so the reductions decide exactly as with the float32
GEMM, on about as many exact distances (the bound is of the same size: 2^-14 of a row's largest
entry per entry, against 2^-24 D of its length per score). The int32 products are as large
as the score block and written to memory, so the path is bound by memory more than by the
tiles: a whole evaluation is 1.0-1.2x faster at D = 512 and 1.35-1.85x at D >= 1 024
(:data:`.backend.INT8_MIN_DIM`).
"""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from .backend import compiled
from .bounds import TINY, Envelope
from .layout import LOCAL_BLOCK, equal_cuts
from .threads import one_torch_thread

#: Fixed-point steps of a row's largest entry: ``128 H + L`` spans [-STEPS, STEPS].
STEPS = 127 * 128
U32 = 2.0**-24
U64 = 2.0**-53
#: As in :mod:`.euclidean`: every error bound is doubled.
SAFETY = 2.0
#: Rows whose largest entry is below this are all residual (H = L = 0, e = x): their steps
#: would be subnormal and STEPS / max|x_j| could overflow. Their float32 scores are lost below
#: float32's normal range anyway (the envelopes' absolute term).
MIN_TOP = 2.0**-960
#: Per row: squared norm |x|^2, step, err (bound of |e|), low (step |L|). The computed e_j is
#: off the true one by at most 2 U64 max|x_j| (the product step q_j and the difference).
NORM, STEP, ERR, LOW = range(4)


class Quantized:
    """A block of centred rows in fixed point for :func:`scores` and :func:`gram`.

    ``hl`` = ``[H, L]`` and ``lh`` = ``[L, H]`` (n, 2D) int8 torch tensors; ``stats`` (n, 4)
    float64: the squared norm of the centred float64 row, its step, the bound of ``|e|`` and
    ``step |L|`` (the columns NORM, STEP, ERR, LOW)."""

    def __init__(self, hl: Any, lh: Any, stats: np.ndarray) -> None:
        self.hl, self.lh, self.stats = hl, lh, stats

    def __len__(self) -> int:
        return len(self.stats)

    def __getitem__(self, rows: slice) -> Quantized:
        return Quantized(self.hl[rows], self.lh[rows], self.stats[rows])

    @property
    def dim(self) -> int:
        return self.hl.shape[1] // 2


def quantize(rows: np.ndarray, centre: np.ndarray, split=None) -> Quantized:
    """``rows`` (n, D) centred on ``centre`` (D,) float64, in fixed point (see the module).

    ``split`` = (map, pieces): the pass runs on ``pieces`` row ranges through ``map`` (a thread
    pool's), as :func:`.centring.prepare`'s."""
    import torch

    a = np.ascontiguousarray(rows)
    if a.dtype not in (np.float32, np.float64):  # ints, bools, float16: exact in float64
        a = a.astype(np.float64)
    n, dim = a.shape
    hl, lh = np.empty((n, 2 * dim), np.int8), np.empty((n, 2 * dim), np.int8)
    stats = np.empty((n, 4))
    shift = np.ascontiguousarray(centre, np.float64)
    kernel = _quantize_kernel() if _kernels() else _quantize_numpy

    def part(span: tuple[int, int]) -> None:
        lo, hi = span
        kernel(a[lo:hi], shift, hl[lo:hi], lh[lo:hi], stats[lo:hi])

    pool_map, pieces = split if split is not None else (map, 1)
    list(pool_map(part, equal_cuts(n, pieces)))
    return Quantized(torch.from_numpy(hl), torch.from_numpy(lh), stats)


@contextmanager
def products(x: Quantized, y: Quantized) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(P1, P2), (n_x, n_y) int32: ``H_x . H_y`` and ``H_x . L_y + L_x . H_y``, exact; in
    arrays of the scratch (:class:`Scratch`), the caller's while the context lasts."""
    if len(x) == 0 or len(y) == 0 or x.dim == 0:
        empty = np.zeros((len(x), len(y)), np.int32)
        yield empty, empty
        return
    with SCRATCH.arrays(len(x), len(y)) as (high, mixed):
        _multiply(x, y, high, mixed)
        yield high, mixed


def _multiply(x: Quantized, y: Quantized, high: np.ndarray, mixed: np.ndarray) -> None:
    """P1 into ``high`` and P2 into ``mixed`` ((n_x, n_y) int32, C order): two int8 GEMMs."""
    import torch

    dim = x.dim
    with one_torch_thread(torch):
        torch._int_mm(x.hl[:, :dim], y.lh[:, dim:].T, out=torch.from_numpy(high))
        torch._int_mm(x.hl, y.lh.T, out=torch.from_numpy(mixed))


class Scratch:
    """Pairs of int32 product arrays lent to one block at a time and kept for the next.

    Fresh arrays as large as a score block went back to Linux when freed (glibc trims a
    thread's heap) and were faulted in again 4 KiB at a time: N = M = 2 000, D = 512 took
    2 400-3 100 page faults and 12-24 ms of system time a call, against 22 faults and 3 ms kept
    (and freed at the end of each call: 1 600 faults, 29 ms). So pairs stay for the process's life,
    as BLAS libraries keep their per-thread buffers: one per block that ran at once, each at
    most ``pair_bytes`` (larger products are made afresh), ``kept_bytes`` in all."""

    def __init__(self, pair_bytes: int, kept_bytes: int) -> None:
        self.pair_bytes, self.kept_bytes = pair_bytes, kept_bytes
        self._free: list[tuple[np.ndarray, np.ndarray]] = []
        self._lock = threading.Lock()

    @contextmanager
    def arrays(self, n_x: int, n_y: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Two (n_x, n_y) int32 arrays, C order, on cache lines, the caller's while it lasts."""
        size = n_x * n_y
        if 2 * 4 * size > self.pair_bytes:
            yield _aligned(size).reshape(n_x, n_y), _aligned(size).reshape(n_x, n_y)
            return
        pair = self._take(size)
        try:
            yield pair[0][:size].reshape(n_x, n_y), pair[1][:size].reshape(n_x, n_y)
        finally:
            self._give(pair)

    def _take(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        """The smallest free pair that holds ``size``; else a new one, in place of a free pair
        too small (so no more pairs are kept than blocks ran at once)."""
        with self._lock:
            fits = [i for i, (a, _) in enumerate(self._free) if a.size >= size]
            if fits:
                return self._free.pop(min(fits, key=lambda i: self._free[i][0].size))
            if self._free:
                self._free.pop()
        return _aligned(size), _aligned(size)

    def _give(self, pair: tuple[np.ndarray, np.ndarray]) -> None:
        with self._lock:
            if self.kept() + 2 * pair[0].nbytes <= self.kept_bytes:
                self._free.append(pair)

    def kept(self) -> int:
        """Bytes of the pairs kept, not lent out."""
        return sum(a.nbytes + b.nbytes for a, b in self._free)


#: A pair of two LOCAL_BLOCK-square int32 products (32 MiB) at most, 8 such pairs in all.
SCRATCH = Scratch(pair_bytes=2 * LOCAL_BLOCK**2 * 4, kept_bytes=8 * 2 * LOCAL_BLOCK**2 * 4)


def _aligned(size: int) -> np.ndarray:
    """``size`` int32 starting on a cache line: oneDNN writes products that start off one at
    half its rate (NumPy aligns to 16 bytes)."""
    raw = np.empty(size + 16, np.int32)
    skip = (-raw.ctypes.data % 64) // 4
    return raw[skip : skip + size]


def scores(x: Quantized, y: Quantized) -> np.ndarray:
    """(n_x, n_y) float32 scores ``|x|^2 + |y|^2 - 2 g`` (see the module)."""
    norm_x, step_x = _columns(x.stats)
    norm_y, step_y = _columns(y.stats)
    with products(x, y) as (high, mixed):
        if _kernels():
            out = np.empty(high.shape, np.float32)
            _scores_kernel()(high, mixed, norm_x, step_x, norm_y, step_y, out)
            return out
        g = _products_numpy(high, mixed, step_x, step_y)
        return ((norm_x[:, None] + norm_y) - 2.0 * g).astype(np.float32)


#: Rows of a strip of :func:`gram`: each strip is multiplied with the rows up to its last
#: only, so a block with itself takes little more than half the products of a GEMM (the
#: int8 matmul has no symmetric form); narrower strips lose more to the GEMM's efficiency than
#: they save. One thread on an AMX Xeon (``benchmarks/bench_int8.py --gram``), the whole
#: block's time over the strips': 1 000 rows 1.29x (1.48x with cold caches), 2 000 rows 1.21x
#: (1.70x); 500 rows, two strips, 0.83x warm and 1.27x cold.
GRAM_STRIP = 256


def gram(x: Quantized) -> tuple[np.ndarray, np.ndarray]:
    """``(G, norms32)`` of a block with itself for :func:`.euclidean.symmetric_candidates`:
    ``G`` (n, n) float32 holds ``g`` in its lower triangle (the upper one is not written),
    ``norms32`` the float32 squared norms; scores are then ``(norms32[i] + norms32[j]) - 2 G``
    in float32, within :func:`envelopes`' bound. Computed in strips of rows, each with the
    rows up to its last (GRAM_STRIP)."""
    norm, step = _columns(x.stats)
    n = len(x)
    out = np.empty((n, n), np.float32)
    if n == 0 or x.dim == 0:
        out[:] = 0.0
        return out, norm.astype(np.float32)
    fill = _gram_kernel() if _kernels() else _gram_numpy
    # The largest strip first: the scratch pair it takes holds every later one.
    for first, last in reversed(equal_cuts(n, math.ceil(n / GRAM_STRIP))):
        with products(x[first:last], x[:last]) as (high, mixed):
            fill(high, mixed, step, first, out)
    return out, norm.astype(np.float32)


def _gram_numpy(high, mixed, step, first, out) -> None:
    """:func:`_gram_kernel`'s pass in NumPy: the strip's lower triangle (the rest as well)."""
    last = first + len(high)
    out[first:last, :last] = _products_numpy(high, mixed, step[first:last], step[:last])


def _products_numpy(high, mixed, step_x: np.ndarray, step_y: np.ndarray) -> np.ndarray:
    """``g`` (float64) from the two int32 products, as the kernels compute it, without numba."""
    return (16384.0 * high + 128.0 * mixed.astype(np.float64)) * (step_x[:, None] * step_y)


def _columns(stats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The squared norms and steps of ``stats``, contiguous (the kernels' loops vectorise)."""
    return np.ascontiguousarray(stats[:, NORM]), np.ascontiguousarray(stats[:, STEP])


def envelopes(x: Quantized, y: Quantized) -> tuple[Envelope, Envelope]:
    """The row and the column envelopes of :func:`scores` (and of :func:`gram`'s scores).

    Each squared score is off the squared distance of the centred float64 rows by at most
    ``2 (low_x low_y + err_x |y| + (|x| + err_x) err_y)`` (the fixed point), plus the roundings
    of ``g`` (two in float64), of the sums in float64 and float32 (at most four float32
    roundings of values below ``(|x| + |y|)^2``), and what float32 loses below its normal range;
    made uniform per row with the other side's largest values. The centring's float64 rounding
    moves each point by at most ``U64 |x|``; the exact float64 value is within ``(D + 3) U64``
    of the distance, as in :mod:`.euclidean`. Where a row's squares underflow (entries below
    about 2^-511 / sqrt(D)) its err and |x| are not bounds by themselves: TINY's term covers
    what float64 loses there, as float32's loss below its normal range."""
    dim = x.dim
    gamma = SAFETY * (4 * U32 + (dim + 8) * U64)
    rel = SAFETY * (dim + 3) * U64

    def envelope(own: np.ndarray, other: np.ndarray) -> Envelope:
        length, err, low = _lengths(own, dim)
        o_length, o_err, o_low = (v.max(initial=0.0) for v in _lengths(other, dim))
        fixed = 2.0 * (low * o_low + err * o_length + (length + err) * o_err)
        reach = length + o_length
        sq_err = SAFETY * fixed + gamma * reach**2 + SAFETY * TINY * (1 + reach)
        return Envelope(sq_err, SAFETY * (2 * U64 * reach + TINY), rel, True)

    return envelope(x.stats, y.stats), envelope(y.stats, x.stats)


def _lengths(stats: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(|x|, err, low) per row; |x| raised by the float64 error of its sum of squares and root."""
    length = np.sqrt(stats[:, NORM]) * (1 + (dim + 2) * U64)
    return length, stats[:, ERR], stats[:, LOW]


def _kernels() -> bool:
    """Whether numba compiles the passes of this module (a hook the tests replace); without
    it, the same operations in NumPy."""
    return _quantize_kernel() is not None


def _quantize_numpy(a, shift, hl, lh, stats) -> None:
    """:func:`_quantize_kernel`'s pass in NumPy (a float64 copy of the rows)."""
    x = a.astype(np.float64) - shift
    dim = x.shape[1]
    top = np.abs(x).max(axis=1, initial=0.0)
    usable = top >= MIN_TOP
    step = np.where(usable, top / STEPS, 0.0)
    scale = np.where(usable, STEPS / np.where(usable, top, 1.0), 0.0)
    q = np.clip(np.rint(x * scale[:, None]), -STEPS, STEPS)
    high = np.rint(q * (1.0 / 128.0))
    low = q - 128.0 * high
    err = np.sqrt(((x - step[:, None] * q) ** 2).sum(axis=1))
    hl[:, :dim], hl[:, dim:] = high, low
    lh[:, :dim], lh[:, dim:] = low, high
    stats[:, NORM] = (x * x).sum(axis=1)
    stats[:, STEP] = step
    stats[:, ERR] = err * (1 + (dim + 4) * 1.2e-16) + math.sqrt(dim) * 4.5e-16 * top
    stats[:, LOW] = step * np.sqrt((low * low).sum(axis=1)) * (1 + 4.5e-16)


@functools.cache
def _quantize_kernel():
    steps, min_top = float(STEPS), MIN_TOP

    def quantize_rows(a, shift, hl, lh, stats):  # pragma: no cover - compiled
        n, dim = a.shape
        x, high, low = np.empty(dim), np.empty(dim), np.empty(dim)
        # max |x_j| as the largest of the bit patterns without their sign (a vectorised
        # integer maximum; non-negative doubles order as their bits do)
        bits, top_bits = x.view(np.int64), np.zeros(1, np.int64)
        root_dim = math.sqrt(dim)
        for i in range(n):
            row, hl_row, lh_row = a[i], hl[i], lh[i]
            norm = 0.0
            for j in range(dim):  # the sum in any order (reassociated: vectorised)
                v = np.float64(row[j]) - shift[j]
                x[j] = v
                norm += v * v
            largest = 0
            for j in range(dim):
                largest = max(largest, bits[j] & 0x7FFFFFFFFFFFFFFF)
            top_bits[0] = largest
            top = top_bits.view(np.float64)[0]
            step, scale = (top / steps, steps / top) if top >= min_top else (0.0, 0.0)
            err_sq = 0.0
            low_sq = 0.0
            for j in range(dim):
                qj = min(max(np.rint(x[j] * scale), -steps), steps)
                hj = np.rint(qj * (1.0 / 128.0))
                lj = qj - 128.0 * hj
                e = x[j] - step * qj
                err_sq += e * e
                low_sq += lj * lj
                high[j], low[j] = hj, lj
            for j in range(dim):
                hl_row[j] = np.int8(high[j])
                hl_row[dim + j] = np.int8(low[j])
                lh_row[j] = np.int8(low[j])
                lh_row[dim + j] = np.int8(high[j])
            stats[i, 0] = norm
            stats[i, 1] = step
            stats[i, 2] = math.sqrt(err_sq) * (1 + (dim + 4) * 1.2e-16) + root_dim * 4.5e-16 * top
            stats[i, 3] = step * math.sqrt(low_sq) * (1 + 4.5e-16)

    return compiled(quantize_rows, reassociate=True)


@functools.cache
def _scores_kernel():
    def fill(high, mixed, norm_x, step_x, norm_y, step_y, out):  # pragma: no cover - compiled
        n, m = high.shape
        for i in range(n):
            nx, sx = norm_x[i], step_x[i]
            h, k, o = high[i], mixed[i], out[i]
            for j in range(m):
                g = (16384.0 * h[j] + 128.0 * k[j]) * (sx * step_y[j])
                o[j] = np.float32(nx + norm_y[j] - 2.0 * g)

    return compiled(fill)


@functools.cache
def _gram_kernel():
    def fill(high, mixed, step, first, out):  # pragma: no cover - compiled
        for r in range(high.shape[0]):  # row first + r of the block, columns up to it
            i = first + r
            si = step[i]
            h, k, o = high[r], mixed[r], out[i]
            for j in range(i + 1):
                o[j] = np.float32((16384.0 * h[j] + 128.0 * k[j]) * (si * step[j]))

    return compiled(fill)
