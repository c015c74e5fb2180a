"""Preprocessing for feature extraction, as METHOD.md fixes it.

2D images (the reference behaviour): grayscale when ``num_channels == 1`` (Pillow's ITU-R 601-2
luma, as ``Image.convert("L")``), RGB when 3 (a gray image is repeated); bilinear resize to
``resolution x resolution`` (Pillow's ``BILINEAR``, which antialiases when shrinking, as the
reference's ``transforms.Resize`` on PIL images); scale to [0, 1]; normalise to [-1, 1]
(mean 0.5, std 0.5). Result: ``float32`` of shape ``(num_channels, resolution, resolution)``.

Scaling to [0, 1], by input dtype:

- ``uint8``: divided by 255, after the conversion and resize are done on the 8-bit image by
  Pillow exactly as in the reference.
- other unsigned integers (e.g. 16-bit TIFF/PNG) and bool: divided by the dtype's maximum
  (65535 for ``uint16``), so that intensities stay comparable between images; the conversion
  and resize are then done in floating point with the same weights and filter.
- floating point and signed integers (NIfTI, DICOM after rescale, float TIFF): min-max scaled
  per image (per volume); a constant image becomes all 0.

An alpha channel is ignored; a two-channel image is gray plus alpha.

3D volumes (NIfTI, ``(X, Y, Z)``): scaled as above, resized to ``resolution`` along every axis
by trilinear interpolation (``torch.nn.functional.interpolate``, ``align_corners=False``, no
antialiasing), normalised to [-1, 1]; result ``(num_channels, R, R, R)`` (the one intensity
channel repeated when ``num_channels == 3``).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from .. import checks
from .readers import BadImageError

#: Pillow's weights for RGB -> L (ITU-R 601-2 luma).
_LUMA = np.array([299 / 1000, 587 / 1000, 114 / 1000], dtype=np.float32)


def preprocess(
    array: np.ndarray, resolution: int, num_channels: int = 1, *, volume: bool = False
) -> np.ndarray:
    """Preprocess one decoded image (``volume=False``) or 3D volume (``volume=True``).

    Returns ``float32`` in [-1, 1] of shape ``(num_channels, resolution, resolution)`` for an
    image, ``(num_channels, resolution, resolution, resolution)`` for a volume. Raises
    :class:`BadImageError` (a ``ValueError``) for an array of the wrong dimension.
    """
    _check_options(resolution, num_channels)
    if volume:
        return preprocess_volume(array, resolution, num_channels)
    return preprocess_image(array, resolution, num_channels)


def preprocess_image(array: np.ndarray, resolution: int, num_channels: int = 1) -> np.ndarray:
    """Preprocess a 2D image ``(H, W)`` or ``(H, W, C)`` with C in 1..4; see the module doc."""
    _check_options(resolution, num_channels)
    arr = as_channels_last(array)
    if arr.dtype == np.uint8:
        unit = _resize_uint8(arr, resolution, num_channels)
    else:
        unit = _resize_float(_to_unit(arr), resolution, num_channels)
    return _normalise(unit)


def preprocess_volume(array: np.ndarray, resolution: int, num_channels: int = 1) -> np.ndarray:
    """Preprocess a 3D volume ``(X, Y, Z)``; see the module doc."""
    import torch
    import torch.nn.functional as F

    _check_options(resolution, num_channels)
    array = as_volume(array)
    unit = torch.from_numpy(_to_unit(array))[None, None]
    size = (resolution,) * 3
    if tuple(array.shape) != size:
        unit = F.interpolate(unit, size=size, mode="trilinear", align_corners=False)
    out = _normalise(unit[0].numpy())
    return np.repeat(out, num_channels, axis=0) if num_channels > 1 else out


def _check_options(resolution: int, num_channels: int) -> None:
    checks.check_resolution(resolution)
    checks.check_choice(num_channels, "num_channels", checks.NUM_CHANNELS)


def as_channels_last(array: np.ndarray) -> np.ndarray:
    """A 2D image as ``(H, W, C)``: ``(H, W)`` gains an axis, ``C`` must be 1..4.

    Raises :class:`BadImageError` for any other shape.
    """
    if array.ndim == 2:
        return array[:, :, None]
    if array.ndim == 3 and 1 <= array.shape[2] <= 4:
        return array
    raise BadImageError(
        f"expected a 2D image (H, W) or (H, W, C) with C <= 4, got an array of shape {array.shape}"
    )


def as_volume(array: np.ndarray) -> np.ndarray:
    """A 3D volume as ``(X, Y, Z)`` (a trailing axis of length 1 is dropped).

    Raises :class:`BadImageError` for any other shape.
    """
    if array.ndim == 4 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 3:
        raise BadImageError(f"expected a 3D volume (X, Y, Z), got an array of shape {array.shape}")
    return array


def _resize_uint8(arr: np.ndarray, resolution: int, num_channels: int) -> np.ndarray:
    channels = arr.shape[2]
    if channels <= 2 and num_channels == 1 and arr.shape[:2] == (resolution, resolution):
        # Gray at the size wanted: Pillow would copy it twice and change nothing.
        return (arr[:, :, 0].astype(np.float32) / np.float32(255))[None]
    if channels <= 2:
        img = Image.fromarray(np.ascontiguousarray(arr[:, :, 0]), mode="L")
    else:
        img = Image.fromarray(np.ascontiguousarray(arr), mode="RGB" if channels == 3 else "RGBA")
    img = img.convert("L" if num_channels == 1 else "RGB")
    if img.size != (resolution, resolution):
        img = img.resize((resolution, resolution), Image.Resampling.BILINEAR)
    out = np.asarray(img, dtype=np.float32) / np.float32(255)
    return out[None] if out.ndim == 2 else out.transpose(2, 0, 1)


def _to_unit(arr: np.ndarray) -> np.ndarray:
    """Intensities scaled to [0, 1] as float32 (see the module doc for the rule per dtype)."""
    if arr.dtype == np.bool_:
        return arr.astype(np.float32)
    if np.issubdtype(arr.dtype, np.unsignedinteger):
        return arr.astype(np.float32) / np.float32(np.iinfo(arr.dtype).max)
    return min_max_unit(arr).astype(np.float32)


def min_max_unit(arr: np.ndarray) -> np.ndarray:
    """``(v - min) / (max - min)`` over the whole array, in float64; a constant array is 0.

    ``arr`` is any shape of a bool, integer or real dtype. Raises :class:`BadImageError` for
    another dtype and for NaN or infinite values, which have no place on the scale.
    """
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        if arr.dtype != np.bool_:
            raise BadImageError(f"unsupported pixel type {arr.dtype}")
    values = arr.astype(np.float64)
    finite = np.isfinite(values)
    if not finite.all():
        bad = values[~finite].ravel()[0]
        raise BadImageError(f"image has non-finite values (e.g. {bad}); cannot scale it")
    lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if hi <= lo:
        return np.zeros(arr.shape, dtype=np.float64)
    return (values - lo) / (hi - lo)


def _resize_float(unit: np.ndarray, resolution: int, num_channels: int) -> np.ndarray:
    channels = unit.shape[2]
    if channels <= 2:
        planes = [unit[:, :, 0]]
    elif num_channels == 1:
        planes = [unit[:, :, :3] @ _LUMA]
    else:
        planes = [unit[:, :, i] for i in range(3)]
    out = np.stack([resize_plane(p, (resolution, resolution)) for p in planes])
    if num_channels == 3 and out.shape[0] == 1:
        out = np.repeat(out, 3, axis=0)
    return out


def resize_plane(plane: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize (Pillow's ``BILINEAR`` on a float32 ``F`` image) of a 2D plane.

    ``shape`` is the array shape ``(rows, columns)``; the result is float32 of that shape.
    """
    if plane.shape == tuple(shape):
        return plane.astype(np.float32, copy=False)
    img = Image.fromarray(np.ascontiguousarray(plane, dtype=np.float32), mode="F")
    img = img.resize((shape[1], shape[0]), Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.float32)


def _normalise(unit: np.ndarray) -> np.ndarray:
    # (x - 0.5) / 0.5, as transforms.Normalize(mean=0.5, std=0.5)
    return ((unit - np.float32(0.5)) / np.float32(0.5)).astype(np.float32, copy=False)
