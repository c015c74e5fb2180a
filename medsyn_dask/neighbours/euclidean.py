"""Euclidean distance blocks for continuous features: a float32 GEMM with rigorous bounds.

The exact distance is scipy's ``cdist``: ``sqrt(sum((x - y)**2))`` in float64, the squares
summed left to right. The fast score centres both blocks on a common vector (the real mean, so
features far from the origin keep their precision), casts them to float32 and gets every
squared distance from one GEMM of augmented rows ``[x, |x|^2, 1] . [-2y, 1, |y|^2]``.

Every source of error is bounded: the float32 cast of the centred values and of the norms, the
GEMM's accumulation of D + 2 products in any order (with or without FMA), the float64
rounding of the exact value, and (absolutely) what float32 loses below its normal range. The
bounds are made uniform per row and per column (using the largest norm on the other side), so
a threshold on the distance is one threshold on the score.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy.spatial.distance import cdist

from ..errors import SettingsError
from . import centring, quantized
from .backend import compiled, full_float32_matmul, int8_scores, kernel_module, torch_device
from .bounds import TINY, Envelope, ScoreBlock
from .candidates import Candidates
from .centring import KERNEL_DTYPES, Prepared, Split
from .device_scores import DeviceScores, no_room
from .reductions import kth_per_group, smallest_candidates
from .scans import LANES

#: Unit roundoff of float32 and float64.
U32 = 2.0**-24
U64 = 2.0**-53
#: Every error bound is doubled: an overestimate costs only a few more exact rechecks.
SAFETY = 2.0
#: Largest row norm the engine takes (about 5.8e17): centred on the real mean, a row is then at
#: most 2^60 long and every float32 score, norm and partial sum at most (2^61)^2 = 2^122, below
#: float32's 2^128. Larger features would overflow to Inf and silently change the selection.
MAX_ROW_NORM = 2.0**59


def validate(name: str, features: np.ndarray) -> None:
    """Raise SettingsError unless ``features`` are numbers (float, int or bool) per image."""
    if features.dtype.kind not in "fiub":
        raise SettingsError(f"{name}: euclidean needs numeric features, got dtype {features.dtype}")


def exact_distances(x: np.ndarray, y: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Exact float64 distances ``d(x[rows[p]], y[cols[p]])``: scipy ``cdist``'s values, bit for bit.

    ``cdist`` sums the float64 squares of each pair left to right, then takes the root; the
    compiled kernel does the same operations in the same order (no FMA, no reassociation), so
    the values are identical, and symmetric to the last bit: a pair gets one value in the
    real x real and real x synthetic passes alike. Dtypes the kernel does not take, or no
    numba, go through ``cdist`` itself, one call per row.
    """
    rows, cols = np.asarray(rows, np.int64), np.asarray(cols, np.int64)
    out = np.empty(len(rows), dtype=np.float64)
    if len(rows) == 0:
        return out
    kernel = _pair_kernel() if x.dtype == y.dtype and x.dtype in KERNEL_DTYPES else None
    order = row_major_order(rows, cols, len(y))
    rows_sorted, cols_sorted = rows[order], cols[order]
    values = np.empty(len(rows), dtype=np.float64)
    if kernel is not None:
        kernel(np.ascontiguousarray(x), np.ascontiguousarray(y), rows_sorted, cols_sorted, values)
    else:
        _cdist_by_row(x, y, rows_sorted, cols_sorted, values)
    out[order] = values
    return out


def row_major_order(rows: np.ndarray, cols: np.ndarray, n_cols: int) -> np.ndarray:
    """The order that sorts pairs by row, then column (int64 ``rows``, ``cols`` < ``n_cols``):
    the exact kernel then reads each row once and its partners in order.

    One sort of the key ``row * n_cols + col`` (a tenth of ``np.lexsort``'s time at 10 000
    pairs: most of an exact pass of a small problem); ``lexsort`` where the key could overflow.
    """
    if len(rows) and int(rows.max()) + 1 > np.iinfo(np.int64).max // max(1, n_cols):
        return np.lexsort((cols, rows))
    return np.argsort(rows * max(1, n_cols) + cols, kind="stable")


