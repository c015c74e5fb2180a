"""The Dask graph of the per-class mean images: one task per partition of paths, a tree sum.

The graph is one plain dict layer, as in :mod:`medsyn_dask.neighbours.graph`. Task key prefixes,
as the dashboard shows them:

- ``mean-image-shape``: reads the first image for the target shape (when none is given);
- ``mean-image-partial``: reads one partition of a class's paths, one image at a time, into a
  float64 sum (:func:`~.score.accumulate`);
- ``mean-image-combine``: adds ``split_every`` partial sums, level by level of a tree;
- ``mean-image``: the uint8 mean of one class (:func:`~.score.finalize_mean`).

:func:`partial_sums_delayed` stops before the mean: for images another pass (feature
extraction, :mod:`.sums`) already summed, the caller adds those sums first.

No process holds more than one image of a partition plus its float64 sum, or the
``split_every`` sums of one tree node.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence

import dask
import numpy as np
from dask.base import tokenize
from dask.delayed import Delayed
from dask.highlevelgraph import HighLevelGraph

from ... import checks
from ...errors import InputError, SettingsError
from ...sources.listing import is_volume_path
from ...sources.readers import read_image
from .image import to_uint8_image
from .score import Partial, accumulate, class_mean, combine_partials

#: ``read(path)``: the image or volume at ``path`` as decoded (any dtype; see to_uint8_image).
Reader = Callable[[str], np.ndarray]
PathsByClass = Mapping[str, Sequence[str | os.PathLike[str]]]


def mean_images_delayed(
    paths_by_class: PathsByClass,
    read: Reader = read_image,
    *,
    partition_size: int = 64,
    target_size: tuple[int, ...] | None = None,
    volumes: bool | None = None,
    split_every: int = 8,
) -> dict[str, Delayed]:
    """The graph of :func:`mean_images`: class name -> uncomputed uint8 mean, in the order given.

    Compute several groups' graphs in one ``dask.compute`` call to share the cluster. Keys:
    ``mean-image-shape-<token>``, ``(mean-image-partial-<token>, class, partition)``,
    ``(mean-image-combine-<token>, class, level, node)`` and ``(mean-image-<token>, class)``.
    """
    paths = check_paths(paths_by_class)
    volumes = check_reduction(paths, partition_size, target_size, volumes, split_every)
    return _graph(paths, read, partition_size, target_size, volumes, split_every, finish=True)


def partial_sums_delayed(
    paths_by_class: PathsByClass,
    read: Reader,
    *,
    target_size: tuple[int, ...],
    volumes: bool,
    partition_size: int = 64,
    split_every: int = 8,
) -> dict[str, Delayed]:
    """Class -> uncomputed partial sum (:data:`~.score.Partial`) of the images at its paths,
    for the classes with paths (an empty list: the class's images were summed elsewhere, see
    :mod:`.sums`). The tasks of :func:`mean_images_delayed` but its last: the caller adds
    the other sums before taking the mean."""
    paths = {c: p for c, p in check_paths(paths_by_class, allow_empty=True).items() if p}
    check_reduction(paths_by_class, partition_size, target_size, volumes, split_every)
    return _graph(paths, read, partition_size, target_size, volumes, split_every, finish=False)


def _graph(paths, read, partition_size, target_size, volumes, split_every, finish: bool):
    """Class -> Delayed of its mean (``finish``) or of its partial sum, in one graph layer."""
    token = tokenize(paths, read, partition_size, target_size, volumes, split_every, finish)
    dsk: dict = {}
    if target_size is None:
        shape = _shape_task(dsk, token, next(iter(paths.values()))[0], read, volumes)
    else:
        shape = tuple(int(s) for s in target_size)
    keys = {
        cls: _class_tree(
            dsk, token, i, class_paths, read, shape, volumes, partition_size, split_every
        )
        for i, (cls, class_paths) in enumerate(paths.items())
    }
    if finish:
        for i, (cls, key) in enumerate(keys.items()):
            keys[cls] = (f"mean-image-{token}", i)
            dsk[keys[cls]] = (class_mean, key, cls)
    layer = f"mean-image-{token}"
    graph = HighLevelGraph.from_collections(layer, dsk, dependencies=[])
    return {cls: Delayed(key, graph, layer=layer) for cls, key in keys.items()}


def mean_images(
    paths_by_class: PathsByClass,
    read: Reader = read_image,
    *,
    partition_size: int = 64,
    target_size: tuple[int, ...] | None = None,
    volumes: bool | None = None,
    split_every: int = 8,
) -> dict[str, np.ndarray]:
    """Per-class uint8 mean images of a group, as a distributed reduction.

    ``paths_by_class`` maps class name to image paths (or URLs that ``read`` understands);
    ``read(path)`` returns the image as read (by default :func:`medsyn_dask.sources.read_image`)
    and must be picklable, since it runs on the workers. Each task of ``partition_size`` paths
    reads its images one at a time into a float64 sum. All images are resized (bilinear) to
    ``target_size`` (array shape: ``(H, W)`` or ``(X, Y, Z)``), by default the shape of the
    first image of the first class. ``volumes`` says whether the paths are 3D volumes; by
    default it follows the file names (``.nii``/``.nii.gz``).

    Runs on the current Dask scheduler (the default distributed ``Client`` if there is one).
    Returns class name -> uint8 mean, ``(H, W, 3)`` or ``(X, Y, Z)``, in the order given.
    """
    graph = mean_images_delayed(
        paths_by_class,
        read,
        partition_size=partition_size,
        target_size=target_size,
        volumes=volumes,
        split_every=split_every,
    )
    (means,) = dask.compute(graph)
    return means


def first_image_shape(path: str, read: Reader, volume: bool) -> tuple[int, ...]:
    """The target shape given by the image at ``path``, read on the current scheduler."""
    dsk: dict = {}
    key = _shape_task(dsk, tokenize(path, read, volume), path, read, volume)
    (shape,) = dask.compute(Delayed(key, HighLevelGraph.from_collections(key, dsk, [])))
    return tuple(shape)


def first_readable_shape(paths: Sequence[str], read: Reader, volume: bool) -> tuple[int, ...]:
    """The target shape given by the first of ``paths`` that reads as an image (bad files,
    which extraction skips, are passed over), read in this process: one image, in general,
    which a task would wait for a worker to import the package to read. Raises the first
    file's error when none reads."""
    if not paths:
        raise SettingsError("first_readable_shape needs at least one path, got none")
    first_error = None
    for path in paths:
        try:
            return tuple(_read_shape(path, read, volume))
        except (InputError, FileNotFoundError) as err:  # BadImageError is an InputError
            first_error = first_error or err
    raise first_error


