"""The NumPy block maths alone: bounds enclose the exact distances, reductions are exact."""

from __future__ import annotations

import numpy as np
import pytest
import scenarios
from scipy.spatial.distance import cdist

from medsyn_dask.neighbours import Envelope, ScoreBlock, euclidean, hamming
from medsyn_dask.neighbours.reductions import (
    Candidates,
    column_min_candidates,
    column_minimum,
    compare_block,
    keep_smallest,
    pairs_below,
    ratio_candidates,
    row_candidates,
    smallest_values,
)


def _envelope_bounds(block: ScoreBlock):
    """Per-pair lower and upper bounds from each envelope: (row lower, row upper, col ...)."""
    idx_r = np.arange(block.shape[0])[:, None]
    idx_c = np.arange(block.shape[1])[None, :]
    return (
        block.rows.lower(block.score, idx_r),
        block.rows.upper(block.score, idx_r),
        block.cols.lower(block.score, idx_c),
        block.cols.upper(block.score, idx_c),
    )


@pytest.mark.parametrize("name", sorted(scenarios.EUCLIDEAN))
def test_euclidean_bounds_enclose_cdist(name):
    real, synth = scenarios.EUCLIDEAN[name](np.random.default_rng(1))
    centre = real.astype(np.float64).mean(axis=0)
    block = euclidean.block_bounds(real, synth, centre, backend="numpy")
    exact = cdist(real.astype(np.float64), synth.astype(np.float64))
    row_lo, row_hi, col_lo, col_hi = _envelope_bounds(block)
    assert (row_lo <= exact).all() and (exact <= row_hi).all()
    assert (col_lo <= exact).all() and (exact <= col_hi).all()
    assert np.median((row_hi - row_lo) / np.maximum(exact, 1e-30)) < 1e-2  # and are useful
    rows, cols = np.nonzero(np.ones_like(exact, dtype=bool))
    np.testing.assert_array_equal(block.exact(rows, cols), exact.ravel())
    transposed = block.transpose()
    np.testing.assert_array_equal(transposed.exact(cols, rows), exact.ravel())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("scale", [1e-18, 1e-22, 1e-25, 1e-40])
def test_euclidean_bounds_hold_below_float32s_normal_range(scale, dtype):
    """Squares below 2^-126 underflow in the float32 GEMM: an absolute term, not a relative
    one, bounds what is lost (without it every upper bound fell below cdist at 1e-25)."""
    rng = np.random.default_rng(3)
    x = (scale * rng.standard_normal((40, 64))).astype(dtype)
    y = (scale * rng.standard_normal((30, 64))).astype(dtype)
    block = euclidean.block_bounds(x, y, x.astype(np.float64).mean(axis=0), backend="numpy")
    exact = cdist(x.astype(np.float64), y.astype(np.float64))
    row_lo, row_hi, col_lo, col_hi = _envelope_bounds(block)
    assert (row_lo <= exact).all() and (exact <= row_hi).all()
    assert (col_lo <= exact).all() and (exact <= col_hi).all()


def test_score_thresholds_are_conservative():
    real, synth = scenarios.clustered(np.random.default_rng(8))
    block = euclidean.block_bounds(real, synth, real.mean(axis=0).astype(np.float64))
    exact = cdist(real.astype(np.float64), synth.astype(np.float64))
    limit = np.quantile(exact, 0.01, axis=1)
    upto = block.rows.score_upto(limit, block.score.dtype)
    below = block.rows.score_below(limit, block.score.dtype)
    within = exact <= limit[:, None]
    assert (block.score <= upto[:, None])[within].all()  # nothing within the limit is lost
    sure = block.score < below[:, None]
    assert (exact < limit[:, None])[sure].all()  # and "surely below" is never wrong


def test_euclidean_torch_backend_matches_numpy():
    real, synth = scenarios.clustered(np.random.default_rng(2))
    centre = real.astype(np.float64).mean(axis=0)
    exact = cdist(real.astype(np.float64), synth.astype(np.float64))
    block = euclidean.block_bounds(real, synth, centre, backend="torch")
    row_lo, row_hi, _, _ = _envelope_bounds(block)
    assert (row_lo <= exact).all() and (exact <= row_hi).all()


def test_naive_float32_gemm_is_wrong_far_from_origin():
    """Why the bounds exist: the naive GEMM formula cannot tell these neighbours apart."""
    real, synth = scenarios.far_from_origin(np.random.default_rng(3))
    sq = (real**2).sum(1)[:, None] + (synth**2).sum(1)[None, :] - 2 * real @ synth.T
    naive = np.sqrt(np.maximum(sq, 0))
    exact = cdist(real.astype(np.float64), synth.astype(np.float64))
    assert not np.array_equal(naive.argmin(axis=0), exact.argmin(axis=0))


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("name", sorted(scenarios.HAMMING))
def test_hamming_matches_scipy(name, backend):
    real, synth = scenarios.HAMMING[name](np.random.default_rng(4))
    block = hamming.block_bounds(real, synth, backend=backend)
    expected = cdist(real, synth, "hamming")
    np.testing.assert_array_equal(block.score, expected)
    rows, cols = np.nonzero(expected >= 0)
    np.testing.assert_array_equal(
        hamming.exact_distances(real, synth, rows, cols), expected.ravel()
    )


