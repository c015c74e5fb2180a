"""Block-wise neighbourhoods: exact k-th-neighbour radii of the real set and the real x synthetic
comparison, never holding an N x N or N x M matrix.

The metrics are a registry keyed by name; each module supplies ``validate(name, array)`` and
``block_bounds(x, y, center, backend=...)`` returning :class:`PairBounds`.
"""

from types import ModuleType

from . import euclidean, hamming
from .bounds import PairBounds
from .graph import compare_graph, radii_graph
from .reductions import RealPartial, SyntheticPartial

#: Distance metrics by name: Euclidean for continuous features, Hamming for discrete codes.
METRICS: dict[str, ModuleType] = {"euclidean": euclidean, "hamming": hamming}


def get_metric(name: str) -> ModuleType:
    """The metric module registered under ``name``; ValueError naming the choices otherwise."""
    try:
        return METRICS[name]
    except KeyError:
        raise ValueError(f"metric must be one of {sorted(METRICS)}, got {name!r}") from None


__all__ = [
    "METRICS",
    "PairBounds",
    "RealPartial",
    "SyntheticPartial",
    "compare_graph",
    "get_metric",
    "radii_graph",
]
