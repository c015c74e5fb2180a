"""Partial sums of uint8 images, their truncated means, and the variety score from sizes.

Means are accumulated in float64 and cast to uint8 by truncation (``np.floor``), as the
reference's ``astype(np.uint8)``. The reference summed in float32: the result is the same up to
65,793 images per class (the sum stays below 2**24, so float32 holds it exactly, and a float32
quotient cannot round across an integer); beyond that its float32 sum drops counts and float64
is the fix.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from ...errors import InputError, SettingsError
from .image import resize_image

#: A partial sum: ``(sum of uint8 images as float64, number of images)``.
Partial = tuple[np.ndarray, int]


def accumulate(images: Iterable[np.ndarray], shape: tuple[int, ...]) -> Partial:
    """Sum uint8 images (as returned by ``to_uint8_image``) after resizing them to ``shape``.

    ``shape`` is the image shape without channels: ``(H, W)`` for 2D, ``(X, Y, Z)`` for 3D.
    Images are consumed one at a time, so ``images`` may be a generator that reads lazily.
    Returns ``(sum, count)``, the sum float64 of shape ``(H, W, 3)`` or ``(X, Y, Z)``.
    """
    shape = tuple(int(s) for s in shape)
    total: np.ndarray | None = None
    count = 0
    for image in images:
        if image.dtype != np.uint8:
            raise SettingsError(f"accumulate expects uint8 images, got {image.dtype}")
        image = resize_image(image, shape)
        if total is None:
            total = np.zeros(image.shape, dtype=np.float64)
        total += image
        count += 1
    if total is None:
        raise SettingsError("accumulate got no images")
    return total, count


def combine_partials(partials: Sequence[Partial]) -> Partial:
    """Add partial sums: ``(sum of sums, sum of counts)``. All sums must have one shape."""
    if not partials:
        raise SettingsError("combine_partials got no partial sums")
    _check_one_shape([s for s, _ in partials], "partial sums")
    total = np.zeros(partials[0][0].shape, dtype=np.float64)
    for s, _ in partials:
        total += s
    return total, sum(int(c) for _, c in partials)


def finalize_mean(partial: Partial) -> np.ndarray:
    """The mean image of a partial sum, cast to uint8 by truncation (``astype(np.uint8)``)."""
    total, count = partial
    if count < 1:
        raise SettingsError(f"cannot take the mean of {count} images")
    return np.floor(total / count).astype(np.uint8)


def class_mean(partial: Partial, cls: str) -> np.ndarray:
    """:func:`finalize_mean` of class ``cls``'s sum; InputError naming it when it is empty."""
    if partial[1] < 1:  # every image of the class was left out as unreadable
        raise InputError(f"class {cls!r} has no readable image to average")
    return finalize_mean(partial)


def all_classes_mean(class_means: Mapping[str, np.ndarray] | Sequence[np.ndarray]) -> np.ndarray:
    """The all-classes mean image: mean of the per-class uint8 means, truncated to uint8."""
    means = list(class_means.values()) if isinstance(class_means, Mapping) else list(class_means)
    if not means:
        raise SettingsError("all_classes_mean got no class means")
    _check_one_shape(means, "class means")
    return np.floor(np.mean(np.stack(means).astype(np.float64), axis=0)).astype(np.uint8)


def _check_one_shape(arrays: Sequence[np.ndarray], what: str) -> None:
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise SettingsError(f"{what} have different shapes and cannot be added: {sorted(shapes)}")


def variety_scores(sizes: Mapping[str, int]) -> dict[str, float | None]:
    """Variety per group: ``1 - (size_g - min) / (max - min)`` over the groups analysed together.

    ``sizes`` maps group name to the lossless size in bytes of its all-classes mean image.
    The smallest size (blurriest mean, most varied) scores 1, the largest 0. For a single group
    or equal sizes the score is undefined and every value is ``None``;
    :func:`variety_undefined_reason` says why.
    """
    if variety_undefined_reason(sizes) is not None:
        return {g: None for g in sizes}
    lo, hi = min(sizes.values()), max(sizes.values())
    return {g: 1.0 - (s - lo) / (hi - lo) for g, s in sizes.items()}


def variety_undefined_reason(sizes: Mapping[str, int]) -> str | None:
    """Why :func:`variety_scores` is ``None`` for ``sizes``, or ``None`` when it is defined."""
    _check_sizes(sizes)
    if len(sizes) == 1:
        (group,) = sizes
        return f"variety is relative to other groups; only one group ({group!r}) was analysed"
    if len(set(sizes.values())) == 1:
        size = next(iter(sizes.values()))
        return f"all {len(sizes)} groups have the same mean-image size ({size} bytes)"
    return None


def _check_sizes(sizes: Mapping[str, int]) -> None:
    if not sizes:
        raise SettingsError("variety needs the mean-image size of at least one group, got none")
    for group, size in sizes.items():
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 0:
            raise SettingsError(f"size of group {group!r} must be a byte count >= 0, got {size!r}")
