"""Feature extractors (a registry of short names), the typed Zarr feature set, Dask extraction.

- :mod:`.extractor`: the :class:`Extractor` interface (incl. the 2.5D mode for volumes);
- :mod:`.registry`: short names -> extractors, :func:`register` for more; built-ins:
  ``pixels`` / ``pixels:N`` (:mod:`.pixels`, block-averaged intensities, 2D and 3D, the
  zero-download default), ``torchscript:PATH`` (:mod:`.torchscript`, any exported model),
  ``vqvae-top`` / ``vqvae-bottom`` (:mod:`.vqvae`, VQ-VAE-2 code maps), ``timm:NAME`` /
  ``torchvision:NAME`` (:mod:`.vision`, optional, local ``--weights`` only);
- :mod:`.weights`: reading weights files, their sha256, cleaning state dicts;
- :mod:`.feature_set`: the typed feature set (fingerprints, partitions), :mod:`.provenance`
  its typed record, :mod:`.lock` its writer's lock, :mod:`.reuse` which stored rows still
  match their files;
- :mod:`.extract` (driver) and :mod:`.tasks` (workers): the Dask extraction;
- :mod:`.store`: reading feature sets back.

``extract_features`` writes a set (reusing the rows of unchanged files on reruns);
``load_features`` reads it back for any analysis.
"""

from ..lazy import lazy_attributes

# Imported on first use: the driver of a job lists, plans and scores without torch, which
# only the workers (and :class:`Extractor` users) load.
_LAZY = {
    "ExtractionResult": "extract",
    "extract_features": "extract",
    "Extractor": "extractor",
    "BadImage": "feature_set",
    "Provenance": "feature_set",
    "available_extractors": "registry",
    "create_extractor": "registry",
    "register": "registry",
    "LoadedFeatures": "store",
    "list_feature_sets": "store",
    "load_features": "store",
}


__getattr__, __dir__ = lazy_attributes(__name__, globals(), _LAZY)


__all__ = [
    "BadImage",
    "ExtractionResult",
    "Extractor",
    "LoadedFeatures",
    "Provenance",
    "available_extractors",
    "create_extractor",
    "extract_features",
    "list_feature_sets",
    "load_features",
    "register",
]
