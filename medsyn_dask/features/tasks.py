"""What an extraction task runs on a worker: one partition's rows written, or one probe.

A task loads the extractor once per worker process (:func:`.registry.cached_extractor`), on the
worker's GPU when it has one, copies the rows the plan reuses, reads and preprocesses the
other images batch by batch, and writes the partition (:meth:`.FeatureSet.write_partition`).
With ``Job.mean_image`` set, it also sums the images it reads for the mean image
(:mod:`medsyn_dask.metrics.variety.sums`), so that the variety pass need not read them again.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..cluster import relax_malloc_trim
from ..errors import InputError, MedsynError
from ..sources import BadImageError, preprocess, read_image
from .feature_set import SetAddress
from .registry import cached_extractor, forget_extractor
from .reuse import PartitionWork

if TYPE_CHECKING:
    from ..metrics.variety.sums import ClassSums, MeanImageSums
    from .extractor import Extractor


@dataclass(frozen=True)
class Job:
    """Everything a worker task needs (picklable)."""

    model: str
    weights: str | None
    weights_sha256: str | None
    storage_options: dict[str, Any]
    address: SetAddress
    resolution: int
    num_channels: int
    volumes: bool
    batch_size: int
    on_bad_image: str
    remote: bool
    n_features: int = 0
    dtype: str = "float32"
    #: Sum the images read for the mean image too (None: features only).
    mean_image: MeanImageSums | None = None


@dataclass
class PartitionDone:
    """What a partition task returns: images extracted, and the per-class mean-image sums of
    those of them that were read without error (empty without ``Job.mean_image``)."""

    n_extracted: int
    sums: ClassSums = field(default_factory=dict)


def run_partition(
    job: Job,
    work: PartitionWork,
    paths: Sequence[str],
    classes: Sequence[str],
    fingerprints: Sequence[str],
    content_sha256: Sequence[str],
) -> PartitionDone:
    """Write partition ``work.index`` (``paths`` etc. are its rows' values); returns the number
    of images extracted and their mean-image sums. A bad image raises :class:`BadImageError`
    naming the file, or is recorded with its error when ``job.on_bad_image == "skip"``."""
    fset = job.address.open()
    n, start = work.stop - work.start, work.start
    dtype = np.dtype(job.dtype)
    feats = np.full((n, job.n_features), np.nan if dtype.kind == "f" else -1, dtype)
    valid = np.zeros(n, dtype=bool)
    errors = np.full(n, "", dtype=object)
    for name, targets, sources in work.reuse:
        source = fset if name == fset.name else job.address.sibling(name).open(read_only=True)
        at = np.asarray(targets) - start
        feats[at], valid[at], errors[at] = source.read_rows(sources)
    todo = [i - start for i in work.extract]
    done = PartitionDone(len(todo))
    if todo:
        extractor = _worker_extractor(job)
        for b in range(0, len(todo), job.batch_size):
            rows, arrays = [], []
            batch = todo[b : b + job.batch_size]
            for i, loaded in zip(batch, _load_batch(job, [paths[i] for i in batch]), strict=True):
                if isinstance(loaded, Exception):
                    problem = _problem(loaded, paths[i])
                    if job.on_bad_image == "error":
                        raise BadImageError(f"{paths[i]}: {problem}")
                    errors[i] = problem
                else:
                    rows.append(i)
                    arrays.append(loaded[0])
                    if job.mean_image is not None:
                        job.mean_image.add(done.sums, classes[i], loaded[1])
            if arrays:
                where = f"the batch of {len(rows)} images starting at {paths[rows[0]]}"
                out = _run_model(job, extractor, np.stack(arrays), where)
                feats[rows] = _checked(job, out, paths[rows[0]])
                valid[rows] = True
    fset.write_partition(work.index, feats, valid, errors, fingerprints, content_sha256)
    return done


def probe(job: Job) -> tuple[int, str]:
    """Worker task: (number of features, dtype name) of the extractor on one blank input."""
    extractor = _worker_extractor(job)
    # A full batch of images, so that the model's first (planning) call sees the shape the
    # partitions will use; a single volume, which may be large.
    n = 1 if job.volumes else job.batch_size
    shape = (n, job.num_channels) + (job.resolution,) * (3 if job.volumes else 2)
    out = _run_model(job, extractor, np.zeros(shape, dtype=np.float32), f"a blank batch {shape}")
    return int(out.shape[1]), out.dtype.name


def _run_model(job: Job, extractor: Extractor, batch: np.ndarray, where: str) -> np.ndarray:
    """``extractor.extract(batch)``; a failure of the model itself becomes an
    :class:`InputError` naming the model, its weights file and ``where`` (the batch), in one
    line; the model's own full message is kept as a note (shown by ``--debug``)."""
    try:
        return extractor.extract(batch)
    except MedsynError:
        raise
    except Exception as exc:  # a user's model raises anything (torch.jit.Error: no RuntimeError)
        text = str(exc).strip()
        last = text.splitlines()[-1].removeprefix("builtins.") if text else type(exc).__name__
        weights = f" (weights {job.weights})" if job.weights else ""
        error = InputError(f"model {job.model!r}{weights} failed on {where}: {last}")
        error.add_note(f"{type(exc).__name__}: {text}")
        raise error from exc


def _checked(job: Job, out: np.ndarray, path: str) -> np.ndarray:
    if out.shape[1] != job.n_features:
        raise ValueError(
            f"extractor {job.model!r} gave {out.shape[1]} features for {path}, expected "
            f"{job.n_features} (a model whose output size depends on its input)"
        )
    return out


Loaded = tuple[np.ndarray, np.ndarray | None]


def _load_batch(job: Job, paths: Sequence[str]) -> list[Loaded | Exception]:
    if job.remote and len(paths) > 1:
        # Object-store reads are latency-bound: overlap them. Local reads stay on the task's
        # own thread so that a worker uses the CPU it was given.
        with ThreadPoolExecutor(max_workers=8) as pool:
            return list(pool.map(lambda p: _load_one(job, p), paths))
    return [_load_one(job, p) for p in paths]


def _load_one(job: Job, path: str) -> Loaded | Exception:
    """The preprocessed image and its mean-image form (None without ``job.mean_image``), or
    the exception that makes it a bad image."""
    try:
        arr = read_image(path, job.storage_options)
        pre = preprocess(arr, job.resolution, job.num_channels, volume=job.volumes)
        return pre, None if job.mean_image is None else job.mean_image.convert(arr)
    except (BadImageError, FileNotFoundError, PermissionError) as exc:
        return exc  # an object store's 403 says only "Forbidden": the file is named by callers


def _problem(exc: Exception, path: str) -> str:
    """The error message without the file name (callers add it)."""
    if isinstance(exc, FileNotFoundError):
        return "file not found"
    if isinstance(exc, PermissionError):
        return f"not readable (permission denied: {exc})"
    return str(exc).removeprefix(f"{path}: ")


def _worker_extractor(job: Job) -> Extractor:
    relax_malloc_trim()
    args = (job.model, job.weights, job.storage_options, "auto")
    extractor = cached_extractor(*args)
    if extractor.weights_sha256 != job.weights_sha256:  # replaced since this worker loaded it
        forget_extractor(*args)
        extractor = cached_extractor(*args)
    if extractor.weights_sha256 != job.weights_sha256:
        raise ValueError(
            f"the weights file {job.weights} changed during the run (sha256 "
            f"{extractor.weights_sha256} on a worker, {job.weights_sha256} on the driver)"
        )
    return extractor
