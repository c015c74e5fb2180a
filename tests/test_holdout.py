"""The held-out baseline (METHOD.md): the split, the z-test, and its known answers on digits."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.datasets import load_digits

from medsyn_dask import evaluate_features, real_neighbourhood
from medsyn_dask.errors import SettingsError
from medsyn_dask.metrics.baseline import (
    COPY_TEST,
    copy_test_p_value,
    holdout_split,
    versus_holdout,
)


def test_split_is_seeded_and_stratified():
    classes = np.repeat(["a", "b", "c"], [100, 50, 10])
    held = holdout_split(classes, 0.2, seed=3)
    assert [int(held[classes == c].sum()) for c in "abc"] == [20, 10, 2]
    np.testing.assert_array_equal(held, holdout_split(classes, 0.2, seed=3))
    assert not np.array_equal(held, holdout_split(classes, 0.2, seed=4))


def test_split_by_patient_keeps_each_patient_on_one_side():
    rng = np.random.default_rng(0)
    patients = rng.integers(0, 40, 200)
    classes = np.where(patients % 2, "x", "y")
    held = holdout_split(classes, 0.25, seed=1, patients=patients)
    for p in np.unique(patients):
        assert len(set(held[patients == p])) == 1
    assert len(np.unique(patients[held])) == 10  # a quarter of each class's 20 patients


def test_split_holding_nothing_is_an_error():
    with pytest.raises(SettingsError, match="holds out no image"):
        holdout_split(["a"] * 10, 0.01, seed=0)


def test_z_test_equals_its_formula():
    p1, p2 = 30 / 100, 10 / 80
    pooled = 40 / 180
    z = (p1 - p2) / np.sqrt(pooled * (1 - pooled) * (1 / 100 + 1 / 80))
    assert copy_test_p_value(30, 100, 10, 80) == pytest.approx(norm.sf(z), rel=1e-12)
    assert copy_test_p_value(0, 50, 0, 40) == 1.0
    assert copy_test_p_value(5, 100, 20, 100) > 0.99  # fewer copies than the holdout


@pytest.fixture(scope="module")
def digits_run():
    """Real digits split 80/20; a faithful generator (unseen digits) and a memoriser."""
    images, labels = load_digits(return_X_y=True)
    images = (images / 16.0).astype(np.float32)
    rng = np.random.default_rng(5)
    order = rng.permutation(len(images))
    pool, fresh = order[:1200], order[1200:1500]
    held = holdout_split(labels[pool], 0.2, seed=0)
    remaining, holdout = images[pool][~held], images[pool][held]
    reference = real_neighbourhood(remaining, block_size=256)
    memoriser = remaining[rng.choice(len(remaining), 300)] + 0.01 * rng.normal(size=(300, 64))
    score = {
        name: evaluate_features(remaining, s, reference=reference, block_size=256).to_dict()
        for name, s in [("holdout", holdout), ("faithful", images[fresh]), ("memo", memoriser)]
    }
    return score


def test_faithful_generator_is_within_noise_of_holdout(digits_run):
    diff = versus_holdout(digits_run["faithful"], digits_run["holdout"])
    assert 0.3 < digits_run["holdout"]["privacy"] < 0.9  # held-out reals are "copies" too
    assert abs(diff["privacy_vs_holdout"]) < 0.1
    assert abs(diff["fidelity_vs_holdout"]) < 0.1
    assert diff["copy_test_p_value"] > 0.01
    assert diff["copy_test"] == COPY_TEST


def test_memoriser_is_far_below_holdout_with_a_tiny_p_value(digits_run):
    diff = versus_holdout(digits_run["memo"], digits_run["holdout"])
    assert diff["privacy_vs_holdout"] < -0.3
    assert diff["copy_test_p_value"] < 1e-10


def test_split_by_patient_does_not_depend_on_the_labels_spelling():
    """DICOM labels are hashes salted anew by each run: patients were drawn in label order,
    so the same seed held out other patients every run. Now in order of their first image."""
    rng = np.random.default_rng(4)
    classes = np.repeat(["a", "b"], 30)
    patients = np.array([f"P{i // 3}" for i in range(60)], dtype=object)
    renamed = {p: f"{rng.integers(1 << 60):x}" for p in set(patients)}  # another salt
    held = holdout_split(classes, 0.3, seed=5, patients=patients)
    again = holdout_split(classes, 0.3, seed=5, patients=[renamed[p] for p in patients])
    np.testing.assert_array_equal(held, again)
    assert holdout_split(classes, 0.3, seed=5, patients=[1.0 * (i // 3) for i in range(60)]).any()


def test_a_split_no_fraction_can_make_says_so():
    with pytest.raises(SettingsError, match="each class has one patient, so no fraction"):
        holdout_split(["a", "a", "b"], 0.5, seed=0, patients=["P1", "P1", "P2"])
