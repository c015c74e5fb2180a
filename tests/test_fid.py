"""FID: the eigenvalue route against pytorch-fid's sqrtm way, the plan's routes, and the real
set's statistics computed once and reused."""

from __future__ import annotations

import numpy as np
import pytest
import scenarios
from scipy.stats import special_ortho_group

from medsyn_dask.errors import SettingsError
from medsyn_dask.evaluate import (
    evaluate_features,
    feature_statistics,
    real_fid_statistics,
    real_neighbourhood,
)
from medsyn_dask.metrics.fid import FIDPlan, plan_fid
from medsyn_dask.metrics.fid_linalg import (
    GaussianFit,
    RealFID,
    frechet_distance,
    frechet_distance_sqrtm,
    gram_distance,
    sqrt_factor,
    trace_sqrt_product,
)


def _fit(x: np.ndarray) -> GaussianFit:
    return GaussianFit(x.mean(axis=0), np.cov(x, rowvar=False))


def _rotated(spectrum: np.ndarray, seed: int) -> np.ndarray:
    rot = special_ortho_group.rvs(len(spectrum), random_state=seed)
    cov = (rot * spectrum) @ rot.T
    return (cov + cov.T) / 2


def _covariances(kind: str, dim: int = 96) -> tuple[GaussianFit, GaussianFit]:
    rng = np.random.default_rng(40)
    if kind == "well-conditioned":
        real, synth = rng.normal(size=(400, dim)), rng.normal(scale=1.2, size=(300, dim)) + 0.1
        return _fit(real), _fit(synth)
    if kind == "ill-conditioned":  # condition number 1e6 on each side, unrelated bases
        spectrum = np.logspace(0, -6, dim)
        mean = rng.normal(size=dim)
        return (
            GaussianFit(mean, _rotated(spectrum, 1)),
            GaussianFit(mean + 1e-3, _rotated(spectrum * 1.3, 2)),
        )
    if kind == "rank-deficient real":  # 40 real images in 96 dimensions: rank 39
        return _fit(rng.normal(size=(40, dim))), _fit(rng.normal(size=(300, dim)) * 0.9)
    if kind == "both rank-deficient":
        return _fit(rng.normal(size=(50, dim))), _fit(rng.normal(size=(30, dim)) + 0.5)
    raise AssertionError(kind)


KINDS = ["well-conditioned", "ill-conditioned", "rank-deficient real", "both rank-deficient"]


@pytest.mark.parametrize("kind", KINDS)
def test_eigenvalue_route_equals_sqrtm(kind):
    real, synth = _covariances(kind)
    expected = frechet_distance_sqrtm(real, synth)
    assert frechet_distance(real, synth) == pytest.approx(expected, rel=1e-6, abs=0)
    assert frechet_distance(synth, real) == pytest.approx(expected, rel=1e-6, abs=0)