def check_paths(paths_by_class: PathsByClass, allow_empty: bool = False) -> dict[str, list[str]]:
    """Class -> list of path strings; SettingsError for no classes or a class without paths
    (unless ``allow_empty``: its images were summed by another pass)."""
    if not paths_by_class:
        raise SettingsError("mean_images needs at least one class, got none")
    out = {}
    for cls, paths in paths_by_class.items():
        if isinstance(paths, (str, os.PathLike)) or (len(paths) == 0 and not allow_empty):
            raise SettingsError(f"class {cls!r} needs a non-empty list of paths, got {paths!r}")
        out[cls] = [os.fspath(p) for p in paths]
    return out


def check_reduction(
    paths_by_class: dict[str, list[str]],
    partition_size: int,
    target_size: tuple[int, ...] | None,
    volumes: bool | None,
    split_every: int,
) -> bool:
    """Validate the reduction's settings; return ``volumes``, inferred from names if None."""
    checks.check_int(partition_size, "partition_size")
    checks.check_int(split_every, "split_every", minimum=2)
    if volumes is None:
        kinds = {is_volume_path(p) for paths in paths_by_class.values() for p in paths}
        if not kinds:
            raise SettingsError("no paths to tell 2D images from 3D volumes; pass volumes=")
        if len(kinds) != 1:
            raise SettingsError("paths mix 3D volumes (.nii, .nii.gz) and 2D images; pass volumes=")
        volumes = kinds.pop()
    if target_size is not None and (
        len(target_size) != (3 if volumes else 2) or min(target_size) < 1
    ):
        want = "(X, Y, Z)" if volumes else "(H, W)"
        raise SettingsError(f"target_size must be {want} with positive sizes, got {target_size}")
    return volumes


def _shape_task(dsk: dict, token: str, path: str, read: Reader, volume: bool) -> str:
    key = f"mean-image-shape-{token}"
    dsk[key] = (_read_shape, path, read, volume)
    return key


def _class_tree(
    dsk: dict,
    token: str,
    index: int,
    paths: list[str],
    read: Reader,
    shape: str | tuple[int, ...],
    volume: bool,
    partition_size: int,
    split_every: int,
) -> tuple:
    """Add the tasks of class number ``index`` to ``dsk``; return the key of its partial sum."""
    level = []
    for n, start in enumerate(range(0, len(paths), partition_size)):
        key = (f"mean-image-partial-{token}", index, n)
        dsk[key] = (_partial_task, paths[start : start + partition_size], read, shape, volume)
        level.append(key)
    depth = 0
    while len(level) > 1:
        nodes = [level[start : start + split_every] for start in range(0, len(level), split_every)]
        level = [(f"mean-image-combine-{token}", index, depth, n) for n in range(len(nodes))]
        dsk.update({key: (combine_partials, node) for key, node in zip(level, nodes, strict=True)})
        depth += 1
    return level[0]


def _read_shape(path: str, read: Reader, volume: bool) -> tuple[int, ...]:
    image = _read_uint8(path, read, volume)
    return image.shape if volume else image.shape[:2]


def _partial_task(paths: list[str], read: Reader, shape: tuple[int, ...], volume: bool) -> Partial:
    # A generator: each image is read, converted and added before the next one is read.
    return accumulate((_read_uint8(p, read, volume) for p in paths), shape)


def _read_uint8(path: str, read: Reader, volume: bool) -> np.ndarray:
    image = read(path)
    try:
        return to_uint8_image(image, volume=volume)
    except ValueError as err:  # say which file, out of thousands, was bad
        raise InputError(f"{path}: {err}") from err
