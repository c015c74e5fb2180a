"""Block reductions of the neighbourhood method, as plain NumPy functions.

Two kinds of step, so that exact distances are computed once per pair that matters rather than
once per block:

- candidate steps read the scores of one :class:`ScoreBlock` and keep the pairs whose bounds
  say they may matter (the k+1 nearest of a real image, the nearest real image of a synthetic
  one, its smallest copy ratio), as :class:`Candidates` with distance bounds;
- ``keep_smallest`` merges the candidates of all blocks and drops those beaten by the bounds of
  others; the exact pass then computes the few that are left.

Every comparison is finally decided on exact float64 distances; the bounds only pick the pairs.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from .bounds import ScoreBlock, nonzero_2d
from .scans import column_minima, kth_smallest, scaled_below

#: A row whose copy-ratio error exceeds this and 16 times the block's median (its copy threshold
#: is tiny next to the float32 error) does not share the column threshold: it is bounded alone.
RATIO_ABS_CAP = 1e-3


@dataclass
class Candidates:
    """Pairs that may matter, with bounds ``lower <= value <= upper`` on their exact value.

    Stored compactly (they wait in worker memory until every block has reported): int32
    indices while they fit, float32 bounds rounded outward so they stay bounds.
    """

    row: np.ndarray
    col: np.ndarray
    lower: np.ndarray
    upper: np.ndarray

    def __post_init__(self) -> None:
        self.row, self.col = _compact_index(self.row), _compact_index(self.col)
        self.lower = _round32(self.lower, -np.inf)
        self.upper = _round32(self.upper, np.inf)

    @classmethod
    def empty(cls) -> Candidates:
        return cls(np.empty(0, np.int32), np.empty(0, np.int32), np.empty(0), np.empty(0))

    @classmethod
    def concat(cls, parts: list[Candidates]) -> Candidates:
        if not parts:
            return cls.empty()
        return cls(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)))

    def __len__(self) -> int:
        return len(self.row)

    def take(self, mask: np.ndarray) -> Candidates:
        return Candidates(self.row[mask], self.col[mask], self.lower[mask], self.upper[mask])

    def shifted(self, rows: int = 0, cols: int = 0) -> Candidates:
        """The same pairs with ``rows`` and ``cols`` added to the indices (local -> global)."""
        return Candidates(
            self.row.astype(np.int64) + rows,
            self.col.astype(np.int64) + cols,
            self.lower,
            self.upper,
        )

    def transposed(self) -> Candidates:
        return Candidates(self.col, self.row, self.lower, self.upper)


def _compact_index(index: np.ndarray) -> np.ndarray:
    index = np.asarray(index)
    if index.dtype == np.int32 or (index.size and index.max() >= 2**31):
        return index
    return index.astype(np.int32)


def _round32(values: np.ndarray, toward: float) -> np.ndarray:
    values = np.asarray(values)
    if values.dtype == np.float32:
        return values
    return np.nextafter(values.astype(np.float32), np.float32(toward))


def _on_scores(block: ScoreBlock, rows: np.ndarray, cols: np.ndarray, by: str) -> Candidates:
    """Candidates for the given pairs, bounded with the row or the column envelope."""
    env, index = (block.rows, rows) if by == "row" else (block.cols, cols)
    s = block.score[rows, cols]
    return Candidates(rows, cols, env.lower(s, index), env.upper(s, index))


def row_candidates(block: ScoreBlock, n: int, allowed: np.ndarray | None = None) -> Candidates:
    """Pairs that may be among the ``n`` smallest distances of their row (local indices).

    The row's ``n``-th smallest score bounds its ``n``-th smallest distance from above; a pair
    whose lower bound exceeds that cannot be among the ``n`` smallest. ``allowed`` (n_x, n_y)
    bool, when given, restricts every row to its allowed pairs (patient mode: other patients);
    a row with none allowed yields no candidate.
    """
    return _smallest_candidates(block, n, allowed, axis=1)


def column_candidates(block: ScoreBlock, n: int, allowed: np.ndarray | None = None) -> Candidates:
    """:func:`row_candidates` of ``block.transpose()`` (rows: the columns of ``block``), read
    from ``block`` as it is: no transposed copy of the scores."""
    return _smallest_candidates(block, n, allowed, axis=0).transposed()


def _smallest_candidates(
    block: ScoreBlock, n: int, allowed: np.ndarray | None, axis: int
) -> Candidates:
    """Candidates (rows and columns of ``block``) for the ``n`` smallest along ``axis``: per
    row (``axis=1``, bounded by the row envelope) or per column (``axis=0``)."""
    score = block.score
    if allowed is not None:
        score = np.where(allowed, score, np.array(np.inf, dtype=score.dtype))
    env = block.rows if axis == 1 else block.cols
    if score.shape[axis] > n:
        kth = kth_smallest(score, n, axis)
    else:
        kth = score.max(axis=axis)
    limit = env.score_upto(env.upper(kth), score.dtype)
    keep = score <= (limit[:, None] if axis == 1 else limit[None, :])
    if allowed is not None:
        keep &= allowed  # a row whose limit is +inf would otherwise keep its masked pairs
    rows, cols = nonzero_2d(keep)
    return _on_scores(block, rows, cols, "row" if axis == 1 else "col")


def column_min_candidates(block: ScoreBlock, column_min: np.ndarray | None = None) -> Candidates:
    """Pairs that may be the nearest row of their column (local indices); ``column_min``: the
    smallest score of each column, when already known."""
    score = block.score
    column_min = score.min(axis=0) if column_min is None else column_min
    limit = block.cols.score_upto(block.cols.upper(column_min), score.dtype)
    rows, cols = nonzero_2d(score <= limit[None, :])
    return _on_scores(block, rows, cols, "col")


def keep_smallest(candidates: Candidates, n: int, by: str = "row") -> Candidates:
    """Drop candidates that cannot be among the ``n`` smallest values of their row (or column).

    The ``n``-th smallest upper bound of a group bounds its ``n``-th smallest value; a candidate
    whose lower bound exceeds it is not needed. Groups with fewer than ``n`` keep everything.
    """
    if len(candidates) == 0:
        return candidates
    key = candidates.row if by == "row" else candidates.col
    order = np.lexsort((candidates.upper, key))
    key_sorted = key[order]
    rank = np.arange(len(order)) - np.searchsorted(key_sorted, key_sorted)
    limit = np.full(int(key.max()) + 1, np.inf)
    at_n = rank == n - 1
    limit[key_sorted[at_n]] = candidates.upper[order][at_n]
    return candidates.take(candidates.lower <= limit[key])


def smallest_values(rows: np.ndarray, values: np.ndarray, n_rows: int, n: int) -> np.ndarray:
    """(n_rows, n) array of the ``n`` smallest ``values`` of each row, ascending, +inf padded."""
    order = np.lexsort((values, rows))
    rows, values = rows[order], values[order]
    rank = np.arange(len(rows)) - np.searchsorted(rows, rows)
    keep = rank < n
    out = np.full((n_rows, n), np.inf)
    out[rows[keep], rank[keep]] = values[keep]
    return out


def pairs_below(block: ScoreBlock, threshold: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The (row, col) pairs whose exact distance is below ``threshold[row]`` (strict ``<``).

    One comparison per pair finds those that may be below; the row and column envelopes
    together decide most of them, and only the rest get an exact distance.
    """
    score = block.score
    rows, cols = nonzero_2d(score <= block.rows.score_upto(threshold, score.dtype)[:, None])
    s, limit = score[rows, cols], threshold[rows]
    upper = np.minimum(block.rows.upper(s, rows), block.cols.upper(s, cols))
    lower = np.maximum(block.rows.lower(s, rows), block.cols.lower(s, cols))
    below = upper < limit
    open_ = ~below & (lower < limit)
    below[open_] = block.exact(rows[open_], cols[open_]) < limit[open_]
    return rows[below], cols[below]


