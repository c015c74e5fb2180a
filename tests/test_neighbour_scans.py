"""The compiled passes of the engine (scans.py, summary.py, the centring of euclidean.py) give
NumPy's values on ties, masked (+inf) pairs, float32 and float64 scores; column candidates
equal the candidates of the transposed block; the engine without them still equals the brute
force; in-memory inputs are not copied."""

from __future__ import annotations

import numpy as np
import pytest
from brute_force import assert_matches, brute_force

from medsyn_dask import evaluate_features
from medsyn_dask.evaluate_inputs import scattered_inputs
from medsyn_dask.neighbours import centring, compare_pairs, euclidean, groups, scans, summary
from medsyn_dask.neighbours.bounds import Envelope, ScoreBlock
from medsyn_dask.neighbours.reductions import (
    Candidates,
    column_candidates,
    keep_smallest,
    row_candidates,
    smallest_values,
)


def _tied_scores(dtype, rng) -> np.ndarray:
    score = np.round(rng.random((150, 131)), 2).astype(dtype)  # many ties
    score[3, :125] = np.inf  # a row with fewer finite scores than n
    score[:, 7] = np.inf  # a column with none
    return score


@pytest.fixture
def numpy_only(monkeypatch):
    """The scans and the candidate merges as without numba."""
    monkeypatch.setattr(scans, "_kernels", lambda: None)
    monkeypatch.setattr(groups, "_kernels", lambda: None)
    monkeypatch.setattr(compare_pairs, "_kernel", lambda: None)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 6, 130, 131, 140])
@pytest.mark.parametrize("axis", [0, 1])
def test_kth_smallest_equals_partition(dtype, n, axis):
    score = _tied_scores(dtype, np.random.default_rng(1))
    got = scans.kth_smallest(score, n, axis)
    assert got.dtype == score.dtype
    if score.shape[axis] >= n:
        want = np.take(np.partition(score, n - 1, axis=axis), n - 1, axis=axis)
    else:
        want = np.full(score.shape[1 - axis], np.inf)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_column_minima_kernel_equals_numpy(dtype, monkeypatch):
    rng = np.random.default_rng(2)
    score = _tied_scores(dtype, rng)
    score[10, 11] = -3.0  # scores may be negative (rounding of a near-zero distance)
    weight = (rng.random(len(score)) + 0.5).astype(dtype)
    for shared in (rng.random(len(score)) < 0.7, np.zeros(len(score), bool)):
        compiled = scans.column_minima(score, weight, shared)
        with monkeypatch.context() as patch:
            patch.setattr(scans, "_kernels", lambda: None)
            plain = scans.column_minima(score, weight, shared)
        for a, b in zip(compiled, plain, strict=True):
            assert a.dtype == b.dtype == score.dtype
            np.testing.assert_array_equal(a, b)
        expected = np.where(shared[:, None], score * weight[:, None], np.inf).min(axis=0)
        np.testing.assert_array_equal(compiled[1], expected)


def test_scaled_below_over_strips():
    rng = np.random.default_rng(3)
    score = rng.random((300, 40)).astype(np.float32)  # more rows than one strip
    weight = (rng.random(300) + 0.5).astype(np.float32)
    rows = rng.random(300) < 0.6
    limit = (rng.random(40) * 0.4).astype(np.float32)
    got = scans.scaled_below(score, weight, rows, limit)
    want = np.nonzero((score * weight[:, None] <= limit[None, :]) & rows[:, None])
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


def _block(d: np.ndarray, slack: float) -> ScoreBlock:
    def envelope(n):
        return Envelope(np.zeros(n), np.full(n, slack), 0.0, squared=False)

    return ScoreBlock(d, envelope(d.shape[0]), envelope(d.shape[1]), lambda r, c: d[r, c])


def _sorted(c: Candidates) -> list:
    fields = (c.row.tolist(), c.col.tolist(), c.lower.tolist(), c.upper.tolist())
    return sorted(zip(*fields, strict=True))


