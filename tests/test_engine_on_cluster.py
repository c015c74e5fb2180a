"""The engine on a real two-worker LocalCluster: same numbers, recognisable task names."""

from __future__ import annotations

import numpy as np
import scenarios
from brute_force import assert_matches, brute_force

from medsyn_dask import evaluate_features, real_neighbourhood


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
