"""The NumPy block maths alone: bounds enclose the exact distances, reductions are exact."""

from __future__ import annotations

import numpy as np
import pytest
import scenarios
from scipy.spatial.distance import cdist

from medsyn_dask.neighbours import PairBounds, euclidean, hamming
from medsyn_dask.neighbours.reductions import (
    column_minimum,
    combine_synthetic,
    compare_block,
    merge_smallest,
    smallest_per_row,
)


@pytest.mark.parametrize("name", sorted(scenarios.EUCLIDEAN))
def test_euclidean_bounds_enclose_cdist(name):
    real, synth = scenarios.EUCLIDEAN[name](np.random.default_rng(1))
    center = real.astype(np.float64).mean(axis=0)
    bounds = euclidean.block_bounds(real, synth, center, backend="numpy")
    exact = cdist(real.astype(np.float64), synth.astype(np.float64))
    assert (bounds.lower <= exact).all() and (exact <= bounds.upper).all()
    rows, cols = np.nonzero(np.ones_like(exact, dtype=bool))
    np.testing.assert_array_equal(bounds.exact(rows, cols), exact.ravel())


def test_euclidean_torch_backend_matches_numpy():
    real, synth = scenarios.clustered(np.random.default_rng(2))
    center = real.astype(np.float64).mean(axis=0)
    exact = cdist(real.astype(np.float64), synth.astype(np.float64))
    bounds = euclidean.block_bounds(real, synth, center, backend="torch")
    assert (bounds.lower <= exact).all() and (exact <= bounds.upper).all()


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
    bounds = hamming.block_bounds(real, synth, backend=backend)
    np.testing.assert_array_equal(bounds.lower, cdist(real, synth, "hamming"))
    assert bounds.lower is bounds.upper


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


def test_hamming_rejects_float_features():
    with pytest.raises(ValueError, match="integer codes"):
        hamming.validate("synthetic", np.zeros((3, 4), dtype=np.float32))


def _exact_bounds(d: np.ndarray, slack: float) -> PairBounds:
    """Loose bounds around known exact values, to exercise the candidate selection."""
    return PairBounds(d - slack, d + slack, lambda r, c: d[r, c])


@pytest.mark.parametrize("slack", [0.0, 0.05, 1.0])
def test_smallest_per_row_is_exact(slack):
    d = np.round(np.random.default_rng(6).random((40, 33)), 2)  # many ties
    for n in (1, 6, 33, 40):
        got = smallest_per_row(_exact_bounds(d, slack), n)
        want = np.sort(d, axis=1)[:, :n]
        np.testing.assert_array_equal(got[:, : want.shape[1]], want)
        assert np.isinf(got[:, want.shape[1] :]).all()


def test_merge_smallest_equals_sort_of_whole_rows():
    d = np.random.default_rng(7).random((12, 50))
    parts = [np.sort(d[:, s : s + 7], axis=1)[:, :4] for s in range(0, 50, 7)]
    np.testing.assert_array_equal(merge_smallest(parts, 4), np.sort(d, axis=1)[:, :4])


def test_column_minimum_breaks_ties_by_lowest_row():
    d = np.array([[3.0, 1.0], [1.0, 1.0], [1.0, 0.5]])
    best, row = column_minimum(d - 0.1, d + 0.1, lambda r, c: d[r, c])
    np.testing.assert_array_equal(best, [1.0, 0.5])
    np.testing.assert_array_equal(row, [1, 2])


def test_compare_block_strict_thresholds_and_zero_copy_radius():
    d = np.array([[0.0, 1.0, 2.0], [0.5, 0.0, 3.0]])
    radius_k = np.array([1.0, 3.0])
    copy_threshold = np.array([0.0, 0.5])  # real 0 is duplicated: radius_1 = 0, margin 0
    real, synth = compare_block(_exact_bounds(d, 0.2), radius_k, copy_threshold, real_offset=10)
    np.testing.assert_array_equal(real.in_radius, [1, 2])  # d == radius is outside
    np.testing.assert_array_equal(real.copies, [0, 1])
    np.testing.assert_array_equal(synth.is_copy, [False, True, False])
    np.testing.assert_array_equal(synth.nearest_real, [10, 11, 10])
    np.testing.assert_array_equal(synth.copy_ratio, [1.0, 0.0, 6.0])


def test_combine_synthetic_keeps_earlier_block_on_ties():
    _, first = compare_block(_exact_bounds(np.array([[1.0]]), 0), np.ones(1), np.ones(1), 0)
    _, second = compare_block(_exact_bounds(np.array([[1.0]]), 0), np.ones(1), np.ones(1), 5)
    assert combine_synthetic([first, second]).nearest_real[0] == 0
