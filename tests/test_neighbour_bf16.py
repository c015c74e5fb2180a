"""The bfloat16 first pass of the Euclidean engine (:mod:`medsyn_dask.neighbours.bf16`).

Its scores come from torch's bfloat16 GEMM through oneDNN (AMX tiles where the CPU has them,
AVX-512 otherwise, bounded alike), so these tests force the pass on any such CPU: every bound
must hold against float64 distances, and the whole engine must still give the brute force's
answer to the last bit. Without either, the pass is never taken and these tests skip.
"""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import scenarios
from brute_force import assert_matches, assert_patients_match, brute_force, brute_force_patients
from scipy.spatial.distance import cdist

torch = pytest.importorskip("torch")

from medsyn_dask import evaluate_features  # noqa: E402
from medsyn_dask.neighbours import bf16, euclidean  # noqa: E402
from medsyn_dask.neighbours.centring import prepare  # noqa: E402

needs_onednn = pytest.mark.skipif(
    not bf16.onednn_bfloat16(),
    reason="torch multiplies bfloat16 through oneDNN only on CPUs with AVX-512 or AMX; its own "
    "kernels elsewhere are not what the first pass's bound models, so it is never taken there",
)


@pytest.fixture
def first_pass():
    """The first pass on every block (``bf16.force(True)``), restored afterwards."""
    if not bf16.onednn_bfloat16():
        pytest.skip("no oneDNN bfloat16 GEMM on this CPU (AVX-512 or AMX): no first pass here")
    bf16.force(True)
    yield
    bf16.force(None)