@pytest.mark.parametrize(
    "low, high, width",
    [(0, 512, 4096), (-3, 3, 40), (0, 1 << 20, 300)],  # one-hot, negative codes, huge codebook
)
def test_hamming_match_counts_paths(low, high, width):
    rng = np.random.default_rng(5)
    x, y = rng.integers(low, high, (70, width)), rng.integers(low, high, (45, width))
    x[:, : width // 2] = low
    y[:, : width // 2] = low
    y[:3] = x[:3]
    expected = (x[:, None, :] == y[None, :, :]).sum(axis=2)
    np.testing.assert_array_equal(hamming.match_counts(x, y, backend="numpy"), expected)
    np.testing.assert_array_equal(hamming._varying_matches(x, y), expected)  # without numba


def test_hamming_rejects_float_features():
    with pytest.raises(ValueError, match="integer codes"):
        hamming.validate("synthetic", np.zeros((3, 4), dtype=np.float32))


def _loose_block(d: np.ndarray, slack: float) -> ScoreBlock:
    """Scores = known exact values, with envelopes ``slack`` wide, to exercise candidates."""

    def envelope(n: int) -> Envelope:
        return Envelope(np.zeros(n), np.full(n, slack), 0.0, squared=False)

    return ScoreBlock(d, envelope(d.shape[0]), envelope(d.shape[1]), lambda r, c: d[r, c])


def _exact_smallest(block: ScoreBlock, n: int) -> np.ndarray:
    cands = keep_smallest(row_candidates(block, n), n)
    return smallest_values(cands.row, block.exact(cands.row, cands.col), block.shape[0], n)


@pytest.mark.parametrize("slack", [0.0, 0.05, 1.0])
def test_row_candidates_hold_the_smallest(slack):
    d = np.round(np.random.default_rng(6).random((40, 33)), 2)  # many ties
    for n in (1, 6, 33, 40):
        got = _exact_smallest(_loose_block(d, slack), n)
        want = np.sort(d, axis=1)[:, :n]
        np.testing.assert_array_equal(got[:, : want.shape[1]], want)
        assert np.isinf(got[:, want.shape[1] :]).all()


def test_keep_smallest_over_blocks_equals_sort_of_whole_rows():
    d = np.random.default_rng(7).random((12, 50))
    parts = [
        row_candidates(_loose_block(d[:, s : s + 7], 0.01), 4).shifted(cols=s)
        for s in range(0, 50, 7)
    ]
    kept = keep_smallest(Candidates.concat(parts), 4)
    values = d[kept.row, kept.col]
    np.testing.assert_array_equal(smallest_values(kept.row, values, 12, 4), np.sort(d, 1)[:, :4])
    assert len(kept) < 12 * 50 / 2  # the bounds did prune


def test_column_minimum_breaks_ties_by_lowest_row():
    d = np.array([[3.0, 1.0], [1.0, 1.0], [1.0, 0.5]])
    cands = column_min_candidates(_loose_block(d, 0.1))
    best, row = column_minimum(cands.col, cands.row, d[cands.row, cands.col], 2)
    np.testing.assert_array_equal(best, [1.0, 0.5])
    np.testing.assert_array_equal(row, [1, 2])


def test_pairs_below_is_strict():
    d = np.array([[0.0, 1.0, 2.0], [0.5, 0.0, 3.0]])
    rows, cols = pairs_below(_loose_block(d, 0.2), np.array([1.0, 3.0]))
    assert sorted(zip(rows.tolist(), cols.tolist(), strict=True)) == [(0, 0), (1, 0), (1, 1)]


def test_compare_block_counts_and_zero_copy_radius():
    d = np.array([[0.0, 1.0, 2.0], [0.5, 0.0, 3.0]])
    radius_k = np.array([1.0, 3.0])
    copy_threshold = np.array([0.0, 0.5])  # real 0 is duplicated: radius_1 = 0, margin 0
    real, synth = compare_block(_loose_block(d, 0.2), radius_k, copy_threshold, real_offset=10)
    np.testing.assert_array_equal(real.in_radius, [1, 2])  # d == radius is outside
    np.testing.assert_array_equal(real.copies, [0, 1])
    np.testing.assert_array_equal(synth.is_copy, [False, True, False])
    np.testing.assert_array_equal(synth.is_real, [True, True, False])
    assert set(synth.nearest.row.tolist()) <= {10, 11}


@pytest.mark.parametrize("slack", [0.0, 0.01, 0.3])
def test_ratio_candidates_hold_the_minimum(slack):
    rng = np.random.default_rng(9)
    d = rng.random((30, 20))
    threshold = rng.random(30) + 0.1
    threshold[:3] = 0.0  # no copy possible: ratio +inf
    cands = ratio_candidates(_loose_block(d, slack), threshold)
    assert not np.isin(cands.row, [0, 1, 2]).any()
    ratio = d[cands.row, cands.col] / threshold[cands.row]
    best, _ = column_minimum(cands.col, cands.row, ratio, 20)
    np.testing.assert_array_equal(best, (d[3:] / threshold[3:, None]).min(axis=0))


@pytest.mark.parametrize("name", ["far_from_origin", "random", "tied"])
def test_prepared_blocks_score_as_raw_rows(name):
    """A block prepared once (the in-process runner) scores exactly as its raw rows do."""
    real, synth = scenarios.EUCLIDEAN[name](np.random.default_rng(22))
    centre = real.astype(np.float64).mean(axis=0)
    raw = euclidean.block_bounds(real, synth, centre, backend="numpy")
    px, py = euclidean.prepare(real, centre), euclidean.prepare(synth, centre)
    prepared = euclidean.block_bounds(px, py, centre, backend="numpy")
    np.testing.assert_array_equal(prepared.score, raw.score)
    np.testing.assert_array_equal(prepared.rows.sq_err, raw.rows.sq_err)
    np.testing.assert_array_equal(prepared.cols.dist_err, raw.cols.dist_err)
    rows, cols = np.nonzero(np.ones(raw.shape, dtype=bool))
    np.testing.assert_array_equal(prepared.exact(rows, cols), raw.exact(rows, cols))