def _cdist_by_row(x, y, rows_sorted, cols_sorted, values) -> None:
    starts = np.flatnonzero(np.r_[True, rows_sorted[1:] != rows_sorted[:-1]])
    ends = np.r_[starts[1:], len(rows_sorted)]
    for s, e in zip(starts, ends, strict=True):
        r = rows_sorted[s]
        values[s:e] = cdist(
            x[r : r + 1].astype(np.float64, copy=False),
            y[cols_sorted[s:e]].astype(np.float64, copy=False),
        )[0]


def _pair_kernel():
    """The compiled kernel of :func:`exact_distances` (``scan_kernels.pair_distances``), or
    None without numba."""
    kernels = _triangle_kernels()
    return None if kernels is None else kernels.pair_distances


def prepare(
    rows: np.ndarray,
    centre: np.ndarray,
    split: Split | None = None,
    forms: str = "both",
    backend: str = "auto",
) -> Prepared:
    """:func:`.centring.prepare`'s block, in the form ``backend``'s scores take: float32
    augmented rows, or fixed point where :func:`.backend.int8_scores` says so."""
    rows = np.asarray(rows)
    return centring.prepare(rows, centre, split, forms, int8=int8_scores(backend, _dim(rows)))


def _dim(rows: np.ndarray) -> int:
    return rows.shape[1] if rows.ndim == 2 else 0


def block_bounds(
    x: np.ndarray | Prepared,
    y: np.ndarray | Prepared,
    centre: np.ndarray,
    *,
    backend: str = "auto",
) -> ScoreBlock:
    """Scores and bounds for a block: x (n_x, D), y (n_y, D) rows or their :func:`prepare`
    forms, centre (D,) float64."""
    px = x if isinstance(x, Prepared) else prepare(x, centre, forms="left", backend=backend)
    py = y if isinstance(y, Prepared) else prepare(y, centre, forms="right", backend=backend)
    if int8_scores(backend, _dim(px.rows)):
        return _bounded(quantized.scores(px.int8, py.int8), px, py, int8=True)
    return _bounded(_gemm_f32(px.left, py.right, backend), px, py)


