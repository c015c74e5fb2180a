"""Feature extraction on Dask: partitions of the image list, one model per worker, Zarr output.

The driver lists the dataset, opens (or creates) the feature set for the configuration and
submits one task per unfinished partition (task keys ``extract-features-K-...``). A task loads
the extractor once per worker process (:func:`~medsyn_dask.features.base.cached_extractor`),
on the worker's GPU when it has one, reads and preprocesses its images batch by batch, and
writes its rows and then its completion marker straight into the store. Tasks ask for the
worker resource ``GPU=1`` when the cluster has GPU workers.
"""

from __future__ import annotations

import logging
import os
import random
import sys
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

import numpy as np

from ..cluster import GPU_RESOURCE, current_client, relax_malloc_trim
from ..sources import (
    BadImageError,
    Dataset,
    list_images,
    preprocess,
    read_image,
    relative_path,
)
from . import store as fstore
from .base import Extractor, cached_extractor, resolve_name, weights_digest

log = logging.getLogger(__name__)

OnBadImage = Literal["error", "skip"]
#: Default partitions: about 16 for small datasets, at most 512 images each for large ones.
TARGET_PARTITIONS = 16
MIN_PARTITION = 32
MAX_PARTITION = 512


@dataclass(frozen=True)
class ExtractionResult:
    """What :func:`extract_features` did. ``name`` is the feature set inside ``group``."""

    store: str
    group: str
    name: str
    n_images: int
    n_features: int
    n_partitions: int
    n_resumed: int  # partitions found finished in the store and skipped
    bad_images: tuple[dict[str, str], ...] = ()  # {"path": "CLASS/file", "error": ...}

    @property
    def n_bad(self) -> int:
        return len(self.bad_images)


@dataclass(frozen=True)
class _Job:
    """Everything a worker task needs (picklable)."""

    model: str
    weights: str | None
    weights_sha256: str | None
    extractor: str
    storage_options: dict[str, Any]
    store: str
    store_options: dict[str, Any]
    set_path: str
    root: str
    resolution: int
    num_channels: int
    volumes: bool
    batch_size: int
    on_bad_image: str
    n_features: int = 0
    dtype: str = "float32"
    remote: bool = field(default=False)


