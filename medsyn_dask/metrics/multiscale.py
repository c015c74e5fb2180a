"""MM-FID and MM-STD: one number from many (model, resolution) scores (METHOD.md, Scores).

Xing et al. (IEEE TMI 2023) compute FID (resp. feature STD) with several feature extractors
("models") at several input resolutions, arrange the values as a models x resolutions matrix,
L2-normalise each row so that every model weighs the same whatever its scale, and report the
mean of all normalised entries with their standard deviation. The reference did the row
normalisation with scikit-learn's ``normalize(norm="l2")``; :func:`l2_normalise_rows` is the
NumPy equivalent (a zero row stays zero, as there).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MultiScaleScore:
    """MM-FID or MM-STD and what it was computed from.

    ``values`` and ``normalised`` are float64 ``(len(models), len(resolutions))`` matrices: the
    raw scores and their row-wise L2-normalised form. ``mean`` is the MM score, ``std`` the
    population standard deviation (ddof=0, as ``np.std``) of the normalised entries.
    """

    models: tuple[Hashable, ...]
    resolutions: tuple[int, ...]
    values: np.ndarray
    normalised: np.ndarray
    mean: float
    std: float

    def to_dict(self) -> dict:
        """JSON-ready form: lists of plain Python numbers, models as strings."""
        return {
            "mean": self.mean,
            "std": self.std,
            "models": [str(m) for m in self.models],
            "resolutions": [int(r) for r in self.resolutions],
            "values": self.values.tolist(),
            "normalised": self.normalised.tolist(),
        }


def l2_normalise_rows(matrix: np.ndarray) -> np.ndarray:
    """Divide each row of a 2D float matrix by its Euclidean norm; zero rows stay zero.

    Same result as ``sklearn.preprocessing.normalize(matrix, norm="l2", axis=1)``.
    """
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2:
        raise ValueError(f"expected a 2D matrix, got shape {m.shape}")
    norms = np.sqrt(np.einsum("ij,ij->i", m, m))
    # scikit-learn leaves rows of norm below 10 eps unscaled (it divides them by 1): zero rows,
    # and rounding-level ones (every FID of a model about 1e-16: synthetic equal to real).
    norms[norms < 10 * np.finfo(np.float64).eps] = 1.0
    return m / norms[:, None]


def multiscale_score(
    scores: Mapping[tuple[Hashable, int], float],
    *,
    models: Sequence[Hashable] | None = None,
    resolutions: Sequence[int] | None = None,
) -> MultiScaleScore:
    """MM score (MM-FID from FIDs, MM-STD from feature STDs) of ``{(model, resolution): value}``.

    ``models`` and ``resolutions`` fix the matrix order and which cells are required; by default
    models are taken in order of first appearance and resolutions (pixels) in ascending order.
    Raises ``ValueError`` for an empty mapping, a missing cell, a non-finite value or a key
    that is not a ``(model, resolution)`` pair.
    """
    if not scores:
        raise ValueError("need at least one (model, resolution) score, got none")
    for key in scores:
        if not (isinstance(key, tuple) and len(key) == 2):
            raise ValueError(f"keys must be (model, resolution) pairs, got {key!r}")
    models = tuple(dict.fromkeys(m for m, _ in scores)) if models is None else tuple(models)
    if resolutions is None:
        resolutions = tuple(sorted({r for _, r in scores}))
    else:
        resolutions = tuple(resolutions)
    values = np.empty((len(models), len(resolutions)), dtype=np.float64)
    for i, model in enumerate(models):
        for j, resolution in enumerate(resolutions):
            values[i, j] = _cell(scores, model, resolution)
    extra = set(scores) - {(m, r) for m in models for r in resolutions}
    if extra:
        raise ValueError(
            f"scores outside the chosen models x resolutions: {sorted(extra, key=str)}"
        )
    normalised = l2_normalise_rows(values)
    return MultiScaleScore(
        models=models,
        resolutions=resolutions,
        values=values,
        normalised=normalised,
        mean=float(np.mean(normalised)),
        std=float(np.std(normalised)),
    )


def _cell(scores: Mapping[tuple[Hashable, int], float], model: Hashable, resolution: int) -> float:
    try:
        value = scores[(model, resolution)]
    except KeyError:
        raise ValueError(f"missing score for model {model!r} at resolution {resolution}") from None
    if value is None or isinstance(value, bool):
        raise ValueError(f"score for model {model!r} at resolution {resolution} is {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"score for model {model!r} at resolution {resolution} is {value}")
    return value
