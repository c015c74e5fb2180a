"""The fine stage of a real x synthetic block whose scores are coarse (``ScoreBlock.fine``: the
bfloat16 first pass of :mod:`.bf16`), for :func:`.reductions.compare_block`.

The coarse scores and envelopes select the pairs of all four tests, as for any block: every
pair that may be inside a radius, the nearest real image or the least copy ratio of its
synthetic one is among them. Those pairs alone are then scored finely, and the tests' limits
are made again from the fine scores: the decisions and the bounds the comparison hands on are
the float32 GEMM's, for a few pairs per row instead of the whole block.
"""

from __future__ import annotations

import numpy as np

from .bounds import ScoreBlock
from .compare_pairs import Limits
from .copy_ratio import RatioPlan


def fine_limits(
    block: ScoreBlock, rows: np.ndarray, cols: np.ndarray, plan: RatioPlan, limits: Limits
) -> tuple[RatioPlan, Limits]:
    """The copy-ratio plan and the limits of the fine scores of the selected pairs ``(rows,
    cols)``, which replace their coarse scores in ``block.score`` (in place: the coarse
    envelopes hold for fine scores too, so the block stays valid for any later reader).

    ``plan``, ``limits``: the coarse block's. The rows that share the copy-ratio limit stay
    the coarse plan's (the others' candidates came from their whole rows, coarsely); the least
    score and the least q of a column are taken over its selected pairs, which hold the pairs
    that reach them, so every limit bounds what it bounded before.
    """
    fine, score = block.fine, block.score
    s = fine.scores(rows, cols)
    score[rows, cols] = s
    dtype, n_cols = score.dtype, score.shape[1]
    fine_plan = RatioPlan(
        ScoreBlock(score, fine.rows, fine.cols, block.exact),
        limits.copy_threshold,
        shared=plan.shared,
    )
    column_min = np.full(n_cols, np.inf, dtype)
    np.minimum.at(column_min, cols, s)
    q_min = np.full(n_cols, np.inf, dtype)
    shared = plan.shared[rows]
    np.minimum.at(q_min, cols[shared], s[shared] * fine_plan.weight[rows[shared]])
    return fine_plan, Limits(
        radius_k=limits.radius_k,
        radius_score=fine.rows.score_upto(limits.radius_k, dtype),
        copy_threshold=limits.copy_threshold,
        copy_score=fine.rows.score_upto(limits.copy_threshold, dtype),
        column_score=fine.cols.score_upto(fine.cols.upper(column_min), dtype),
        shared=plan.shared,
        weight=fine_plan.weight,
        ratio_score=fine_plan.shared_limit(q_min),
    )
