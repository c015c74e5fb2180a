"""evaluate_features against the float64 brute force, on every hard scenario and block size."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import scenarios
import zarr
from brute_force import assert_matches, brute_force
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import linalg

from medsyn_dask import evaluate_features, real_neighbourhood
from medsyn_dask.errors import SettingsError

_rand = np.random.default_rng(0).random


@pytest.mark.parametrize("block_size", [32, 50, 1000])  # divides neither N nor M / one block
@pytest.mark.parametrize("name", sorted(scenarios.EUCLIDEAN))
def test_euclidean_equals_brute_force(name, block_size):
    real, synth = scenarios.EUCLIDEAN[name](np.random.default_rng(10))
    result = evaluate_features(real, synth, block_size=block_size, backend="numpy")
    assert_matches(result, brute_force(real, synth))


@pytest.mark.parametrize("block_size", [30, 64, 1000])
@pytest.mark.parametrize("name", sorted(scenarios.HAMMING))
def test_hamming_equals_brute_force(name, block_size):
    real, synth = scenarios.HAMMING[name](np.random.default_rng(11))
    result = evaluate_features(real, synth, metric="hamming", block_size=block_size)
    assert_matches(result, brute_force(real, synth, metric="hamming"))
    assert result.fid is None and "discrete" in result.fid_reason


def test_known_answers():
    """Exact copies come out as copies; far-away images as non-real; duplicated reals can't be
    copied (strict <)."""
    rng = np.random.default_rng(12)
    real = rng.normal(size=(100, 8)).astype(np.float32)
    real[1] = real[0]
    synth = np.concatenate([real[10:15], real[0:1], real[20:25] + 1000.0])
    result = evaluate_features(real, synth, nearest_k=3, block_size=16)
    sets = result.per_synthetic["set"].tolist()
    assert sets[:5] == ["copy"] * 5
    assert sets[5] == "real"  # identical to a duplicated real image: radius_1 = 0
    assert sets[6:] == ["non-real"] * 5
    assert result.per_synthetic["nearest_real"].tolist()[:5] == list(range(10, 15))
    assert result.per_real["copies"].tolist()[10:15] == [1] * 5
    assert result.privacy == pytest.approx(1 - 5 / 11)


def test_collapse_margin_turns_near_copies_into_copies():
    """Collapsed images just outside a real image's copy radius become copies with the margin."""
    rng = np.random.default_rng(13)
    real = np.stack([np.arange(50.0), np.zeros(50)], axis=1)  # radius_1 = 1 everywhere
    synth = np.array([3.0, 1.02]) + 1e-4 * rng.normal(size=(30, 2))  # 1.02 from real 3
    result = evaluate_features(real, synth)
    assert result.copy_margin == 0.05 and result.to_dict()["mode_collapse"]
    assert result.privacy == 0.0
    relaxed = evaluate_features(real, synth, mode_collapse_threshold=0.0)
    assert relaxed.copy_margin == 0.0 and relaxed.privacy == 1.0


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(3, 40),
    m=st.integers(1, 40),
    d=st.integers(1, 6),
    k=st.integers(1, 2),
    block=st.integers(2, 17),
    seed=st.integers(0, 2**32 - 1),
    lattice=st.booleans(),
)
def test_property_random_shapes(n, m, d, k, block, seed, lattice):
    rng = np.random.default_rng(seed)
    real, synth = rng.normal(size=(n, d)), rng.normal(size=(m, d))
    if lattice:  # exact ties everywhere
        real, synth = np.round(real), np.round(synth)
    result = evaluate_features(real, synth, nearest_k=k, block_size=block, compute_fid=False)
    assert_matches(result, brute_force(real, synth, nearest_k=k))


def test_dask_and_zarr_inputs(tmp_path):
    real, synth = scenarios.clustered(np.random.default_rng(14))
    store = zarr.open_array(
        tmp_path / "real.zarr", mode="w", shape=real.shape, chunks=(64, 32), dtype=real.dtype
    )
    store[:] = real
    result = evaluate_features(store, da.from_array(synth, chunks=(37, 8)), block_size=50)
    assert_matches(result, brute_force(real, synth))


def test_reused_reference_gives_same_result():
    real, synth = scenarios.duplicated(np.random.default_rng(15))
    reference = real_neighbourhood(real, block_size=40)
    expected = brute_force(real, synth)
    np.testing.assert_array_equal(reference.radius_k, expected["radius_k"])
    assert_matches(evaluate_features(real, synth, block_size=40, reference=reference), expected)
    with pytest.raises(ValueError, match="nearest_k"):
        evaluate_features(real, synth, nearest_k=3, reference=reference)


def test_fid_equals_direct_computation():
    real, synth = scenarios.clustered(np.random.default_rng(16), n=300, m=250, d=8)
    result = evaluate_features(real, synth, block_size=64)
    r, s = real.astype(np.float64), synth.astype(np.float64)
    cr, cs = np.cov(r, rowvar=False), np.cov(s, rowvar=False)
    diff = r.mean(0) - s.mean(0)
    expected = diff @ diff + np.trace(cr + cs - 2 * linalg.sqrtm(cr @ cs).real)
    assert result.fid == pytest.approx(expected, rel=1e-9)


