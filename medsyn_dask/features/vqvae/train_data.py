"""The training images of a VQ-VAE: read and preprocessed exactly as extraction reads them.

Every file of the :class:`~medsyn_dask.sources.Dataset` is read with
:func:`~medsyn_dask.sources.read_image` and preprocessed with
:func:`~medsyn_dask.sources.preprocess` (METHOD.md), so the model is trained on what it will
be asked to encode. A 3D volume gives the three orthogonal central slices that the 2.5D mode
of extraction (:meth:`~medsyn_dask.features.extractor.Extractor.extract`) encodes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from ...errors import InputError
from ...sources import BadImageError, Dataset, preprocess, read_image, relative_path
from ...sources.preprocess import as_channels_last


def file_list_sha256(dataset: Dataset) -> str:
    """sha256 (hex) of the sorted ``CLASS/file`` paths of ``dataset``, one per line: what
    the checkpoint records of the data it saw (the same files give the same digest)."""
    rel = sorted(relative_path(dataset.root, p) for p in dataset.paths)
    return hashlib.sha256("\n".join(rel).encode()).hexdigest()


def load_training_images(
    dataset: Dataset,
    resolution: int,
    num_channels: int,
    storage_options: Mapping[str, Any] | None = None,
) -> np.ndarray:
    """All images of ``dataset`` preprocessed: ``float32`` ``(N, num_channels, R, R)`` in
    [-1, 1] (``N`` = 3 x the volumes for a dataset of volumes; memory ``N * C * R * R * 4``
    bytes).

    Raises :class:`~medsyn_dask.errors.InputError` naming two files when the images mix
    gray and colour (their channel counts differ), and
    :class:`~medsyn_dask.sources.BadImageError` naming a file that cannot be read.
    """
    opts = dict(storage_options or {})
    # Reads and decodes overlap (I/O and Pillow release the GIL); order is kept.
    with ThreadPoolExecutor(max_workers=8) as pool:
        arrays = list(pool.map(lambda p: read_image(p, opts), dataset.paths))
    if not dataset.volumes:
        check_channel_counts(dataset.paths, arrays)
    out = []
    for path, array in zip(dataset.paths, arrays, strict=True):
        try:
            out.append(preprocess(array, resolution, num_channels, volume=dataset.volumes))
        except BadImageError as exc:
            raise BadImageError(f"{path}: {exc}") from None
    if dataset.volumes:
        out = [s for v in out for s in central_slices(v)]
    return np.stack(out)


def channel_count(array: np.ndarray) -> int:
    """1 for a gray image (with or without alpha), 3 for a colour one (with or without alpha)."""
    return 1 if as_channels_last(array).shape[2] <= 2 else 3


def check_channel_counts(paths: Sequence[str], arrays: Sequence[np.ndarray]) -> None:
    """Raise :class:`InputError` naming a gray and a colour file when both are present."""
    counts = [channel_count(a) for a in arrays]
    if len(set(counts)) > 1:
        gray = paths[counts.index(1)]
        colour = paths[counts.index(3)]
        raise InputError(
            f"the training images mix gray and colour images (e.g. {gray} has 1 channel, "
            f"{colour} has 3): convert them to one kind, or train one model per kind"
        )


def central_slices(volume: np.ndarray) -> list[np.ndarray]:
    """The three orthogonal central slices ``(C, R, R)`` of a preprocessed volume
    ``(C, R, R, R)``, at ``D//2``, ``H//2``, ``W//2`` as extraction's 2.5D mode takes them."""
    d, h, w = (n // 2 for n in volume.shape[1:])
    return [np.ascontiguousarray(s) for s in (volume[:, d], volume[:, :, h], volume[:, :, :, w])]
