"""Patient mode: patient codes of the real set, and one group's patient-level scores.

METHOD.md, "Patient mode": ``patient_radius_1[i]`` is the distance of real image i to the
nearest real image of another patient; synthetic j is a patient copy of patient P when
``d(R[i], S[j]) < patient_radius_1[i] + margin`` for some image i of P. The block passes
(:mod:`medsyn_dask.neighbours.patient_graph`) find the copy pairs and each real image's nearest
synthetic image; :func:`assemble_patients` turns them into the scores and the per-patient table,
in plain NumPy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..errors import SettingsError


def encode_patients(patients: Any, n_real: int) -> tuple[np.ndarray, np.ndarray]:
    """(N,) int64 codes into the sorted unique patient labels, and those labels.

    ``patients`` holds one label per real image, row-aligned with the real features (str or
    int). SettingsError for a length mismatch, a missing label or fewer than two patients.
    """
    labels = np.asarray(patients, dtype=object)
    if labels.ndim != 1 or len(labels) != n_real:
        raise SettingsError(
            f"patients: one label per real image is needed ({n_real}), got shape {labels.shape}"
        )
    text = [patient_label(p) for p in labels]
    missing = [i for i, t in enumerate(text) if t is None]
    if missing:
        raise SettingsError(f"patients: real image {missing[0]} has no patient label")
    names, codes = np.unique(np.asarray(text, dtype=str), return_inverse=True)
    if len(names) < 2:  # no label in the message: it identifies a patient
        raise SettingsError(f"patients: patient mode needs at least two patients, got {len(names)}")
    return codes.astype(np.int64), names.astype(object)


def patient_label(label: Any) -> str | None:
    """A patient label as text, as a patients CSV gives it: stripped, an integral float as
    its integer (1.0 and 1 are one patient); None where there is none (None, NaN, pd.NA,
    empty or blank text)."""
    if (
        label is None
        or label is pd.NA
        or (isinstance(label, float | np.floating) and label != label)
    ):
        return None
    if isinstance(label, float | np.floating) and float(label).is_integer():
        label = int(label)
    text = str(label).strip()
    return text or None


@dataclass
class PatientResult:
    """One group's patient-level copy test (METHOD.md, "Patient mode").

    ``per_patient`` has one row per real patient (sorted by label): ``patient``, ``images``
    (real images of the patient), ``copies`` (synthetic images that are patient copies of it),
    ``nearest_synthetic`` (index of the synthetic image nearest to any of its images, lowest
    among ties), ``distance`` (that distance) and ``copy_ratio`` (smallest
    ``d(R[i], S[j]) / (patient_radius_1[i] + margin)`` over its images i; below 1 means copied).
    """

    n_patients: int
    patients_copied: int
    patient_privacy: float
    patient_copy_share: float
    is_patient_copy: np.ndarray  # (M,) bool
    patient_radius_1: np.ndarray  # (N,) float64
    per_patient: pd.DataFrame

    def to_dict(self) -> dict[str, Any]:
        """The scalar scores, JSON-ready."""
        return {
            "patients": self.n_patients,
            "patients_copied": self.patients_copied,
            "patient_privacy": self.patient_privacy,
            "patient_copy_share": self.patient_copy_share,
            "patient_copies": int(self.is_patient_copy.sum()),
        }


def patient_thresholds(patient_radius_1: np.ndarray, margin: float) -> np.ndarray:
    """(N,) float64 patient copy thresholds: patient_radius_1 + margin."""
    return np.asarray(patient_radius_1, dtype=np.float64) + margin


def assemble_patients(
    codes: np.ndarray,
    names: np.ndarray,
    patient_radius_1: np.ndarray,
    margin: float,
    nearest: tuple[np.ndarray, np.ndarray],
    copy_pairs: tuple[np.ndarray, np.ndarray],
    n_synthetic: int,
) -> PatientResult:
    """Scores and per-patient table from the block results.

    Args:
        codes: (N,) patient code of each real image; ``names`` (P,) the labels of the codes.
        patient_radius_1: (N,) float64.
        margin: the group's copy margin (METHOD.md, "Mode collapse").
        nearest: per real image, the distance to its nearest synthetic image and its index.
        copy_pairs: (patient code, synthetic index) of every patient copy, each pair once.
        n_synthetic: M.
    """
    n_patients = len(names)
    copy_patient, copy_synth = (np.asarray(a, dtype=np.int64) for a in copy_pairs)
    copies = np.bincount(copy_patient, minlength=n_patients)
    is_copy = np.zeros(n_synthetic, dtype=bool)
    is_copy[copy_synth] = True
    distance, synth_index = (np.asarray(a) for a in nearest)
    threshold = patient_thresholds(patient_radius_1, margin)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(threshold > 0, distance / threshold, np.inf)
    smallest_ratio = np.full(n_patients, np.inf)
    np.minimum.at(smallest_ratio, codes, ratio)
    # The patient's nearest synthetic image: smallest distance, then lowest synthetic index.
    order = np.lexsort((synth_index, distance, codes))
    first = order[np.r_[True, codes[order][1:] != codes[order][:-1]]]
    copied = int(np.count_nonzero(copies))
    table = pd.DataFrame(
        {
            "patient": names,
            "images": np.bincount(codes, minlength=n_patients),
            "copies": copies,
            "nearest_synthetic": synth_index[first],
            "distance": distance[first],
            "copy_ratio": smallest_ratio,
        }
    )
    return PatientResult(
        n_patients=n_patients,
        patients_copied=copied,
        patient_privacy=1.0 - copied / n_patients,
        patient_copy_share=float(is_copy.mean()),
        is_patient_copy=is_copy,
        patient_radius_1=np.asarray(patient_radius_1, dtype=np.float64),
        per_patient=table,
    )
