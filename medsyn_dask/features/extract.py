"""Feature extraction on Dask: one future per partition to write, one model per worker.

The driver lists the dataset with each file's fingerprint, takes the feature set's lock
(:mod:`.lock`), opens or creates the set for the configuration (:mod:`.feature_set`), plans
which stored rows still match their files (:mod:`.reuse`) and submits one task per partition
to write (task keys ``extract-features-K-...``, :func:`.tasks.run_partition`). Tasks ask for
the worker resource ``GPU=1`` when the cluster has GPU workers. Progress and the counts of
reused and extracted images go through :mod:`medsyn_dask.progress`. With ``mean_image``, each
task also returns its images' mean-image sums, added here as the partitions finish, for the
variety pass to take instead of reading the images again.
"""

from __future__ import annotations

import contextlib
import logging
import random
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from .. import checks
from ..checks import DEFAULT_RESOLUTION
from ..cluster import GPU_RESOURCE, current_client
from ..progress import stage
from ..sources import Dataset, dataset_root, list_images, relative_path
from .feature_set import (
    FeatureConfig,
    FeatureSet,
    Provenance,
    SetAddress,
    check_group,
    open_store,
    paths_digest,
)
from .lock import SetLock
from .pending import ExtractionResult, PendingExtraction
from .pixels import known_output
from .registry import resolve_name
from .reuse import Plan, StoredRows, match_rows, plan_partitions
from .tasks import Job, probe, run_partition
from .weights import weights_digest

if TYPE_CHECKING:
    from ..metrics.variety.sums import MeanImageSums

log = logging.getLogger(__name__)

OnBadImage = Literal["error", "skip"]
#: Default partitions: about 8 for small datasets, at most 512 images each for large ones.
TARGET_PARTITIONS = 8
MIN_PARTITION = 32
MAX_PARTITION = 512


def default_partition_size(n_images: int, batch_size: int = 1) -> int:
    """Images per partition: ``n / 8`` clipped to [32, 512], rounded up to whole batches.

    Fixed when a feature set is created (a rerun reuses the stored size, whatever the cluster),
    so that it resumes the same partitions. Large enough that the per-task cost (scheduling,
    Zarr writes, marker: some 15 ms, measured 12 % of a 125-image partition of 256 px PNGs)
    stays small beside the images' own; small enough to balance the load and to lose little
    work when a worker dies. Whole batches keep the model's input shape
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
    resolution: int = DEFAULT_RESOLUTION,
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
    verify_content: bool = False,
    dataset: Dataset | None = None,
    mean_image: MeanImageSums | None = None,
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
    in the set's bad-image list instead of failing. ``shuffle_seed`` submits partitions in a
    random order. ``dataset`` is ``root`` as :func:`~medsyn_dask.sources.list_images` already
    listed it (with the same ``class_names``), to skip a second listing. ``mean_image`` makes
    the tasks sum the images they read for the mean image (:mod:`medsyn_dask.metrics.variety`):
    the result's ``image_sums`` and ``summed_rows``.

    Stored rows are reused only for files whose fingerprint (size and modification time, or
    ETag / version id) is unchanged, or with ``verify_content`` whose content sha256 is
    (every file is then read on the driver); other images are (re-)extracted. Returns an
    :class:`ExtractionResult`; the features are read back with
    :func:`~medsyn_dask.features.load_features`. Raises
    :class:`~medsyn_dask.features.lock.FeatureSetBusy` while another run writes the set.
    """
    with extraction(
        root,
        store,
        group,
        model,
        weights=weights,
        resolution=resolution,
        num_channels=num_channels,
        class_names=class_names,
        storage_options=storage_options,
        store_options=store_options,
        client=client,
        partition_size=partition_size,
        batch_size=batch_size,
        on_bad_image=on_bad_image,
        progress=progress,
        shuffle_seed=shuffle_seed,
        verify_content=verify_content,
        dataset=dataset,
        mean_image=mean_image,
    ) as pending:
        return pending.result()