def _bounded(score: np.ndarray, px: Prepared, py: Prepared, int8: bool = False) -> ScoreBlock:
    """The ScoreBlock of float32 scores of ``px`` x ``py`` computed as :func:`block_bounds`
    (or :func:`symmetric_bounds`) does: the bounds hold for any order of the sums; ``int8``:
    the scores of :mod:`.quantized`."""
    rows, cols = quantized.envelopes(px.int8, py.int8) if int8 else _envelopes(px, py)

    def exact(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        return exact_distances(px.rows, py.rows, rows, cols)

    return ScoreBlock(score, rows, cols, exact)


def _envelopes(px: Prepared, py: Prepared) -> tuple[Envelope, Envelope]:
    """The row and the column envelope of the scores of ``px`` x ``py`` (see :func:`_bounded`)."""
    rx, ry = np.sqrt(px.norms), np.sqrt(py.norms)
    dim = px.rows.shape[1]
    # |score - |x - y|^2| <= gamma * (|x| + |y|)^2 for the float32 GEMM of D + 2 terms plus
    # the float32 norms; casting the centred values moves each point by U32 * |x|.
    gamma = SAFETY * ((dim + 4) * U32 / (1 - (dim + 4) * U32) + U32)
    cast = SAFETY * (U32 + 2 * U64)
    rel = SAFETY * (dim + 3) * U64  # the exact float64 value vs the true distance

    def envelope(r_own: np.ndarray, r_other_max: float) -> Envelope:
        reach = r_own + r_other_max
        # TINY: what float32 loses below its normal range, where errors are not relative
        # (values, products, norms and sums under 2^-126: features of about 1e-20 and less).
        sq_err = gamma * reach**2 + SAFETY * TINY * (1 + reach)
        return Envelope(sq_err, cast * reach + SAFETY * TINY, rel, True)

    return envelope(rx, ry.max(initial=0.0)), envelope(ry, rx.max(initial=0.0))


def symmetric_bounds(x: Prepared, centre: np.ndarray, *, backend: str = "auto") -> ScoreBlock:
    """``block_bounds(x, x, centre)`` from half the products: a block of rows with itself.

    The Gram matrix ``G = X X^T`` of the centred float32 rows comes from one symmetric rank-k
    update (BLAS ``ssyrk``: one triangle only, half a GEMM's work); each score is then
    ``(|x|^2 + |y|^2) - 2 G`` in float32 from the float32 norms of :func:`_augmented`. Its error
    is within :func:`block_bounds`' bound: ``2 G`` is off by at most gamma_D ``2 |x| |y|``, the
    float32 norms by ``U32 (|x|^2 + |y|^2)``, and the sum and the difference after it add at
    most ``2 U32 (|x| + |y|)^2``: in all less than the ``(gamma_{D+4} + U32) (|x| + |y|)^2``
    that bounds the GEMM's scores, before the SAFETY factor. The scores are symmetric to the
    last bit. With torch on a device, the GEMM of block_bounds.
    """
    if torch_device(backend) is not None:
        return block_bounds(x, x, centre, backend=backend)
    int8 = int8_scores(backend, _dim(x.rows))
    return _bounded(symmetric_scores(*_gram_lower(x, int8)), x, x, int8)


def _gram_lower(x: Prepared, int8: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The Gram matrix of the centred float32 rows of ``x`` (C order, symmetric: its lower
    triangle is what the callers read), and the float32 squared norms; ``int8``: the lower
    triangle of :func:`.quantized.gram` instead.

    ``body @ body.T`` of one array is a symmetric rank-k update in NumPy's BLAS (``ssyrk``, the
    other triangle copied): half a GEMM's products. SciPy's ``ssyrk`` (another BLAS library)
    slows a GEMM on the other core by half again as much as it saves.
    """
    if int8:
        return quantized.gram(x.int8)
    body = x.left[:, :-2]
    return body @ body.T, np.ascontiguousarray(x.left[:, -2])


def symmetric_candidates(
    x: Prepared, centre: np.ndarray, n: int, *, backend: str = "auto"
) -> Candidates:
    """``row_candidates(symmetric_bounds(x, centre), n)``: the same pairs with the same
    bounds, from the lower triangle of the Gram matrix alone (no (n, n) scores made).

    Two compiled passes over the triangle score each pair once for both of its rows: the first
    bounds each row's ``n``-th smallest score from above (:mod:`.scan_kernels`), the second
    collects the pairs within that bound's limit; the ``n``-th smallest and the limits are
    then taken from those pairs, which hold every pair at most the bound. Without numba (or
    with torch on a device), through :func:`symmetric_bounds`.
    """
    kernels = _triangle_kernels()
    if kernels is None or torch_device(backend) is not None or not 0 < n <= LANES or len(x) <= n:
        block = symmetric_bounds(x, centre, backend=backend)
        return smallest_candidates(block, n, columns=False)[0]
    int8 = int8_scores(backend, _dim(x.rows))
    gram_lower, norms32 = _gram_lower(x, int8)
    env = (quantized.envelopes(x.int8, x.int8) if int8 else _envelopes(x, x))[0]
    bound = kernels.triangle_bounds(gram_lower, norms32, n)
    wide = env.score_upto(env.upper(bound), np.float32)
    rows, cols, s = kernels.triangle_collect(gram_lower, norms32, wide)
    limit = env.score_upto(env.upper(kth_per_group(rows, s, n, len(x))), np.float32)
    keep = s <= limit[rows]
    rows, cols, s = rows[keep], cols[keep], s[keep]
    return Candidates(rows, cols, env.lower(s, rows), env.upper(s, rows))


def _triangle_kernels():
    """:mod:`.scan_kernels`, or None without numba (a hook the tests replace)."""
    return kernel_module()


def symmetric_scores(gram_lower: np.ndarray, norms32: np.ndarray) -> np.ndarray:
    """(n, n) float32 scores ``(norms32[i] + norms32[j]) - 2 G[i, j]``, symmetric, from the
    lower triangle of ``gram_lower`` (``G[i, j]`` at ``[max(i, j), min(i, j)]``; the other
    triangle is not read). Compiled, or the same float32 operations in NumPy."""
    n = len(norms32)
    kernel = _symmetric_kernel()
    if kernel is not None:
        out = np.empty((n, n), np.float32)
        kernel(gram_lower, norms32, out)
        return out
    lower = np.tril(gram_lower)
    full = lower + np.tril(gram_lower, -1).T
    return (norms32[:, None] + norms32[None, :]) - np.float32(2.0) * full


#: Tile of :func:`symmetric_scores`: a tile and its mirror are written from a buffer in cache.
SYMMETRIC_TILE = 64


@functools.cache
def _symmetric_kernel():
    tile = SYMMETRIC_TILE

    def fill(gram_lower, norms32, out):  # pragma: no cover - compiled
        n = norms32.shape[0]
        two = np.float32(2.0)
        buf = np.empty((tile, tile), np.float32)
        for r0 in range(0, n, tile):
            r1 = min(r0 + tile, n)
            for c0 in range(0, r0 + 1, tile):
                c1 = min(c0 + tile, n)
                for r in range(r0, r1):  # the tile's scores, row by row (c <= r only)
                    nr, row, keep = norms32[r], gram_lower[r], buf[r - r0]
                    for c in range(c0, min(c1, r + 1)):
                        keep[c - c0] = (nr + norms32[c]) - two * row[c]
                for r in range(r0, r1):
                    dest = out[r]
                    for c in range(c0, min(c1, r + 1)):
                        dest[c] = buf[r - r0, c - c0]
                for c in range(c0, c1):  # the mirror: out[c, r] = out[r, c]
                    dest = out[c]
                    for r in range(max(r0, c), r1):
                        dest[r] = buf[r - r0, c - c0]

    return compiled(fill)


def _gemm_f32(a: np.ndarray, b: np.ndarray, backend: str) -> np.ndarray | DeviceScores:
    """``a @ b.T`` in float32: NumPy, or torch on the worker's GPU (torch's CPU kernels where
    it has none); a GPU's scores are left there (:mod:`.device_scores`)."""
    device = torch_device(backend)
    if device is None:
        return a @ b.T
    import torch

    try:
        # Uploaded before taking the TF32 guard: a copy from pageable memory waits for the
        # stream, which would hold every other thread's GEMM behind it.
        ta, tb = torch.from_numpy(a).to(device), torch.from_numpy(b).to(device)
        with full_float32_matmul():  # TF32 would void the error bound
            product = ta @ tb.T
    except torch.cuda.OutOfMemoryError as exc:  # the workers' models fill the GPU
        no_room(exc)
        return a @ b.T
    return DeviceScores(product) if _scores_stay(device) else product.cpu().numpy()


def scores_on_device(backend: str) -> bool:
    """Whether ``backend`` leaves this process's score blocks on a GPU (:func:`_gemm_f32`):
    the in-process runner then takes fewer, larger blocks (:data:`.layout.DEVICE_SCALE`)."""
    device = torch_device(backend)
    return device is not None and _scores_stay(device)


def _scores_stay(device) -> bool:
    """Whether scores computed on torch ``device`` stay there: on a GPU (its passes are far
    faster than the CPU's; the host gets the selected pairs only), not on the CPU (the
    compiled NumPy passes beat torch's there). A hook the tests replace."""
    return device.type != "cpu"
