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
added).
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
    the bytes of float64 for a task to send); :func:`combine_class_sums` adds such sums in
    float64.
    """
    total, count = sums.get(cls, (None, 0))
    if total is None:
        total = np.zeros(shape, dtype=np.uint32)
    total += image if image.ndim == len(shape) else image[..., None]
    sums[cls] = (total, count + 1)


def add_class_sums(total: ClassSums, part: ClassSums) -> None:
    """Add one task's :data:`ClassSums` into ``total`` in place, class by class, in float64
    (one array per class however many tasks are added; classes in first-seen order)."""
    for cls, (array, count) in part.items():
        if cls in total:
            into, n = total[cls]
            into += array
            total[cls] = (into, n + count)
        else:
            total[cls] = (array.astype(np.float64), count)


def combine_class_sums(parts: Sequence[ClassSums]) -> ClassSums:
    """Several tasks' :data:`ClassSums` added, class by class (classes in first-seen order)."""
    total: ClassSums = {}
    for part in parts:
        add_class_sums(total, part)
    return total
