"""Patient mode (METHOD.md, "Patient mode") against a float64 brute force masking same-patient
pairs: every scenario, block sizes, ties, duplicates inside a patient, single-image patients."""

from __future__ import annotations

import numpy as np
import pytest
import scenarios
from brute_force import assert_matches, assert_patients_match, brute_force, brute_force_patients

from medsyn_dask import evaluate_features, real_neighbourhood
from medsyn_dask.errors import SettingsError


def _patients(rng, n: int, n_patients: int) -> np.ndarray:
    """Labels with several images per patient, some patients with a single image."""
    labels = rng.integers(0, n_patients, n)
    labels[:3] = n_patients + np.arange(3)  # three single-image patients
    return np.array([f"P{v:03d}" for v in labels], dtype=object)


@pytest.mark.parametrize("block_size", [32, 50, 1000])
@pytest.mark.parametrize("name", sorted(scenarios.EUCLIDEAN))
def test_euclidean_patients_equal_brute_force(name, block_size):
    rng = np.random.default_rng(20)
    real, synth = scenarios.EUCLIDEAN[name](rng)
    patients = _patients(rng, len(real), 40)
    result = evaluate_features(
        real, synth, block_size=block_size, backend="numpy", patients=patients
    )
    assert_matches(result, brute_force(real, synth))  # image level unchanged
    assert_patients_match(result.patients, brute_force_patients(real, synth, patients))


@pytest.mark.parametrize("block_size", [30, 1000])
@pytest.mark.parametrize("name", sorted(scenarios.HAMMING))
def test_hamming_patients_equal_brute_force(name, block_size):
    rng = np.random.default_rng(21)
    real, synth = scenarios.HAMMING[name](rng)
    patients = _patients(rng, len(real), 30)
    result = evaluate_features(
        real, synth, metric="hamming", block_size=block_size, patients=patients
    )
    expected = brute_force_patients(real, synth, patients, metric="hamming")
    assert_patients_match(result.patients, expected)


def test_duplicates_inside_one_patient_and_ties():
    """A patient's duplicated scans do not shrink its patient radius (the image radius is 0);
    lattice features tie exactly at the patient radii."""
    rng = np.random.default_rng(22)
    real = rng.integers(0, 3, size=(90, 5)).astype(np.float32)
    patients = np.repeat(np.arange(30), 3)
    real[1] = real[2] = real[0]  # patient 0: three identical scans
    synth = np.concatenate([real[:1], rng.integers(0, 3, size=(60, 5)).astype(np.float32)])
    result = evaluate_features(real, synth, block_size=16, patients=patients)
    expected = brute_force_patients(real, synth, patients)
    assert_patients_match(result.patients, expected)
    assert result.radius_1[0] == 0.0
    assert result.patients.patient_radius_1[0] > 0.0
    assert result.patients.per_patient["copies"].iloc[0] >= 1  # the exact copy of patient 0
    assert result.per_synthetic["set"].iloc[0] == "real"  # image level cannot see it


def test_reference_carries_patient_radii():
    rng = np.random.default_rng(23)
    real, synth = scenarios.clustered(rng)
    patients = _patients(rng, len(real), 25)
    reference = real_neighbourhood(real, block_size=40, patients=patients)
    reused = evaluate_features(real, synth, block_size=40, reference=reference, patients=patients)
    fresh = evaluate_features(real, synth, block_size=40, patients=patients)
    np.testing.assert_array_equal(reference.patient_radius_1, fresh.patients.patient_radius_1)
    assert reused.to_dict() == fresh.to_dict()
    with pytest.raises(SettingsError, match="patients differ"):
        evaluate_features(real, synth, reference=reference, patients=np.roll(patients, 1))


@pytest.mark.parametrize(
    "patients, message",
    [
        (["A"] * 20, "at least two patients"),
        (["A"] * 19, "one label per real image"),
        (["A"] * 10 + [None] + ["B"] * 9, "image 10 has no patient"),
    ],
)
def test_bad_patients_are_a_clear_error(patients, message):
    real = np.random.default_rng(24).normal(size=(20, 4))
    with pytest.raises(SettingsError, match=message):
        evaluate_features(real, real[:5], nearest_k=2, patients=patients)


def test_to_dict_has_patient_scores():
    rng = np.random.default_rng(25)
    real, synth = scenarios.random(rng, n=60, m=40, d=8)
    out = evaluate_features(real, synth, patients=np.arange(60) // 2).to_dict()
    assert {"patients", "patients_copied", "patient_privacy", "patient_copy_share"} <= set(out)
    assert out["patients"] == 30


def test_patient_labels_read_as_a_patients_csv_reads_them():
    """pd.NA raised a bare TypeError, blank text was a patient, 1 and 1.0 were two patients;
    a message naming the only patient printed a patient identifier."""
    import pandas as pd

    from medsyn_dask.metrics.patients import encode_patients

    codes, names = encode_patients([1, 1.0, " 2 ", 2, np.int64(3)], 5)
    assert list(names) == ["1", "2", "3"] and codes.tolist() == [0, 0, 1, 1, 2]
    for missing in (pd.NA, "   ", None, float("nan")):
        with pytest.raises(SettingsError, match="real image 1 has no patient label"):
            encode_patients(["P1", missing, "P2"], 3)
    with pytest.raises(SettingsError, match="at least two patients, got 1$"):
        encode_patients(["SECRET-ID"] * 3, 3)