def _rows(kind: str, rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    if kind == "gaussian":
        return rng.standard_normal((n, dim))
    if kind == "low_rank":
        return np.maximum(rng.standard_normal((n, 4)) @ rng.standard_normal((4, dim)), 0)
    if kind == "far":
        return 1e4 + rng.standard_normal((n, dim))
    if kind == "tiny":
        return 1e-30 * rng.standard_normal((n, dim))
    if kind == "huge":
        return 1e12 * rng.standard_normal((n, dim))
    if kind == "near_copies":
        base = rng.standard_normal((n // 2, dim))
        return np.concatenate([base, base * (1 + 1e-4 * rng.standard_normal(base.shape))])
    raise ValueError(kind)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("dim", [3, 64, 515])
@pytest.mark.parametrize("kind", ["gaussian", "low_rank", "far", "tiny", "huge", "near_copies"])
def test_first_pass_bounds_hold_for_every_pair(kind, dim, dtype, first_pass):
    """lower <= d <= upper for every pair and both envelopes, d the float64 ``cdist``; and the
    bound is not vacuous: the scores use a good part of the error it allows (but for rows
    within 2^-100 of each other, where the term for AMX's flushed subnormals dominates)."""
    rng = np.random.default_rng([dim, len(kind)])
    x, y = _rows(kind, rng, 90, dim).astype(dtype), _rows(kind, rng, 70, dim).astype(dtype)
    centre = x.astype(np.float64).mean(axis=0)
    px, py = prepare(x, centre, forms="left"), prepare(y, centre, forms="right")
    block = euclidean.block_bounds(px, py, centre)
    exact = cdist(x.astype(np.float64), y.astype(np.float64))
    rows, cols = np.indices(exact.shape)
    for env, index in ((block.rows, rows), (block.cols, cols)):
        assert (env.lower(block.score, index) <= exact).all()
        assert (env.upper(block.score, index) >= exact).all()
    d2 = (x.astype(np.float64)[:, None] - y.astype(np.float64)[None]) ** 2
    used = np.abs(block.score - d2.sum(axis=2)) / block.rows.sq_err[:, None]
    assert used.max() > 0.01 or kind == "tiny"
    fine = block.fine.scores(rows.ravel(), cols.ravel()).reshape(exact.shape)
    for env, index in ((block.fine.rows, rows), (block.fine.cols, cols)):
        assert (env.lower(fine, index) <= exact).all()
        assert (env.upper(fine, index) >= exact).all()


@pytest.mark.parametrize("dim", [64, 503, 512, 2045, 4093])
def test_first_pass_bound_keeps_its_safety_factor(dim, first_pass):
    """Values just below a bfloat16 rounding boundary (8 significant bits: the cast error is
    2^-8 relative) use at most 1 / SAFETY of the bound: the doubling every bound carries. The
    odd widths and the long ones are where oneDNN rounds a partial sum (PARTIAL_ROUNDINGS)."""
    value = np.float32(1 + 2**-8 - 2**-23)
    x = np.full((4, dim), value, np.float32)
    x[1:] *= np.float32(-1)
    y = x.copy()
    y[:, ::2] = np.float32(1 + 2**-8 - 2**-22) * np.sign(y[:, ::2])
    centre = np.zeros(dim)
    block = euclidean.block_bounds(prepare(x, centre), prepare(y, centre), centre)
    d2 = cdist(x.astype(np.float64), y.astype(np.float64)) ** 2
    used = np.abs(block.score - d2) / block.rows.sq_err[:, None]
    assert 0.1 < used.max() <= 1 / bf16.SAFETY


@pytest.mark.parametrize("forced", [False, True])
@pytest.mark.parametrize("scale", [1e-25, 1e-22, 1e-40])
def test_features_below_float32s_normal_range_equal_brute_force(scale, forced):
    """Squares below 2^-126 underflow in float32 (the GEMM's or the first pass's): absolute
    error terms, not relative ones, bound them (the float32 envelopes had none before)."""
    bf16.force(forced)
    try:
        rng = np.random.default_rng(64)
        real, synth = scale * rng.standard_normal((150, 32)), scale * rng.standard_normal((120, 32))
        result = evaluate_features(real, synth, block_size=64, compute_fid=False)
        assert_matches(result, brute_force(real, synth))
    finally:
        bf16.force(None)


@pytest.mark.parametrize("name", sorted(scenarios.EUCLIDEAN))
def test_engine_with_the_first_pass_equals_brute_force(name, first_pass):
    """Here and through the Dask graph: coarser scores, the same exact answer."""
    real, synth = scenarios.EUCLIDEAN[name](np.random.default_rng(60))
    expected = brute_force(real, synth)
    assert_matches(evaluate_features(real, synth, block_size=64, compute_fid=False), expected)
    graph = evaluate_features(
        da.from_array(real, chunks=(50, -1)),
        da.from_array(synth, chunks=(50, -1)),
        block_size=64,
        compute_fid=False,
    )
    assert_matches(graph, expected)


@pytest.mark.parametrize("name", ["clustered", "near_duplicated", "tied"])
def test_patient_mode_with_the_first_pass_equals_brute_force(name, first_pass):
    """Patient mode masks same-patient pairs on the coarse scores (its other reductions read
    the coarse block alone): still the brute force's answer."""
    rng = np.random.default_rng(65)
    real, synth = scenarios.EUCLIDEAN[name](rng)
    patients = np.array([f"P{v:03d}" for v in rng.integers(0, 40, len(real))], dtype=object)
    result = evaluate_features(real, synth, block_size=50, patients=patients)
    assert_matches(result, brute_force(real, synth))
    assert_patients_match(result.patients, brute_force_patients(real, synth, patients))


def test_scores_come_from_the_first_pass_when_forced(first_pass):
    """The forced path really is the bfloat16 one: its scores are coarser than float32's,
    and its fine stage gives float32's."""
    rng = np.random.default_rng(61)
    x, y = rng.standard_normal((50, 256)), rng.standard_normal((40, 256))
    centre = x.mean(axis=0)
    first = euclidean.block_bounds(x, y, centre)
    bf16.force(False)
    fine = euclidean.block_bounds(x, y, centre).score
    exact = cdist(x, y) ** 2
    assert np.abs(first.score - exact).max() > 20 * np.abs(fine - exact).max()
    # Its fine stage scores pairs as the float32 GEMM does (up to the order of the sums).
    rows, cols = (i.ravel() for i in np.indices(fine.shape))
    again = first.fine.scores(rows, cols).reshape(fine.shape)
    assert np.abs(again - fine).max() <= 1e-5 * np.abs(fine).max()
    assert first.transpose().fine.scores(cols[:5], rows[:5]).tolist() == again.ravel()[:5].tolist()


@needs_onednn
def test_probe_keeps_float32_where_distances_concentrate():
    """A block's sample decides: isotropic Gaussian rows in 2 048 dimensions leave many pairs
    open to the coarse bounds (float32 GEMM); clustered low-rank rows leave few (first pass)."""
    rng = np.random.default_rng(62)
    gaussian = rng.standard_normal((1000, 2048)).astype(np.float32)
    centres, basis = rng.standard_normal((32, 512)), 0.35 * rng.standard_normal((32, 8, 512))
    k = rng.integers(0, 32, 1000)  # low-rank clusters after a ReLU, as a CNN's features
    spread = np.einsum("nr,nrd->nd", rng.standard_normal((1000, 8)), basis[k])
    clustered = np.maximum(centres[k] + spread + 0.3 * rng.standard_normal((1000, 512)), 0)
    bf16._forced["on"] = None
    saved = bf16._amx
    bf16._amx = lambda: True  # decide as on an AMX CPU (the decision is all this tests)
    try:
        for rows, expected in ((gaussian, False), (clustered.astype(np.float32), True)):
            centre = rows.astype(np.float64).mean(axis=0)
            p = prepare(rows, centre)
            assert bf16.worth_it(p[:500], p, "auto") is expected
            assert p.cache["bf16"] is expected  # decided once, for the whole block
    finally:
        bf16._amx = saved


def test_no_first_pass_where_a_gpu_does_the_gemm(first_pass, monkeypatch):
    """backend="auto" on a machine with CUDA: the float32 GEMM on the GPU, not AMX."""
    assert bf16.available("auto")
    monkeypatch.setattr(bf16, "torch_device", lambda backend: torch.device("cuda"))
    assert not bf16.available("auto")


def test_first_pass_only_for_auto_and_moderate_norms(first_pass):
    rng = np.random.default_rng(63)
    x = rng.standard_normal((20, 8))
    p = prepare(x, x.mean(axis=0))
    assert bf16.worth_it(p, p, "auto")
    assert not bf16.worth_it(p, p, "numpy")
    assert not bf16.worth_it(p, p, "torch")
    big = prepare(x * 1e16, np.zeros(8))
    assert not bf16.worth_it(big, big, "auto")  # squared norms past bfloat16's safe range


def test_runner_holds_torch_to_one_thread_and_restores_it():
    """The runner's pool has a thread per core: torch's own threads beside it oversubscribe."""
    from medsyn_dask.neighbours import local

    saved = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with local.Runner("euclidean", np.zeros(4), "auto") as run:
            assert torch.get_num_threads() == (1 if run.n_threads > 1 else 2)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(saved)


def test_prepared_blocks_pickle_without_their_derived_state(first_pass):
    """A block's cache (bfloat16 forms, the probe's decision, a lock) stays where it was made."""
    import pickle

    x = np.random.default_rng(66).standard_normal((50, 8)).astype(np.float32)
    p = prepare(x, x.astype(np.float64).mean(axis=0))
    euclidean.block_bounds(p[:10], p, p.centre)
    assert p.cache
    part = pickle.loads(pickle.dumps(p[5:20]))
    assert part.cache == {} and part.parent[0].cache == {}
    np.testing.assert_array_equal(part.left, p.left[5:20])
