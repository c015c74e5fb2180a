"""Decoding one image or volume file into a NumPy array, through fsspec (disk and S3 alike).

:func:`read_image` returns the array as decoded, with only the conversions needed to make it a
plain array of intensities:

- Pillow (PNG, JPEG, TIFF, BMP): ``L``/``I;16``/``I``/``F`` give ``(H, W)``; colour images give
  ``(H, W, 3)`` (``RGB``; palette, CMYK and YCbCr are converted to RGB) or ``(H, W, 4)``
  (``RGBA``; ``LA`` is given as ``(H, W, 2)``). 16-bit images come back as ``uint16`` (a
  32-bit ``I`` image whose values fit in 0..65535, as Pillow decodes some 16-bit PNGs, is
  returned as ``uint16``); bilevel images as ``uint8`` 0/255. A file of several frames (an
  animated PNG, a multi-page TIFF) is refused rather than cut to its first frame.
- nibabel (``.nii``, ``.nii.gz``): the ``float32`` voxel values after the header's
  ``scl_slope``/``scl_inter``, shape ``(X, Y, Z)`` (a trailing axis of length 1 is dropped).
- pydicom (``.dcm``), optional: the ``float32`` pixel values after ``RescaleSlope`` and
  ``RescaleIntercept``, ``(H, W)`` or ``(H, W, 3)``.

Every decoded array is checked before it is returned, so that the extraction and the mean
images refuse the same files: the dimension above, every side at least :data:`MIN_SIDE` pixels
(one pixel has nothing to interpolate between: a 1 x 1 image would become a flat image) and no
NaN or infinite value. A refused file raises :class:`BadImageError` naming it; the README's
"Bad input files" lists what happens to each kind of file.

How those intensities become [0, 1] is :mod:`medsyn_dask.sources.preprocess`'s job.
"""

from __future__ import annotations

import errno
import gzip
import io
from collections.abc import Mapping
from typing import Any

import fsspec
import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import InputError
from .listing import DICOM_SUFFIXES, IMAGE_SUFFIXES, VOLUME_SUFFIXES

#: Smallest side of an image or volume, pixels (voxels); a smaller file is a bad image.
MIN_SIDE = 2
#: What s3fs reads in a path as an object version (``key?versionId=ID``), whatever the key.
VERSION_MARK = "?versionId="


class BadImageError(InputError):
    """A file that cannot be decoded, or decodes to an array that is not a usable image."""


class MissingReaderError(InputError):
    """An optional package needed to read a file type is not installed (not a bad image)."""


def read_bytes(path: str, storage_options: Mapping[str, Any] | None = None) -> bytes:
    """The whole content of ``path`` (local path or fsspec URL)."""
    if "://" not in path:  # local: straight from the OS (fsspec's open costs ~0.1 ms a file)
        with open(path, "rb") as f:
            return f.read()
    if VERSION_MARK in path and path.startswith(("s3://", "s3a://")):
        raise BadImageError(
            f"{path}: cannot be read through s3fs, which takes {VERSION_MARK!r} in an object "
            "key for a version id; rename the object"
        )
    with fsspec.open(path, "rb", **dict(storage_options or {})) as f:
        return f.read()


def read_image(path: str, storage_options: Mapping[str, Any] | None = None) -> np.ndarray:
    """Decode the image or volume at ``path`` (see the module docstring for shapes and dtypes).

    Raises ``FileNotFoundError`` for a missing file and :class:`BadImageError` (a
    ``ValueError``) naming the file for an unreadable, truncated or unsupported one.
    """
    try:
        data = read_bytes(path, storage_options)
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise
        raise BadImageError(f"{path}: a symbolic link that loops (points back to itself)") from None
    return decode_image(data, path)


def decode_image(data: bytes, name: str) -> np.ndarray:
    """Decode the bytes of a file called ``name`` (its ending picks the decoder)."""
    lower = name.lower()
    try:
        if lower.endswith(VOLUME_SUFFIXES):
            return _checked(_decode_nifti(data), volume=True)
        if lower.endswith(DICOM_SUFFIXES):
            return _checked(_decode_dicom(data), volume=False)
        if lower.endswith(IMAGE_SUFFIXES):
            return _checked(_decode_pillow(data), volume=False)
    except MissingReaderError:
        raise
    except BadImageError as exc:
        raise BadImageError(f"{name}: {exc}") from None
    except UnidentifiedImageError:
        raise BadImageError(
            f"{name}: cannot decode (empty, or not a {_kind(lower)} file)"
        ) from None
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
        # Pillow's size limit (Image.MAX_IMAGE_PIXELS) is left as the user set it.
        text = " ".join(str(exc).split())  # some messages span lines; a reason is one line
        raise BadImageError(f"{name}: cannot decode ({type(exc).__name__}: {text})") from exc
    raise BadImageError(f"{name}: unsupported file type (expected one of {_ENDINGS})")