def test_sqrt_factor_reproduces_the_covariance_and_drops_its_null_space():
    real, _ = _covariances("rank-deficient real")
    factor = sqrt_factor(real.cov)
    assert factor.shape == (96, 39)
    np.testing.assert_allclose(factor @ factor.T, real.cov, atol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_torch_route_equals_the_lapack_route(kind):
    """The route a GPU takes (torch's float64 eigh and GEMMs: cuSOLVER on a CUDA machine, where
    ``backend="auto"`` picks it; torch's CPU kernels here) gives LAPACK's value."""
    pytest.importorskip("torch")
    real, synth = _covariances(kind)
    values = {}
    for backend in ("numpy", "torch"):
        factor = sqrt_factor(real.cov, backend=backend)
        np.testing.assert_allclose(factor @ factor.T, real.cov, atol=1e-12)
        values[backend] = trace_sqrt_product(factor, synth.cov, backend=backend)
    # Rank-deficient products: the square roots of their rounding-level eigenvalues (~1e-15,
    # either solver's noise) add up to ~1e-9 of the trace.
    assert values["torch"] == pytest.approx(values["numpy"], rel=1e-8, abs=0)


def test_a_full_gpu_leaves_fid_to_the_cpu(monkeypatch, caplog):
    """Out of GPU memory (the workers' models beside it), FID's linear algebra runs on the CPU
    with a warning, the same value, instead of stopping the run."""
    torch = pytest.importorskip("torch")
    real, synth = _covariances("well-conditioned")
    expected = trace_sqrt_product(
        sqrt_factor(real.cov, backend="numpy"), synth.cov, backend="numpy"
    )

    def full(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory (raised by the test)")

    monkeypatch.setattr(torch.linalg, "eigh", full)
    monkeypatch.setattr(torch.linalg, "svdvals", full)
    with caplog.at_level("WARNING", logger="medsyn_dask.metrics.fid_linalg"):
        factor = sqrt_factor(real.cov, backend="torch")
        value = trace_sqrt_product(factor, synth.cov, backend="torch")
    assert value == pytest.approx(expected, rel=1e-12)
    assert "on the CPU: no room on the GPU" in caplog.text


def test_real_statistics_decomposed_once_and_reused():
    real, synth = _covariances("well-conditioned")
    cached = RealFID(real, n_images=400)
    others = [GaussianFit(synth.mean + s, synth.cov * (1 + s)) for s in (0.0, 0.5, 2.0)]
    values = [cached.distance(g) for g in others]
    factor = cached.factor
    assert cached.factor is factor  # computed once
    for g, value in zip(others, values, strict=True):
        assert value == pytest.approx(frechet_distance_sqrtm(real, g), rel=1e-9)
    assert len(set(values)) == 3


def test_real_statistics_round_trip_through_arrays(tmp_path):
    real, synth = _covariances("rank-deficient real")
    cached = RealFID(real, n_images=40)
    np.savez(tmp_path / "real_fid.npz", **cached.to_arrays())
    with np.load(tmp_path / "real_fid.npz") as stored:
        loaded = RealFID.from_arrays(dict(stored))
    assert loaded.n_images == 40 and loaded.dim == 96
    np.testing.assert_array_equal(loaded.factor, cached.factor)
    assert loaded.distance(synth) == cached.distance(synth)
    without_factor = RealFID.from_arrays({"mean": real.mean, "cov": real.cov, "n_images": 40})
    assert without_factor.distance(synth) == pytest.approx(cached.distance(synth), rel=1e-12)


def test_gram_distance_equals_covariance_route():
    rng = np.random.default_rng(41)
    real = rng.normal(size=(30, 80)) + 50.0
    synth = rng.normal(scale=1.5, size=(25, 80)) + 50.3

    def side(x):
        shifted = x - x[0]
        return shifted.sum(axis=0), (shifted**2).sum(), len(x), x[0], shifted

    sr, qr, nr, hr, xr = side(real)
    ss, qs, ns, hs, xs = side(synth)
    value = gram_distance(hr, sr, qr, nr, hs, ss, qs, ns, xr @ xs.T)
    assert value == pytest.approx(frechet_distance_sqrtm(_fit(real), _fit(synth)), rel=1e-6)


def _plan(n_r, n_s, dim, **kwargs) -> FIDPlan:
    import dask.array as da

    rng = np.random.default_rng(42)
    real = da.from_array(rng.normal(size=(n_r, dim)), chunks=(16, -1))
    synth = da.from_array(rng.normal(size=(n_s, dim)), chunks=(16, -1))
    return plan_fid(real, synth, **{"metric": "euclidean", **kwargs})


@pytest.mark.parametrize(
    "shape, kwargs, route, reason",
    [
        ((50, 40, 8), {}, "covariance", None),
        ((30, 40, 64), {}, "gram", None),
        ((50, 40, 8), {"metric": "hamming"}, "none", "discrete"),
        ((50, 40, 8), {"compute_fid": False}, "none", "not requested"),
        ((50, 1, 8), {}, "none", "at least 2"),
        ((50, 40, 30), {"fid_max_dim": 16}, "none", "fid_max_dim=16"),
    ],
)
def test_plan_routes(shape, kwargs, route, reason):
    plan = _plan(*shape, **kwargs)
    assert plan.route == route
    assert (plan.reason is None) if reason is None else (reason in plan.reason)
    assert (plan.lazy == ()) == (route == "none")


def test_plan_with_real_statistics_computes_only_the_synthetic_side():
    real, _ = _covariances("well-conditioned", dim=8)
    cached = RealFID(real, n_images=50)
    plan = _plan(50, 40, 8, real_fid=cached)
    assert plan.route == "covariance" and plan.real is cached and len(plan.lazy) == 1


def test_reference_with_fid_statistics_gives_the_same_fid():
    real, synth = scenarios.clustered(np.random.default_rng(43), n=300, m=250, d=8)
    reference = real_neighbourhood(real, block_size=64, compute_fid=True)
    assert isinstance(reference.fid_statistics, RealFID)
    direct = evaluate_features(real, synth, block_size=64)
    reused = evaluate_features(real, synth, block_size=64, reference=reference)
    assert reused.fid == pytest.approx(direct.fid, rel=1e-9)
    expected = frechet_distance_sqrtm(_fit(real.astype(np.float64)), _fit(synth.astype(np.float64)))
    assert reused.fid == pytest.approx(expected, rel=1e-9)
    assert real_neighbourhood(real, block_size=64).fid_statistics is None  # not by default


def test_feature_statistics_with_real_statistics():
    real, synth = scenarios.far_from_origin(np.random.default_rng(44), d=16)
    cached = real_fid_statistics(real, block_size=40)
    direct = feature_statistics(real, synth, block_size=40)
    reused = feature_statistics(real, synth, block_size=40, real_statistics=cached)
    assert reused["fid"] == pytest.approx(direct["fid"], rel=1e-9)
    assert reused["std"] == direct["std"]
    r, s = real.astype(np.float64), synth.astype(np.float64)
    assert direct["fid"] == pytest.approx(frechet_distance_sqrtm(_fit(r), _fit(s)), rel=1e-6)


def test_real_statistics_of_codes_is_none_and_fid_says_why():
    real, synth = scenarios.codes_random(np.random.default_rng(45))
    assert real_fid_statistics(real, metric="hamming") is None
    out = feature_statistics(real, synth, metric="hamming", real_statistics=None)
    assert out["fid"] is None and "discrete" in out["fid_reason"]


def test_statistics_of_another_real_set_are_refused():
    rng = np.random.default_rng(46)
    real, synth = rng.normal(size=(60, 6)), rng.normal(size=(40, 6))
    other = real_fid_statistics(real[:50])
    with pytest.raises(SettingsError, match="50 images x 6 dimensions"):
        feature_statistics(real, synth, real_statistics=other)
    reference = real_neighbourhood(real, nearest_k=3, compute_fid=True)
    reference = type(reference)(reference.smallest, reference.centre, "euclidean", 3, other)
    with pytest.raises(SettingsError, match="50 images"):
        evaluate_features(real, synth, nearest_k=3, reference=reference)


@pytest.mark.parametrize(
    "real, synth, kwargs, message",
    [
        (np.zeros((9, 3)), np.zeros((5, 4)), {}, "differ in dimension"),
        (np.ones((1, 3)), np.ones((4, 3)), {}, "at least 2 real"),
        (np.ones((9, 3)), np.zeros((0, 3)), {}, "synthetic: features are empty"),
        (np.ones((9, 3)), np.ones((4, 3)), {"metric": "hamming"}, "integer codes"),
        (np.ones((9, 3)), np.ones((4, 3)), {"metric": "cosine"}, "metric must be"),
        (np.ones(9), np.ones((4, 3)), {}, "2-D"),
        (np.ones((9, 3)), np.ones((4, 3)), {"block_size": 1}, "block_size"),
    ],
)
def test_feature_statistics_checks_inputs_like_evaluate_features(real, synth, kwargs, message):
    with pytest.raises(SettingsError, match=message):
        feature_statistics(real, synth, **kwargs)
    with pytest.raises(SettingsError, match=message):
        evaluate_features(real, synth, **kwargs)


def test_feature_statistics_names_the_row_with_nan():
    rng = np.random.default_rng(47)
    real, synth = rng.random((30, 4)), rng.random((20, 4))
    synth[11, 0] = np.nan
    with pytest.raises(SettingsError, match=r"synthetic: features contain NaN or Inf .*row 11"):
        feature_statistics(real, synth, block_size=8)


def test_fid_of_a_set_against_itself_is_never_negative():
    """Ill-conditioned covariances: rounding in the square roots of tiny eigenvalues gave
    -5e-9 (D = 16) and -6e-8 (rotated, D = 64); a squared distance is reported as 0 there."""
    rng = np.random.default_rng(0)
    flat = rng.normal(size=(60, 16)) * np.logspace(0, -7, 16)
    rotation = special_ortho_group.rvs(64, random_state=1)
    rotated = (rng.normal(size=(200, 64)) * np.logspace(0, -7, 64)) @ rotation.T
    for features in (flat, rotated):
        assert 0.0 <= feature_statistics(features, features.copy())["fid"] < 1e-6


def test_fid_max_dim_holds_with_cached_real_statistics():
    """The cap was checked only without cached statistics: None without, 5.5 with them."""
    rng = np.random.default_rng(3)
    real, synth = rng.normal(size=(60, 16)), rng.normal(size=(50, 16)) + 0.5
    cached = real_fid_statistics(real)
    for statistics in (None, cached):
        out = feature_statistics(real, synth, fid_max_dim=15, real_statistics=statistics)
        assert out["fid"] is None and "fid_max_dim=15" in out["fid_reason"]