@contextlib.contextmanager
def extraction(
    root: str,
    store: str,
    group: str,
    model: str = "pixels",
    *,
    weights: str | None = None,
    resolution: int = DEFAULT_RESOLUTION,
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
    verify_content: bool = False,
    dataset: Dataset | None = None,
    mean_image: MeanImageSums | None = None,
) -> Iterator[PendingExtraction]:
    """:func:`extract_features` in two steps: the partitions are submitted on entering, and
    the :class:`PendingExtraction` yielded waits for them (``.result()``). Several sets can
    then run back to back on the cluster (no idle worker between them) while the driver
    waits for each in turn. Leaving the block cancels what was not waited for; the set's
    lock is held until then."""
    _check_options(resolution, num_channels, batch_size, on_bad_image, partition_size)
    check_group(group)
    extractor, weights_path = resolve_name(model, weights, storage_options)
    if dataset is None or verify_content:  # content hashes are made by a listing of their own
        dataset = list_images(root, class_names, storage_options, verify_content=verify_content)
    rel = [relative_path(dataset.root, p) for p in dataset.paths]
    store_options = dict(store_options if store_options is not None else storage_options or {})
    config = FeatureConfig(
        extractor=extractor,
        weights_sha256=weights_digest(weights_path, storage_options),
        resolution=int(resolution),
        num_channels=int(num_channels),
        volumes=dataset.volumes,
        paths_sha256=paths_digest(rel, dataset.classes),
        root=dataset_root(dataset.root),
    )
    job = Job(
        model=model,
        weights=weights_path,
        weights_sha256=config.weights_sha256,
        storage_options=dict(storage_options or {}),
        address=SetAddress(store, store_options, group, config.set_name()),
        resolution=config.resolution,
        num_channels=config.num_channels,
        volumes=dataset.volumes,
        batch_size=int(batch_size),
        on_bad_image=on_bad_image,
        remote="://" in root and not root.startswith("file://"),
        mean_image=mean_image,
    )
    run_id = uuid.uuid4().hex[:8]
    lock = SetLock(store, store_options, group, job.address.name, run_id)
    with lock, current_client(client) as cl:
        fset, fresh = _open_or_create(cl, job, config, dataset, rel, partition_size, run_id)
        plan = _plan(fset, dataset, rel, config, fresh, on_bad_image)
        pending = _submit(cl, job, fset, plan, dataset, rel, progress, shuffle_seed, run_id)
        try:
            yield pending
        finally:
            pending.cancel()


def _open_or_create(
    client: Any,
    job: Job,
    config: FeatureConfig,
    dataset: Dataset,
    rel: list[str],
    partition_size: int | None,
    run_id: str,
) -> tuple[FeatureSet, bool]:
    """The feature set of ``config`` and whether this call created it; a new one is shaped
    by :func:`_probe`."""
    zstore = open_store(job.address.store, job.address.store_options)
    fset = FeatureSet.open(zstore, job.address.group, job.address.name)
    if fset is not None:
        fset.check_config(config)
        if partition_size and partition_size != fset.provenance.partition_size:
            kept = fset.provenance.partition_size
            log.warning("feature set %s keeps its partition size %d", fset.name, kept)
        return fset, False
    n_features, dtype = _probe(client, job, run_id)
    provenance = Provenance(
        **asdict(config),
        model=job.model,
        class_names=tuple(dataset.class_names),
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        n_images=len(rel),
        n_features=n_features,
        dtype=dtype,
        partition_size=partition_size or default_partition_size(len(rel), job.batch_size),
    )
    return FeatureSet.create(zstore, job.address.group, provenance, rel, dataset.classes), True


#: (scheduler, model, weights sha256, resolution, channels, volumes) -> what the probe said: a
#: job's sets share one model, and a new set of the same configuration on the same cluster
#: need not ask a worker again.
_PROBED: dict[tuple, tuple[int, str]] = {}


def _probe(client: Any, job: Job, run_id: str) -> tuple[int, str]:
    """(features per image, dtype name) of the job's extractor, from one task on a worker
    the first time this process sees the configuration; known without either for ``pixels`` in
    NumPy (a round trip to a worker costs some 15 ms of a small run)."""
    known = known_output(job.model, job.num_channels, job.resolution, job.volumes)
    if known is not None:
        return known
    where = client.scheduler.address
    config = (where, job.model, job.weights_sha256, job.resolution, job.num_channels, job.volumes)
    if config not in _PROBED:
        key = f"extract-features-probe-{run_id}"
        future = client.submit(probe, job, key=key, resources=_resources(client), pure=False)
        _PROBED[config] = future.result()
        future.release()  # else held until garbage collection, and rerun if its worker dies
    return _PROBED[config]


