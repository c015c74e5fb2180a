"""The job's patient labels and held-out split, between extraction and scoring.

:func:`split_reference` reads the patient of every real image (``patients`` setting) and, with
``holdout_fraction``, splits the real features of every (model, resolution) by path into the
remaining real set (``"real"``) and the held-out one (``"holdout"``, first pair only). The
feature store keeps all real images: rows are selected, nothing is re-extracted.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .features.store import LoadedFeatures
from .metrics.baseline import HOLDOUT, holdout_split
from .progress import stage
from .settings import REAL, AnalyzeSettings
from .sources.patients import real_patients


def take_rows(loaded: LoadedFeatures, keep: np.ndarray) -> LoadedFeatures:
    """The rows ``keep`` (int indices or a bool mask) of a feature set, paths and classes alike."""
    index = np.flatnonzero(keep) if np.asarray(keep).dtype == bool else np.asarray(keep)
    return loaded._replace(
        features=loaded.features[index], paths=loaded.paths[index], classes=loaded.classes[index]
    )


def split_reference(
    settings: AnalyzeSettings,
    features: dict[tuple[str, int], dict[str, LoadedFeatures]],
    *,
    progress: bool = True,
) -> tuple[dict[tuple[str, int], dict[str, LoadedFeatures]], np.ndarray | None]:
    """``features`` with the real set split when ``holdout_fraction`` is set, and the patient
    labels of the (remaining) real images of the first pair (None outside patient mode)."""
    first = next(iter(features.values()))[REAL]
    patients = None
    if settings.patients is not None:
        source = "DICOM PatientID (salted hash)" if settings.patients == "dicom" else "CSV"
        stage(f"patients: reading the patient of each real image ({source})", enabled=progress)
        # The root the loaded paths were joined to, as the feature set records it.
        root = first.provenance.root
        patients = real_patients(
            settings.patients, first.paths, root, dict(settings.storage_options)
        )
    if settings.holdout_fraction is None:
        return features, patients
    held = holdout_split(first.classes, settings.holdout_fraction, settings.holdout_seed, patients)
    held_paths = set(first.paths[held].tolist())
    stage(
        f"holdout: {int(held.sum())} of {len(held)} real images held out "
        f"(fraction {settings.holdout_fraction}, seed {settings.holdout_seed})",
        enabled=progress,
    )
    out = {}
    for i, (pair, sets) in enumerate(features.items()):
        on_hold = np.fromiter((p in held_paths for p in sets[REAL].paths), bool)
        out[pair] = {**sets, REAL: take_rows(sets[REAL], ~on_hold)}
        if i == 0:
            out[pair][HOLDOUT] = take_rows(sets[REAL], on_hold)
    return out, None if patients is None else patients[~held]


def scored_groups(settings: AnalyzeSettings, first: dict[str, Any]) -> dict[str, Any]:
    """The sets scored against the real set: every group, then the holdout row when there is one."""
    groups = {g: first[g] for g in settings.synthetic}
    if HOLDOUT in first:
        groups[HOLDOUT] = first[HOLDOUT]
    return groups