def ratio_candidates(block: ScoreBlock, copy_threshold: np.ndarray) -> Candidates:
    """Pairs that may give their column's smallest ``d / copy_threshold[row]``; bounds on it.

    Rows with a zero threshold have ratio +inf (nothing can copy them) and never qualify.
    """
    return _ratio_and_column_min(block, copy_threshold)[0]


def _ratio_and_column_min(
    block: ScoreBlock, copy_threshold: np.ndarray
) -> tuple[Candidates, np.ndarray]:
    """:func:`ratio_candidates`, and the smallest score of each column (the same read)."""
    env, score = block.rows, block.score
    valid = copy_threshold > 0
    c = np.where(valid, copy_threshold, 1.0)
    # q = score / c**power estimates the ratio (squared for squared scores); alpha and beta are
    # the row's errors on that scale: small for all but tiny thresholds.
    power = 2 if env.squared else 1
    alpha, beta = env.dist_err / c, env.sq_err / c**power
    loose = valid & ((alpha > _cap(alpha[valid])) | (beta > _cap(beta[valid])))
    shared = valid & ~loose
    weight = (1.0 / c**power).astype(score.dtype)
    column_min, q_min = column_minima(score, weight, shared)
    best_upper = np.full(score.shape[1], np.inf)
    parts = []
    shared_rows, loose_rows = np.flatnonzero(shared), np.flatnonzero(loose)
    if len(shared_rows):
        a, b = alpha[shared].max(), beta[shared].max()
        # The smallest q of a column belongs to some shared row, whose ratio is at most
        # (root(q + beta) + alpha) * (1 + rel); q's float32 rounding is covered by 1e-6.
        q_min = q_min.astype(np.float64) * (1 + 1e-6)
        root = np.sqrt(q_min + b) if env.squared else q_min + b
        best_upper = (root + a) * (1 + env.rel)
    if len(loose_rows):
        upper = env.upper(score[loose_rows], loose_rows[:, None]) / c[loose_rows, None]
        best_upper = np.minimum(best_upper, upper.min(axis=0))
        lower = env.lower(score[loose_rows], loose_rows[:, None]) / c[loose_rows, None]
        r, k = nonzero_2d(lower <= best_upper[None, :])
        parts.append(_ratio_bounds(block, loose_rows[r], k, c))
    if len(shared_rows):
        # lower(s) / c <= m  implies  q <= (m / (1 - rel) + alpha)**power + beta.
        limit = (best_upper / (1 - env.rel) + a) ** power + b
        limit = (limit * (1 + 1e-6)).astype(score.dtype)  # covers q's float32 rounding
        r, k = scaled_below(score, weight, shared, limit)
        parts.append(_ratio_bounds(block, r, k, c))
    return Candidates.concat(parts), column_min


