"""The typed Zarr feature set: layout, provenance, per-image fingerprints, partitions, completion.

Layout of one feature set in a store (a local path or an fsspec URL)::

    STORE/GROUP/NAME/            attrs["medsyn_dask"]: the provenance (:class:`Provenance`)
        features   (N, D)        float32 (CNN, pixels) or int16 (VQ-VAE codes); row i <-> paths[i]
        paths      (N,)          image paths relative to the dataset root ("CLASS/file")
        classes    (N,)          class folder of each image
        valid      (N,)          False for a bad image (or a row not written yet)
        errors     (N,)          why an image is bad ("" for a good one)
        fingerprints (N,)        the file's fingerprint when its row was written ("" before)
        content_sha256 (N,)      sha256 of the file's content, "" when not verified
        partitions/K/            completion marker of partition K
    STORE/GROUP/lock-NAME/       present while a run writes the set (:mod:`.lock`)

``GROUP`` names a dataset role (``real``, ``synthetic-gan``...). ``NAME`` is derived from the
:class:`FeatureConfig` (extractor, weights sha256, resolution, channels, volumes,
preprocessing and package versions, and the image list), so another configuration writes
another set. Partition K owns rows ``[K*P, (K+1)*P)`` and whole chunks of every per-row
array, so no two writers share a chunk. A partition writes its rows, then their fingerprints
(the claim "this row matches that file"), then its marker (one object, atomically).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import zarr
from zarr.abc.store import Store
from zarr.codecs import BloscCodec
from zarr.storage import FsspecStore, LocalStore

from ..checks import check_plain_name
from ..errors import InputError
from .provenance import BadImage, FeatureConfig, Provenance

__all__ = ["BadImage", "FeatureConfig", "FeatureSet", "Provenance", "SetAddress", "open_store"]

ATTRS_KEY = "medsyn_dask"
#: Upper bound on one chunk of ``features`` (bytes); wider rows are split along features.
MAX_CHUNK_BYTES = 64 * 2**20
#: How ``features`` is compressed: LZ4 after a byte shuffle. Features compress little (to
#: about 0.79 of their size, the same as Zarr's default Zstandard), and LZ4 does it in 0.5 ms
#: a MB instead of 6.4 (written on the workers, read back for every comparison).
FEATURES_CODEC = BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")
#: The per-row text arrays, chunked by partition.
ROW_TEXT = ("errors", "fingerprints", "content_sha256")


class FeatureSet:
    """One feature set of a Zarr store: open or create it, plan, write and complete partitions.

    Obtained with :meth:`open` or :meth:`create`; picklable as its :class:`SetAddress`.
    """

    def __init__(self, zgroup: zarr.Group, group: str, name: str) -> None:
        self.zgroup, self.group, self.name = zgroup, group, name
        self.provenance = Provenance.from_attrs(zgroup.attrs[ATTRS_KEY])

    @classmethod
    def open(cls, store: Store, group: str, name: str) -> FeatureSet | None:
        """The set ``group/name``, or ``None`` when absent or half-created (no provenance)."""
        mode = "r" if store.read_only else "r+"
        try:
            zgroup = zarr.open_group(store, path=f"{group}/{name}", mode=mode)
        except FileNotFoundError:
            return None
        if ATTRS_KEY not in zgroup.attrs or "features" not in zgroup:
            return None
        return cls(zgroup, group, name)

    @classmethod
    def create(
        cls,
        store: Store,
        group: str,
        provenance: Provenance,
        rel_paths: Sequence[str],
        classes: Sequence[str],
    ) -> FeatureSet:
        """A new empty set shaped by ``provenance``, with its paths and classes written (by the
        driver, before any worker writes features). Replaces a half-created one."""
        from zarr.core.sync import sync

        name = provenance.set_name()
        zgroup = zarr.open_group(store, path=f"{group}/{name}", mode="w")
        # Every array at once, in one trip to Zarr's event loop (one by one: 2 ms each).
        sync(_create_arrays(zgroup, provenance, {"paths": rel_paths, "classes": classes}))
        # Written last: a set without provenance is an interrupted creation, redone on rerun.
        zgroup.attrs.update({ATTRS_KEY: provenance.to_attrs()})
        return cls(zgroup, group, name)

    @classmethod
    def siblings(cls, store: Store, group: str, config: FeatureConfig) -> list[FeatureSet]:
        """Complete sets of ``group`` with the same features as ``config`` but another image
        list (newest first): the rows they hold for unchanged files can be reused."""
        forget_listings(store)
        try:
            parent = zarr.open_group(store, path=group, mode="r")
        except FileNotFoundError:
            return []
        found = []
        for name, sub in parent.groups():
            if ATTRS_KEY not in sub.attrs or name == config.set_name():
                continue
            prov = Provenance.from_attrs(sub.attrs[ATTRS_KEY])
            if prov.complete and not prov.config.differences(config, ignore=["paths_sha256"]):
                found.append(cls(sub, group, name))
        return sorted(found, key=lambda s: s.provenance.created, reverse=True)

    def check_config(self, config: FeatureConfig) -> None:
        """Refuse a set whose provenance disagrees with the configuration its name stands for."""
        diff = config.differences(self.provenance.config)
        if diff:
            raise InputError(
                f"feature set {self.group}/{self.name} was written by another configuration "
                f"({'; '.join(diff)}); remove it or use another --store"
            )

    # -- what is stored ------------------------------------------------------------------

    def rows_of(self, partition: int) -> slice:
        size = self.provenance.partition_size
        return slice(partition * size, min((partition + 1) * size, self.provenance.n_images))

    def read_column(self, key: str) -> np.ndarray:
        """A whole per-row array (``paths``, ``fingerprints``, ``valid``...) as NumPy."""
        return np.asarray(self.zgroup[key][:])

    def read_rows(self, rows: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(features, valid, errors)`` of ``rows`` (for copying them into another set)."""
        idx = np.asarray(rows, dtype=np.int64)
        z = self.zgroup
        return z["features"].oindex[idx], z["valid"].oindex[idx], z["errors"].oindex[idx]

    def finished_partitions(self) -> set[int]:
        """Partitions whose marker is written."""
        forget_listings(self.zgroup.store)
        try:
            parts = self.zgroup["partitions"]
        except KeyError:
            return set()
        return {int(name) for name, _ in parts.groups()}

    # -- writing -----------------------------------------------------------------------------

    def reopen_partitions(self, partitions: Sequence[int]) -> None:
        """Mark the set incomplete and drop the markers of ``partitions`` (to be rewritten)."""
        from zarr.core.sync import sync

        if self.provenance.complete or self.provenance.bad_images:  # else already so
            self._set_attrs(replace(self.provenance, complete=False, bad_images=()))
        for k in partitions:
            sync(self.zgroup.store.delete_dir(f"{self.zgroup.path}/partitions/{k}"))

    def write_partition(
        self,
        partition: int,
        features: np.ndarray,
        valid: np.ndarray,
        errors: Sequence[str],
        fingerprints: Sequence[str],
        content_sha256: Sequence[str],
    ) -> None:
        """Write partition ``partition``'s rows (features and their columns, at once), then
        their fingerprints, then its marker, which says that they are all written.

        The fingerprints come after the rows they vouch for: a run killed in between leaves
        rows whose fingerprint is empty or stale, which a rerun extracts again instead of
        copying (:func:`.reuse.plan_partitions` reuses a row of an unfinished partition whose
        fingerprint is current)."""
        from zarr.core.sync import sync

        rows = self.rows_of(partition)
        columns = {
            "features": features,
            "valid": valid,
            "errors": np.asarray(errors, dtype=object),
            "content_sha256": np.asarray(content_sha256, dtype=object),
            "fingerprints": np.asarray(fingerprints, dtype=object),
        }
        # One trip to Zarr's event loop (each array written on its own cost a millisecond or
        # two of opening and waiting: a tenth of a small partition's time).
        sync(_write_rows(self.zgroup, rows, columns, last="fingerprints"))
        marker = {"partition": partition, "start": rows.start, "stop": rows.stop}
        _put_group_metadata(self.zgroup.store, f"{self.zgroup.path}/partitions/{partition}", marker)

    def complete(self) -> Provenance:
        """Check that every partition has its marker, record the bad images and completion."""
        missing = sorted(set(range(self.provenance.n_partitions)) - self.finished_partitions())
        if missing:
            raise RuntimeError(
                f"partitions {missing[:10]} of {self.group}/{self.name} have no marker"
            )
        errors = self.read_column("errors")
        paths = self.read_column("paths")
        bad = tuple(BadImage(str(paths[i]), str(errors[i])) for i in np.flatnonzero(errors != ""))
        self._set_attrs(replace(self.provenance, complete=True, bad_images=bad))
        return self.provenance

    def _set_attrs(self, provenance: Provenance) -> None:
        self.zgroup.attrs.update({ATTRS_KEY: provenance.to_attrs()})
        self.provenance = provenance


