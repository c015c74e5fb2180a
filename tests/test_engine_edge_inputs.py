"""Inputs that gave wrong answers or unclear errors before their fixes (found by a search of
adversarial and unusual inputs against the brute force): each test fails without its fix.
Every case runs on the in-process path (NumPy) and on the graph's (Dask inputs of more than
LOCAL_BLOCKS blocks)."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pandas as pd
import pytest
from brute_force import assert_matches, brute_force

from medsyn_dask import evaluate_features
from medsyn_dask.errors import SettingsError
from medsyn_dask.metrics.std import feature_std
from medsyn_dask.neighbours import hamming

BLOCK = 4  # rows per block: the graph's inputs below have more than 4 blocks


def both_paths(real, synth, expected, **options):
    """The engine on NumPy inputs and on Dask ones of BLOCK-row chunks equals ``expected``."""
    options = {"compute_fid": False, "block_size": BLOCK, **options}
    assert_matches(evaluate_features(real, synth, **options), expected)
    lazy = [da.from_array(a, chunks=(BLOCK, -1)) for a in (real, synth)]
    assert max(len(a) for a in lazy) > 4 * BLOCK  # the graph, not read into this process
    assert_matches(evaluate_features(*lazy, **options), expected)


@pytest.mark.parametrize("scale", [1e-9, 1e-12])
def test_copy_ratio_with_copy_thresholds_below_float32s_reach(scale):
    """Near-duplicate real rows (radius_1 about 1e-25): the float32 weight 1 / c^2 of the copy
    ratio overflowed, the column's limit became NaN and the smallest ratio was lost (a copy
    reported with a ratio of 5e12 instead of 0.5)."""
    rng = np.random.default_rng(70)
    base = rng.normal(size=(12, 2)) * scale
    real = np.concatenate([base, base + 1e-25])
    synth = np.concatenate([base[:1] + 5e-26, base[1:2], rng.normal(size=(18, 2))])
    expected = brute_force(real, synth)
    assert expected["copy_ratio"][0] < 1 and expected["copy_ratio"][1] == 0
    both_paths(real, synth, expected)


def test_copy_ratio_with_a_tiny_mode_collapse_margin():
    """Duplicates only (radius_1 = 0) and a collapsed synthetic set: the copy threshold is the
    margin, 2e-20; the ratio of an exact copy is 0 (was Inf)."""
    real, synth = np.full((24, 1), 100), np.full((30, 1), 100)
    expected = brute_force(real, synth, nearest_k=1, threshold=2e-20)
    assert (expected["copy_ratio"] == 0).all()
    both_paths(real, synth, expected, nearest_k=1, mode_collapse_threshold=2e-20)


@pytest.mark.parametrize("real_dtype", [np.float32, np.float64])
def test_real_and_synthetic_of_different_float_dtypes_far_from_the_origin(real_dtype):
    """float32 blocks were centred on float32(c), others on c: a float32 x float64 pair was
    shifted by c - float32(c), which no bound counted (fidelity 0.75 for 0.67)."""
    rng = np.random.default_rng(71)
    real = (1e4 + 0.01 * rng.normal(size=(24, 2))).astype(real_dtype)
    synth = real[:18].astype(np.float64) + 0.003 * rng.normal(size=(18, 2))
    other = np.float64 if real_dtype == np.float32 else np.float32
    synth = synth.astype(other)
    both_paths(real, synth, brute_force(real, synth, nearest_k=2), nearest_k=2)


@pytest.mark.parametrize("offset", [1e6, 1e9])
def test_feature_std_of_features_far_from_the_origin(offset):
    """Dask's one-pass std cancelled: 6e-9 off NumPy at 1e9, enough to flip the copy margin
    at std = threshold; the two-pass sum is as close as the local path's."""
    rng = np.random.default_rng(72)
    z = rng.normal(size=(400, 4))
    synth = (z - z.mean(0)) / z.std(0) * 0.05 + offset
    want = synth.std(axis=0).mean()
    got = float(feature_std(da.from_array(synth, chunks=(32, -1))).compute())
    assert abs(got - want) <= 1e-9 * want


def test_copy_margin_far_from_the_origin_on_the_graph():
    rng = np.random.default_rng(2)
    z = rng.normal(size=(40, 4))
    synth = (z - z.mean(0)) / z.std(0) * 0.05 + 1e9
    real = 1e9 + np.random.default_rng(100).normal(size=(40, 4)) * 0.1
    both_paths(real, synth, brute_force(real, synth))


@pytest.mark.parametrize("dtype", [np.float16, np.longdouble])
def test_float16_and_long_double_features(dtype):
    """float16 reached the compiled summary, which numba does not take (a bare
    NotImplementedError), long double a TypingError."""
    rng = np.random.default_rng(73)
    real, synth = rng.normal(size=(24, 4)).astype(dtype), rng.normal(size=(20, 4)).astype(dtype)
    synth[:3] = real[:3]
    both_paths(real, synth, brute_force(real, synth))


def test_pandas_dataframes_are_features():
    """A DataFrame (features read from CSV or Parquet) has no ``.dtype``: AttributeError."""
    rng = np.random.default_rng(74)
    real, synth = rng.normal(size=(24, 4)), rng.normal(size=(20, 4))
    frames = pd.DataFrame(real), pd.DataFrame(synth)
    assert_matches(evaluate_features(*frames, compute_fid=False), brute_force(real, synth))


@pytest.mark.parametrize("metric", ["euclidean", "hamming"])
def test_big_endian_features(metric):
    """Features saved on or for a big-endian machine (``>i8``, ``>f4``): the compiled Hamming
    pass took no such codes (numba TypingError); now the same answer as in native order."""
    rng = np.random.default_rng(75)
    if metric == "hamming":
        real = rng.integers(0, 9, size=(40, 6))
        synth = np.concatenate([real[:5], rng.integers(0, 9, size=(20, 6))])
        swapped = ">i8"
    else:
        real, synth = rng.normal(size=(40, 6)), rng.normal(size=(20, 6))
        swapped = ">f8"
    expected = brute_force(real, synth, metric=metric)
    both_paths(real.astype(swapped), synth.astype(swapped), expected, metric=metric)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_hamming_codes_beyond_int32(backend):
    """The torch path compared codes cast to int32: codes a multiple of 2^32 apart were
    equal (every synthetic image a copy)."""
    pytest.importorskip("torch")
    rng = np.random.default_rng(75)
    real = rng.integers(0, 4, size=(24, 12)).astype(np.int64) * 2**32
    synth = rng.integers(0, 4, size=(20, 12)).astype(np.int64) * 2**32 + 2**32 * (
        rng.random((20, 12)) < 0.3
    )
    expected = brute_force(real, synth, metric="hamming")  # codes below 2^53: float64 holds them
    both_paths(real, synth, expected, metric="hamming", backend=backend)


def test_hamming_codes_mixing_uint64_and_signed_are_refused():
    """-1 (int64) and 2^64 - 1 (uint64) packed alike: the pair counted as equal."""
    real = np.array([[-1, 5], [0, 5], [3, 4]], np.int64)
    synth = np.array([[2**64 - 1, 5], [0, 5]], np.uint64)
    with pytest.raises(SettingsError, match="real int64 and synthetic uint64 mix uint64"):
        evaluate_features(real, synth, metric="hamming", nearest_k=1)
    hamming.validate_pair(real.astype(np.uint64), synth)  # one dtype: fine
