"""The copy-ratio candidates of a real x synthetic block: the pairs that may give a synthetic
image's smallest ``d / copy_threshold[row]``, with bounds on that ratio (METHOD.md, the copy
ratio of each synthetic image)."""

from __future__ import annotations

import numpy as np

from .bounds import ScoreBlock, nonzero_2d
from .candidates import Candidates, on_scores
from .scans import column_minima, scaled_below

#: A row whose copy-ratio error exceeds this and 16 times the block's median (its copy threshold
#: is tiny next to the float32 error) does not share the column threshold: it is bounded alone.
RATIO_ABS_CAP = 1e-3


def ratio_candidates(block: ScoreBlock, copy_threshold: np.ndarray) -> Candidates:
    """Pairs that may give their column's smallest ``d / copy_threshold[row]``; bounds on it.

    Rows with a zero threshold have ratio +inf (nothing can copy them) and never qualify.
    """
    plan = RatioPlan(block, copy_threshold)
    limit, loose = plan.limit(column_minima(block.score, plan.weight, plan.shared)[1])
    return Candidates.concat([loose, plan.bounds(*scaled_below(block.score, *plan.scaled, limit))])


class RatioPlan:
    """How :func:`ratio_candidates` bounds the copy ratio ``d / c`` of a block's pairs.

    ``q = score * weight[row]`` (``weight = 1 / c**power``, power 2 for squared scores)
    estimates the ratio (squared) with the row's errors alpha and beta on that scale: small for
    all but tiny thresholds. Rows whose errors are outliers ("loose") are bounded one by one;
    the others ("shared") share the largest error, so one limit per column selects their pairs.
    """

    def __init__(self, block: ScoreBlock, copy_threshold: np.ndarray) -> None:
        env, score = block.rows, block.score
        self.block, self.env = block, env
        valid = copy_threshold > 0
        self.c = np.where(valid, copy_threshold, 1.0)
        self.power = 2 if env.squared else 1
        alpha, beta = env.dist_err / self.c, env.sq_err / self.c**self.power
        weight = 1.0 / self.c**self.power
        self.loose = valid & ((alpha > _cap(alpha[valid])) | (beta > _cap(beta[valid])))
        # A tiny threshold (below about 2^-50 for float32 scores) has a weight, or a q of a
        # pair's rounding error, beyond the score dtype: q would be Inf or NaN and the column's
        # limit NaN, losing its smallest ratio. Such rows are bounded alone, in float64.
        largest = float(np.finfo(score.dtype).max) * 2.0**-28
        self.loose |= valid & ((weight > largest) | (beta > largest))
        self.shared = valid & ~self.loose
        self.weight = np.where(self.shared, weight, 0.0).astype(score.dtype)
        if self.shared.any():
            self.a, self.b = alpha[self.shared].max(), beta[self.shared].max()

    @property
    def scaled(self) -> tuple[np.ndarray, np.ndarray]:
        """(weight, shared) as :func:`.scans.scaled_below` takes them."""
        return self.weight, self.shared

    @property
    def select_weight(self) -> np.ndarray:
        """The weights with NaN for rows that are not shared (as :func:`.scans.select`)."""
        return np.where(self.shared, self.weight, np.array(np.nan, self.weight.dtype))

    def limit(self, q_min: np.ndarray) -> tuple[np.ndarray, Candidates]:
        """Per column the limit on q of the shared rows (from ``q_min``, the smallest q of
        each column), and the candidates of the loose rows."""
        env, score, c = self.env, self.block.score, self.c
        best_upper = np.full(score.shape[1], np.inf)
        if self.shared.any():
            # The smallest q of a column belongs to some shared row, whose ratio is at most
            # (root(q + beta) + alpha) * (1 + rel); q's float32 rounding is covered by 1e-6.
            q = q_min.astype(np.float64) * (1 + 1e-6)
            best_upper = (
                (np.sqrt(np.maximum(q + self.b, 0.0)) if env.squared else q + self.b) + self.a
            ) * (1 + env.rel)
        loose = Candidates.empty()
        loose_rows = np.flatnonzero(self.loose)
        if len(loose_rows):
            upper = env.upper(score[loose_rows], loose_rows[:, None]) / c[loose_rows, None]
            best_upper = np.minimum(best_upper, upper.min(axis=0))
            lower = env.lower(score[loose_rows], loose_rows[:, None]) / c[loose_rows, None]
            r, k = nonzero_2d(lower <= best_upper[None, :])
            loose = self.bounds(loose_rows[r], k)
        if not self.shared.any():
            return np.full(score.shape[1], -np.inf, score.dtype), loose
        # lower(s) / c <= m  implies  q <= (m / (1 - rel) + alpha)**power + beta.
        limit = (best_upper / (1 - env.rel) + self.a) ** self.power + self.b
        return (limit * (1 + 1e-6)).astype(score.dtype), loose  # covers q's float32 rounding

    def bounds(self, rows: np.ndarray, cols: np.ndarray) -> Candidates:
        """The pairs with bounds on their copy ratio."""
        pairs = on_scores(self.block, rows, cols, "row")
        return self.bounded(rows, cols, pairs.lower, pairs.upper)

    def bounded(self, rows, cols, lower: np.ndarray, upper: np.ndarray) -> Candidates:
        """The pairs with bounds on their copy ratio, from bounds on their distance by the row
        envelope (as :func:`.candidates.on_scores` makes them)."""
        pairs = Candidates(rows, cols, lower, upper)  # rounded outward to float32 first
        return Candidates(rows, cols, pairs.lower / self.c[rows], pairs.upper / self.c[rows])


def _cap(errors: np.ndarray) -> float:
    """Errors above this are outliers that would loosen the shared threshold for all rows."""
    return max(RATIO_ABS_CAP, 16.0 * float(np.median(errors))) if len(errors) else np.inf
