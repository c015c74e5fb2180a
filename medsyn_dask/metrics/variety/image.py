"""One image as the mean image sees it: the uint8 array that is averaged, and its resizing.

The conversion follows the reference's ``cv2.imread`` + ``astype(np.uint8)``, not the
extraction preprocessing of :mod:`medsyn_dask.sources.preprocess`, on purpose: the raw variety
measure is the compressed size of an 8-bit image, so the mean is taken over 8-bit images as
OpenCV reads them (16-bit values shifted right by 8, 3 channels), whereas extraction feeds
networks with floats in [-1, 1] (16-bit values divided by 65535, luma or RGB). What both
pipelines do alike is shared with :mod:`~medsyn_dask.sources.preprocess`: the accepted array
shapes, the finite check and the per-image min-max scaling, and the bilinear float resize.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from ...errors import SettingsError
from ...sources.preprocess import as_channels_last, as_volume, min_max_unit, resize_plane


def to_uint8_image(array: np.ndarray, *, volume: bool = False) -> np.ndarray:
    """Convert an image as read into the uint8 array that is averaged.

    2D (``volume=False``): ``array`` is ``(H, W)``, ``(H, W, 1)``, ``(H, W, 2)`` (gray + alpha),
    ``(H, W, 3)`` or ``(H, W, 4)`` (RGBA); the result is ``(H, W, 3)`` uint8. Alpha is dropped
    and gray is repeated to 3 channels, as ``cv2.imread(path)`` (the reference) did. Intensity:

    * ``uint8``: unchanged (8-bit as read);
    * ``uint16``: ``v >> 8`` (``floor(v / 256)``), what ``cv2.imread`` does with 16-bit PNG
      and TIFF files (tests/test_variety_image.py compares with it); a 12-bit image in a 16-bit
      container comes out dark, as it did in the reference;
    * ``bool``: 0 and 255;
    * float with all values in [0, 1]: ``round(v * 255)``;
    * any other dtype (signed or wider integers, other floats): min-max scaled per image to
      [0, 255] and rounded; a constant image becomes 0.

    3D (``volume=True``): ``array`` is ``(X, Y, Z)`` or ``(X, Y, Z, 1)``; the result is
    ``(X, Y, Z)`` uint8, min-max scaled per volume to [0, 255] and rounded, whatever the dtype
    (NIfTI intensities have no fixed range). A constant volume becomes 0.

    Raises :class:`~medsyn_dask.sources.BadImageError` (an ``InputError``, so a
    ``ValueError``) for other shapes and for NaN or infinite values.
    """
    if volume:
        return _min_max_uint8(as_volume(np.asarray(array)))
    a = to_uint8_planes(array)
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    return np.ascontiguousarray(a)


def to_uint8_planes(array: np.ndarray) -> np.ndarray:
    """:func:`to_uint8_image` of a 2D image before gray is repeated: ``(H, W)`` for gray
    (+ alpha), ``(H, W, 3)`` for colour. Summing gray images as one plane saves two copies
    (the three channels of a gray image are equal)."""
    a = as_channels_last(np.asarray(array))
    # Gray (+ alpha) keeps its first channel, RGBA its first three: alpha is not intensity.
    a = a[:, :, 0] if a.shape[2] <= 2 else a[:, :, :3]
    return _intensity_uint8(a)


def _intensity_uint8(a: np.ndarray) -> np.ndarray:
    """8-bit intensities by dtype, the rules of :func:`to_uint8_image`."""
    if a.dtype == np.uint8:
        return a
    if a.dtype == np.uint16:
        return (a >> 8).astype(np.uint8)
    if a.dtype == np.bool_:
        return a.astype(np.uint8) * np.uint8(255)
    # NaN and infinities fail both comparisons and are refused by the min-max scaling.
    if np.issubdtype(a.dtype, np.floating) and a.size and a.min() >= 0.0 and a.max() <= 1.0:
        return np.rint(a.astype(np.float64) * 255.0).astype(np.uint8)
    return _min_max_uint8(a)


def _min_max_uint8(a: np.ndarray) -> np.ndarray:
    """Min-max scaled to [0, 255] and rounded (half to even); a constant array becomes 0."""
    return np.rint(min_max_unit(a) * 255.0).astype(np.uint8)


def resize_image(image: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Resize a uint8 image to ``shape`` with Pillow's bilinear filter.

    ``image`` is ``(H, W, 3)`` or a gray plane ``(H, W)`` (2D) and ``shape`` ``(H', W')``,
    or ``image`` is ``(X, Y, Z)``
    (3D) and ``shape`` ``(X', Y', Z')``; the result is uint8 of the target shape. Volumes are
    resized separably (each Z slice in X and Y, then each X slice in Z) in float and rounded.
    Shapes are array shapes (rows first), not Pillow's ``(width, height)``.
    """
    shape = tuple(int(s) for s in shape)
    if (image.ndim == 2 or image.shape[-1] == 3) and len(shape) == 2:
        if image.shape[:2] == shape:
            return image
        # 8-bit RGB (or one gray plane: Pillow resizes each band alike) straight through
        # Pillow, as one would resize the image file itself.
        pil = Image.fromarray(image).resize(shape[::-1], Image.Resampling.BILINEAR)
        return np.asarray(pil)
    if image.ndim == 3 and len(shape) == 3:
        if image.shape == shape:
            return image
        v = _resize_axes01(image.astype(np.float32), shape[:2])
        v = _resize_axes01(v.transpose(1, 2, 0), (shape[1], shape[2])).transpose(2, 0, 1)
        return np.rint(np.clip(v, 0.0, 255.0)).astype(np.uint8)
    raise SettingsError(f"cannot resize an image of shape {image.shape} to {shape}")


def _resize_axes01(v: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of each slice ``v[:, :, k]`` to ``shape`` (float32 throughout)."""
    out = np.empty(shape + (v.shape[2],), dtype=np.float32)
    for k in range(v.shape[2]):
        out[:, :, k] = resize_plane(v[:, :, k], shape)
    return out
