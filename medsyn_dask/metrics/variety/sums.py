"""Mean-image sums taken by another pass over the images, so that each image is read once.

Feature extraction reads every image anyway. Given a :class:`MeanImageSums` (the target shape
of the group's mean image), an extraction task also converts each image it reads into the
uint8 array that is averaged (:func:`~.image.to_uint8_image`, resized to the target shape; a
gray image as one plane, added to all three channels) and adds it to its partition's
per-class sums. :func:`~.group.group_variety` adds those sums to those of the images no
extraction task summed (rows reused from the feature store), which it reads
(:func:`~.graph.partial_sums_delayed`). The numbers are those of the reading pass: the same
conversion, resizing and sums, added in another order (exact: every sum is an integer below
2**53).

Shapes: ``ClassSums`` maps class name -> :data:`~.score.Partial` ``(sum, count)``, the sum
``(H, W, 3)`` for 2D images, ``(X, Y, Z)`` for volumes (``uint32`` in a task, ``float64`` once
added). A task's sum of a class whose images were all gray is one ``(H, W)`` plane, added to
each channel when sums are added.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .image import resize_image, to_uint8_image, to_uint8_planes
from .score import Partial

#: Class name -> partial sum of that class's images.
ClassSums = dict[str, Partial]


@dataclass(frozen=True)
class MeanImageSums:
    """What an extraction task needs to sum images for the mean image (picklable).

    ``shape`` is the mean image's array shape without channels (``(H, W)`` or ``(X, Y, Z)``),
    ``volume`` whether the images are 3D volumes.
    """

    shape: tuple[int, ...]
    volume: bool

    def convert(self, array: np.ndarray) -> np.ndarray:
        """The image as read -> the uint8 array added to the sums, at the target shape.

        Raises :class:`~medsyn_dask.sources.BadImageError` as :func:`~.image.to_uint8_image`.
        """
        if self.volume:
            return resize_image(to_uint8_image(array, volume=True), self.shape)
        return resize_image(to_uint8_planes(array), self.shape)  # gray stays one plane

    def add(self, sums: ClassSums, cls: str, image: np.ndarray) -> None:
        """:func:`add_image`, for callers that know this object only (extraction tasks)."""
        add_image(sums, cls, image, self.shape if self.volume else self.shape + (3,))

    def add_sums(self, total: ClassSums, part: ClassSums) -> None:
        """:func:`add_class_sums`, for callers that know this object only."""
        add_class_sums(total, part)


def add_image(sums: ClassSums, cls: str, image: np.ndarray, shape: tuple[int, ...]) -> None:
    """Add one converted image (:meth:`MeanImageSums.convert`) to class ``cls`` of ``sums``.

    ``shape`` is the sum's: ``(H, W, 3)`` or ``(X, Y, Z)``; a gray plane ``(H, W)`` is added
    to each of the three channels. The sum is ``uint32`` (exact up to 16 million images, half
    the bytes of float64 for a task to send). While every image of a class is gray, its sum is
    kept as one ``(H, W)`` plane that stands for the three equal channels (a third of the
    additions and of the bytes sent); the first colour image widens it to ``(H, W, 3)``.
    :func:`add_class_sums` adds such sums in float64, as three channels.
    """
    total, count = sums.get(cls, (None, 0))
    if total is None:
        total = np.zeros(shape[: image.ndim], dtype=np.uint32)
    elif total.ndim < image.ndim:  # the class's first colour image after gray ones
        total = np.repeat(total[..., None], shape[-1], axis=-1)
    total += image if image.ndim == total.ndim else image[..., None]
    sums[cls] = (total, count + 1)


def add_class_sums(total: ClassSums, part: ClassSums) -> None:
    """Add one task's :data:`ClassSums` into ``total`` in place, class by class, in float64
    (one array per class however many tasks are added; classes in first-seen order). A gray
    plane ``(H, W)`` (:func:`add_image`) is added to the three channels."""
    for cls, (array, count) in part.items():
        gray = array.ndim == 2  # a gray plane for three equal channels (volume sums are 3D)
        added = array[..., None] if gray else array
        if cls in total:
            into, n = total[cls]
            into += added
            total[cls] = (into, n + count)
        else:
            into = np.empty(array.shape + (3,) if gray else array.shape)
            into[...] = added
            total[cls] = (into, count)


def combine_class_sums(parts: Sequence[ClassSums]) -> ClassSums:
    """Several tasks' :data:`ClassSums` added, class by class (classes in first-seen order)."""
    total: ClassSums = {}
    for part in parts:
        add_class_sums(total, part)
    return total
