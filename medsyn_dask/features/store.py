"""The Zarr v3 feature store: one feature set per (group, configuration), written by partitions.

Layout of a store (a local path or an fsspec URL such as ``s3://bucket/features.zarr``)::

    STORE/GROUP/NAME/            a feature set; attrs["medsyn_dask"] holds its provenance
        features   (N, D)        float32 (CNN, pixels) or int16 (VQ-VAE codes); row i <-> paths[i]
        paths      (N,)          image paths relative to the dataset root ("CLASS/file")
        classes    (N,)          class folder of each image
        valid      (N,)          False for a bad image skipped with on_bad_image="skip"
        partitions/K/            completion marker of partition K (attrs: rows, bad images)

``GROUP`` names a dataset role (``real``, ``synthetic-gan``...). ``NAME`` is derived from the
configuration (extractor, weights sha256, resolution, channels, package version and the image
list), so a changed configuration writes a new feature set and never mixes with an old one.
Rows are chunked by partition: partition K owns rows ``[K*P, (K+1)*P)`` and whole chunks of
``features`` and ``valid``, so no two writers share a chunk. A partition's marker is written
(one object, atomically) after its rows; a rerun skips partitions with a marker.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any, NamedTuple

import numpy as np
import zarr
from zarr.abc.store import Store
from zarr.storage import FsspecStore, LocalStore

ATTRS_KEY = "medsyn_dask"


def _package_version() -> str:
    # Read here rather than imported from the package, which may still be initialising.
    try:
        return version("medsyn-dask")
    except PackageNotFoundError:
        return "0.0.0+unknown"


PACKAGE_VERSION = _package_version()
#: Upper bound on one chunk of ``features`` (bytes); wider rows are split along features.
MAX_CHUNK_BYTES = 64 * 2**20


class FeatureConfig(NamedTuple):
    """What determines the features: any change gives a new feature set."""

    extractor: str
    weights_sha256: str | None
    resolution: int
    num_channels: int
    volumes: bool
    paths_sha256: str
    package_version: str = PACKAGE_VERSION

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self._asdict(), sort_keys=True).encode()).hexdigest()

    def set_name(self) -> str:
        """The feature set's name inside its group, e.g. ``pixels-512px-1ch-3f2a...``."""
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.extractor)
        return f"{slug}-{self.resolution}px-{self.num_channels}ch-{self.digest()[:16]}"


class LoadedFeatures(NamedTuple):
    """Features with their image paths and classes, row-aligned (bad images left out).

    ``features``: Dask array ``(n_images, n_features)``, float32 or an integer dtype for codes.
    ``paths``: full path or URL of each image (dataset root joined with ``CLASS/file``).
    ``classes``: class folder of each image. ``provenance``: the feature set's attributes.
    """

    features: Any
    paths: np.ndarray
    classes: np.ndarray
    provenance: dict[str, Any]


def open_store(
    url: str, storage_options: Mapping[str, Any] | None = None, *, read_only: bool = False
) -> Store:
    """The Zarr store at ``url``: a ``LocalStore`` for a path or ``file://`` URL (atomic writes
    by rename), an ``FsspecStore`` for any other fsspec URL (e.g. ``s3://``)."""
    if "://" in url and not url.startswith("file://"):
        return FsspecStore.from_url(
            url, storage_options=dict(storage_options or {}), read_only=read_only
        )
    return LocalStore(url.removeprefix("file://"), read_only=read_only)


def paths_digest(rel_paths: Sequence[str], classes: Sequence[str]) -> str:
    """sha256 of the ordered image list (a changed list gives a new feature set)."""
    h = hashlib.sha256()
    for p, c in zip(rel_paths, classes, strict=True):
        h.update(f"{c}\0{p}\n".encode())
    return h.hexdigest()


