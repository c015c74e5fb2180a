"""medsyn-dask: fidelity, variety and privacy of synthetic medical images, on Dask.

The public API is small; METHOD.md defines every number it returns.

- :func:`analyze`: the whole job, images in, scores, tables and mean images out.
- :func:`extract_features` / :func:`load_features`: image folders to a Zarr feature store, and back.
- :func:`evaluate_features`: scores and per-image tables of synthetic vs real features.
- :func:`real_neighbourhood`: the real radii alone, to reuse across synthetic groups.
- :func:`train_vqvae`: train the VQ-VAE-2 feature extractor on your own real images.
- :func:`feature_statistics`: FID and feature STD alone (for MM-FID / MM-STD);
  :func:`real_fid_statistics`: the real side of FID once, to reuse for every group.
"""

from importlib.metadata import PackageNotFoundError, version

from .lazy import lazy_attributes

try:
    __version__ = version("medsyn-dask")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

# Imported on first use: the command line starts without them, and distance-only workers
# never load torch.
_LAZY = {
    "EvaluationResult": "evaluate",
    "RealNeighbourhood": "evaluate",
    "evaluate_features": "evaluate",
    "feature_statistics": "evaluate",
    "real_neighbourhood": "evaluate",
    "real_fid_statistics": "evaluate",
    "AnalysisResult": "job",
    "AnalyzeSettings": "settings",
    "analyze": "job",
    "extract_features": "features",
    "train_vqvae": "features.vqvae.train",
    "load_features": "features",
}


__getattr__, __dir__ = lazy_attributes(__name__, globals(), _LAZY)


__all__ = [
    "AnalysisResult",
    "AnalyzeSettings",
    "EvaluationResult",
    "RealNeighbourhood",
    "__version__",
    "analyze",
    "evaluate_features",
    "extract_features",
    "feature_statistics",
    "load_features",
    "real_fid_statistics",
    "real_neighbourhood",
    "train_vqvae",
]