def _plan(
    fset: FeatureSet,
    dataset: Dataset,
    rel: list[str],
    config: FeatureConfig,
    fresh: bool,
    on_bad_image: OnBadImage,
) -> Plan:
    """Match the images to stored rows: this set's first, then other image lists' sets. A set
    created by this run (``fresh``) holds no rows yet: its columns are not read back. Under
    ``on_bad_image="error"`` a bad image a skipping run recorded is read again (and raises)."""
    skip = on_bad_image == "skip"
    stored = [_empty_rows(fset.name, rel) if fresh else _stored_rows(fset, skip)]
    fps, shas = dataset.fingerprints, dataset.content_sha256
    matches = match_rows(rel, fps, shas, stored)
    if (matches[0] < 0).any():
        siblings = FeatureSet.siblings(fset.zgroup.store, fset.group, config)
        stored += [_stored_rows(s, skip) for s in siblings]
        matches = match_rows(rel, fps, shas, stored, first=1, matches=matches)
    prov = fset.provenance
    finished = set() if fresh else fset.finished_partitions()
    return plan_partitions(prov.n_images, prov.partition_size, finished, stored, *matches, fps)


def _submit(
    client: Any,
    job: Job,
    fset: FeatureSet,
    plan: Plan,
    dataset: Dataset,
    rel: list[str],
    progress: bool,
    shuffle_seed: int | None,
    run_id: str,
) -> PendingExtraction:
    """Submit the partitions the plan names (nothing waits here)."""
    prov = fset.provenance
    message = (
        f"features {fset.group}: {plan.n_reused} of {prov.n_images} images reused, "
        f"{plan.n_extract} to extract ({plan.n_changed} changed, {plan.n_new} new)"
    )
    # Said on the console for a rerun (something stored); a first run has nothing to report.
    stage(message, enabled=progress and bool(plan.n_reused or plan.n_changed))
    work = list(plan.work)
    if work or not prov.complete:
        finished = fset.finished_partitions()
        fset.reopen_partitions([w.index for w in work if w.index in finished])
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(work)
    job = replace(job, n_features=prov.n_features, dtype=prov.dtype)
    shas = dataset.content_sha256 or ("",) * len(rel)
    resources = _resources(client)
    futures = [
        client.submit(
            run_partition,
            job,
            w,
            list(dataset.paths[w.start : w.stop]),
            list(dataset.classes[w.start : w.stop]),
            list(dataset.fingerprints[w.start : w.stop]),
            list(shas[w.start : w.stop]),
            key=f"extract-features-{w.index}-{run_id}",
            resources=resources,
            pure=False,
        )
        for w in work
    ]
    return PendingExtraction(client, job, fset, plan, work, futures, progress)


def _stored_rows(fset: FeatureSet, bad_reused: bool) -> StoredRows:
    """The set's rows; without ``bad_reused`` its bad images' rows match no file."""
    fingerprints = fset.read_column("fingerprints").astype(object)
    content = fset.read_column("content_sha256").astype(object)
    if not bad_reused:
        bad = fset.read_column("errors") != ""
        fingerprints[bad], content[bad] = "", ""
    return StoredRows(fset.name, fset.read_column("paths").astype(object), fingerprints, content)


def _empty_rows(name: str, rel: list[str]) -> StoredRows:
    """The stored rows of a set just created: its paths, no fingerprint yet."""
    empty = np.full(len(rel), "", dtype=object)
    return StoredRows(
        name=name, paths=np.asarray(rel, dtype=object), fingerprints=empty, content_sha256=empty
    )


def _resources(client: Any) -> dict[str, float] | None:
    workers = client.scheduler_info(n_workers=-1)["workers"].values()
    has_gpu = any(w.get("resources", {}).get(GPU_RESOURCE) for w in workers)
    return {GPU_RESOURCE: 1} if has_gpu else None


def _check_options(resolution, num_channels, batch_size, on_bad_image, partition_size) -> None:
    checks.check_resolution(resolution)
    checks.check_choice(num_channels, "num_channels", checks.NUM_CHANNELS)
    checks.check_int(batch_size, "batch_size")
    checks.check_choice(on_bad_image, "on_bad_image", checks.ON_BAD_IMAGE)
    if partition_size is not None:
        checks.check_int(partition_size, "partition_size")
