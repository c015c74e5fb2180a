"""Feature extractors (a registry of short names), the Zarr feature store and Dask extraction.

Extractors (one module each): ``pixels`` / ``pixels:N`` (block-averaged preprocessed
intensities, 2D and 3D, the zero-download default), ``torchscript:PATH`` (any exported model,
2D or 3D), ``vqvae-top`` / ``vqvae-bottom`` (VQ-VAE-2 code maps, reference checkpoints by
name), ``timm:NAME`` / ``torchvision:NAME`` (optional, local ``--weights`` only). 3D volumes
given to a 2D-only extractor use the 2.5D mode (three central slices, see
:func:`~medsyn_dask.features.extract.features_of`).

``extract_features`` writes a store once; ``load_features`` reads it back for any analysis.
"""

from .base import Extractor, available_extractors, create_extractor, register
from .extract import ExtractionResult, extract_features
from .store import LoadedFeatures, list_feature_sets, load_features

__all__ = [
    "ExtractionResult",
    "Extractor",
    "LoadedFeatures",
    "available_extractors",
    "create_extractor",
    "extract_features",
    "list_feature_sets",
    "load_features",
    "register",
]