def _cap(errors: np.ndarray) -> float:
    """Errors above this are outliers that would loosen the shared threshold for all rows."""
    return max(RATIO_ABS_CAP, 16.0 * float(np.median(errors))) if len(errors) else np.inf


def _ratio_bounds(block: ScoreBlock, rows: np.ndarray, cols: np.ndarray, c: np.ndarray):
    pairs = _on_scores(block, rows, cols, "row")
    return Candidates(rows, cols, pairs.lower / c[rows], pairs.upper / c[rows])


@dataclass
class RealPartial:
    """Per real image, counts over some synthetic images. Arrays of shape (n_real_block,)."""

    copies: np.ndarray  # int64: synthetic images that copy this real image
    in_radius: np.ndarray  # int64: synthetic images inside its k-radius


@dataclass
class SyntheticCandidates:
    """Per synthetic image of one block, results and candidates over some real images.

    ``nearest`` and ``ratio`` hold (global real row, local synthetic column) pairs with bounds
    on the distance and on the copy ratio.
    """

    is_real: np.ndarray  # bool: inside the k-radius of some real image
    is_copy: np.ndarray  # bool: inside the copy radius of some real image
    nearest: Candidates
    ratio: Candidates


@dataclass
class SyntheticPartial:
    """Per synthetic image, final results. Arrays of shape (n_synthetic_block,)."""

    is_real: np.ndarray  # bool
    is_copy: np.ndarray  # bool
    nearest_distance: np.ndarray  # float64: distance to the nearest real image
    nearest_real: np.ndarray  # int64: its global index (lowest index among ties)
    copy_ratio: np.ndarray  # float64: min over reals of distance / copy threshold


def compare_block(
    block: ScoreBlock,
    radius_k: np.ndarray,
    copy_threshold: np.ndarray,
    real_offset: int,
) -> tuple[RealPartial, SyntheticCandidates]:
    """Reduce one real x synthetic block (rows: real, cols: synthetic).

    ``radius_k`` and ``copy_threshold`` (= radius_1 + margin) are per real row, float64;
    ``real_offset`` is the global index of the block's first real image.
    """
    n_real, n_synth = block.shape
    ratio, column_min = _ratio_and_column_min(block, copy_threshold)
    inside_rows, inside_cols = pairs_below(block, radius_k)
    copy_rows, copy_cols = pairs_below(block, copy_threshold)
    real = RealPartial(
        copies=np.bincount(copy_rows, minlength=n_real),
        in_radius=np.bincount(inside_rows, minlength=n_real),
    )
    synthetic = SyntheticCandidates(
        is_real=np.bincount(inside_cols, minlength=n_synth) > 0,
        is_copy=np.bincount(copy_cols, minlength=n_synth) > 0,
        nearest=column_min_candidates(block, column_min).shifted(rows=real_offset),
        ratio=ratio.shifted(rows=real_offset),
    )
    return real, synthetic


