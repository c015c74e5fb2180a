"""The compiled selection passes (neighbours/scan_kernels.py) give the NumPy path's pairs: the
chunked collection equals the mask's pairs row-major; the k-th smallest bounds hold; the
candidates of a block through the bounds equal those through the full k-th smallest scans; the
triangle passes of a diagonal block equal the candidates of its mirrored scores; the exact
distances four pairs at a time are cdist's. Ties, exact duplicates, +inf (masked) and NaN
scores, widths off the chunk and lane sizes."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from brute_force import assert_matches, brute_force
from scipy.spatial.distance import cdist
from test_engine_local import FAMILIES

from medsyn_dask import evaluate_features
from medsyn_dask.neighbours import (
    compare_pairs,
    euclidean,
    exact_pairs,
    groups,
    local,
    scan_kernels,
    scans,
    threads,
)
from medsyn_dask.neighbours.bounds import Envelope, ScoreBlock
from medsyn_dask.neighbours.candidates import Candidates
from medsyn_dask.neighbours.reductions import smallest_candidates


@pytest.fixture
def no_numba(monkeypatch):
    """Every kernel of the selection as without numba."""
    monkeypatch.setattr(scans, "_kernels", lambda: None)
    monkeypatch.setattr(groups, "_kernels", lambda: None)
    monkeypatch.setattr(euclidean, "_triangle_kernels", lambda: None)
    monkeypatch.setattr(compare_pairs, "_kernel", lambda: None)


def _scores(rng, shape, dtype) -> np.ndarray:
    score = np.round(rng.random(shape), 2).astype(dtype)  # many ties
    score[min(3, shape[0] - 1), : shape[1] - 2] = np.inf  # a row with few finite scores
    score[:, min(7, shape[1] - 1)] = np.inf  # a column with none
    return score


def _numpy(fn, *args):
    saved = scans._kernels
    scans._kernels = lambda: None
    try:
        with np.errstate(invalid="ignore"):  # inf * a NaN weight
            return fn(*args)
    finally:
        scans._kernels = saved


def _sorted(c: Candidates) -> list:
    fields = (c.row.tolist(), c.col.tolist(), c.lower.tolist(), c.upper.tolist())
    return sorted(zip(*fields, strict=True))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 1), (5, 15), (40, 16), (37, 33), (130, 131)])
def test_collect_equals_the_mask(dtype, shape):
    rng = np.random.default_rng(60)
    score = _scores(rng, shape, dtype)
    score[0, 0] = np.nan
    row_limit = (rng.random(shape[0]) * 0.1).astype(dtype)
    col_limit = (rng.random(shape[1]) * 0.1).astype(dtype)
    weight = (rng.random(shape[0]) + 0.5).astype(dtype)
    weight[::5] = np.nan  # rows without a ratio test
    ratio_limit = (rng.random(shape[1]) * 0.2).astype(dtype)
    for limits in (
        (row_limit, None, None, None),
        (row_limit, col_limit, None, None),
        (row_limit, col_limit, weight, ratio_limit),
        (np.full(shape[0], np.inf, dtype), None, None, None),  # every pair but NaN: grows
    ):
        got = scans.select(score, *limits)
        want = _numpy(scans.select, score, *limits)
        assert got[0].dtype == got[1].dtype == np.int64
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
    assert len(scans.select(score, np.full(shape[0], np.inf, dtype))[0]) == score.size - 1


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 2, 6, 64])
@pytest.mark.parametrize("shape", [(70, 65), (200, 300), (65, 700)])
def test_kth_upper_bounds_hold(dtype, n, shape):
    score = _scores(np.random.default_rng(61), shape, dtype)
    score[5, 5] = np.nan  # never taken
    row_bound, col_bound = scans.kth_upper_bounds(score, n)
    assert row_bound.dtype == col_bound.dtype == score.dtype
    for bound, axis in ((row_bound, 1), (col_bound, 0)):
        kth = scans.kth_smallest(score, n, axis)
        assert np.all(bound >= kth)
        if n == 1:  # one group minimum at least the smallest: the bound is the minimum
            np.testing.assert_array_equal(bound, kth)
    assert scans.kth_upper_bounds(score, scans.LANES + 1) is None


@pytest.mark.parametrize("slack", [0.0, 0.05])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("shape", [(150, 131), (90, 300), (300, 70)])
def test_candidates_through_bounds_equal_the_numpy_path(slack, masked, shape):
    rng = np.random.default_rng(62)
    d = np.round(rng.random(shape), 2)
    d[10] = d[11]  # duplicated rows: ties throughout
    allowed = rng.random(shape) < 0.8 if masked else None

    def block(score):
        def envelope(n):
            return Envelope(np.zeros(n), np.full(n, slack), 0.0, squared=False)

        return ScoreBlock(score, envelope(shape[0]), envelope(shape[1]), lambda r, c: d[r, c])

    for n in (1, 6, 12):
        assert scans.kth_upper_bounds(d, n) is not None
        got = smallest_candidates(block(d), n, allowed)
        want = _numpy(smallest_candidates, block(d), n, allowed)
        for g, w in zip(got, want, strict=True):
            assert _sorted(g) == _sorted(w)


@pytest.mark.parametrize("name", sorted(FAMILIES))
@pytest.mark.parametrize("size", [5, 7, 65, 200])
@pytest.mark.parametrize("n", [1, 6, 64])
def test_triangle_candidates_equal_the_mirrored_block(name, size, n, monkeypatch):
    """symmetric_candidates gives the pairs and bounds of row_candidates of the mirrored
    scores (symmetric_bounds), with the triangle passes and without numba."""
    real, _ = FAMILIES[name](np.random.default_rng(63), n=size, m=1, d=40)
    real[size // 2 :: 3] = real[0]  # exact duplicates: tied scores across both triangles
    centre = real.astype(np.float64).mean(axis=0)
    prepared = euclidean.prepare(real, centre)
    block = euclidean.symmetric_bounds(prepared, centre, backend="numpy")
    want = _sorted(smallest_candidates(block, n, columns=False)[0])
    got = euclidean.symmetric_candidates(prepared, centre, n, backend="numpy")
    assert _sorted(got) == want
    monkeypatch.setattr(euclidean, "_triangle_kernels", lambda: None)
    assert _sorted(euclidean.symmetric_candidates(prepared, centre, n, backend="numpy")) == want


def test_triangle_bounds_hold():
    rng = np.random.default_rng(64)
    x = (rng.standard_normal((300, 30)) * 3).astype(np.float32)
    x[100::9] = x[1]
    gram = np.triu(x @ x.T)  # gram.T: the lower triangle alone, the other one zeros
    norms32 = np.einsum("ij,ij->i", x, x, dtype=np.float64).astype(np.float32)
    scores = euclidean.symmetric_scores(gram.T, norms32)
    for n in (1, 6, 64):
        bound = scan_kernels.triangle_bounds(gram.T, norms32, n)
        kth = np.partition(scores, n - 1, axis=1)[:, n - 1]
        assert np.all(bound >= kth)
        if n == 1:
            np.testing.assert_array_equal(bound, kth)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exact_distances_any_count_of_pairs(dtype):
    """Eight pairs at a time and the rest one by one: cdist's values for every count."""
    rng = np.random.default_rng(65)
    x = (100 + rng.normal(size=(20, 77)) * rng.choice([1e-3, 1.0, 100.0], (20, 1))).astype(dtype)
    x[3] = x[4]  # a zero distance
    full = cdist(x.astype(np.float64), x.astype(np.float64))
    for count in range(20):  # the eights and the rest
        rows, cols = rng.integers(0, 20, count), rng.integers(0, 20, count)
        rows[:1] = 3
        cols[:1] = 4
        got = euclidean.exact_distances(x, x, rows, cols)
        np.testing.assert_array_equal(got, full[rows, cols])


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_engine_without_numba_selection_equals_brute_force(name, no_numba):
    real, synth = FAMILIES[name](np.random.default_rng(66), n=300, m=260, d=40)
    result = evaluate_features(real, synth, compute_fid=False)
    assert_matches(result, brute_force(real, synth))