def create_or_open_set(
    store: Store,
    group: str,
    config: FeatureConfig,
    *,
    rel_paths: Sequence[str],
    classes: Sequence[str],
    n_features: int,
    dtype: np.dtype,
    partition_size: int,
    extra_attrs: Mapping[str, Any],
) -> zarr.Group:
    """The feature set for ``config`` in ``group``: opened if it exists, else created with its
    paths and classes written (by the driver, before any worker writes features)."""
    _check_group(group)
    path = f"{group}/{config.set_name()}"
    try:
        fs_group = zarr.open_group(store, path=path, mode="r+")
        if ATTRS_KEY in fs_group.attrs and "features" in fs_group:
            return fs_group
    except FileNotFoundError:
        pass
    n = len(rel_paths)
    fs_group = zarr.open_group(store, path=path, mode="w")
    dtype = np.dtype(dtype)
    col_chunk = max(1, min(n_features, MAX_CHUNK_BYTES // (partition_size * dtype.itemsize)))
    fill = np.nan if dtype.kind == "f" else -1
    fs_group.create_array(
        "features",
        shape=(n, n_features),
        chunks=(partition_size, col_chunk),
        dtype=dtype,
        fill_value=fill,
    )
    fs_group.create_array(
        "valid", shape=(n,), chunks=(partition_size,), dtype=bool, fill_value=False
    )
    paths_arr = fs_group.create_array("paths", shape=(n,), chunks=(max(n, 1),), dtype=str)
    classes_arr = fs_group.create_array("classes", shape=(n,), chunks=(max(n, 1),), dtype=str)
    paths_arr[:] = np.asarray(rel_paths, dtype=object)
    classes_arr[:] = np.asarray(classes, dtype=object)
    fs_group.create_group("partitions")
    attrs = {
        **config._asdict(),
        **dict(extra_attrs),
        "n_images": n,
        "n_features": int(n_features),
        "feature_dtype": dtype.name,
        "partition_size": int(partition_size),
        "n_partitions": n_partitions(n, partition_size),
        "complete": False,
    }
    # Written last: a set without these attributes is an interrupted creation, redone above.
    fs_group.attrs.update({ATTRS_KEY: attrs})
    return fs_group


def n_partitions(n_images: int, partition_size: int) -> int:
    return -(-n_images // partition_size)


def write_partition(
    store: Store,
    set_path: str,
    index: int,
    start: int,
    features: np.ndarray,
    valid: np.ndarray,
    bad: Sequence[Mapping[str, str]],
) -> None:
    """Write partition ``index`` (rows ``start:start+len(features)``), then its marker."""
    fs_group = zarr.open_group(store, path=set_path, mode="r+")
    stop = start + len(features)
    fs_group["features"][start:stop] = features
    fs_group["valid"][start:stop] = valid
    marker = {"partition": index, "start": start, "stop": stop, "bad": list(bad)}
    _put_group_metadata(store, f"{set_path}/partitions/{index}", marker)


def _put_group_metadata(store: Store, path: str, attributes: Mapping[str, Any]) -> None:
    """Write the ``zarr.json`` of a group with ``attributes`` as one object: a single PUT on
    S3, a write-and-rename on disk, so a marker is either absent or complete. (Cheaper than
    ``zarr.create_group``, which also checks and rewrites what lies around it.)"""
    from zarr.core.buffer import default_buffer_prototype
    from zarr.core.sync import sync

    doc = {"zarr_format": 3, "node_type": "group", "attributes": dict(attributes)}
    data = default_buffer_prototype().buffer.from_bytes(json.dumps(doc).encode())
    sync(store.set(f"{path}/zarr.json", data))


def finished_partitions(fs_group: zarr.Group) -> dict[int, dict[str, Any]]:
    """Markers of the partitions already written: index -> marker attributes."""
    _forget_listings(fs_group.store)
    try:
        parts = fs_group["partitions"]
    except KeyError:
        return {}
    return {int(name): dict(sub.attrs) for name, sub in parts.groups()}


def mark_complete(fs_group: zarr.Group, bad: Sequence[Mapping[str, str]]) -> None:
    """Record that every partition is written, with the list of bad images."""
    attrs = dict(fs_group.attrs[ATTRS_KEY])
    attrs.update(complete=True, n_bad=len(bad), bad_images=list(bad))
    fs_group.attrs.update({ATTRS_KEY: attrs})


def list_feature_sets(
    store: str, group: str, storage_options: Mapping[str, Any] | None = None
) -> dict[str, dict[str, Any]]:
    """Feature sets in ``group`` of ``store``: name -> provenance (complete or not)."""
    _check_group(group)
    zstore = open_store(store, storage_options, read_only=True)
    _forget_listings(zstore)
    try:
        g = zarr.open_group(zstore, path=group, mode="r")
    except FileNotFoundError:
        raise FileNotFoundError(f"no group {group!r} in feature store {store}") from None
    return {name: dict(sub.attrs[ATTRS_KEY]) for name, sub in g.groups() if ATTRS_KEY in sub.attrs}


def load_features(
    store: str,
    group: str,
    *,
    name: str | None = None,
    model: str | None = None,
    resolution: int | None = None,
    num_channels: int | None = None,
    storage_options: Mapping[str, Any] | None = None,
    include_bad: bool = False,
) -> LoadedFeatures:
    """The features of a completed extraction in ``group`` of ``store``, as a Dask array with
    the row-aligned image paths and classes.

    ``name`` picks a feature set; otherwise ``model``/``resolution``/``num_channels`` filter the
    completed sets and exactly one must remain. Bad images (skipped during extraction) are left
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
        chosen = _choose(sets, group, model, resolution, num_channels)
    attrs = sets[chosen]
    if not attrs.get("complete"):
        raise ValueError(
            f"feature set {group}/{chosen} is incomplete (an interrupted extraction); "
            "rerun the same extract command to finish it"
        )
    zstore = open_store(store, storage_options, read_only=True)
    fs_group = zarr.open_group(zstore, path=f"{group}/{chosen}", mode="r")
    features = da.from_zarr(fs_group["features"])
    rel = np.asarray(fs_group["paths"][:], dtype=object)
    classes = np.asarray(fs_group["classes"][:], dtype=object)
    valid = np.asarray(fs_group["valid"][:], dtype=bool)
    root = str(attrs.get("root", "")).rstrip("/")
    paths = np.asarray([f"{root}/{p}" if root else p for p in rel], dtype=object)
    if not include_bad and not valid.all():
        keep = np.flatnonzero(valid)
        features, paths, classes = features[keep], paths[keep], classes[keep]
    return LoadedFeatures(features, paths, classes, {**attrs, "name": chosen, "group": group})


def _choose(
    sets: Mapping[str, Mapping[str, Any]],
    group: str,
    model: str | None,
    resolution: int | None,
    num_channels: int | None,
) -> str:
    def matches(a: Mapping[str, Any]) -> bool:
        return (
            (model is None or a.get("extractor") == model or a.get("model") == model)
            and (resolution is None or a.get("resolution") == resolution)
            and (num_channels is None or a.get("num_channels") == num_channels)
        )

    found = [n for n, a in sets.items() if matches(a)]
    complete = [n for n in found if sets[n].get("complete")]
    if len(complete) == 1:
        return complete[0]
    if not found:
        raise ValueError(f"no feature set in group {group!r} matches; found {sorted(sets)}")
    if not complete:
        return found[0]  # reported as incomplete by the caller
    raise ValueError(
        f"group {group!r} holds {len(complete)} completed feature sets ({sorted(complete)}); "
        "pass name=, model=, resolution= or num_channels= to choose one"
    )


def _forget_listings(zstore: Store) -> None:
    """Drop fsspec's cached directory listings: markers and feature sets are written by other
    processes (workers, other runs), and a stale listing would hide them."""
    fs = getattr(zstore, "fs", None)
    if fs is not None and hasattr(fs, "invalidate_cache"):
        fs.invalidate_cache()


def _check_group(group: str) -> None:
    if not group or not re.fullmatch(r"[A-Za-z0-9_.-]+", group) or group in (".", ".."):
        raise ValueError(f"group must be a plain name of letters, digits, '_', '.', '-': {group!r}")