def _checked(arr: np.ndarray, *, volume: bool) -> np.ndarray:
    """``arr`` when it is an image (volume) the package can use; see the module docstring."""
    spatial = arr.shape if volume else arr.shape[:2]
    if volume and arr.ndim != 3:
        raise BadImageError(f"expected a 3D volume, got shape {arr.shape}")
    if not volume and not (arr.ndim == 2 or (arr.ndim == 3 and 1 <= arr.shape[2] <= 4)):
        raise BadImageError(f"expected a 2D image (H, W) or (H, W, C<=4), got shape {arr.shape}")
    if min(spatial) < MIN_SIDE:
        size = " x ".join(str(n) for n in spatial)
        raise BadImageError(f"{size} pixels: every side must be at least {MIN_SIDE}")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        n = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        raise BadImageError(f"{n} NaN or infinite values: no intensity scale is defined")
    return arr


def _kind(lower_name: str) -> str:
    return lower_name.rsplit(".", 1)[-1].upper()


_ENDINGS = ", ".join(IMAGE_SUFFIXES + VOLUME_SUFFIXES + DICOM_SUFFIXES)


def _decode_pillow(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        frames = getattr(img, "n_frames", 1)
        if frames > 1:  # which frame is "the image" is the user's choice, not ours
            raise BadImageError(
                f"{frames} frames (animated or multi-page): save each frame as its own file"
                " (a stack of slices as a NIfTI volume)"
            )
        img.load()  # decode now: a truncated file fails here, not later
        mode = img.mode
        if mode == "1":
            img = img.convert("L")
        elif mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV"):
            has_alpha = mode == "PA" or (mode == "P" and "transparency" in img.info)
            img = img.convert("RGBA" if has_alpha else "RGB")
        arr = np.asarray(img)
    if arr.dtype == np.int32 and arr.size and arr.min() >= 0 and arr.max() <= 65535:
        arr = arr.astype(np.uint16)  # a 16-bit image that Pillow decoded as 32-bit "I"
    elif arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("="))  # "I;16B" and friends
    return np.ascontiguousarray(arr)


def _decode_nifti(data: bytes) -> np.ndarray:
    import nibabel as nib

    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    try:
        img = nib.Nifti1Image.from_bytes(data)
    except Exception:  # nibabel raises a zoo of types; try NIfTI-2 before giving up
        try:
            img = nib.Nifti2Image.from_bytes(data)
        except Exception as exc:
            raise BadImageError(f"cannot decode as NIfTI ({type(exc).__name__}: {exc})") from exc
    _check_nifti_size(img, len(data))
    vol = np.asarray(img.get_fdata(dtype=np.float32))
    while vol.ndim > 3 and vol.shape[-1] == 1:
        vol = vol[..., 0]
    return vol


def _check_nifti_size(img: Any, n_bytes: int) -> None:
    """Refuse a single-file NIfTI holding more voxel bytes than its header describes (a header
    that understates the size would silently give a cut volume; one that overstates it fails
    in nibabel's read, "Expected N bytes")."""
    header = img.header
    shape = header.get_data_shape()
    described = int(img.dataobj.offset) + int(np.prod(shape)) * header.get_data_dtype().itemsize
    if n_bytes > described:
        raise BadImageError(
            f"the header describes {described} bytes ({' x '.join(map(str, shape))} voxels of "
            f"{header.get_data_dtype()}) but the file holds {n_bytes}: header and data disagree"
        )


def _decode_dicom(data: bytes) -> np.ndarray:
    try:
        import pydicom
    except ImportError:
        raise MissingReaderError(
            "reading DICOM needs pydicom: pip install 'medsyn-dask[dicom]'"
        ) from None
    # Only the pixels and their rescale are read. No other element (the patient module:
    # name, ID, birth date...) is ever put in a message, a log or an output.
    try:
        ds = pydicom.dcmread(io.BytesIO(data))
        if not any(key in ds for key in _PIXEL_KEYWORDS):
            raise BadImageError("DICOM file without pixel data (no Pixel Data element)")
        arr = ds.pixel_array.astype(np.float32)
        slope = float(getattr(ds, "RescaleSlope", 1) or 1)
        intercept = float(getattr(ds, "RescaleIntercept", 0) or 0)
    except BadImageError:
        raise
    except Exception as exc:  # pydicom's errors are of many types; the type name is enough
        raise BadImageError(f"cannot decode as DICOM ({type(exc).__name__})") from None
    return arr * np.float32(slope) + np.float32(intercept)


_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
