"""The engine on a real two-worker LocalCluster: same numbers, recognisable task names."""

from __future__ import annotations

import time

import numpy as np
import pytest
import scenarios
from brute_force import assert_matches, brute_force

from medsyn_dask import evaluate_features, feature_statistics, real_neighbourhood
from medsyn_dask.evaluate_inputs import scattered_inputs


def _task_prefixes(client) -> set[str]:
    return set(client.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.task_prefixes)))


def test_euclidean_on_local_cluster(extract_client):
    real, synth = scenarios.near_duplicated(np.random.default_rng(30), n=260, m=210)
    with extract_client.as_current():
        result = evaluate_features(real, synth, block_size=64, progress=True)
    assert_matches(result, brute_force(real, synth))
    prefixes = _task_prefixes(extract_client)
    for name in (
        "real-radii-candidates",
        "real-radii-select",
        "real-radii-exact",
        "real-radii-merge",
        "compare-real-synthetic",
        "combine-per-real",
        "select-per-synthetic",
        "exact-per-synthetic",
        "combine-per-synthetic",
    ):
        assert name in prefixes


def test_hamming_with_reused_reference_on_local_cluster(extract_client):
    real, synth = scenarios.codes_background(np.random.default_rng(31))
    with extract_client.as_current():
        reference = real_neighbourhood(real, metric="hamming", block_size=50)
        result = evaluate_features(
            real, synth, metric="hamming", block_size=50, reference=reference
        )
    assert_matches(result, brute_force(real, synth, metric="hamming"))


def test_fid_on_local_cluster_with_progress(extract_client):
    """FID's lazy part joins the main computation on the cluster (progress bar path too)."""
    real, synth = scenarios.clustered(np.random.default_rng(32), n=200, m=150, d=12)
    local = evaluate_features(real, synth, block_size=64)
    with extract_client.as_current():
        reference = real_neighbourhood(real, block_size=64, compute_fid=True, progress=True)
        clustered = evaluate_features(
            real, synth, block_size=64, reference=reference, progress=True
        )
        statistics = feature_statistics(real, synth, block_size=64, progress=True)
    assert clustered.fid == pytest.approx(local.fid, rel=1e-9)
    assert statistics["fid"] == pytest.approx(local.fid, rel=1e-9)
    assert_matches(clustered, brute_force(real, synth))


def test_scattered_inputs_are_held_then_released(extract_client):
    arrays = {"real": np.arange(60.0).reshape(20, 3), "synthetic": np.ones((7, 3))}

    def in_memory() -> set:
        return set(extract_client.who_has())

    before = in_memory()
    with extract_client.as_current(), scattered_inputs(arrays, 8) as (real, synthetic):
        held = in_memory() - before
        assert len(held) == 3 + 1  # 20 rows in blocks of 8, 7 rows in one block
        np.testing.assert_array_equal(real.compute(), arrays["real"])
    deadline = time.monotonic() + 10
    while in_memory() & held and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not in_memory() & held
