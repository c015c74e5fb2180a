"""Reductions of a score block in one read: the k-th smallest score per row or column, and the
column minima of the real x synthetic comparison. Compiled by numba (no copy of the block, no
(n_x, n_y) temporary; NumPy's partition copies the block and sorts it in part), with NumPy
equivalents where numba is missing; both give the same values.

Scores are a (n_x, n_y) float32 or float64 array (+inf marks a masked pair). The values only
select pairs: every decision is then made on bounds and exact distances (:mod:`.reductions`).
Selecting the pairs below a limit is compiled too (:mod:`.scan_kernels`: a branch per eight
pairs); without numba, NumPy in strips of rows, so that its temporaries stay small. Scores left
on a GPU are read there (:func:`.device_scores.on_device`).
"""

from __future__ import annotations

from types import ModuleType

import numpy as np

from .backend import kernel_module
from .bounds import nonzero_2d
from .device_scores import on_device

#: Rows of the strips of :func:`scaled_below` (a strip's temporaries stay in cache).
STRIP_ROWS = 128


@on_device
def kth_smallest(score: np.ndarray, n: int, axis: int) -> np.ndarray:
    """The ``n``-th smallest score of each row (``axis=1``) or column (``axis=0``), as
    ``np.partition(score, n - 1, axis)`` takes it; +inf where fewer than ``n`` are finite."""
    if score.shape[axis] < n:
        return np.full(score.shape[1 - axis], np.inf, score.dtype)
    kernels = _kernels()
    if kernels is None or not score.flags.c_contiguous:
        return np.take(np.partition(score, n - 1, axis=axis), n - 1, axis=axis)
    if axis == 1:
        return kernels.row_kth(score, n)
    return kernels.col_kth(score, n)


@on_device
def column_minima(
    score: np.ndarray, weight: np.ndarray, shared: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per column, the smallest score and the smallest scaled score ``score * weight[row]``
    (in the score dtype) over the rows where ``shared`` (+inf without one): one read of the
    block, no (n_x, n_y) temporary. ``weight`` (n_x,) in the score dtype, ``shared`` (n_x,)."""
    kernels = _kernels()
    if kernels is None or not score.flags.c_contiguous:
        scaled = score[shared] * weight[shared, None]
        q_min = scaled.min(axis=0) if len(scaled) else np.full(score.shape[1], np.inf, score.dtype)
        return score.min(axis=0), q_min
    return kernels.column_minima(score, weight.astype(score.dtype), shared)


@on_device
def scaled_below(
    score: np.ndarray, weight: np.ndarray, rows: np.ndarray, limit: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(row, col) of the pairs of the ``rows`` (bool mask) with ``score * weight[row] <=
    limit[col]``, the product computed in strips of rows that stay in cache."""
    found = []
    for start in range(0, len(score), STRIP_ROWS):
        strip = slice(start, start + STRIP_ROWS)
        keep = score[strip] * weight[strip, None] <= limit[None, :]
        keep &= rows[strip, None]
        r, k = nonzero_2d(keep)
        found.append((r + start, k))
    return np.concatenate([f[0] for f in found]), np.concatenate([f[1] for f in found])


@on_device
def select(
    score: np.ndarray,
    row_limit: np.ndarray,
    col_limit: np.ndarray | None = None,
    weight: np.ndarray | None = None,
    ratio_limit: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols), row-major, of the pairs with ``score <= row_limit[row]``, or ``score <=
    col_limit[col]``, or ``score * weight[row] <= ratio_limit[col]`` (in the score dtype; a
    NaN weight never qualifies): the candidates of several tests in one read of the block,
    which the caller then splits by testing the few pairs found. Limits in the score dtype."""
    n_x, n_y = score.shape
    col_limit = np.full(n_y, -np.inf, score.dtype) if col_limit is None else col_limit
    if weight is None or ratio_limit is None:
        weight, ratio_limit = np.zeros(n_x, score.dtype), np.full(n_y, -np.inf, score.dtype)
    kernels = _kernels()
    if kernels is None or not score.flags.c_contiguous:
        found = []
        for start in range(0, n_x, STRIP_ROWS):
            strip = slice(start, start + STRIP_ROWS)
            part = score[strip]
            keep = part <= row_limit[strip, None]
            keep |= part <= col_limit[None, :]
            keep |= part * weight[strip, None] <= ratio_limit[None, :]
            r, k = nonzero_2d(keep)
            found.append((r + start, k))
        return np.concatenate([f[0] for f in found]), np.concatenate([f[1] for f in found])
    dtype = score.dtype
    return kernels.collect(
        score,
        row_limit.astype(dtype),
        col_limit.astype(dtype),
        weight.astype(dtype),
        ratio_limit.astype(dtype),
    )


@on_device
def masked(score: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """``score`` with +inf where ``allowed`` (n_x, n_y) bool is False (a copy)."""
    return np.where(allowed, score, np.array(np.inf, dtype=score.dtype))


@on_device
def kth_upper_bounds(
    score: np.ndarray, n: int, sides: tuple[bool, bool] = (True, True)
) -> tuple[np.ndarray | None, np.ndarray | None] | None:
    """Per row and per column of ``score``, a value at least its ``n``-th smallest score (as
    :func:`kth_smallest` takes it): the ``n``-th smallest of LANES minima of disjoint groups of
    its entries, from one branch-free read of the block. On the CPU: None without numba, or
    for ``n`` > LANES (no bound: the caller takes :func:`kth_smallest`).

    Every group minimum is one entry of the row (column), a different entry for each group, so
    the row holds at least ``n`` entries at most the bound. The bound is close to the ``n``-th
    smallest itself (groups of about n_y / LANES entries): the entries at most it are few, and
    the exact ``n``-th smallest is then taken from those alone. Scores on a GPU give the
    ``n``-th smallest itself (the tightest bound), any ``n``, for the ``sides`` (rows,
    columns) asked for only (None for the other): a side costs a pass there.
    """
    kernels = _kernels()
    if kernels is None or n > LANES or score.dtype.kind != "f" or not score.flags.c_contiguous:
        return None
    return kernels.kth_bounds(score, n)


#: Groups of :func:`kth_upper_bounds` (as :mod:`.scan_kernels` makes them).
LANES = 64


def _kernels() -> ModuleType | None:
    """:mod:`.scan_kernels`, or None without numba (a hook the tests replace)."""
    return kernel_module()