def combine_real(parts: list[RealPartial]) -> RealPartial:
    """Sum per-real counts over synthetic blocks."""
    return RealPartial(
        copies=sum(p.copies for p in parts),
        in_radius=sum(p.in_radius for p in parts),
    )


def merge_synthetic(parts: list[SyntheticCandidates]) -> SyntheticCandidates:
    """Merge one synthetic block's results over real blocks, keeping the needed candidates."""
    return SyntheticCandidates(
        is_real=np.logical_or.reduce([p.is_real for p in parts]),
        is_copy=np.logical_or.reduce([p.is_copy for p in parts]),
        nearest=keep_smallest(Candidates.concat([p.nearest for p in parts]), 1, by="col"),
        ratio=keep_smallest(Candidates.concat([p.ratio for p in parts]), 1, by="col"),
    )


def column_minimum(cols: np.ndarray, rows: np.ndarray, values: np.ndarray, n_cols: int):
    """Per column, the smallest value and its row (lowest row among ties); +inf and -1 if none."""
    order = np.lexsort((rows, values, cols))
    cols, rows, values = cols[order], rows[order], values[order]
    first = np.ones(len(cols), dtype=bool)
    first[1:] = cols[1:] != cols[:-1]
    best = np.full(n_cols, np.inf)
    best_row = np.full(n_cols, -1, dtype=np.int64)
    best[cols[first]] = values[first]
    best_row[cols[first]] = rows[first]
    return best, best_row


def other_patient(row_patients: np.ndarray, col_patients: np.ndarray) -> np.ndarray:
    """(n_x, n_y) bool mask of one block: the pairs of two different patients."""
    return row_patients[:, None] != col_patients[None, :]


@dataclass
class PatientCopies:
    """The patient copies found in one real x synthetic block (METHOD.md, "Patient mode").

    ``patient`` and ``col`` list each (real patient code, synthetic index) pair once: synthetic
    image ``col`` is closer to some image of that patient than its patient copy threshold.
    ``nearest`` holds (local real row, global synthetic column) candidates for each real image's
    nearest synthetic image.
    """

    patient: np.ndarray  # int64
    col: np.ndarray  # int64
    nearest: Candidates

    @classmethod
    def merge(cls, parts: list[PatientCopies], by: str) -> PatientCopies:
        """Parts of one synthetic block (``by="col"``: keep the copy pairs, unique) or of one
        real block (``by="row"``: keep each real row's nearest-synthetic candidates)."""
        patient = np.concatenate([p.patient for p in parts])
        col = np.concatenate([p.col for p in parts])
        if by == "col" and len(col):
            pairs = np.unique(np.stack([patient, col], axis=1), axis=0)
            patient, col = pairs[:, 0], pairs[:, 1]
        nearest = Candidates.concat([p.nearest for p in parts])
        return cls(patient, col, keep_smallest(nearest, 1, by="row") if by == "row" else nearest)


def patient_copy_block(
    block: ScoreBlock,
    patient_threshold: np.ndarray,
    row_patients: np.ndarray,
    synth_offset: int,
) -> PatientCopies:
    """Reduce one real x synthetic block (rows: real, cols: synthetic) for patient mode.

    ``patient_threshold`` (= patient_radius_1 + margin, float64) and ``row_patients`` (patient
    codes) are per real row; ``synth_offset`` is the global index of the block's first
    synthetic image. Copy pairs are decided exactly (strict ``<``) by :func:`pairs_below`.
    """
    rows, cols = pairs_below(block, patient_threshold)
    patient = row_patients[rows].astype(np.int64)
    if len(rows):
        pairs = np.unique(np.stack([patient, cols.astype(np.int64)], axis=1), axis=0)
        patient, cols = pairs[:, 0], pairs[:, 1]
    return PatientCopies(
        patient,
        cols.astype(np.int64),
        row_candidates(block, 1).shifted(cols=synth_offset),
    )
