"""The results of the neighbourhood method: reusable real radii, and one group's scores.

:class:`RealNeighbourhood` is what :func:`medsyn_dask.real_neighbourhood` returns (the real
set's radii, and optionally its FID statistics); :class:`EvaluationResult` is what
:func:`medsyn_dask.evaluate_features` returns. :func:`assemble` builds the latter from the
merged block results; everything here is plain NumPy and pandas.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .metrics import scores
from .metrics.fid_linalg import RealFID
from .metrics.patients import PatientResult
from .neighbours.reductions import RealPartial, SyntheticPartial


@dataclass(frozen=True)
class RealNeighbourhood:
    """The k-th-neighbour radii of a real set, reusable for several synthetic groups.

    Attributes:
        smallest: (N, k+1) float64, the k+1 smallest distances of each real image to all real
            images, self included, ascending.
        centre: (D,) float64 centre of the Euclidean fast path (the real mean), None for Hamming.
        metric, nearest_k: the settings the radii were computed with.
        fid_statistics: the real set's FID statistics (Gaussian fit and its decomposition,
            made once and reused by every group), when asked for; else None.
        patient_radius_1, patient_codes: (N,) float64 distance to the nearest real image of
            another patient, and (N,) int64 patient codes, in patient mode; else None.
    """

    smallest: np.ndarray
    centre: np.ndarray | None
    metric: str
    nearest_k: int
    fid_statistics: RealFID | None = None
    patient_radius_1: np.ndarray | None = None
    patient_codes: np.ndarray | None = None

    @property
    def radius_k(self) -> np.ndarray:
        """(N,) distance to the k-th nearest other real image."""
        return self.smallest[:, self.nearest_k]

    @property
    def radius_1(self) -> np.ndarray:
        """(N,) distance to the nearest other real image (0 for a duplicated image)."""
        return self.smallest[:, 1]


@dataclass
class EvaluationResult:
    """Scores of one synthetic set against a real set (METHOD.md, "Scores").

    ``per_synthetic`` has one row per synthetic image (in input order) with columns ``set``
    (copy / real / non-real), ``nearest_real`` (row index into the real set), ``distance`` (to
    that image), ``copy_ratio`` and ``privacy_score``. ``per_real`` has one row per real image
    with ``copies``, ``in_radius``, ``radius_k`` and ``radius_1``. ``patients`` holds the
    patient-level copy test in patient mode (``evaluate_features(patients=...)``), else None.
    """

    fidelity: float
    privacy: float
    precision_privacy: float
    std: float
    fid: float | None
    fid_reason: str | None
    copy_margin: float
    metric: str
    nearest_k: int
    radius_k: np.ndarray
    radius_1: np.ndarray
    per_synthetic: pd.DataFrame
    per_real: pd.DataFrame
    settings: dict[str, Any] = field(default_factory=dict)
    patients: PatientResult | None = None

    @property
    def set_counts(self) -> dict[str, int]:
        """Number of synthetic images in each set."""
        counts = self.per_synthetic["set"].value_counts()
        return {s: int(counts.get(s, 0)) for s in (scores.COPY, scores.REAL, scores.NON_REAL)}

    def to_dict(self) -> dict[str, Any]:
        """The scalar results and settings, JSON-serialisable (no per-image tables)."""
        return {
            "fidelity": self.fidelity,
            "privacy": self.privacy,
            "precision_privacy": self.precision_privacy,
            "std": self.std,
            "fid": self.fid,
            "fid_reason": self.fid_reason,
            "copy_margin": self.copy_margin,
            "mode_collapse": self.copy_margin > 0,
            "metric": self.metric,
            "nearest_k": self.nearest_k,
            "n_real": int(len(self.per_real)),
            "n_synthetic": int(len(self.per_synthetic)),
            "sets": self.set_counts,
            **(self.patients.to_dict() if self.patients is not None else {}),
            **self.settings,
        }


def combine_blocks(parts: list):
    """Concatenate per-block partial results (RealPartial or SyntheticPartial) in block order."""
    cls = type(parts[0])
    names = cls.__dataclass_fields__
    return cls(**{n: np.concatenate([getattr(p, n) for p in parts]) for n in names})


def assemble(
    neighbourhood: RealNeighbourhood,
    per_real: RealPartial,
    per_synth: SyntheticPartial,
    *,
    std: float,
    margin: float,
    fid: float | None,
    fid_reason: str | None,
    block_size: int,
) -> EvaluationResult:
    """One group's scores and tables from the merged block results."""
    is_real, is_copy = per_synth.is_real, per_synth.is_copy
    synthetic_table = pd.DataFrame(
        {
            "set": scores.assign_sets(is_real, is_copy),
            "nearest_real": per_synth.nearest_real,
            "distance": per_synth.nearest_distance,
            "copy_ratio": per_synth.copy_ratio,
            "privacy_score": scores.privacy_scores(is_copy),
        }
    )
    real_table = pd.DataFrame(
        {
            "copies": per_real.copies,
            "in_radius": per_real.in_radius,
            "radius_k": neighbourhood.radius_k,
            "radius_1": neighbourhood.radius_1,
        }
    )
    return EvaluationResult(
        fidelity=scores.fidelity(is_real),
        privacy=scores.privacy(is_copy),
        precision_privacy=scores.precision_privacy(is_real, is_copy),
        std=std,
        fid=fid,
        fid_reason=fid_reason,
        copy_margin=margin,
        metric=neighbourhood.metric,
        nearest_k=neighbourhood.nearest_k,
        radius_k=neighbourhood.radius_k,
        radius_1=neighbourhood.radius_1,
        per_synthetic=synthetic_table,
        per_real=real_table,
        settings={"block_size": block_size},
    )