def test_fid_of_identical_sets_is_zero():
    real, _ = scenarios.clustered(np.random.default_rng(17), d=8)
    assert abs(evaluate_features(real, real).fid) < 1e-8


def test_prdc_precision_equals_fidelity():
    prdc = pytest.importorskip("prdc")
    real, synth = scenarios.clustered(np.random.default_rng(18), n=400, m=300)
    for k in (3, 5):
        expected = prdc.compute_prdc(real, synth, nearest_k=k)["precision"]
        assert evaluate_features(real, synth, nearest_k=k, block_size=96).fidelity == expected


def test_to_dict_is_json_ready():
    import json

    real, synth = scenarios.random(np.random.default_rng(19))
    payload = json.loads(json.dumps(evaluate_features(real, synth).to_dict()))
    assert payload["n_real"] == len(real) and payload["n_synthetic"] == len(synth)
    assert sum(payload["sets"].values()) == len(synth)


@pytest.mark.parametrize(
    "real, synth, kwargs, message",
    [
        (np.zeros((9, 3)), np.zeros((5, 4)), {}, "differ in dimension"),
        (_rand((5, 3)), _rand((4, 3)), {"nearest_k": 5}, "nearest_k=5"),
        (_rand((1, 3)), _rand((4, 3)), {"nearest_k": 1}, "at least 2 real"),
        (_rand((9, 3)), np.zeros((0, 3)), {}, "synthetic: features are empty"),
        (np.zeros((0, 3)), _rand((4, 3)), {}, "real: features are empty"),
        (_rand((9, 3)), _rand((4, 3)), {"metric": "hamming"}, "integer codes"),
        (_rand((9, 3)), _rand((4, 3)), {"metric": "cosine"}, "metric must be"),
        (_rand((9, 3)), _rand((4, 3)), {"nearest_k": 0}, "nearest_k must be >= 1, got 0"),
        (_rand(9), _rand((4, 3)), {}, "2-D"),
        (_rand((9, 3)), _rand((4, 3)), {"backend": "cuda"}, "backend"),
    ],
)
def test_bad_input_is_a_clear_value_error(real, synth, kwargs, message):
    with pytest.raises(ValueError, match=message):
        evaluate_features(real, synth, **kwargs)


@pytest.mark.parametrize("where", ["real", "synthetic"])
def test_nan_or_inf_names_the_set_and_row(where):
    rng = np.random.default_rng(20)
    arrays = {"real": rng.random((30, 4)), "synthetic": rng.random((20, 4))}
    arrays[where][7, 2] = np.nan if where == "real" else np.inf
    with pytest.raises(ValueError, match=f"{where}: features contain NaN or Inf .*row 7"):
        evaluate_features(arrays["real"], arrays["synthetic"], block_size=8)


@pytest.mark.parametrize("lazy", [False, True])
@pytest.mark.parametrize("where", ["real", "synthetic"])
def test_rows_beyond_the_engines_range_are_named(where, lazy):
    """Rows too long for the float32 first pass (about 1e18 and more) gave wrong radii with
    nothing but RuntimeWarnings; now an error names the set, the row and the limit, on the
    in-process path and on the graph's (Dask inputs of more than LOCAL_BLOCKS blocks)."""
    rng = np.random.default_rng(22)
    arrays = {"real": rng.random((30, 4)), "synthetic": rng.random((20, 4))}
    arrays[where][7] *= 1e19
    if lazy:
        arrays = {k: da.from_array(v, chunks=(4, -1)) for k, v in arrays.items()}
    with pytest.raises(SettingsError, match=rf"{where}: row 7 has norm .* above the 5.76e\+17"):
        evaluate_features(arrays["real"], arrays["synthetic"], block_size=4)
    if where == "real":
        with pytest.raises(SettingsError, match=r"real: row 7 has norm"):
            real_neighbourhood(arrays["real"], block_size=4)


def test_fid_gram_route_equals_covariance_route():
    """With fewer images than dimensions FID goes through the Gram matrix: same value."""
    rng = np.random.default_rng(21)
    real = rng.normal(size=(40, 60)) + 100.0
    synth = rng.normal(scale=1.3, size=(30, 60)) + 100.2
    r, s = real - real[0], synth - real[0]
    cr, cs = np.cov(r, rowvar=False), np.cov(s, rowvar=False)
    diff = r.mean(0) - s.mean(0)
    eig = np.linalg.eigvals(cr @ cs)
    expected = diff @ diff + np.trace(cr) + np.trace(cs) - 2 * np.sqrt(np.abs(eig)).sum()
    result = evaluate_features(real, synth, block_size=16)
    assert result.fid == pytest.approx(expected, rel=1e-6)