@dataclass(frozen=True)
class SetAddress:
    """Where a feature set lives, picklable for worker tasks; :meth:`open` gives the set."""

    store: str
    store_options: Mapping[str, Any]
    group: str
    name: str

    def open(self, *, read_only: bool = False) -> FeatureSet:
        store = open_store(self.store, self.store_options, read_only=read_only)
        fset = FeatureSet.open(store, self.group, self.name)
        if fset is None:
            raise InputError(f"no feature set {self.group}/{self.name} in {self.store}")
        return fset

    def sibling(self, name: str) -> SetAddress:
        return replace(self, name=name)


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


def check_group(group: str) -> str:
    """A group name usable as a folder name (a plain name)."""
    return check_plain_name(group, "feature store group")


def forget_listings(zstore: Store) -> None:
    """Drop fsspec's cached directory listings: markers and feature sets are written by other
    processes (workers, other runs), and a stale listing would hide them."""
    fs = getattr(zstore, "fs", None)
    if fs is not None and hasattr(fs, "invalidate_cache"):
        fs.invalidate_cache()


async def _create_arrays(
    zgroup: Any, provenance: Provenance, columns: Mapping[str, Sequence[str]]
) -> None:
    """The set's arrays (layout in the module doc) and its ``partitions`` group, concurrently,
    with ``columns`` (paths and classes) written."""
    group = zgroup._async_group
    n, size, dtype = provenance.n_images, provenance.partition_size, np.dtype(provenance.dtype)
    d = provenance.n_features

    async def written(name: str, values: Sequence[str]) -> None:
        array = await group.create_array(name, shape=(n,), chunks=(max(n, 1),), dtype=str)
        await array.setitem(slice(None), np.asarray(values, dtype=object))

    features = group.create_array(
        "features",
        shape=(n, d),
        chunks=(size, max(1, min(d, MAX_CHUNK_BYTES // (size * dtype.itemsize)))),
        dtype=dtype,
        fill_value=np.nan if dtype.kind == "f" else -1,
        compressors=FEATURES_CODEC,
    )
    valid = group.create_array("valid", shape=(n,), chunks=(size,), dtype=bool, fill_value=False)
    text = [group.create_array(key, shape=(n,), chunks=(size,), dtype=str) for key in ROW_TEXT]
    listed = [written(key, values) for key, values in columns.items()]
    await asyncio.gather(features, valid, *text, *listed, group.create_group("partitions"))


async def _write_rows(
    zgroup: Any, rows: slice, columns: Mapping[str, np.ndarray], last: str
) -> None:
    """``zgroup[name][rows] = value`` for every column: all but ``last`` concurrently, then
    ``last`` once they are written."""
    group = zgroup._async_group

    async def write(name: str, value: np.ndarray) -> None:
        array = await group.getitem(name)
        await array.setitem(rows, value)

    await asyncio.gather(*(write(name, value) for name, value in columns.items() if name != last))
    await write(last, columns[last])


def _put_group_metadata(store: Store, path: str, attributes: Mapping[str, Any]) -> None:
    """Write the ``zarr.json`` of a group with ``attributes`` as one object: a single PUT on
    S3, a write-and-rename on disk, so a marker is either absent or complete. (Cheaper than
    ``zarr.create_group``, which also checks and rewrites what lies around it.)"""
    from zarr.core.buffer import default_buffer_prototype
    from zarr.core.sync import sync

    doc = {"zarr_format": 3, "node_type": "group", "attributes": dict(attributes)}
    data = default_buffer_prototype().buffer.from_bytes(json.dumps(doc).encode())
    sync(store.set(f"{path}/zarr.json", data))
