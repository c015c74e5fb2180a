"""Distance metrics by name. Each module supplies:

- ``validate(name, array)``: ValueError unless the features suit the metric;
- ``block_bounds(x, y, center, backend=...)``: the :class:`ScoreBlock` of a block of pairs;
- ``exact_distances(x, y, rows, cols)``: float64 distances of chosen pairs, as scipy's ``cdist``.
"""

from __future__ import annotations

from types import ModuleType

from . import euclidean, hamming

#: Euclidean for continuous features, Hamming (fraction of differing positions) for codes.
METRICS: dict[str, ModuleType] = {"euclidean": euclidean, "hamming": hamming}


def get_metric(name: str) -> ModuleType:
    """The metric module registered under ``name``; ValueError naming the choices otherwise."""
    try:
        return METRICS[name]
    except KeyError:
        raise ValueError(f"metric must be one of {sorted(METRICS)}, got {name!r}") from None