def default_partition_size(n_images: int, batch_size: int = 1) -> int:
    """Images per partition: ``n / 16`` clipped to [32, 512], rounded up to whole batches.

    Fixed when a feature set is created (a rerun reuses the stored size, whatever the cluster),
    so that it resumes the same partitions. Large enough that the per-task cost (scheduling,
    Zarr writes, marker) stays small beside the images' own; small enough to balance the load
    and to lose little work when a worker dies. Whole batches keep the model's input shape
    constant (TorchScript and cuDNN re-plan for each new shape).
    """
    size = min(MAX_PARTITION, max(MIN_PARTITION, -(-n_images // TARGET_PARTITIONS)))
    return int(-(-size // batch_size) * batch_size)


def extract_features(
    root: str,
    store: str,
    group: str,
    model: str = "pixels",
    *,
    weights: str | None = None,
    resolution: int = 512,
    num_channels: int = 1,
    class_names: Sequence[str] | None = None,
    storage_options: Mapping[str, Any] | None = None,
    store_options: Mapping[str, Any] | None = None,
    client: Any = None,
    partition_size: int | None = None,
    batch_size: int = 32,
    on_bad_image: OnBadImage = "error",
    progress: bool = False,
    shuffle_seed: int | None = None,
) -> ExtractionResult:
    """Extract features of every image under ``root/CLASS/`` into ``store`` (group ``group``).

    ``root`` and ``store`` are local paths or fsspec URLs; ``storage_options`` are passed to
    fsspec for ``root`` and the weights, ``store_options`` for ``store`` (default: the same).
    ``model`` is an extractor name (see :func:`~medsyn_dask.features.create_extractor`),
    ``weights`` its weights file. Images are preprocessed to ``num_channels`` x ``resolution``
    x ``resolution`` (METHOD.md). ``client`` is a ``distributed.Client`` (default: the current
    one, or a LocalCluster for the call). ``partition_size`` images per task (default
    :func:`default_partition_size`; an existing feature set keeps its own); ``batch_size``
    images per model call. ``on_bad_image="skip"`` records unreadable or wrong-dimension files
    in the store's bad-image list instead of failing. ``shuffle_seed`` submits partitions in a
    random order. Finished partitions of an earlier run with the same configuration are
    skipped. Returns an :class:`ExtractionResult`; the features are read back with
    :func:`~medsyn_dask.features.load_features`.
    """
    _check_options(resolution, num_channels, batch_size, on_bad_image, partition_size)
    extractor, weights_path = resolve_name(model, weights)
    dataset = list_images(root, class_names, storage_options)
    rel = [relative_path(root, p) for p in dataset.paths]
    store_options = dict(store_options if store_options is not None else storage_options or {})
    job = _Job(
        model=model,
        weights=weights_path,
        weights_sha256=weights_digest(weights_path, storage_options),
        extractor=extractor,
        storage_options=dict(storage_options or {}),
        store=store,
        store_options=store_options,
        set_path="",
        root=root,
        resolution=int(resolution),
        num_channels=int(num_channels),
        volumes=dataset.volumes,
        batch_size=int(batch_size),
        on_bad_image=on_bad_image,
        remote=_is_remote(root),
    )
    config = fstore.FeatureConfig(
        extractor=extractor,
        weights_sha256=job.weights_sha256,
        resolution=job.resolution,
        num_channels=job.num_channels,
        volumes=dataset.volumes,
        paths_sha256=fstore.paths_digest(rel, dataset.classes),
    )
    with current_client(client) as cl:
        return _run(cl, job, config, dataset, rel, group, partition_size, progress, shuffle_seed)


def _run(
    client: Any,
    job: _Job,
    config: fstore.FeatureConfig,
    dataset: Dataset,
    rel: list[str],
    group: str,
    partition_size: int | None,
    progress: bool,
    shuffle_seed: int | None,
) -> ExtractionResult:
    """Open or create the feature set, run the unfinished partitions, record completion."""
    resources = _resources(client)
    run_id = uuid.uuid4().hex[:8]
    set_name = config.set_name()
    fs_group = _existing_set(fstore.open_store(job.store, job.store_options), group, set_name)
    if fs_group is None:
        fs_group = _create_set(
            client, job, config, dataset, rel, group, partition_size, resources, run_id
        )
    attrs = fs_group.attrs[fstore.ATTRS_KEY]
    size, n_parts = attrs["partition_size"], attrs["n_partitions"]
    if partition_size and partition_size != size:
        log.warning("feature set %s keeps its partition size %d", set_name, size)
    job = _replace(
        job,
        set_path=f"{group}/{set_name}",
        n_features=attrs["n_features"],
        dtype=attrs["feature_dtype"],
    )
    done = fstore.finished_partitions(fs_group)
    todo = [k for k in range(n_parts) if k not in done]
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(todo)
    log.info(
        "feature set %s/%s: %d partitions, %d already done", group, set_name, n_parts, len(done)
    )
    futures = [
        client.submit(
            _run_partition,
            job,
            k,
            k * size,
            list(dataset.paths[k * size : (k + 1) * size]),
            key=f"extract-features-{k}-{run_id}",
            resources=resources,
            pure=False,
        )
        for k in todo
    ]
    _wait(client, futures, f"extract {group}", progress)
    markers = fstore.finished_partitions(fs_group)
    missing = sorted(set(range(n_parts)) - set(markers))
    if missing:
        raise RuntimeError(f"partitions {missing[:10]} of {group}/{set_name} have no marker")
    bad = tuple(b for k in sorted(markers) for b in markers[k]["bad"])
    fstore.mark_complete(fs_group, bad)
    return ExtractionResult(
        store=job.store,
        group=group,
        name=set_name,
        n_images=len(rel),
        n_features=job.n_features,
        n_partitions=n_parts,
        n_resumed=len(done),
        bad_images=bad,
    )


def _create_set(
    client: Any,
    job: _Job,
    config: fstore.FeatureConfig,
    dataset: Dataset,
    rel: list[str],
    group: str,
    partition_size: int | None,
    resources: dict[str, float] | None,
    run_id: str,
):
    """A new feature set, shaped after one probe of the extractor on a worker."""
    n_features, dtype = client.submit(
        _probe, job, key=f"extract-features-probe-{run_id}", resources=resources, pure=False
    ).result()
    return fstore.create_or_open_set(
        fstore.open_store(job.store, job.store_options),
        group,
        config,
        rel_paths=rel,
        classes=dataset.classes,
        n_features=n_features,
        dtype=np.dtype(dtype),
        partition_size=partition_size or default_partition_size(len(rel), job.batch_size),
        extra_attrs={
            "model": job.model,
            "root": _stored_root(job.root),
            "class_names": list(dataset.class_names),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        },
    )


def _wait(client: Any, futures: list, label: str, progress: bool) -> None:
    """Wait for every future; on the first failure cancel the rest and raise its error.

    Partitions finished before the failure keep their rows and markers.
    """
    from distributed import as_completed

    total, shown = len(futures), 0
    try:
        for i, fut in enumerate(as_completed(futures), 1):
            fut.result()  # raises the task's exception, e.g. a BadImageError naming the file
            if progress:
                print(f"\r{label}: {i}/{total} partitions", end="", file=sys.stderr, flush=True)
                shown = i
    except BaseException:
        client.cancel(futures)
        raise
    finally:
        if shown:
            print(file=sys.stderr, flush=True)


def _run_partition(job: _Job, index: int, start: int, paths: list[str]) -> dict[str, Any]:
    """Worker task: features of ``paths`` (rows ``start:``) written to the store, then the
    partition's marker. Returns the partition's bad images."""
    extractor = _worker_extractor(job)
    dtype = np.dtype(job.dtype)
    feats = np.full((len(paths), job.n_features), np.nan if dtype.kind == "f" else -1, dtype)
    valid = np.zeros(len(paths), dtype=bool)
    bad: list[dict[str, str]] = []
    for b in range(0, len(paths), job.batch_size):
        rows, arrays = [], []
        for i, loaded in enumerate(_load_batch(job, paths[b : b + job.batch_size]), b):
            if isinstance(loaded, Exception):
                problem = _problem(loaded, paths[i])
                if job.on_bad_image == "error":
                    raise BadImageError(f"{paths[i]}: {problem}")
                bad.append({"path": relative_path(job.root, paths[i]), "error": problem})
            else:
                rows.append(i)
                arrays.append(loaded)
        if arrays:
            out = features_of(extractor, np.stack(arrays))
            if out.shape[1] != job.n_features:
                raise ValueError(
                    f"extractor {job.model!r} gave {out.shape[1]} features for {paths[rows[0]]},"
                    f" expected {job.n_features} (a model whose output size depends on input)"
                )
            feats[rows] = out
            valid[rows] = True
    zstore = fstore.open_store(job.store, job.store_options)
    fstore.write_partition(zstore, job.set_path, index, start, feats, valid, bad)
    return {"partition": index, "n_images": len(paths), "bad": bad}


def _load_batch(job: _Job, paths: Sequence[str]) -> list[np.ndarray | Exception]:
    if job.remote and len(paths) > 1:
        # Object-store reads are latency-bound: overlap them. Local reads stay on the task's
        # own thread so that a worker uses the CPU it was given.
        with ThreadPoolExecutor(max_workers=8) as pool:
            return list(pool.map(lambda p: _load_one(job, p), paths))
    return [_load_one(job, p) for p in paths]


def _load_one(job: _Job, path: str) -> np.ndarray | Exception:
    """The preprocessed image, or the exception that makes it a bad image."""
    try:
        arr = read_image(path, job.storage_options)
        return preprocess(arr, job.resolution, job.num_channels, volume=job.volumes)
    except (BadImageError, FileNotFoundError) as exc:
        return exc


def _problem(exc: Exception, path: str) -> str:
    """The error message without the file name (callers add it)."""
    msg = str(exc)
    if isinstance(exc, FileNotFoundError):
        return "file not found"
    return msg.removeprefix(f"{path}: ")


def _worker_extractor(job: _Job):
    import torch

    relax_malloc_trim()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    extractor = cached_extractor(job.model, job.weights, job.storage_options, device)
    if extractor.weights_sha256 != job.weights_sha256:
        raise ValueError(
            f"the weights file {job.weights} changed during the run (sha256 "
            f"{extractor.weights_sha256} on a worker, {job.weights_sha256} on the driver)"
        )
    return extractor


def features_of(extractor: Extractor, batch: np.ndarray) -> np.ndarray:
    """Features of a preprocessed batch; 3D volumes given to a 2D-only extractor go through
    the 2.5D mode.

    2.5D: the three orthogonal central slices of each volume ``(C, D, H, W)`` (at ``D//2``,
    ``H//2``, ``W//2``) are featurised as three images and their features concatenated in that
    order, so a ``(B, C, R, R, R)`` batch gives ``(B, 3 * n_features_2d)``.
    """
    if batch.ndim != 5 or extractor.supports_volumes:
        return extractor(batch)
    d, h, w = (n // 2 for n in batch.shape[2:])
    slices = (batch[:, :, d], batch[:, :, :, h], batch[:, :, :, :, w])
    return np.concatenate([extractor(np.ascontiguousarray(s)) for s in slices], axis=1)


def _probe(job: _Job) -> tuple[int, str]:
    """Worker task: (number of features, dtype) of the extractor on one blank input."""
    extractor = _worker_extractor(job)
    # A full batch of images, so that the model's first (planning) call sees the shape the
    # partitions will use; a single volume, which may be large.
    n = 1 if job.volumes else job.batch_size
    shape = (n, job.num_channels) + (job.resolution,) * (3 if job.volumes else 2)
    out = features_of(extractor, np.zeros(shape, dtype=np.float32))
    return int(out.shape[1]), out.dtype.name


def _existing_set(zstore, group: str, set_name: str):
    import zarr

    try:
        g = zarr.open_group(zstore, path=f"{group}/{set_name}", mode="r+")
    except FileNotFoundError:
        return None
    return g if fstore.ATTRS_KEY in g.attrs and "features" in g else None


def _resources(client) -> dict[str, float] | None:
    workers = client.scheduler_info(n_workers=-1)["workers"].values()
    has_gpu = any(w.get("resources", {}).get(GPU_RESOURCE) for w in workers)
    return {GPU_RESOURCE: 1} if has_gpu else None


def _replace(job: _Job, **changes: Any) -> _Job:
    from dataclasses import replace

    return replace(job, **changes)


def _stored_root(root: str) -> str:
    """The root as provenance records it: absolute for a local path, the URL otherwise."""
    if "://" in root:
        return root
    return os.path.abspath(root)


def _is_remote(url: str) -> bool:
    return "://" in url and not url.startswith("file://")


def _check_options(resolution, num_channels, batch_size, on_bad_image, partition_size) -> None:
    if int(resolution) < 8:
        raise ValueError(f"resolution must be at least 8 pixels, got {resolution}")
    if num_channels not in (1, 3):
        raise ValueError(f"num_channels must be 1 or 3, got {num_channels}")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if on_bad_image not in ("error", "skip"):
        raise ValueError(f"on_bad_image must be 'error' or 'skip', got {on_bad_image!r}")
    if partition_size is not None and int(partition_size) < 1:
        raise ValueError(f"partition_size must be at least 1, got {partition_size}")
