"""Reading feature sets back: list the sets of a group, load one as a Dask array.

The layout and provenance of a feature set are described in :mod:`.feature_set`; sets are
written by :func:`~medsyn_dask.features.extract_features`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np
import zarr

from ..errors import InputError
from ..sources import dataset_root
from .feature_set import (
    ATTRS_KEY,
    BadImage,
    FeatureSet,
    Provenance,
    check_group,
    forget_listings,
    open_store,
)


class LoadedFeatures(NamedTuple):
    """Features with their image paths and classes, row-aligned (bad images left out).

    ``features``: Dask array ``(n_images, n_features)``, float32 or an integer dtype for codes.
    ``paths``: full path or URL of each image (dataset root joined with ``CLASS/file``).
    ``classes``: class folder of each image. ``provenance``: the feature set's record.
    ``bad_images``: the images left out, ``(path relative to the root, error)``.
    ``group`` / ``name``: where the set lives in its store.
    """

    features: Any
    paths: np.ndarray
    classes: np.ndarray
    provenance: Provenance
    bad_images: tuple[BadImage, ...] = ()
    group: str = ""
    name: str = ""


def list_feature_sets(
    store: str, group: str, storage_options: Mapping[str, Any] | None = None
) -> dict[str, Provenance]:
    """Feature sets in ``group`` of ``store``: name -> provenance (complete or not)."""
    check_group(group)
    zstore = open_store(store, storage_options, read_only=True)
    forget_listings(zstore)
    try:
        g = zarr.open_group(zstore, path=group, mode="r")
    except FileNotFoundError:
        raise FileNotFoundError(f"no group {group!r} in feature store {store}") from None
    return {
        name: Provenance.from_attrs(sub.attrs[ATTRS_KEY])
        for name, sub in g.groups()
        if ATTRS_KEY in sub.attrs
    }


def load_features(
    store: str,
    group: str,
    *,
    name: str | None = None,
    model: str | None = None,
    resolution: int | None = None,
    num_channels: int | None = None,
    root: str | None = None,
    storage_options: Mapping[str, Any] | None = None,
    include_bad: bool = False,
) -> LoadedFeatures:
    """The features of a completed extraction in ``group`` of ``store``, as a Dask array with
    the row-aligned image paths and classes.

    ``name`` picks a feature set; otherwise ``model``/``resolution``/``num_channels``/``root``
    (the dataset folder or URL the set was extracted from) filter the completed sets and
    exactly one must remain. Bad images (skipped during extraction) are left
    out unless ``include_bad`` (their rows are NaN, or -1 for codes). Raises
    ``FileNotFoundError`` for a missing store or group and ``ValueError`` for an incomplete or
    ambiguous choice.
    """
    import dask.array as da

    sets = list_feature_sets(store, group, storage_options)
    if name is not None:
        if name not in sets:
            raise ValueError(f"no feature set {name!r} in group {group!r}; found {sorted(sets)}")
        chosen = name
    else:
        where = None if root is None else dataset_root(root)
        chosen = _choose(sets, group, model, resolution, num_channels, where)
    prov = sets[chosen]
    if not prov.complete:
        raise ValueError(
            f"feature set {group}/{chosen} is incomplete (an interrupted extraction); "
            "rerun the same extract command to finish it"
        )
    fset = FeatureSet.open(open_store(store, storage_options, read_only=True), group, chosen)
    assert fset is not None  # listed just above with its provenance
    features = da.from_zarr(fset.zgroup["features"])
    rel = fset.read_column("paths").astype(object)
    classes = fset.read_column("classes").astype(object)
    valid = fset.read_column("valid").astype(bool)
    _check_intact(f"{group}/{chosen}", rel, classes, valid, fset.read_column("errors"))
    root = prov.root.rstrip("/")
    paths = np.asarray([f"{root}/{p}" if root else p for p in rel], dtype=object)
    if not include_bad and not valid.all():
        keep = np.flatnonzero(valid)
        features, paths, classes = features[keep], paths[keep], classes[keep]
    return LoadedFeatures(features, paths, classes, prov, prov.bad_images, group, chosen)


def _check_intact(name: str, rel, classes, valid: np.ndarray, errors: np.ndarray) -> None:
    """InputError where a column holds its fill value (a chunk removed or lost): an empty path
    or class, or a row whose valid flag disagrees with its error (a bad image has one, and
    only it) would silently drop images or blank the tables."""
    damaged = {
        "empty paths": np.flatnonzero(rel == ""),
        "empty classes": np.flatnonzero(classes == ""),
        "valid flags that disagree with the recorded errors": np.flatnonzero(
            valid == (errors != "")
        ),
    }
    found = [f"{what} (rows {rows[:3].tolist()}...)" for what, rows in damaged.items() if len(rows)]
    if found:
        raise InputError(
            f"feature set {name} is damaged: {'; '.join(found)}; remove it (or the store) "
            "and extract again"
        )


def _choose(
    sets: Mapping[str, Provenance],
    group: str,
    model: str | None,
    resolution: int | None,
    num_channels: int | None,
    root: str | None,
) -> str:
    def matches(p: Provenance) -> bool:
        return (
            (model is None or model in (p.extractor, p.model))
            and (resolution is None or p.resolution == resolution)
            and (num_channels is None or p.num_channels == num_channels)
            and (root is None or p.root.rstrip("/") == root)  # sets recorded with a "/"
        )

    found = [n for n, p in sets.items() if matches(p)]
    complete = [n for n in found if sets[n].complete]
    if len(complete) == 1:
        return complete[0]
    if not found:
        raise ValueError(f"no feature set in group {group!r} matches; found {sorted(sets)}")
    if not complete:
        return found[0]  # reported as incomplete by the caller
    raise ValueError(
        f"group {group!r} holds {len(complete)} completed feature sets ({sorted(complete)}); "
        "pass name=, model=, resolution=, num_channels= or root= to choose one"
    )