def test_exact_once_computes_a_shared_pair_once():
    rng = np.random.default_rng(67)
    x, y = rng.normal(size=(30, 9)), rng.normal(size=(20, 9))
    calls = []

    def exact(a, b, rows, cols):
        calls.append(len(rows))
        return euclidean.exact_distances(a, b, rows, cols)

    first = (np.array([3, 3, 29, 0]), np.array([4, 19, 0, 0]))
    second = (np.array([3, 7, 0], np.int32), np.array([4, 4, 0], np.int32))
    empty = (np.array([], int), np.array([], int))
    got = exact_pairs.exact_once(exact, x, y, [first, second, empty])
    assert calls == [5]  # (3, 4) and (0, 0) once
    full = cdist(x, y)
    for (rows, cols), values in zip([first, second, empty], got, strict=True):
        np.testing.assert_array_equal(values, full[rows, cols])


def test_exact_unordered_computes_each_unordered_pair_once():
    rng = np.random.default_rng(68)
    real = rng.normal(size=(12, 5)).astype(np.float32)
    calls = []

    def exact(a, b, rows, cols):
        calls.append(list(zip(rows.tolist(), cols.tolist(), strict=True)))
        return euclidean.exact_distances(a, b, rows, cols)

    first = (np.array([0, 1, 2, 5]), np.array([1, 0, 2, 11]))
    second = (np.array([11, 3]), np.array([5, 4]))
    with ThreadPoolExecutor(2) as pool:
        got = exact_pairs.exact_unordered(exact, real, [first, second], pool.map, 2)
    assert sorted(sum(calls, [])) == [(0, 1), (3, 4), (5, 11)]  # (2, 2) is 0, not computed
    full = cdist(real.astype(np.float64), real.astype(np.float64))
    np.fill_diagonal(full, 0.0)
    for (rows, cols), values in zip([first, second], got, strict=True):
        np.testing.assert_array_equal(values, full[rows, cols])
    nothing = (first[0][:0], first[1][:0])
    assert [len(v) for v in exact_pairs.exact_unordered(exact, real, [nothing] * 2)] == [0, 0]