@pytest.mark.parametrize("slack", [0.0, 0.05])
@pytest.mark.parametrize("masked", [False, True])
def test_column_candidates_equal_the_transposed_rows(slack, masked):
    rng = np.random.default_rng(4)
    d = np.round(rng.random((37, 29)), 2)
    allowed = rng.random(d.shape) < 0.8 if masked else None
    got = column_candidates(_block(d, slack), 4, allowed)
    allowed_t = None if allowed is None else np.ascontiguousarray(allowed.T)
    want = row_candidates(_block(d, slack).transpose(), 4, allowed_t)
    assert _sorted(got) == _sorted(want)
    kept = keep_smallest(got, 4)  # rows of the transpose: the columns of d
    values = smallest_values(kept.row, d[kept.col, kept.row], d.shape[1], 4)
    masked_d = d if allowed is None else np.where(allowed, d, np.inf)
    np.testing.assert_array_equal(values, np.sort(masked_d, axis=0)[:4].T)


@pytest.mark.parametrize("family", ["ties", "duplicates"])
def test_engine_without_numba_scans_equals_brute_force(family, numpy_only):
    rng = np.random.default_rng(5)
    real = np.round(rng.random((300, 12)), 1).astype(np.float32)  # many exact ties
    synth = np.round(rng.random((280, 12)), 1).astype(np.float32)
    if family == "duplicates":
        real[1::2] = real[0::2]
        synth[:100] = real[:100]
    result = evaluate_features(real, synth, block_size=64, compute_fid=False)
    assert_matches(result, brute_force(real, synth))


def test_in_memory_inputs_are_views_not_copies():
    real = np.random.default_rng(6).random((250, 8)).astype(np.float32)
    with scattered_inputs({"real": real}, 100, scatter=False) as (lazy,):
        assert lazy.chunks == ((100, 100, 50), (8,))
        values = dict(lazy.__dask_graph__()).values()
        np.testing.assert_array_equal(lazy.compute(scheduler="sync"), real)
    views = [v for v in values if isinstance(v, np.ndarray)]
    assert len(views) == 3 and all(np.shares_memory(v, real) for v in views)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int16])
def test_summary_kernels_equal_numpy(dtype, monkeypatch):
    rng = np.random.default_rng(7)
    real = (rng.standard_normal((1100, 70)) * 3 + 1000).astype(dtype)  # several row chunks
    synth = (rng.standard_normal((900, 70)) * 0.3 + 5).astype(dtype)
    compiled = summary.summary(real, synth, "euclidean")
    with monkeypatch.context() as patch:
        patch.setattr(summary, "_kernels", lambda: None)
        plain = summary.summary(real, synth, "euclidean")
    assert compiled[:2] == plain[:2] == (True, True)
    np.testing.assert_allclose(compiled[2], plain[2], rtol=1e-12)
    np.testing.assert_allclose(compiled[3], plain[3], rtol=1e-13)
    assert summary.summary(real, synth, "hamming")[3] is None


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_summary_kernels_find_non_finite_values(bad):
    real = np.ones((700, 5))
    synth = np.ones((600, 5))
    synth[650 - 100, 2] = bad
    assert summary.summary(real, synth, "euclidean")[:2] == (True, False)
    real[699, 4] = bad
    assert summary.summary(real, synth, "euclidean")[:2] == (False, False)
    huge = np.full((600, 5), 1e308)  # finite values whose column sums overflow
    assert summary.summary(huge, huge, "hamming")[:2] == (True, True)
    assert summary.summary(huge, huge, "euclidean")[:2] == (False, False)  # rows too long


