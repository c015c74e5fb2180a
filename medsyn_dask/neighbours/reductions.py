"""Block reductions of the neighbourhood method, as plain NumPy functions.

Each function takes the :class:`PairBounds` of one block and reduces it to something small: the
smallest distances of each row (for the real radii), or per-real and per-synthetic partial
results of the real x synthetic comparison. ``combine_*`` functions merge the partials of
several blocks. Every comparison is decided on exact float64 distances: the bounds only pick
the pairs that need one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .bounds import PairBounds


def smallest_per_row(bounds: PairBounds, n: int) -> np.ndarray:
    """The ``n`` smallest exact distances of each row, ascending, padded with +inf.

    Returns (n_x, n) float64. Only pairs whose lower bound does not exceed the row's ``n``-th
    smallest upper bound can be among the ``n`` smallest, so only those are computed exactly.
    """
    n_rows, n_cols = bounds.shape
    if n_cols > n:
        threshold = np.partition(bounds.upper, n - 1, axis=1)[:, n - 1]
        rows, cols = np.nonzero(bounds.lower <= threshold[:, None])
    else:
        rows, cols = np.divmod(np.arange(n_rows * n_cols), n_cols)
    values = bounds.exact(rows, cols)
    order = np.lexsort((values, rows))
    rows, values = rows[order], values[order]
    rank = np.arange(len(rows)) - np.searchsorted(rows, rows)  # position within the row
    keep = rank < n
    out = np.full((n_rows, n), np.inf)
    out[rows[keep], rank[keep]] = values[keep]
    return out


def merge_smallest(parts: list[np.ndarray], n: int) -> np.ndarray:
    """Merge per-row smallest distances of several column blocks: (n_x, n) ascending."""
    return np.sort(np.concatenate(parts, axis=1), axis=1)[:, :n]


@dataclass
class RealPartial:
    """Per real image, counts over some synthetic images. Arrays of shape (n_real_block,)."""

    copies: np.ndarray  # int64: synthetic images that copy this real image
    in_radius: np.ndarray  # int64: synthetic images inside its k-radius


@dataclass
class SyntheticPartial:
    """Per synthetic image, results over some real images. Arrays of shape (n_synthetic_block,)."""

    is_real: np.ndarray  # bool: inside the k-radius of some real image
    is_copy: np.ndarray  # bool: inside the copy radius of some real image
    nearest_distance: np.ndarray  # float64: distance to the nearest real image
    nearest_real: np.ndarray  # int64: its global index (lowest index among ties)
    copy_ratio: np.ndarray  # float64: min over reals of distance / copy threshold


def compare_block(
    bounds: PairBounds,
    radius_k: np.ndarray,
    copy_threshold: np.ndarray,
    real_offset: int,
) -> tuple[RealPartial, SyntheticPartial]:
    """Reduce one real x synthetic block (rows: real, cols: synthetic).

    ``radius_k`` and ``copy_threshold`` (= radius_1 + margin) are per real row, float64.
    ``real_offset`` is the global index of the block's first real image.
    """
    in_radius = _exact_less(bounds, radius_k)
    copies = _exact_less(bounds, copy_threshold)
    nearest_distance, nearest_row = column_minimum(bounds.lower, bounds.upper, bounds.exact)
    ratio_lower, ratio_upper, ratio_exact = _ratio_bounds(bounds, copy_threshold)
    copy_ratio, _ = column_minimum(ratio_lower, ratio_upper, ratio_exact)
    real = RealPartial(copies=copies.sum(axis=1), in_radius=in_radius.sum(axis=1))
    synthetic = SyntheticPartial(
        is_real=in_radius.any(axis=0),
        is_copy=copies.any(axis=0),
        nearest_distance=nearest_distance,
        nearest_real=nearest_row + real_offset,
        copy_ratio=copy_ratio,
    )
    return real, synthetic


def _exact_less(bounds: PairBounds, threshold: np.ndarray) -> np.ndarray:
    """(n_x, n_y) bool: exact ``d[i, j] < threshold[i]``, rechecking only undecided pairs."""
    decided = bounds.upper < threshold[:, None]
    rows, cols = np.nonzero((bounds.lower < threshold[:, None]) & ~decided)
    if len(rows):
        decided[rows, cols] = bounds.exact(rows, cols) < threshold[rows]
    return decided


def _ratio_bounds(bounds: PairBounds, threshold: np.ndarray):
    """Bounds on ``d / threshold`` per pair; +inf where the threshold is 0 (no copy possible).

    Division rounds monotonically, so ``lower / t <= d / t <= upper / t`` holds in float64 too.
    """
    positive = threshold > 0
    scale = np.where(positive, threshold, 1.0)[:, None]
    lower = np.where(positive[:, None], bounds.lower / scale, np.inf)
    upper = np.where(positive[:, None], bounds.upper / scale, np.inf)

    def exact(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        return np.where(positive[rows], bounds.exact(rows, cols) / scale[rows, 0], np.inf)

    return lower, upper, exact


def column_minimum(lower: np.ndarray, upper: np.ndarray, exact) -> tuple[np.ndarray, np.ndarray]:
    """Exact minimum of each column and its row (lowest row among ties); -1 if all are +inf."""
    n_cols = lower.shape[1]
    threshold = upper.min(axis=0)
    rows, cols = np.nonzero((lower <= threshold[None, :]) & np.isfinite(lower))
    values = exact(rows, cols)
    order = np.lexsort((rows, values, cols))
    rows, cols, values = rows[order], cols[order], values[order]
    first = np.ones(len(cols), dtype=bool)
    first[1:] = cols[1:] != cols[:-1]
    best = np.full(n_cols, np.inf)
    best_row = np.full(n_cols, -1, dtype=np.int64)
    best[cols[first]] = values[first]
    best_row[cols[first]] = rows[first]
    return best, best_row


def combine_real(parts: list[RealPartial]) -> RealPartial:
    """Sum per-real counts over synthetic blocks."""
    return RealPartial(
        copies=sum(p.copies for p in parts),
        in_radius=sum(p.in_radius for p in parts),
    )


def combine_synthetic(parts: list[SyntheticPartial]) -> SyntheticPartial:
    """Merge per-synthetic results over real blocks (given in increasing real order)."""
    out = parts[0]
    for p in parts[1:]:
        # Strictly closer wins; on a tie the earlier (lower-index) real image is kept.
        closer = (p.nearest_distance < out.nearest_distance) | (out.nearest_real < 0)
        closer &= p.nearest_real >= 0
        out = SyntheticPartial(
            is_real=out.is_real | p.is_real,
            is_copy=out.is_copy | p.is_copy,
            nearest_distance=np.where(closer, p.nearest_distance, out.nearest_distance),
            nearest_real=np.where(closer, p.nearest_real, out.nearest_real),
            copy_ratio=np.minimum(out.copy_ratio, p.copy_ratio),
        )
    return out
