"""Variety from the mean image (METHOD.md, "Variety from the mean image").

The raw variety measure of a synthetic group is the losslessly compressed size, in bytes, of
its all-classes mean image: a varied group averages to a blurry image, which compresses well.

The module has two layers:

* block maths, plain NumPy, one image or one partial sum at a time: :func:`to_uint8_image`,
  :func:`resize_image`, :func:`accumulate`, :func:`combine_partials`, :func:`finalize_mean`,
  :func:`all_classes_mean`, :func:`encode_lossless`, :func:`lossless_size` and
  :func:`variety_scores`;
* the Dask graph around them, built in one place (:func:`mean_images_delayed`, used by
  :func:`mean_images` and :func:`group_variety`, the entry point for an analysis): one task per
  partition of image paths reads its images one by one and returns ``(sum, count)``; partial
  sums are added in a tree; the last task truncates the mean to uint8. No process ever holds
  more than one image of a partition plus one float64 sum.

Pixel conventions (what the reference did with ``cv2.imread`` and ``astype(np.uint8)``):

* 2D images are ``uint8`` arrays of shape ``(H, W, 3)``; grayscale is repeated to 3 channels.
* 3D volumes are ``uint8`` arrays of shape ``(X, Y, Z)``, min-max scaled per volume.
* Means are accumulated in float64 and cast to uint8 by truncation (``np.floor``). The
  reference summed in float32: the result is the same up to 65,793 images per class (the sum
  stays below 2**24, so float32 holds it exactly, and a float32 quotient cannot round across
  an integer); beyond that its float32 sum drops counts and float64 is the fix.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import dask
import numpy as np
from dask.base import tokenize
from dask.delayed import Delayed, delayed
from PIL import Image, features

#: A partial sum: ``(sum of uint8 images as float64, number of images)``.
Partial = tuple[np.ndarray, int]

Codec = Literal["png", "png-opencv", "jpeg2000", "webp"]

#: Pillow encoder settings per codec, fixed here so that sizes do not drift with its defaults.
#: PNG: zlib level 6 (zlib's and Pillow's default), Pillow's adaptive row filters, no
#: ``optimize`` pass, no metadata chunks.
#: JPEG 2000: reversible 5/3 wavelet (lossless), raw J2K codestream without the JP2 container.
#: WebP: lossless mode at Pillow's default effort (quality 80, method 4).
CODEC_SETTINGS: dict[str, tuple[str, dict]] = {
    "png": ("PNG", {"compress_level": 6, "optimize": False}),
    "jpeg2000": ("JPEG2000", {"irreversible": False, "no_jp2": True}),
    "webp": ("WEBP", {"lossless": True, "quality": 80, "method": 4}),
}
#: ``png-opencv`` is written here, with Python's zlib, exactly as the reference's
#: ``cv2.imwrite(path, image)`` writes PNG by default (OpenCV's PNG encoder: the Sub row filter
#: on every row, zlib level 1 with the Z_RLE strategy, IDAT chunks of 8192 bytes). Its size is
#: the reference's raw variety measure; Pillow's ``png`` compresses harder and differs.
CODECS = ("png", "png-opencv", "jpeg2000", "webp")
_PIL_FEATURE = {"png": "zlib", "png-opencv": None, "jpeg2000": "jpg_2000", "webp": "webp"}
_OPENCV_IDAT_BYTES = 8192  # libpng's default compression buffer, one IDAT chunk each

#: File name endings read as 3D volumes when ``volumes`` is not given.
VOLUME_SUFFIXES = (".nii", ".nii.gz")


# --------------------------------------------------------------------------------------------
# One image
# --------------------------------------------------------------------------------------------


def to_uint8_image(array: np.ndarray, *, volume: bool = False) -> np.ndarray:
    """Convert an image as read into the uint8 array that is averaged.

    2D (``volume=False``): ``array`` is ``(H, W)``, ``(H, W, 1)``, ``(H, W, 2)`` (gray + alpha),
    ``(H, W, 3)`` or ``(H, W, 4)`` (RGBA); the result is ``(H, W, 3)`` uint8. Alpha is dropped
    and gray is repeated to 3 channels, as ``cv2.imread(path)`` (the reference) did. Intensity:

    * ``uint8``: unchanged (8-bit as read);
    * ``uint16``: ``v >> 8`` (``floor(v / 256)``), what ``cv2.imread`` does with 16-bit PNG
      and TIFF files (checked with OpenCV 5.0); a 12-bit image in a 16-bit container comes out
      dark, as it did in the reference;
    * ``bool``: 0 and 255;
    * float with all values in [0, 1]: ``round(v * 255)``;
    * any other dtype (signed or wider integers, other floats): min-max scaled per image to
      [0, 255] and rounded; a constant image becomes 0.

    3D (``volume=True``): ``array`` is ``(X, Y, Z)`` or ``(X, Y, Z, 1)``; the result is
    ``(X, Y, Z)`` uint8, min-max scaled per volume to [0, 255] and rounded, whatever the dtype
    (NIfTI intensities have no fixed range). A constant volume becomes 0.

    Raises ``ValueError`` for other shapes and for NaN or infinite values.
    """
    a = np.asarray(array)
    if volume:
        if a.ndim == 4 and a.shape[-1] == 1:
            a = a[..., 0]
        if a.ndim != 3:
            raise ValueError(f"a 3D volume must have shape (X, Y, Z), got {a.shape}")
        return _min_max_uint8(a)
    if a.ndim == 3 and a.shape[-1] in (1, 2):
        a = a[..., 0]
    elif a.ndim == 3 and a.shape[-1] == 4:
        a = a[..., :3]
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[-1] == 3)):
        raise ValueError(
            f"a 2D image must have shape (H, W) or (H, W, C) with C in 1..4, got {a.shape}"
        )
    a = _intensity_uint8(a)
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    return np.ascontiguousarray(a)


def _intensity_uint8(a: np.ndarray) -> np.ndarray:
    if a.dtype == np.uint8:
        return a
    if a.dtype == np.uint16:
        return (a >> 8).astype(np.uint8)
    if a.dtype == np.bool_:
        return a.astype(np.uint8) * np.uint8(255)
    if np.issubdtype(a.dtype, np.floating):
        _check_finite(a)
        if a.size and a.min() >= 0.0 and a.max() <= 1.0:
            return np.rint(a.astype(np.float64) * 255.0).astype(np.uint8)
    return _min_max_uint8(a)


def _min_max_uint8(a: np.ndarray) -> np.ndarray:
    if a.dtype == np.bool_:
        a = a.astype(np.uint8)
    if np.issubdtype(a.dtype, np.complexfloating) or not np.issubdtype(a.dtype, np.number):
        raise ValueError(f"cannot scale an image of dtype {a.dtype} to [0, 255]")
    a = a.astype(np.float64)
    _check_finite(a)
    lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
    if hi == lo:
        return np.zeros(a.shape, dtype=np.uint8)
    return np.rint((a - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def _check_finite(a: np.ndarray) -> None:
    if not np.isfinite(a).all():
        bad = a[~np.isfinite(a)].ravel()[0]
        raise ValueError(f"image has non-finite values (e.g. {bad}); cannot scale to [0, 255]")


def resize_image(image: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Resize a uint8 image to ``shape`` with Pillow's bilinear filter.

    ``image`` is ``(H, W, 3)`` (2D) and ``shape`` ``(H', W')``, or ``image`` is ``(X, Y, Z)``
    (3D) and ``shape`` ``(X', Y', Z')``; the result is uint8 of the target shape. Volumes are
    resized separably (each Z slice in X and Y, then each X slice in Z) in float and rounded.
    Shapes are array shapes (rows first), not Pillow's ``(width, height)``.
    """
    shape = tuple(int(s) for s in shape)
    if image.ndim == 3 and image.shape[-1] == 3 and len(shape) == 2:
        if image.shape[:2] == shape:
            return image
        pil = Image.fromarray(image).resize(shape[::-1], Image.Resampling.BILINEAR)
        return np.asarray(pil)
    if image.ndim == 3 and len(shape) == 3:
        if image.shape == shape:
            return image
        v = _resize_axes01(image.astype(np.float32), shape[:2])
        v = _resize_axes01(v.transpose(1, 2, 0), (shape[1], shape[2])).transpose(2, 0, 1)
        return np.rint(np.clip(v, 0.0, 255.0)).astype(np.uint8)
    raise ValueError(f"cannot resize an image of shape {image.shape} to {shape}")


