"""medsyn-dask: fidelity, variety and privacy of synthetic medical images, on Dask.

The public API is small; METHOD.md defines every number it returns.

- :func:`evaluate_features`: scores and per-image tables of synthetic vs real features.
- :func:`real_neighbourhood`: the real radii alone, to reuse across synthetic groups.
"""

from importlib.metadata import PackageNotFoundError, version

from .evaluate import EvaluationResult, RealNeighbourhood, evaluate_features, real_neighbourhood

try:
    __version__ = version("medsyn-dask")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = [
    "EvaluationResult",
    "RealNeighbourhood",
    "__version__",
    "evaluate_features",
    "real_neighbourhood",
]
