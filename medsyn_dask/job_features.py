"""Stage 1 of the job: the features of the real set and of every group, per model and
resolution, extracted on the workers (reused when stored) and loaded for the later stages.

:func:`extract_all` submits every set before it waits for any, so the workers go from one set
to the next; its tasks also sum the images for the mean images (:func:`mean_image_target`).
A set of a few blocks is loaded into this process as NumPy (its neighbourhoods then run here,
:mod:`medsyn_dask.neighbours.local`); :func:`as_dask` gives it back as the Dask array that
:func:`~medsyn_dask.features.load_features` documents.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Mapping

import numpy as np

from .cluster import ImportAhead
from .features import ExtractionResult, load_features
from .features.extract import extraction
from .features.pixels import runs_without_torch
from .features.store import LoadedFeatures
from .metrics.baseline import HOLDOUT
from .metrics.variety.graph import first_readable_shape
from .metrics.variety.sums import MeanImageSums
from .neighbours.local import in_memory_when_small
from .progress import stage
from .settings import REAL, AnalyzeSettings
from .sources import Dataset, read_image


def import_ahead(settings: AnalyzeSettings, volumes: bool) -> None:
    """Workers load torch now, all at once, for an extraction on torch (see ImportAhead);
    ``pixels`` in NumPy needs none. (Only torch: the package's own modules import zarr, whose
    circular imports fail when a task imports them while another thread does.)"""
    from distributed import get_client

    pairs = model_resolution_pairs(settings)
    if all(runs_without_torch(m, r, volumes) for m, r in pairs):
        return
    with contextlib.suppress(ValueError):  # no distributed client: nothing to warm
        get_client().register_plugin(ImportAhead(["torch"]))


def model_resolution_pairs(settings: AnalyzeSettings) -> list[tuple[str, int]]:
    """Every (model, resolution) of the run; the first gives the neighbourhood scores."""
    return [(m, r) for m in settings.models for r in settings.resolutions]


def extract_all(
    settings: AnalyzeSettings,
    pair: tuple[str, int],
    classes: list[str],
    *,
    listed: Mapping[str, Dataset] | None = None,
    progress: bool = True,
    mean_image: MeanImageSums | None = None,
    summed: dict[str, ExtractionResult] | None = None,
) -> dict[str, LoadedFeatures]:
    """Stage 1: features of the real set and every group for one (model, resolution).

    Extracted into ``settings.store`` (reused when already there) and loaded back; keyed by
    ``"real"`` and the group names. ``listed`` holds the sets :func:`check_settings` listed
    (by the same keys), so that a large bucket is not listed again. With ``mean_image``, the
    real set's and the groups' tasks also sum the images they read for the mean images, and
    ``summed`` receives each of those sets' :class:`ExtractionResult` for
    :func:`measure_variety`. A set small enough to compute in this process is loaded as a
    NumPy array, else as the store's Dask array (:func:`loaded_features`).
    """
    model, resolution = pair
    roots = {REAL: settings.real, **settings.synthetic}
    if settings.holdout is not None and pair == model_resolution_pairs(settings)[0]:
        roots[HOLDOUT] = settings.holdout  # scored once, as the reference row
    groups = {name: name if name in (REAL, HOLDOUT) else f"synthetic-{name}" for name in roots}
    out = {}
    # Every set is submitted before any is waited for: the workers go from one set to the
    # next without waiting for the driver (the real set's partitions, submitted first, run
    # first), while the driver loads each set as it completes.
    with contextlib.ExitStack() as stack:
        pending = {
            name: stack.enter_context(
                extraction(
                    root,
                    settings.store,
                    groups[name],
                    model,
                    weights=settings.weights.get(model),
                    resolution=resolution,
                    num_channels=settings.num_channels,
                    class_names=classes,
                    storage_options=dict(settings.storage_options),
                    batch_size=settings.batch_size,
                    on_bad_image=settings.on_bad_image,
                    verify_content=settings.verify_content,
                    progress=progress,
                    dataset=(listed or {}).get(name),
                    mean_image=None if name == HOLDOUT else mean_image,
                )
            )
            for name, root in roots.items()
        }
        for name, extracting in pending.items():
            stage(f"features: {name} ({model}, {resolution} px)", enabled=progress)
            done = extracting.result()
            if mean_image is not None and summed is not None and name != HOLDOUT:
                summed[name] = done
            out[name] = loaded_features(settings, groups[name], done.name)
    return out


def loaded_features(settings: AnalyzeSettings, group: str, name: str) -> LoadedFeatures:
    """A feature set as :func:`load_features` gives it; one small enough to compute in this
    process (:func:`~.neighbours.local.in_memory_when_small`) read into a NumPy array (this
    process reads the store it just opened), its neighbourhoods then run here."""
    options = dict(settings.storage_options)
    loaded = load_features(settings.store, group, name=name, storage_options=options)
    (features,) = in_memory_when_small([loaded.features], settings.block_size, "threads")
    return loaded._replace(features=features)


def as_dask(loaded: LoadedFeatures) -> LoadedFeatures:
    """The features as a Dask array, as :func:`load_features` gives them, also when the job
    read them into memory (:func:`loaded_features`)."""
    if not isinstance(loaded.features, np.ndarray):
        return loaded
    import dask.array as da

    return loaded._replace(features=da.from_array(loaded.features, chunks=(-1, -1)))


def mean_image_target(
    settings: AnalyzeSettings, synthetic_sets: dict[str, Dataset]
) -> MeanImageSums:
    """The mean images' one shape: that of the first readable image of the first group
    (METHOD.md), read before the extraction so that its tasks can sum the images."""
    first = next(iter(synthetic_sets.values()))  # its paths are listed class by class
    read = functools.partial(read_image, storage_options=dict(settings.storage_options))
    return MeanImageSums(first_readable_shape(first.paths, read, first.volumes), first.volumes)
