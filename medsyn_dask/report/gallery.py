"""Thumbnails for the report: views of images and volumes as PNG, and the copy gallery's pairs.

A 2D image is one view; a 3D volume ``(X, Y, Z)`` is three, its middle slice on each axis. The
gallery shows, per group, the synthetic images with the lowest copy ratios (copies first) beside
the real image each is closest to, read from the input roots named in the per-image table.
"""

from __future__ import annotations

import base64
import gzip
import io
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from ..metrics.variety.image import to_uint8_image
from ..sources import is_volume_path, read_image

#: Longest side of a gallery thumbnail, pixels.
THUMBNAIL_SIDE = 128
#: Tooltips of the views, by their number: an image, or a volume's three middle slices.
VIEW_TITLES = {
    1: ("",),
    3: tuple(f"middle slice across {axis}" for axis in ("x", "y", "z")),
}


def middle_slices(volume: np.ndarray) -> list[np.ndarray]:
    """The middle slice of a ``(X, Y, Z)`` volume on each axis: ``[(Y, Z), (X, Z), (X, Y)]``."""
    v = np.asarray(volume)
    return [np.take(v, v.shape[axis] // 2, axis=axis) for axis in range(3)]


def views(image: np.ndarray, *, volume: bool) -> list[np.ndarray]:
    """The 2D uint8 views shown for an image as read: itself, or a volume's middle slices."""
    pixels = to_uint8_image(image, volume=volume)
    return middle_slices(pixels) if volume else [pixels]


def png_bytes(view: np.ndarray, *, max_side: int | None = None) -> bytes:
    """PNG file bytes of a 2D uint8 view, ``(H, W)`` or ``(H, W, 3)``, optionally shrunk."""
    picture = Image.fromarray(np.ascontiguousarray(view))
    if max_side is not None and max(picture.size) > max_side:
        picture.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    picture.save(buf, format="PNG")
    return buf.getvalue()


def data_uri(png: bytes) -> str:
    """A ``data:image/png;base64,...`` URI of PNG bytes, for an ``<img src>``."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def mean_image_views(file_name: str, data: bytes) -> list[bytes]:
    """PNG views of a written mean image: the PNG itself, or a NIfTI volume's middle slices."""
    if not file_name.endswith(".nii.gz"):
        return [data]
    import nibabel as nib

    volume = nib.Nifti1Image.from_bytes(gzip.decompress(data)).get_fdata(dtype=np.float32)
    return [png_bytes(s.astype(np.uint8)) for s in middle_slices(volume)]


def closest_pairs(per_image: Mapping[str, pd.DataFrame], n: int) -> dict[str, pd.DataFrame]:
    """Per group, the ``n`` rows with the lowest copy ratio (copies come first: ratio < 1)."""
    return {
        group: table.sort_values("copy_ratio", kind="stable").head(n)
        for group, table in per_image.items()
    }


def gallery_entries(
    pairs: Mapping[str, pd.DataFrame], storage_options: dict | None = None
) -> dict[str, list[dict[str, Any]]]:
    """Per group, the pairs as template entries: paths, set, distance, ratio and thumbnails.

    Each entry has ``synthetic`` and ``real`` lists of thumbnail data URIs (one per view), or
    ``error`` when an input file cannot be read any more (moved or deleted since the run).
    """
    out: dict[str, list[dict[str, Any]]] = {}
    for group, table in pairs.items():
        out[group] = [_entry(row, storage_options) for row in table.itertuples(index=False)]
    return out


def _entry(row: Any, storage_options: dict | None) -> dict[str, Any]:
    entry = {
        "path": row.path,
        "nearest_real": row.nearest_real,
        "set": row.set,
        "distance": float(row.distance),
        "copy_ratio": float(row.copy_ratio),
        "error": None,
    }
    try:
        entry["synthetic"] = _thumbnails(row.path, storage_options)
        entry["real"] = _thumbnails(row.nearest_real, storage_options)
    except (OSError, ValueError) as exc:
        entry["error"] = f"{type(exc).__name__}: {exc}"
    return entry


def _thumbnails(path: str, storage_options: dict | None) -> list[str]:
    image = read_image(path, storage_options)
    volume = is_volume_path(path)
    return [data_uri(png_bytes(v, max_side=THUMBNAIL_SIDE)) for v in views(image, volume=volume)]
