"""The float64 brute force of METHOD.md, from full scipy ``cdist`` matrices: the tests' oracle."""

from __future__ import annotations

import numpy as np
from scipy.spatial.distance import cdist


def brute_force(real, synthetic, *, metric="euclidean", nearest_k=5, threshold=0.05) -> dict:
    """Every number of the neighbourhood method, computed the obvious way (small inputs only)."""
    real64, synth64 = np.asarray(real, np.float64), np.asarray(synthetic, np.float64)
    rr = cdist(real64, real64, metric)
    smallest = np.sort(rr, axis=1)
    radius_k, radius_1 = smallest[:, nearest_k], smallest[:, 1]
    std = float(synth64.std(axis=0).mean())
    margin = 0.0 if std > threshold else threshold
    rs = cdist(real64, synth64, metric)
    inside = rs < radius_k[:, None]
    copies = rs < (radius_1 + margin)[:, None]
    copy_threshold = radius_1 + margin
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(copy_threshold[:, None] > 0, rs / copy_threshold[:, None], np.inf)
    is_real, is_copy = inside.any(axis=0), copies.any(axis=0)
    sets = np.where(is_copy, "copy", np.where(is_real, "real", "non-real"))
    return {
        "radius_k": radius_k,
        "radius_1": radius_1,
        "std": std,
        "margin": margin,
        "is_real": is_real,
        "is_copy": is_copy,
        "set": sets,
        "nearest_real": rs.argmin(axis=0),
        "distance": rs.min(axis=0),
        "copy_ratio": ratio.min(axis=0),
        "copies": copies.sum(axis=1),
        "in_radius": inside.sum(axis=1),
        "fidelity": float(is_real.mean()),
        "privacy": 1.0 - float(is_copy.mean()),
        "precision_privacy": float((is_real & ~is_copy).mean()),
    }


def assert_matches(result, expected: dict) -> None:
    """Assert an EvaluationResult equals the brute force exactly (distances to the last bit)."""
    ps, pr = result.per_synthetic, result.per_real
    np.testing.assert_array_equal(result.radius_k, expected["radius_k"])
    np.testing.assert_array_equal(result.radius_1, expected["radius_1"])
    np.testing.assert_array_equal(ps["set"].to_numpy(), expected["set"])
    np.testing.assert_array_equal(ps["nearest_real"].to_numpy(), expected["nearest_real"])
    np.testing.assert_array_equal(ps["distance"].to_numpy(), expected["distance"])
    np.testing.assert_array_equal(ps["copy_ratio"].to_numpy(), expected["copy_ratio"])
    np.testing.assert_array_equal(ps["privacy_score"].to_numpy(), (~expected["is_copy"]) * 1)
    np.testing.assert_array_equal(pr["copies"].to_numpy(), expected["copies"])
    np.testing.assert_array_equal(pr["in_radius"].to_numpy(), expected["in_radius"])
    assert result.fidelity == expected["fidelity"]
    assert result.privacy == expected["privacy"]
    assert result.precision_privacy == expected["precision_privacy"]
    assert result.copy_margin == expected["margin"]
    np.testing.assert_allclose(result.std, expected["std"], rtol=1e-10)


def brute_force_patients(real, synthetic, patients, *, metric="euclidean", threshold=0.05) -> dict:
    """Patient mode (METHOD.md) the obvious way: full matrices, same-patient pairs masked."""
    real64, synth64 = np.asarray(real, np.float64), np.asarray(synthetic, np.float64)
    names, codes = np.unique(np.asarray(patients).astype(str), return_inverse=True)
    rr = cdist(real64, real64, metric)
    rr[codes[:, None] == codes[None, :]] = np.inf
    patient_radius_1 = rr.min(axis=1)
    std = float(synth64.std(axis=0).mean())
    margin = 0.0 if std > threshold else threshold
    rs = cdist(real64, synth64, metric)
    limit = patient_radius_1 + margin
    copies = rs < limit[:, None]  # (N, M): real image i's patient is copied by j
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(limit[:, None] > 0, rs / limit[:, None], np.inf)
    per_patient = []
    for p in range(len(names)):
        mine = codes == p
        d = rs[mine]
        best = d.min()
        per_patient.append(
            {
                "patient": names[p],
                "images": int(mine.sum()),
                "copies": int(copies[mine].any(axis=0).sum()),
                "nearest_synthetic": int(np.flatnonzero((d == best).any(axis=0))[0]),
                "distance": best,
                "copy_ratio": ratio[mine].min(),
            }
        )
    copied = sum(row["copies"] > 0 for row in per_patient)
    is_copy = copies.any(axis=0)
    return {
        "patient_radius_1": patient_radius_1,
        "is_patient_copy": is_copy,
        "per_patient": per_patient,
        "patients_copied": copied,
        "patient_privacy": 1.0 - copied / len(names),
        "patient_copy_share": float(is_copy.mean()),
    }


def assert_patients_match(result, expected: dict) -> None:
    """Assert a PatientResult equals the patient brute force exactly."""
    np.testing.assert_array_equal(result.patient_radius_1, expected["patient_radius_1"])
    np.testing.assert_array_equal(result.is_patient_copy, expected["is_patient_copy"])
    table = result.per_patient
    for column in ("patient", "images", "copies", "nearest_synthetic", "distance", "copy_ratio"):
        np.testing.assert_array_equal(
            table[column].to_numpy(), [row[column] for row in expected["per_patient"]], column
        )
    assert result.patients_copied == expected["patients_copied"]
    assert result.patient_privacy == expected["patient_privacy"]
    assert result.patient_copy_share == expected["patient_copy_share"]
