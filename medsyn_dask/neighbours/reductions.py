"""Block reductions of the neighbourhood method, as plain NumPy functions.

Two kinds of step, so that exact distances are computed once per pair that matters rather than
once per block:

- candidate steps read the scores of one :class:`ScoreBlock` and keep the pairs whose bounds
  say they may matter (the k+1 nearest of a real image, the nearest real image of a synthetic
  one, its smallest copy ratio), as :class:`Candidates` with distance bounds;
- ``keep_smallest`` merges the candidates of all blocks and drops those beaten by the bounds of
  others; the exact pass then computes the few that are left.

Every comparison is finally decided on exact float64 distances; the bounds only pick the pairs.
The passes over a whole block go through :mod:`.scans`, which also reads scores left on a GPU
(:mod:`.device_scores`); everything after them works on the few pairs they select.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .bounds import Envelope, ScoreBlock
from .candidates import Candidates, on_scores
from .compare_pairs import (
    COPY,
    COPY_OPEN,
    INSIDE,
    INSIDE_OPEN,
    NEAREST,
    RATIO,
    Classified,
    Limits,
    classify,
)
from .copy_ratio import RatioPlan, ratio_candidates  # noqa: F401 (one of the reductions)
from .groups import group_kth, group_minimum, group_smallest
from .scans import column_minima, kth_smallest, kth_upper_bounds, masked, select


def row_candidates(block: ScoreBlock, n: int, allowed: np.ndarray | None = None) -> Candidates:
    """Pairs that may be among the ``n`` smallest distances of their row (local indices).

    The row's ``n``-th smallest score bounds its ``n``-th smallest distance from above; a pair
    whose lower bound exceeds that cannot be among the ``n`` smallest. ``allowed`` (n_x, n_y)
    bool, when given, restricts every row to its allowed pairs (patient mode: other patients);
    a row with none allowed yields no candidate.
    """
    return smallest_candidates(block, n, allowed, columns=False)[0]


def column_candidates(block: ScoreBlock, n: int, allowed: np.ndarray | None = None) -> Candidates:
    """:func:`row_candidates` of ``block.transpose()`` (rows: the columns of ``block``), read
    from ``block`` as it is: no transposed copy of the scores."""
    return smallest_candidates(block, n, allowed, rows=False)[1]


def smallest_candidates(
    block: ScoreBlock,
    n: int,
    allowed: np.ndarray | None = None,
    *,
    rows: bool = True,
    columns: bool = True,
) -> tuple[Candidates | None, Candidates | None]:
    """:func:`row_candidates` and :func:`column_candidates` of a block (None for the side not
    asked for), from one selection pass over the scores."""
    score = block.score
    if allowed is not None:
        score = masked(score, allowed)
    sides = ((rows, block.rows, 1), (columns, block.cols, 0))
    bounds = kth_upper_bounds(score, n, (rows, columns)) if min(score.shape) > n else None
    if bounds is None:
        limits = [_kth_limit(score, env, n, axis) if want else None for want, env, axis in sides]
        r, c, s = _selected(score, limits, allowed)
    else:
        # Bounds above each k-th smallest select a few pairs that hold the n smallest of every
        # row and column; the k-th smallest and the limits are then taken from those alone.
        wide = [
            env.score_upto(env.upper(bound), score.dtype) if want else None
            for (want, env, _), bound in zip(sides, bounds, strict=True)
        ]
        r, c, s = _selected(score, wide, allowed)
        limits = [
            env.score_upto(env.upper(kth_per_group(key, s, n, size)), score.dtype) if want else None
            for (want, env, _), key, size in zip(sides, (r, c), score.shape, strict=True)
        ]
    out: list[Candidates | None] = [None, None]
    if rows:
        keep = s <= limits[0][r]
        out[0] = on_scores(block, r[keep], c[keep], "row")
    if columns:
        keep = s <= limits[1][c]
        out[1] = on_scores(block, r[keep], c[keep], "col").transposed()
    return out[0], out[1]


def _selected(score: np.ndarray, limits: list, allowed: np.ndarray | None):
    """(rows, cols, scores) of the pairs at most the row or the column limit (None: no
    limit on that side) and allowed."""
    none = np.full(len(score), -np.inf, score.dtype)
    r, c = select(score, none if limits[0] is None else limits[0], limits[1])
    if allowed is not None:  # a row whose limit is +inf would otherwise keep its masked pairs
        r, c = r[allowed[r, c]], c[allowed[r, c]]
    return r, c, score[r, c]


def _kth_limit(score: np.ndarray, env: Envelope, n: int, axis: int) -> np.ndarray:
    """Per row (``axis=1``) or column, a score above which a pair cannot be among the ``n``
    smallest distances of that row or column."""
    kth = kth_smallest(score, n, axis) if score.shape[axis] > n else score.max(axis=axis)
    return env.score_upto(env.upper(kth), score.dtype)


def column_min_candidates(block: ScoreBlock) -> Candidates:
    """Pairs that may be the nearest row of their column (local indices)."""
    score = block.score
    limit = block.cols.score_upto(block.cols.upper(score.min(axis=0)), score.dtype)
    rows, cols = select(score, np.full(len(score), -np.inf, score.dtype), limit)
    return on_scores(block, rows, cols, "col")


def keep_smallest(candidates: Candidates, n: int, by: str = "row") -> Candidates:
    """Drop candidates that cannot be among the ``n`` smallest values of their row (or column).

    The ``n``-th smallest upper bound of a group bounds its ``n``-th smallest value; a candidate
    whose lower bound exceeds it is not needed. Groups with fewer than ``n`` keep everything.
    """
    if len(candidates) == 0:
        return candidates
    key = candidates.row if by == "row" else candidates.col
    limit = kth_per_group(key, candidates.upper, n, int(key.max()) + 1)
    return candidates.take(candidates.lower <= limit[key])


def kth_per_group(key: np.ndarray, values: np.ndarray, n: int, n_groups: int) -> np.ndarray:
    """(n_groups,) float64: the ``n``-th smallest of ``values`` per group ``key`` (+inf where a
    group has fewer), as :func:`.groups.group_kth`, or by a sort without numba."""
    limit = group_kth(key, values, n, n_groups)
    if limit is not None:
        return limit
    order = np.lexsort((values, key))
    key_sorted = key[order]
    rank = np.arange(len(order)) - np.searchsorted(key_sorted, key_sorted)
    limit = np.full(n_groups, np.inf)
    at_n = rank == n - 1
    limit[key_sorted[at_n]] = values[order][at_n]
    return limit


def smallest_values(rows: np.ndarray, values: np.ndarray, n_rows: int, n: int) -> np.ndarray:
    """(n_rows, n) array of the ``n`` smallest ``values`` of each row, ascending, +inf padded."""
    out = group_smallest(rows, values, n, n_rows)
    if out is not None:
        return out
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
    rows, cols = select(block.score, block.rows.score_upto(threshold, block.score.dtype))
    return _decide_below(block, rows, cols, threshold)


def _decide_below(block: ScoreBlock, rows: np.ndarray, cols: np.ndarray, threshold: np.ndarray):
    """The pairs among (rows, cols) whose exact distance is below ``threshold[row]``."""
    s, limit = block.score[rows, cols], threshold[rows]
    upper = np.minimum(block.rows.upper(s, rows), block.cols.upper(s, cols))
    lower = np.maximum(block.rows.lower(s, rows), block.cols.lower(s, cols))
    below = upper < limit
    open_ = ~below & (lower < limit)
    below[open_] = block.exact(rows[open_], cols[open_]) < limit[open_]
    return rows[below], cols[below]


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

    def columns(self, first: int, last: int) -> SyntheticCandidates:
        """These results restricted to the columns ``first:last`` (renumbered from 0)."""

        def within(found: Candidates) -> Candidates:
            return found.take((found.col >= first) & (found.col < last)).shifted(cols=-first)

        kept = slice(first, last)
        nearest, ratio = within(self.nearest), within(self.ratio)
        return SyntheticCandidates(self.is_real[kept], self.is_copy[kept], nearest, ratio)


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
    score, dtype = block.score, block.score.dtype
    plan = RatioPlan(block, copy_threshold)
    column_min, q_min = column_minima(score, plan.weight, plan.shared)
    ratio_limit, loose = plan.limit(q_min)
    limits = Limits(
        radius_k=radius_k,
        radius_score=block.rows.score_upto(radius_k, dtype),
        copy_threshold=copy_threshold,
        copy_score=block.rows.score_upto(copy_threshold, dtype),
        column_score=block.cols.score_upto(block.cols.upper(column_min), dtype),
        shared=plan.shared,
        weight=plan.weight,
        ratio_score=ratio_limit,
    )
    # One read of the scores selects the candidates of all four tests; one pass over those
    # pairs then makes each test's decision or leaves it open to an exact distance.
    rows, cols = select(
        score,
        np.maximum(limits.radius_score, limits.copy_score),
        limits.column_score,
        plan.select_weight,
        limits.ratio_score,
    )
    found = classify(score, rows, cols, block.rows, block.cols, limits)
    inside, copy = _settle(block, rows, cols, found, radius_k, copy_threshold)
    near, low_ratio = found.has(NEAREST), found.has(RATIO)
    nearest = Candidates(rows[near], cols[near], found.col_lower[near], found.col_upper[near])
    ratio_bounds = (found.row_lower[low_ratio], found.row_upper[low_ratio])
    shared = plan.bounded(rows[low_ratio], cols[low_ratio], *ratio_bounds)
    ratio = Candidates.concat([loose, shared])
    real = RealPartial(
        copies=np.bincount(rows[copy], minlength=n_real),
        in_radius=np.bincount(rows[inside], minlength=n_real),
    )
    synthetic = SyntheticCandidates(
        is_real=np.bincount(cols[inside], minlength=n_synth) > 0,
        is_copy=np.bincount(cols[copy], minlength=n_synth) > 0,
        nearest=nearest.shifted(rows=real_offset),
        ratio=ratio.shifted(rows=real_offset),
    )
    return real, synthetic


def _settle(block: ScoreBlock, rows, cols, found: Classified, radius_k, copy_threshold):
    """(inside radius_k, inside the copy radius) of each pair: the open ones of either test
    decided on their exact distance, computed once for both."""
    open_ = found.has(INSIDE_OPEN | COPY_OPEN)
    exact = np.full(len(rows), np.nan)
    if open_.any():
        exact[open_] = block.exact(rows[open_], cols[open_])
    inside = found.has(INSIDE) | (found.has(INSIDE_OPEN) & (exact < radius_k[rows]))
    copy = found.has(COPY) | (found.has(COPY_OPEN) & (exact < copy_threshold[rows]))
    return inside, copy


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
    found = group_minimum(cols, rows, values, n_cols)
    if found is not None:
        return found
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
