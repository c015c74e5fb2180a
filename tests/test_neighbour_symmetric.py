"""The real pass's diagonal blocks (euclidean.symmetric_bounds): half a GEMM (BLAS ssyrk), the
scores mirrored; their bounds must hold for every pair as the GEMM's do, and the compiled fill
must give the NumPy fallback's scores bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from brute_force import brute_force
from scipy.spatial.distance import cdist
from test_engine_local import FAMILIES

from medsyn_dask.neighbours import euclidean, local


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_symmetric_bounds_hold_for_every_pair(name):
    """lower(score) <= exact distance <= upper(score) for every pair of a diagonal block, with
    both envelopes, on duplicates, near-ties and far-from-origin features."""
    real, _ = FAMILIES[name](np.random.default_rng(50), n=300, m=10, d=64)
    centre = real.astype(np.float64).mean(axis=0)
    block = euclidean.symmetric_bounds(euclidean.prepare(real, centre), centre, backend="numpy")
    assert block.score.dtype == np.float32
    np.testing.assert_array_equal(block.score, block.score.T)  # symmetric to the last bit
    exact = cdist(real.astype(np.float64), real.astype(np.float64))
    rows = np.arange(len(real))[:, None]
    for env, index in ((block.rows, rows), (block.cols, rows.T)):
        assert np.all(env.lower(block.score, index) <= exact)
        assert np.all(env.upper(block.score, index) >= exact)
    # the scores are those of the GEMM's within its bound: same envelope, same meaning
    gemm = euclidean.block_bounds(real, real, centre, backend="numpy")
    np.testing.assert_allclose(block.score, gemm.score, atol=float(gemm.rows.sq_err.max()) * 2)


@pytest.mark.parametrize("n", [1, 63, 64, 65, 200])
def test_symmetric_scores_compiled_equal_numpy(n, monkeypatch):
    """The tiled compiled fill and the NumPy fallback give identical scores (tile edges)."""
    rng = np.random.default_rng(n)
    x = (rng.standard_normal((n, 40)) * 3).astype(np.float32)
    x[n // 2 :: 7] = x[0]  # exact duplicates: ties in the scores
    gram = np.triu(x @ x.T)  # gram.T: the lower triangle alone, the other one zeros
    norms32 = np.einsum("ij,ij->i", x, x, dtype=np.float64).astype(np.float32)
    compiled = euclidean.symmetric_scores(gram.T, norms32)
    monkeypatch.setattr(euclidean, "_symmetric_kernel", lambda: None)
    fallback = euclidean.symmetric_scores(gram.T, norms32)
    assert compiled.dtype == fallback.dtype == np.float32
    np.testing.assert_array_equal(compiled, fallback)


def test_radii_with_symmetric_diagonal_blocks_equal_brute_force():
    """Many blocks (a diagonal block each, ties and exact duplicates across block edges): the
    radii are the float64 brute force's, and the diagonal blocks went through ssyrk (the
    triangle passes of symmetric_candidates)."""
    real, synth = FAMILIES["many_duplicates"](np.random.default_rng(51), n=333, m=50, d=48)
    real[100:110] = real[5]  # a run of exact duplicates inside one block and across blocks
    expected = brute_force(real, synth, nearest_k=4)
    centre = real.astype(np.float64).mean(axis=0)
    calls = []
    symmetric = euclidean.symmetric_candidates

    def counted(*args, **kwargs):
        calls.append(1)
        return symmetric(*args, **kwargs)

    euclidean.symmetric_candidates = counted
    try:
        with local.Runner("euclidean", centre, "numpy", block_size=70) as run:
            smallest = run.radii(real, 4)
    finally:
        euclidean.symmetric_candidates = symmetric
    assert len(calls) == 5  # 333 rows in blocks of at most 70: five diagonal blocks
    np.testing.assert_array_equal(smallest[:, 4], expected["radius_k"])
    np.testing.assert_array_equal(smallest[:, 1], expected["radius_1"])
