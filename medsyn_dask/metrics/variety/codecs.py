"""Lossless sizes of uint8 mean images (the raw variety measure), through codec libraries.

Every codec is a library call with its settings fixed here, so that sizes do not drift with a
library's defaults (``png-opencv`` excepted: it is OpenCV's default on purpose):

============== ============================ ================================================
``--codec``    library (extra)              settings
============== ============================ ================================================
png (default)  Pillow (zlib)                zlib level 6, Pillow's adaptive row filters, no
                                            ``optimize`` pass, no metadata chunks
png-opencv     OpenCV (``opencv``)          ``cv2.imencode(".png")`` as the reference's
                                            ``cv2.imwrite`` wrote it: OpenCV's defaults
jpeg2000       Pillow (OpenJPEG)            reversible 5/3 wavelet, raw J2K codestream
webp           Pillow (libwebp)             lossless, quality 80, method 4 (Pillow's effort)
jpeg-ls        imagecodecs (``codecs``)     CharLS, NEAR = 0 (lossless)
jpeg-lossless  imagecodecs (``codecs``)     libjpeg-turbo >= 3, the ITU T.81 lossless
                                            process (SOF3), predictor 1, no point transform
============== ============================ ================================================

PNG stays the default because the reference wrote PNG; the method's README speaks of lossless
JPEG, which ``jpeg-ls`` and ``jpeg-lossless`` offer. The same bytes come back for the same image
and library versions (:func:`codec_version`); nothing time- or host-dependent is written.
"""

from __future__ import annotations

import functools
import importlib
import io
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

import numpy as np
from PIL import Image, features

from ...checks import CODECS, Codec
from ...errors import SettingsError


class CodecUnavailableError(SettingsError, RuntimeError):
    """A known codec whose library is not installed, or was built without it."""


@dataclass(frozen=True)
class _Backend:
    """How one codec encodes a contiguous uint8 ``(H, W)`` or ``(H, W, 3)`` image."""

    encode: Callable[[np.ndarray], bytes]
    #: Why the codec cannot run here (what to install), or ``None`` when it can.
    missing: Callable[[], str | None]
    version: Callable[[], str | None]


# --- Pillow: png, jpeg2000, webp -------------------------------------------------------------


def _pillow(fmt: str, feature: str, **options: object) -> _Backend:
    def encode(a: np.ndarray) -> bytes:
        buf = io.BytesIO()
        # Pillow infers mode L (gray) or RGB from the shape of a uint8 array.
        Image.fromarray(a).save(buf, format=fmt, **options)
        return buf.getvalue()

    def missing() -> str | None:
        if features.check(feature):
            return None
        return f"Pillow's {feature!r} support, which this Pillow lacks (see python -m PIL.report)"

    return _Backend(encode, missing, lambda: features.version(feature))


# --- Optional libraries: OpenCV, imagecodecs -------------------------------------------------

#: Optional module -> the package extra that installs it.
_EXTRAS = {"cv2": "opencv", "imagecodecs": "codecs"}


def _optional(module: str) -> ModuleType | None:
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


def _not_installed(module: str) -> str | None:
    if _optional(module) is not None:
        return None
    extra = _EXTRAS[module]
    return f"{module}, not installed (the {extra!r} extra: pip install 'medsyn-dask[{extra}]')"


def _encode_opencv_png(a: np.ndarray) -> bytes:
    import cv2

    # OpenCV takes colour as BGR: handing it BGR gives the file of our RGB pixels, as the
    # reference's cv2.imwrite of a cv2.imread (BGR) mean gave the file of its pixels.
    ok, data = cv2.imencode(".png", cv2.cvtColor(a, cv2.COLOR_RGB2BGR) if a.ndim == 3 else a)
    if not ok:
        raise RuntimeError(f"cv2.imencode failed on a {a.dtype} image of shape {a.shape}")
    return data.tobytes()


def _encode_jpegls(a: np.ndarray) -> bytes:
    import imagecodecs

    # level is NEAR: 0 is lossless. CharLS's own buffer estimate (the raw size plus a header)
    # is too small for noise, which JPEG-LS expands; a regular-mode sample takes at most
    # LIMIT = 32 bits at 8 bits per sample (ITU T.87, A.2.1), hence 4 bytes per sample.
    return bytes(imagecodecs.jpegls_encode(a, level=0, out=4 * a.nbytes + 4096))


def _encode_jpeg_lossless(a: np.ndarray) -> bytes:
    import imagecodecs

    # RGB stays RGB: a colour transform to YCbCr would round, and the result would not be lossless.
    colour = {"colorspace": "RGB", "outcolorspace": "RGB"} if a.ndim == 3 else {}
    return bytes(imagecodecs.jpeg8_encode(a, lossless=True, predictor=1, bitspersample=8, **colour))


