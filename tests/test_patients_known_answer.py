"""Patient mode's known answer (issue 12): every real patient has two near-identical scans.

A generator that reproduces some patients, with a little more noise than separates a patient's
two scans, is invisible to the image-level test (each scan's radius_1 is the distance to its
twin) and caught by the patient-level one. Built from scikit-learn's bundled digits (8 x 8),
pixel features in [0, 1].
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import cdist
from sklearn.datasets import load_digits

from medsyn_dask import evaluate_features

SCAN_NOISE, COPY_NOISE = 0.02, 0.04


@pytest.fixture(scope="module")
def digits():
    images, labels = load_digits(return_X_y=True)
    return images / 16.0, labels


def _scans(rng, base: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two noisy scans of each patient (a digit image) and their patient labels."""
    scans = [base + SCAN_NOISE * rng.normal(size=base.shape) for _ in range(2)]
    patients = np.tile([f"patient-{i:04d}" for i in range(len(base))], 2)
    return np.concatenate(scans).astype(np.float32), patients


def test_copies_of_patients_are_caught_in_patient_mode(digits):
    images, _ = digits
    rng = np.random.default_rng(0)
    chosen = rng.permutation(len(images))
    base, unseen = images[chosen[:600]], images[chosen[600:800]]
    real, patients = _scans(rng, base)
    copier = (base[:200] + COPY_NOISE * rng.normal(size=(200, 64))).astype(np.float32)
    result = evaluate_features(real, copier, patients=patients, block_size=256)
    assert result.privacy >= 0.95  # the image-level test misses (nearly) all of them
    table = result.patients.per_patient.set_index("patient")
    copied = table.loc[[f"patient-{i:04d}" for i in range(200)]]
    assert (copied["copies"] > 0).all()  # every reproduced patient is found
    assert (copied["copy_ratio"] < 1).all()
    assert result.patients.patient_copy_share == 1.0
    assert result.patients.patient_privacy <= 1 - 200 / 600

    # Unseen patients of the same population are flagged only at the base rate of pixel
    # features (a fresh digit is often closer to some scan than that scan's nearest other
    # patient): far below the copier, which is what the held-out baseline measures.
    others = (unseen + SCAN_NOISE * rng.normal(size=unseen.shape)).astype(np.float32)
    other = evaluate_features(real, others, patients=patients, block_size=256)
    assert other.patients.patient_copy_share < 0.75


def test_other_patients_are_not_flagged(digits):
    """Patients farther from every real scan than any real scan is from another patient's
    (sevens against real zeros and ones) are no copies of anyone."""
    images, labels = digits
    rng = np.random.default_rng(1)
    real_pool = rng.permutation(np.flatnonzero(labels <= 1))[:300]
    other_pool = rng.permutation(np.flatnonzero(labels == 7))[:150]
    real, patients = _scans(rng, images[real_pool])
    others = (images[other_pool] + SCAN_NOISE * rng.normal(size=(150, 64))).astype(np.float32)
    result = evaluate_features(real, others, patients=patients, block_size=256)
    # The construction holds: every synthetic image is beyond every patient radius.
    assert cdist(real, others).min() > result.patients.patient_radius_1.max()
    assert result.patients.patients_copied == 0
    assert result.patients.patient_privacy == 1.0
    assert (result.patients.per_patient["copy_ratio"] >= 1).all()