def test_runner_restores_the_switch_interval():
    import sys

    before = sys.getswitchinterval()
    with local.Runner("euclidean", np.zeros(3), "numpy") as run:
        if run.n_threads > 1:
            assert sys.getswitchinterval() == pytest.approx(min(threads.SWITCH_INTERVAL, before))
            with threads.short_switch_interval():  # nested: the outer one restores
                pass
            assert sys.getswitchinterval() == pytest.approx(min(threads.SWITCH_INTERVAL, before))
    assert sys.getswitchinterval() == before


def _classify_case(rng, metric: str):
    """A block of scores with its envelopes, and limits that put pairs on every side of the
    radius and copy tests (certainly inside, open, outside) and at the score limits."""
    real = rng.standard_normal((90, 24)).astype(np.float32)
    synth = np.concatenate([real[:20] + 1e-4, rng.standard_normal((57, 24)).astype(np.float32)])
    if metric == "hamming":
        from medsyn_dask.neighbours import hamming

        codes = (real > 0).astype(np.int16), (synth > 0).astype(np.int16)
        block = hamming.block_bounds(*codes)
    else:
        block = euclidean.block_bounds(
            real, synth, real.astype(np.float64).mean(axis=0), backend="numpy"
        )
    exact = block.exact(*np.divmod(np.arange(90 * 77), 77)).reshape(90, 77)
    ordered = np.sort(exact, axis=1)  # copy radius: the nearest (open) or the third
    copy = np.where(np.arange(90) % 2, ordered[:, 0] * (1 + 1e-7), ordered[:, 2])
    radius = ordered[:, 4]  # inside or open for some pairs of every row
    dtype = block.score.dtype
    weight = (1 / np.maximum(copy, 1e-9) ** 2).astype(dtype)
    limits = compare_pairs.Limits(
        radius_k=radius,
        radius_score=block.rows.score_upto(radius, dtype),
        copy_threshold=copy,
        copy_score=block.rows.score_upto(copy, dtype),
        column_score=np.quantile(block.score, 0.1, axis=0).astype(dtype),
        shared=rng.random(90) < 0.7,
        weight=weight,
        ratio_score=np.quantile(block.score * weight[:, None], 0.05, axis=0).astype(dtype),
    )
    return block, limits


@pytest.mark.parametrize("metric", ["euclidean", "hamming"])
def test_classify_kernel_equals_numpy(metric):
    """The compiled pass over a block's selected pairs gives the NumPy pass's test bits and
    envelope bounds, bit for bit; every bit occurs."""
    block, limits = _classify_case(np.random.default_rng(70), metric)
    rows, cols = (a.ravel() for a in np.indices(block.shape))  # every pair, NaN/inf included
    score = block.score.copy()
    score[5, 5], score[6, 6] = np.nan, np.inf
    args = (score, rows, cols, block.rows, block.cols, limits)
    got = compare_pairs.classify(*args)
    with np.errstate(invalid="ignore"):
        want = compare_pairs._classify_numpy(*args)
    for name in ("state", "row_lower", "row_upper", "col_lower", "col_upper"):
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)
    bits = np.bitwise_or.reduce(got.state)
    if metric == "euclidean":  # exact Hamming scores leave nothing open
        assert bits == 63, bin(bits)
    assert got.state[5 * 77 + 5] == 0  # NaN passes no test