def _imagecodecs_missing(codec: str, encode: Callable[[np.ndarray], bytes]) -> str | None:
    """Why imagecodecs cannot run ``codec``: not installed, or its build cannot encode it."""
    why = _not_installed("imagecodecs")
    if why is None and not _encodes(encode):
        import imagecodecs

        why = f"an imagecodecs that encodes {codec} (imagecodecs {imagecodecs.__version__} cannot)"
    return why


@functools.cache
def _encodes(encode: Callable[[np.ndarray], bytes]) -> bool:
    """Whether ``encode`` works here: builds differ (lossless JPEG needs libjpeg-turbo >= 3)."""
    try:
        encode(np.zeros((2, 2, 3), dtype=np.uint8))
    except Exception:  # any failure of the library means the same: not usable here
        return False
    return True


def _imagecodecs_version(library: str) -> str:
    import imagecodecs

    return f"imagecodecs {imagecodecs.__version__} ({getattr(imagecodecs, library + '_version')()})"


def _opencv_version() -> str:
    import cv2

    return f"opencv {cv2.__version__}"


_BACKENDS: dict[str, _Backend] = {
    "png": _pillow("PNG", "zlib", compress_level=6, optimize=False),
    "png-opencv": _Backend(_encode_opencv_png, lambda: _not_installed("cv2"), _opencv_version),
    "jpeg2000": _pillow("JPEG2000", "jpg_2000", irreversible=False, no_jp2=True),
    "webp": _pillow("WEBP", "webp", lossless=True, quality=80, method=4),
    "jpeg-ls": _Backend(
        _encode_jpegls,
        lambda: _imagecodecs_missing("JPEG-LS", _encode_jpegls),
        lambda: _imagecodecs_version("jpegls"),
    ),
    "jpeg-lossless": _Backend(
        _encode_jpeg_lossless,
        lambda: _imagecodecs_missing("lossless JPEG (SOF3)", _encode_jpeg_lossless),
        lambda: _imagecodecs_version("jpeg8"),
    ),
}


# --- The public functions --------------------------------------------------------------------


def check_codec(codec: str) -> None:
    """Raise :class:`SettingsError` for an unknown codec, :class:`CodecUnavailableError` (a
    ``SettingsError`` and a ``RuntimeError``) naming what to install for one that cannot run."""
    if not isinstance(codec, str) or codec not in _BACKENDS:
        raise SettingsError(f"unknown codec {codec!r}; choose one of {list(CODECS)}")
    why = _BACKENDS[codec].missing()
    if why is not None:
        raise CodecUnavailableError(f"codec {codec!r} needs {why}; or use codec='png'")


def codec_version(codec: str) -> str | None:
    """The library version behind ``codec`` (e.g. zlib's for ``png``): sizes depend on it."""
    check_codec(codec)
    return _BACKENDS[codec].version()


def encode_lossless(image: np.ndarray, codec: Codec = "png") -> bytes:
    """The file bytes of a 2D uint8 image, ``(H, W, 3)`` (RGB) or ``(H, W)``, losslessly encoded.

    These are the bytes :func:`lossless_size` counts; write them to save the mean image.
    """
    check_codec(codec)
    return _BACKENDS[codec].encode(_checked_2d(image))


def lossless_size(image: np.ndarray, codec: Codec = "png", *, volume: bool = False) -> int:
    """Losslessly compressed size in bytes of a uint8 image (the raw variety measure).

    2D: ``image`` is ``(H, W, 3)`` (RGB) or ``(H, W)`` (gray), encoded as one file.
    3D (``volume=True``): ``image`` is ``(X, Y, Z)``; the result is the sum of the sizes of the
    Z gray slices ``image[:, :, z]``, each encoded as one file. Codecs: see the module doc.
    """
    check_codec(codec)
    encode = _BACKENDS[codec].encode
    if not volume:
        return len(encode(_checked_2d(image)))
    a = np.asarray(image)
    if a.dtype != np.uint8 or a.ndim != 3:
        raise SettingsError(f"a 3D volume must be uint8 (X, Y, Z), got {a.dtype} {a.shape}")
    return sum(len(encode(_checked_2d(a[:, :, z]))) for z in range(a.shape[2]))


def _checked_2d(image: np.ndarray) -> np.ndarray:
    """``image`` as a contiguous uint8 ``(H, W)`` or ``(H, W, 3)`` array, or SettingsError."""
    a = np.asarray(image)
    if a.dtype != np.uint8 or not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] == 3)):
        raise SettingsError(
            f"expected a uint8 image of shape (H, W) or (H, W, 3), got {a.dtype} {a.shape}; "
            "pass volume=True to lossless_size for a 3D volume (X, Y, Z)"
        )
    return np.ascontiguousarray(a)