@pytest.mark.parametrize("compiled", [True, False])
def test_summary_flags_rows_beyond_the_euclidean_engines_range(compiled, monkeypatch):
    """A row of norm MAX_ROW_NORM is usable; one a little longer is not (its float32 scores
    could overflow); the NumPy way agrees with the compiled one."""
    if not compiled:
        monkeypatch.setattr(summary, "_kernels", lambda: None)
    limit = euclidean.MAX_ROW_NORM
    real, synth = np.ones((700, 4)), np.ones((600, 4))
    synth[555] = [limit, 0.0, 0.0, 0.0]
    assert summary.summary(real, synth, "euclidean")[:2] == (True, True)
    synth[555, 0] = np.nextafter(limit, np.inf)
    assert summary.summary(real, synth, "euclidean")[:2] == (True, False)
    real[3] = [limit / 2, limit, 0.0, 0.0]  # each value within, the row's norm not
    assert summary.summary(real, synth, "euclidean")[:2] == (False, False)
    assert summary.summary(real, synth, "hamming")[:2] == (True, True)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_centring_kernel_equals_numpy(dtype, monkeypatch):
    """The compiled centring pass gives NumPy's float32 rows bit for bit, and the norms to
    float64 accuracy (their order of summation differs)."""
    rows = (np.random.default_rng(8).standard_normal((60, 300)) + 1000).astype(dtype)
    centre = rows.astype(np.float64).mean(axis=0)
    compiled, compiled_norms, right = centring._augmented(rows, centre)
    with monkeypatch.context() as patch:
        patch.setattr(centring, "_centre_kernel", lambda: None)
        plain, plain_norms, none = centring._augmented(rows, centre)
        lazy = centring.Prepared(rows, centre).right
    assert none is None
    np.testing.assert_array_equal(right[:, :-2], lazy[:, :-2])  # the same pass, made together
    np.testing.assert_array_equal(right[:, -2:], compiled[:, :-3:-1])
    np.testing.assert_array_equal(right[:, :-2], compiled[:, :-2] * np.float32(-2))
    np.testing.assert_array_equal(compiled[:, :-2], plain[:, :-2])
    np.testing.assert_array_equal(compiled[:, -1], plain[:, -1])
    np.testing.assert_allclose(compiled_norms, plain_norms, rtol=1e-13)
    np.testing.assert_allclose(compiled[:, -2], plain[:, -2], rtol=2**-23)


def test_prepare_split_over_threads_equals_one_pass():
    """A wide block prepared in row pieces on a pool equals the block prepared in one pass."""
    from concurrent.futures import ThreadPoolExecutor

    rows = (np.random.default_rng(9).standard_normal((203, 70)) + 50).astype(np.float32)
    centre = rows.astype(np.float64).mean(axis=0)
    whole = euclidean.prepare(rows, centre)
    with ThreadPoolExecutor(3) as pool:
        pieces = euclidean.prepare(rows, centre, (pool.map, 3))
    for name in ("left", "norms", "right"):
        np.testing.assert_array_equal(getattr(pieces, name), getattr(whole, name))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_prepare_makes_the_forms_asked_for_and_the_others_when_needed(dtype):
    """A block prepared for one side writes that form only; the other, made when first read,
    and every form of a sliced block equal the forms prepared together, bit for bit."""
    rows = (np.random.default_rng(10).standard_normal((97, 45)) * 3 + 20).astype(dtype)
    centre = rows.astype(np.float64).mean(axis=0)
    both = euclidean.prepare(rows, centre)
    assert both._left is not None and both._right is not None
    left = euclidean.prepare(rows, centre, forms="left")
    right = euclidean.prepare(rows, centre, forms="right")
    assert left._right is None and right._left is None
    for prepared in (left, right, left[10:50], right[10:50]):
        part = slice(10, 50) if len(prepared) == 40 else slice(None)
        np.testing.assert_array_equal(prepared.norms, both.norms[part])
        np.testing.assert_array_equal(prepared.left, both.left[part])
        np.testing.assert_array_equal(prepared.right, both.right[part])
    block = euclidean.block_bounds(rows[:30], rows[30:], centre, backend="numpy")  # each alone
    np.testing.assert_array_equal(block.score, both.left[:30] @ both.right[30:].T)