def _resize_axes01(v: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of each slice ``v[:, :, k]`` to ``shape`` (float32 throughout)."""
    out = np.empty(shape + (v.shape[2],), dtype=np.float32)
    for k in range(v.shape[2]):
        pil = Image.fromarray(np.ascontiguousarray(v[:, :, k]))
        out[:, :, k] = np.asarray(pil.resize(shape[::-1], Image.Resampling.BILINEAR))
    return out


# --------------------------------------------------------------------------------------------
# Partial sums
# --------------------------------------------------------------------------------------------


def accumulate(images: Iterable[np.ndarray], shape: tuple[int, ...]) -> Partial:
    """Sum uint8 images (as returned by :func:`to_uint8_image`) after resizing them to ``shape``.

    ``shape`` is the image shape without channels: ``(H, W)`` for 2D, ``(X, Y, Z)`` for 3D.
    Images are consumed one at a time, so ``images`` may be a generator that reads lazily.
    Returns ``(sum, count)``, the sum float64 of shape ``(H, W, 3)`` or ``(X, Y, Z)``.
    """
    shape = tuple(int(s) for s in shape)
    total: np.ndarray | None = None
    count = 0
    for image in images:
        if image.dtype != np.uint8:
            raise ValueError(f"accumulate expects uint8 images, got {image.dtype}")
        image = resize_image(image, shape)
        if total is None:
            total = np.zeros(image.shape, dtype=np.float64)
        total += image
        count += 1
    if total is None:
        raise ValueError("accumulate got no images")
    return total, count


def combine_partials(partials: Sequence[Partial]) -> Partial:
    """Add partial sums: ``(sum of sums, sum of counts)``. All sums must have one shape."""
    if not partials:
        raise ValueError("combine_partials got no partial sums")
    shapes = {p[0].shape for p in partials}
    if len(shapes) != 1:
        raise ValueError(f"partial sums of different shapes cannot be added: {sorted(shapes)}")
    total = np.zeros(partials[0][0].shape, dtype=np.float64)
    for s, _ in partials:
        total += s
    return total, sum(int(c) for _, c in partials)


def finalize_mean(partial: Partial) -> np.ndarray:
    """The mean image of a partial sum, cast to uint8 by truncation (``astype(np.uint8)``)."""
    total, count = partial
    if count < 1:
        raise ValueError(f"cannot take the mean of {count} images")
    return np.floor(total / count).astype(np.uint8)


def all_classes_mean(class_means: Mapping[str, np.ndarray] | Sequence[np.ndarray]) -> np.ndarray:
    """The all-classes mean image: mean of the per-class uint8 means, truncated to uint8."""
    means = list(class_means.values()) if isinstance(class_means, Mapping) else list(class_means)
    if not means:
        raise ValueError("all_classes_mean got no class means")
    shapes = {m.shape for m in means}
    if len(shapes) != 1:
        raise ValueError(f"class means have different shapes: {sorted(shapes)}")
    return np.floor(np.mean(np.stack(means).astype(np.float64), axis=0)).astype(np.uint8)


# --------------------------------------------------------------------------------------------
# Lossless size and the variety score
# --------------------------------------------------------------------------------------------


def check_codec(codec: str) -> None:
    """Raise ``ValueError`` for an unknown codec, ``RuntimeError`` if Pillow lacks its library."""
    if codec not in CODECS:
        raise ValueError(f"unknown codec {codec!r}; choose one of {list(CODECS)}")
    feature = _PIL_FEATURE[codec]
    if feature is not None and not features.check(feature):
        raise RuntimeError(
            f"codec {codec!r} needs Pillow's {feature!r} support, which this Pillow build lacks "
            f"(see `python -m PIL.report`); use codec='png'"
        )


def codec_version(codec: str) -> str | None:
    """The library version behind ``codec`` (zlib, OpenJPEG, libwebp): sizes depend on it."""
    check_codec(codec)
    if codec == "png-opencv":
        return zlib.ZLIB_RUNTIME_VERSION
    return features.version(_PIL_FEATURE[codec])


def lossless_size(image: np.ndarray, codec: Codec = "png", *, volume: bool = False) -> int:
    """Losslessly compressed size in bytes of a uint8 image (the raw variety measure).

    2D: ``image`` is ``(H, W, 3)`` (RGB) or ``(H, W)`` (gray), encoded as one file.
    3D (``volume=True``): ``image`` is ``(X, Y, Z)``; the result is the sum of the sizes of the
    Z gray slices ``image[:, :, z]``, each encoded as one file.
    Codecs: ``png`` (Pillow), ``png-opencv`` (the reference's ``cv2.imwrite`` bytes),
    ``jpeg2000`` (reversible) and ``webp`` (lossless); settings in :data:`CODEC_SETTINGS` and
    :data:`CODECS`. The same bytes come back for the same image and library versions
    (:func:`codec_version`); nothing time- or host-dependent is written.
    """
    check_codec(codec)
    a = np.asarray(image)
    if a.dtype != np.uint8:
        raise ValueError(f"lossless_size expects a uint8 image, got {a.dtype}")
    if volume:
        if a.ndim != 3:
            raise ValueError(f"a 3D volume must have shape (X, Y, Z), got {a.shape}")
        return sum(_encoded_size(a[:, :, z], codec) for z in range(a.shape[2]))
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] == 3)):
        raise ValueError(
            f"a 2D image must have shape (H, W) or (H, W, 3), got {a.shape}; "
            "pass volume=True for a 3D volume"
        )
    return _encoded_size(a, codec)


def encode_lossless(image: np.ndarray, codec: Codec = "png") -> bytes:
    """The file bytes of a 2D uint8 image, ``(H, W, 3)`` or ``(H, W)``, losslessly encoded.

    These are the bytes :func:`lossless_size` counts; write them to save the mean image.
    """
    check_codec(codec)
    a = np.asarray(image)
    if a.dtype != np.uint8 or not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] == 3)):
        raise ValueError(
            f"expected a uint8 image of shape (H, W) or (H, W, 3), got {a.dtype} {a.shape}"
        )
    if codec == "png-opencv":
        return _png_opencv(a)
    fmt, options = CODEC_SETTINGS[codec]
    buf = io.BytesIO()
    # Pillow infers mode L (gray) or RGB from the shape of a uint8 array.
    Image.fromarray(np.ascontiguousarray(a)).save(buf, format=fmt, **options)
    return buf.getvalue()


def _png_opencv(a: np.ndarray) -> bytes:
    """PNG bytes as OpenCV's default ``imwrite``/``imencode`` makes them (see :data:`CODECS`)."""
    h, w = a.shape[:2]
    c = 1 if a.ndim == 2 else 3
    rows = np.ascontiguousarray(a).reshape(h, w * c)
    sub = rows.copy()
    sub[:, c:] = rows[:, c:] - rows[:, :-c]  # the Sub filter; uint8 arithmetic wraps mod 256
    raw = np.concatenate([np.ones((h, 1), dtype=np.uint8), sub], axis=1).tobytes()  # type 1
    z = zlib.compressobj(1, zlib.DEFLATED, 15, 8, zlib.Z_RLE)
    data = z.compress(raw) + z.flush()
    header = struct.pack(">IIBBBBB", w, h, 8, 0 if c == 1 else 2, 0, 0, 0)
    out = [b"\x89PNG\r\n\x1a\n", _png_chunk(b"IHDR", header)]
    for start in range(0, len(data), _OPENCV_IDAT_BYTES):
        out.append(_png_chunk(b"IDAT", data[start : start + _OPENCV_IDAT_BYTES]))
    out.append(_png_chunk(b"IEND", b""))
    return b"".join(out)


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(tag + data)
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)


def _encoded_size(a: np.ndarray, codec: str) -> int:
    return len(encode_lossless(a, codec))


def variety_scores(sizes: Mapping[str, int]) -> dict[str, float | None]:
    """Variety per group: ``1 - (size_g - min) / (max - min)`` over the groups analysed together.

    ``sizes`` maps group name to the lossless size in bytes of its all-classes mean image.
    The smallest size (blurriest mean, most varied) scores 1, the largest 0. For a single group
    or equal sizes the score is undefined and every value is ``None``;
    :func:`variety_undefined_reason` says why.
    """
    _check_sizes(sizes)
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
        raise ValueError("variety needs the mean-image size of at least one group, got none")
    for group, size in sizes.items():
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 0:
            raise ValueError(f"size of group {group!r} must be a byte count >= 0, got {size!r}")


# --------------------------------------------------------------------------------------------
# The Dask graph
# --------------------------------------------------------------------------------------------


def is_volume_path(path: str) -> bool:
    """True for NIfTI file names (``.nii``, ``.nii.gz``), read as 3D volumes."""
    return path.lower().endswith(VOLUME_SUFFIXES)


def mean_images_delayed(
    paths_by_class: Mapping[str, Sequence[str | os.PathLike[str]]],
    read: Callable[[str], np.ndarray],
    *,
    partition_size: int = 64,
    target_size: tuple[int, ...] | None = None,
    volumes: bool | None = None,
    split_every: int = 8,
) -> dict[str, Delayed]:
    """The Dask graph of :func:`mean_images`, one uncomputed uint8 mean per class.

    Compute several groups' graphs in one ``dask.compute`` call to share the cluster.
    Keys: ``mean-image-shape-<token>`` (reads the first image when ``target_size`` is None),
    ``mean-image-partial-<token>`` (one per partition), ``mean-image-combine-<token>`` (the tree,
    ``split_every`` partials per node) and ``mean-image-<token>`` (the uint8 mean per class).
    """
    paths_by_class = _check_paths(paths_by_class)
    volumes = _check_graph_args(paths_by_class, partition_size, target_size, volumes, split_every)
    token = tokenize(
        paths_by_class,
        read,
        partition_size,
        target_size,
        volumes,
        split_every,
    )
    if target_size is None:
        first = next(iter(paths_by_class.values()))[0]
        shape = delayed(_read_shape, pure=True)(
            first, read, volumes, dask_key_name=f"mean-image-shape-{token}"
        )
    else:
        shape = tuple(int(s) for s in target_size)
    return {
        cls: _class_mean(i, paths, read, shape, volumes, token, partition_size, split_every)
        for i, (cls, paths) in enumerate(paths_by_class.items())
    }


def mean_images(
    paths_by_class: Mapping[str, Sequence[str | os.PathLike[str]]],
    read: Callable[[str], np.ndarray],
    *,
    partition_size: int = 64,
    target_size: tuple[int, ...] | None = None,
    volumes: bool | None = None,
    split_every: int = 8,
) -> dict[str, np.ndarray]:
    """Per-class uint8 mean images of a group, as a distributed reduction.

    ``paths_by_class`` maps class name to image paths (or URLs that ``read`` understands);
    ``read(path)`` returns the image as read (any dtype, see :func:`to_uint8_image`) and must be
    picklable, since it runs on the workers. Each task of ``partition_size`` paths reads its
    images one at a time into a float64 sum. All images are resized (bilinear) to
    ``target_size`` (array shape: ``(H, W)`` or ``(X, Y, Z)``), by default the shape of the first
    image of the first class. ``volumes`` says whether the paths are 3D volumes; by default it
    follows the file names (``.nii``/``.nii.gz``).

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


@dataclass(frozen=True)
class GroupVariety:
    """Mean-image variety of several synthetic groups analysed together.

    ``class_means[group][cls]`` and ``all_classes[group]`` are the uint8 mean images
    (``(H, W, 3)`` or ``(X, Y, Z)``, one shape for all groups); ``sizes`` their lossless sizes
    in bytes (the raw measure); ``scores`` the normalised variety, ``None`` with ``reason``
    when it is undefined.
    """

    class_means: dict[str, dict[str, np.ndarray]]
    all_classes: dict[str, np.ndarray]
    sizes: dict[str, int]
    scores: dict[str, float | None]
    reason: str | None
    codec: str
    codec_version: str | None
    shape: tuple[int, ...]

    def to_dict(self) -> dict:
        """JSON-ready summary (no images): per group size and score, plus codec and shape."""
        return {
            "groups": {
                g: {"mean_image_bytes": self.sizes[g], "variety": self.scores[g]}
                for g in self.sizes
            },
            "variety_undefined_reason": self.reason,
            "codec": self.codec,
            "codec_version": self.codec_version,
            "shape": list(self.shape),
        }


def group_variety(
    paths_by_group: Mapping[str, Mapping[str, Sequence[str | os.PathLike[str]]]],
    read: Callable[[str], np.ndarray],
    *,
    codec: Codec = "png",
    partition_size: int = 64,
    target_size: tuple[int, ...] | None = None,
    volumes: bool | None = None,
    split_every: int = 8,
) -> GroupVariety:
    """Mean images, their lossless sizes and the variety scores of synthetic groups.

    ``paths_by_group`` maps group -> class -> paths. All groups' means are computed in one
    Dask computation on the current scheduler, every image resized to one ``target_size``
    (by default the shape of the first image of the first class of the first group), so that
    the sizes compare like with like. Arguments are as for :func:`mean_images`.
    """
    check_codec(codec)
    if not paths_by_group:
        raise ValueError("group_variety needs at least one group, got none")
    groups = {g: _check_paths(p) for g, p in paths_by_group.items()}
    every = {f"{g}/{c}": p for g, classes in groups.items() for c, p in classes.items()}
    volumes = _check_graph_args(every, partition_size, target_size, volumes, split_every)
    if target_size is None:
        first = next(iter(every.values()))[0]
        (target_size,) = dask.compute(delayed(_read_shape, pure=True)(first, read, volumes))
    graphs = {
        g: mean_images_delayed(
            classes,
            read,
            partition_size=partition_size,
            target_size=target_size,
            volumes=volumes,
            split_every=split_every,
        )
        for g, classes in groups.items()
    }
    (class_means,) = dask.compute(graphs)
    all_classes = {g: all_classes_mean(means) for g, means in class_means.items()}
    sizes = {g: lossless_size(m, codec, volume=volumes) for g, m in all_classes.items()}
    return GroupVariety(
        class_means=class_means,
        all_classes=all_classes,
        sizes=sizes,
        scores=variety_scores(sizes),
        reason=variety_undefined_reason(sizes),
        codec=codec,
        codec_version=codec_version(codec),
        shape=tuple(int(n) for n in target_size),
    )


def _check_paths(
    paths_by_class: Mapping[str, Sequence[str | os.PathLike[str]]],
) -> dict[str, list[str]]:
    """Class -> list of path strings; raise for no classes or a class without paths."""
    if not paths_by_class:
        raise ValueError("mean_images needs at least one class, got none")
    out = {}
    for cls, paths in paths_by_class.items():
        if isinstance(paths, (str, os.PathLike)) or len(paths) == 0:
            raise ValueError(f"class {cls!r} needs a non-empty list of paths, got {paths!r}")
        out[cls] = [os.fspath(p) for p in paths]
    return out


def _check_graph_args(
    paths_by_class: dict[str, list[str]],
    partition_size: int,
    target_size: tuple[int, ...] | None,
    volumes: bool | None,
    split_every: int,
) -> bool:
    """Validate the reduction's settings; return ``volumes``, inferred from names if None."""
    if partition_size < 1:
        raise ValueError(f"partition_size must be at least 1, got {partition_size}")
    if split_every < 2:
        raise ValueError(f"split_every must be at least 2, got {split_every}")
    all_paths = [p for paths in paths_by_class.values() for p in paths]
    if volumes is None:
        kinds = {is_volume_path(p) for p in all_paths}
        if len(kinds) != 1:
            raise ValueError("paths mix 3D volumes (.nii, .nii.gz) and 2D images; pass volumes=")
        volumes = kinds.pop()
    if target_size is not None and (
        len(target_size) != (3 if volumes else 2) or min(target_size) < 1
    ):
        want = "(X, Y, Z)" if volumes else "(H, W)"
        raise ValueError(f"target_size must be {want} with positive sizes, got {target_size}")
    return volumes


def _class_mean(
    index: int,
    paths: list[str],
    read: Callable[[str], np.ndarray],
    shape: Delayed | tuple[int, ...],
    volume: bool,
    token: str,
    partition_size: int,
    split_every: int,
) -> Delayed:
    layer = [
        delayed(_partial_task, pure=True)(
            paths[start : start + partition_size],
            read,
            shape,
            volume,
            dask_key_name=(f"mean-image-partial-{token}", index, n),
        )
        for n, start in enumerate(range(0, len(paths), partition_size))
    ]
    depth = 0
    while len(layer) > 1:
        layer = [
            delayed(combine_partials, pure=True)(
                layer[start : start + split_every],
                dask_key_name=(f"mean-image-combine-{token}", index, depth, n),
            )
            for n, start in enumerate(range(0, len(layer), split_every))
        ]
        depth += 1
    return delayed(finalize_mean, pure=True)(layer[0], dask_key_name=(f"mean-image-{token}", index))


def _read_shape(path: str, read: Callable[[str], np.ndarray], volume: bool) -> tuple[int, ...]:
    image = _read_uint8(path, read, volume)
    return image.shape if volume else image.shape[:2]


def _partial_task(
    paths: list[str],
    read: Callable[[str], np.ndarray],
    shape: tuple[int, ...],
    volume: bool,
) -> Partial:
    # A generator: each image is read, converted and added before the next one is read.
    images = (_read_uint8(p, read, volume) for p in paths)
    return accumulate(images, shape)


def _read_uint8(path: str, read: Callable[[str], np.ndarray], volume: bool) -> np.ndarray:
    image = read(path)
    try:
        return to_uint8_image(image, volume=volume)
    except ValueError as err:  # say which file, out of thousands, was bad
        raise ValueError(f"{path}: {err}") from err
