"""Patient mode of the entry points (METHOD.md, "Patient mode"): the patient radii and one
group's patient copy test, as Dask passes beside the image-level ones.

:func:`patient_radius` and :func:`patient_scores` are called by :mod:`medsyn_dask.evaluate`
(``patients=``) on its row-blocked inputs, with its ``compute`` function (the progress bar).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dask.array as da
import numpy as np

from .errors import SettingsError
from .metrics.patients import (
    PatientResult,
    assemble_patients,
    encode_patients,
    patient_thresholds,
)
from .neighbours.patient_graph import patient_compare_graph, patient_radii_graph

Compute = Callable[..., tuple]


def patient_radius(
    real: da.Array, codes: np.ndarray, metric: str, centre: Any, backend: str, compute: Compute
) -> np.ndarray:
    """(N,) float64 ``patient_radius_1``: distance to the nearest real image of another patient."""
    blocks = compute(patient_radii_graph(real, codes, metric, centre, backend))[0]
    return np.concatenate(blocks)[:, 0]


def patient_scores(
    real: da.Array,
    synthetic: da.Array,
    patients: Any,
    *,
    reference: Any,
    margin: float,
    metric: str,
    centre: Any,
    backend: str,
    compute: Compute,
) -> PatientResult:
    """One group's patient copy test against ``real``; the patient radii from ``reference``
    (a RealNeighbourhood) when it carries them for the same patients, else computed here."""
    codes, names = encode_patients(patients, real.shape[0])
    radius = getattr(reference, "patient_radius_1", None)
    if radius is not None and not np.array_equal(reference.patient_codes, codes):
        raise SettingsError(
            "patients differ from those the reference's patient radii were computed with"
        )
    if radius is None:
        radius = patient_radius(real, codes, metric, centre, backend, compute)
    threshold = patient_thresholds(radius, margin)
    per_real, per_synth = compute(
        *patient_compare_graph(real, synthetic, threshold, codes, metric, centre, backend)
    )
    nearest = tuple(np.concatenate(v) for v in zip(*per_real, strict=True))
    pairs = tuple(np.concatenate(v) for v in zip(*per_synth, strict=True))
    return assemble_patients(codes, names, radius, margin, nearest, pairs, synthetic.shape[0])


def with_patient_radii(
    reference: Any, real: Any, patients: Any, *, block_size: int, backend: str = "auto"
) -> Any:
    """``reference`` (a RealNeighbourhood of ``real``) with the patient radii of ``patients``
    added, for a reference made without them (e.g. read back from a cache)."""
    import dataclasses

    import dask

    from .evaluate_inputs import scattered_inputs

    with scattered_inputs({"real": real}, block_size) as (real,):
        codes = encode_patients(patients, real.shape[0])[0]
        radius = patient_radius(
            real, codes, reference.metric, reference.centre, backend, dask.compute
        )
    return dataclasses.replace(reference, patient_radius_1=radius, patient_codes=codes)
