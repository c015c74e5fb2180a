"""The four tests of a real x synthetic block on its selected pairs, in one pass
(:func:`.reductions.compare_block`): for each pair, whether it is inside the real image's
k-radius or its copy radius (certainly, or open: its bounds straddle the radius and its exact
distance decides), whether it may be the nearest real image of its synthetic one, whether it may
give its smallest copy ratio; and its distance bounds by the row and by the column envelope.

Compiled (numba): one read of each pair, no temporaries; a block's decisions then take a few
NumPy calls instead of some forty, which hold the interpreter while the other threads wait.
Without numba, the same values from NumPy; both give the same bits.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from .backend import kernel_module
from .bounds import Envelope

#: Bits of :attr:`Classified.state`: inside radius_k (certainly / open), inside the copy radius
#: (certainly / open), a nearest-real candidate, a copy-ratio candidate.
INSIDE, INSIDE_OPEN, COPY, COPY_OPEN, NEAREST, RATIO = 1, 2, 4, 8, 16, 32


@dataclass
class Limits:
    """Per-row and per-column limits of one block (float32: in the score dtype; float64: on
    the distance): the tests of :func:`classify`."""

    radius_k: np.ndarray  # (n_x,) float64
    radius_score: np.ndarray  # (n_x,) score dtype: a pair above it is outside radius_k
    copy_threshold: np.ndarray  # (n_x,) float64
    copy_score: np.ndarray  # (n_x,) score dtype
    column_score: np.ndarray  # (n_y,) score dtype: nearest-real candidates at most this
    shared: np.ndarray  # (n_x,) bool: rows whose copy ratio shares the column limit
    weight: np.ndarray  # (n_x,) score dtype: score * weight estimates the squared ratio
    ratio_score: np.ndarray  # (n_y,) score dtype


@dataclass
class Classified:
    """Per selected pair: the bits of its tests and its bounds by the row and column envelopes."""

    state: np.ndarray  # uint8, bits INSIDE ... RATIO
    row_lower: np.ndarray  # float64
    row_upper: np.ndarray
    col_lower: np.ndarray
    col_upper: np.ndarray

    def has(self, bit: int) -> np.ndarray:
        return (self.state & bit) != 0


def classify(
    score: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    row_env: Envelope,
    col_env: Envelope,
    limits: Limits,
) -> Classified:
    """The tests of the pairs ``(rows[p], cols[p])`` of ``score`` (n_x, n_y): a pair is in the
    radius (copy radius) test where its score is at most the row's score limit; it is then
    inside for certain where its upper bound (the smaller of the two envelopes') is below the
    radius, and open where only its lower bound is."""
    kernel = _kernel()
    if kernel is None or not isinstance(score, np.ndarray) or not score.flags.c_contiguous:
        return _classify_numpy(score, rows, cols, row_env, col_env, limits)
    dtype = score.dtype
    envelopes = (row_env.sq_err, row_env.dist_err, col_env.sq_err, col_env.dist_err)
    found = kernel(
        score,
        np.asarray(rows, np.int64),
        np.asarray(cols, np.int64),
        *(np.asarray(e, np.float64) for e in envelopes),
        float(row_env.rel),
        float(col_env.rel),
        bool(row_env.squared),
        limits.radius_k,
        limits.radius_score.astype(dtype, copy=False),
        limits.copy_threshold,
        limits.copy_score.astype(dtype, copy=False),
        limits.column_score.astype(dtype, copy=False),
        limits.shared,
        limits.weight.astype(dtype, copy=False),
        limits.ratio_score.astype(dtype, copy=False),
    )
    return Classified(*found)


def _classify_numpy(score, rows, cols, row_env, col_env, limits) -> Classified:
    s = score[rows, cols]
    row_lower, row_upper = row_env.lower(s, rows), row_env.upper(s, rows)
    col_lower, col_upper = col_env.lower(s, cols), col_env.upper(s, cols)
    upper, lower = np.minimum(row_upper, col_upper), np.maximum(row_lower, col_lower)
    state = np.zeros(len(rows), np.uint8)
    tests = (
        (limits.radius_score, limits.radius_k, INSIDE, INSIDE_OPEN),
        (limits.copy_score, limits.copy_threshold, COPY, COPY_OPEN),
    )
    for score_limit, radius, certain, open_ in tests:
        tested, limit = s <= score_limit[rows], radius[rows]
        below = upper < limit
        state[tested & below] |= certain
        state[tested & ~below & (lower < limit)] |= open_
    state[s <= limits.column_score[cols]] |= NEAREST
    scaled = s * limits.weight[rows]
    state[limits.shared[rows] & (scaled <= limits.ratio_score[cols])] |= RATIO
    return Classified(state, row_lower, row_upper, col_lower, col_upper)


@functools.cache
def _kernel():
    """``scan_kernels.classify_pairs``, or None without numba."""
    scan_kernels = kernel_module()
    return None if scan_kernels is None else scan_kernels.classify_pairs
