"""Distance bounds for one block of pairs, the common currency of the neighbourhood reductions.

A metric turns a block of rows ``x`` (n_x x D) and ``y`` (n_y x D) into a :class:`ScoreBlock`:
a cheap ``score`` per pair (a float32 GEMM estimate of the squared distance, or for Hamming the
exact distance), two :class:`Envelope` objects that bound the exact distance as a monotone
function of the score, and a function that computes exact distances (the float64 values a
brute force gives) for chosen pairs. The reductions decide what they can from the scores with
one comparison per pair against a per-row (or per-column) score threshold, and ask for exact
values only where the bounds leave a question open, so a fast GEMM can never change a result.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .device_scores import DeviceScores

ExactFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
#: Relative widening of score thresholds: covers the float64 rounding of their computation.
THRESHOLD_SLACK = 1e-12
#: Absolute error of values below float32's normal range (2^-126), per unit of (1 + |a| + |b|):
#: at most (D + 4) 2^-126 in a score, sqrt(D) 2^-149 in a centred row, for any D below 2^26.
TINY = 2.0**-100


@dataclass(frozen=True)
class Envelope:
    """Bounds on the exact distance ``d`` of a pair from its score ``s``, one entry per index.

    For an index ``i`` along the envelope's axis (a row, or a column) and any pair on it::

        lower(s) = max(0, (root(s - sq_err[i]) - dist_err[i]) * (1 - rel)) <= d
        upper(s) = (root(s + sq_err[i]) + dist_err[i]) * (1 + rel)        >= d

    with ``root = sqrt(max(., 0))`` when ``squared`` (the score estimates d**2) and the identity
    otherwise. Both are increasing in ``s``, so a threshold on ``d`` is a threshold on ``s``.
    """

    sq_err: np.ndarray
    dist_err: np.ndarray
    rel: float
    squared: bool

    @classmethod
    def none(cls, n: int) -> Envelope:
        """The envelope of a score that is the exact distance itself."""
        zeros = np.zeros(n)
        return cls(zeros, zeros, 0.0, squared=False)

    def _root(self, s: np.ndarray) -> np.ndarray:
        return np.sqrt(np.maximum(s, 0.0)) if self.squared else s

    def lower(self, score: np.ndarray, index: np.ndarray | slice = slice(None)) -> np.ndarray:
        s = np.asarray(score, dtype=np.float64)
        d = self._root(s - self.sq_err[index]) - self.dist_err[index]
        return np.maximum(d * (1.0 - self.rel), 0.0)

    def upper(self, score: np.ndarray, index: np.ndarray | slice = slice(None)) -> np.ndarray:
        s = np.asarray(score, dtype=np.float64)
        return (self._root(s + self.sq_err[index]) + self.dist_err[index]) * (1.0 + self.rel)

    def score_upto(self, limit: np.ndarray, dtype: np.dtype) -> np.ndarray:
        """Per index, a score ``h`` such that ``lower(s) <= limit`` implies ``s <= h``."""
        x = np.asarray(limit, np.float64) / (1.0 - self.rel) + self.dist_err
        h = (x * x if self.squared else x) + self.sq_err
        h = h + np.abs(h) * THRESHOLD_SLACK
        return _round(h, dtype, np.inf)

    def score_below(self, limit: np.ndarray, dtype: np.dtype) -> np.ndarray:
        """Per index, a score ``l`` such that ``s < l`` implies ``upper(s) < limit``."""
        x = np.asarray(limit, np.float64) / (1.0 + self.rel) - self.dist_err
        if self.squared:
            x = np.where(x > 0, x * x - self.sq_err, -np.inf)
        else:
            x = x - self.sq_err
        x = x - np.abs(x) * THRESHOLD_SLACK
        return _round(x, dtype, -np.inf)


def _round(values: np.ndarray, dtype: np.dtype, toward: float) -> np.ndarray:
    """Cast to the score dtype, rounding outward (toward +inf or -inf) so no pair is lost."""
    cast = values.astype(dtype)
    return np.nextafter(cast, np.asarray(toward, dtype=dtype)).astype(dtype)


def nonzero_2d(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.nonzero`` of a C-contiguous 2-D mask, row-major; ten times faster on sparse masks."""
    flat = np.flatnonzero(mask)
    return np.divmod(flat, mask.shape[1])


def transpose_copy(a: np.ndarray, strip: int = 256) -> np.ndarray:
    """A C-contiguous copy of ``a.T``, copied in strips that stay in cache (2x numpy's)."""
    out = np.empty((a.shape[1], a.shape[0]), dtype=a.dtype)
    for start in range(0, a.shape[0], strip):
        out[:, start : start + strip] = a[start : start + strip].T
    return out


@dataclass(frozen=True)
class ScoreBlock:
    """Scores and distance bounds of one block of pairs (x rows by y columns).

    Attributes:
        score: (n_x, n_y), float32 or float64; or float32 left on a GPU
            (:class:`.device_scores.DeviceScores`), which the scans read there.
        rows: envelope indexed by row, valid for every pair in that row.
        cols: envelope indexed by column, valid for every pair in that column.
        exact: ``exact(rows, cols)`` -> float64 exact distances of the pairs
            ``(x[rows[p]], y[cols[p]])``; local int indices.
    """

    score: np.ndarray
    rows: Envelope
    cols: Envelope
    exact: ExactFn

    @property
    def shape(self) -> tuple[int, int]:
        return self.score.shape

    def transpose(self) -> ScoreBlock:
        """The same block seen from ``y`` (distances are symmetric), score stored row-major."""
        exact, score = self.exact, self.score
        return ScoreBlock(
            score.transposed() if isinstance(score, DeviceScores) else transpose_copy(score),
            self.cols,
            self.rows,
            lambda rows, cols: exact(cols, rows),
        )

    @classmethod
    def from_exact(cls, distances: np.ndarray) -> ScoreBlock:
        """A block whose scores are the exact distances (e.g. integer-count Hamming)."""
        n_x, n_y = distances.shape
        return cls(
            distances,
            Envelope.none(n_x),
            Envelope.none(n_y),
            lambda rows, cols: distances[rows, cols],
        )
