"""Writing small real image files (PNG, 16-bit TIFF, JPEG, NIfTI) for the tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_png(path: Path, rng: np.random.Generator, size: int = 24, rgb: bool = False) -> None:
    shape = (size, size, 3) if rgb else (size, size)
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(path)


def write_tiff16(path: Path, rng: np.random.Generator, size: int = 24) -> np.ndarray:
    arr = rng.integers(0, 65536, (size, size), dtype=np.uint16)
    Image.fromarray(arr).save(path)
    return arr


def write_jpeg(path: Path, rng: np.random.Generator, size: int = 24) -> None:
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path, quality=95)


def write_nifti(path: Path, data: np.ndarray, slope: float = 1.0, inter: float = 0.0) -> None:
    import nibabel as nib

    img = nib.Nifti1Image(data, affine=np.eye(4))
    img.header.set_slope_inter(slope, inter)
    nib.save(img, str(path))


def mixed_dataset(root: Path, per_class: int = 5, seed: int = 0) -> Path:
    """``root/{benign,malignant}/`` with PNG (gray and RGB), 16-bit TIFF and JPEG files."""
    rng = np.random.default_rng(seed)
    writers = [
        lambda p: write_png(p.with_suffix(".png"), rng),
        lambda p: write_tiff16(p.with_suffix(".tif"), rng),
        lambda p: write_jpeg(p.with_suffix(".jpg"), rng),
        lambda p: write_png(p.with_suffix(".png"), rng, rgb=True),
    ]
    for cls in ("benign", "malignant"):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            writers[i % len(writers)](root / cls / f"img{i:03d}")
    return root


def png_dataset(
    root: Path, classes=("a", "b"), per_class: int = 10, seed: int = 0, size: int = 24
) -> Path:
    rng = np.random.default_rng(seed)
    for cls in classes:
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            write_png(root / cls / f"{i:03d}.png", rng, size=size)
    return root


def volume_dataset(root: Path, per_class: int = 3, seed: int = 0, shape=(12, 10, 8)) -> Path:
    rng = np.random.default_rng(seed)
    (root / "vol").mkdir(parents=True, exist_ok=True)
    for i in range(per_class):
        suffix = ".nii.gz" if i % 2 else ".nii"
        write_nifti(root / "vol" / f"v{i}{suffix}", rng.normal(size=shape).astype(np.float32))
    return root


def upload(local_root: Path, fs, url: str) -> None:
    """Copy every file under ``local_root`` to ``url`` (an ``s3://`` prefix) keeping layout."""
    for path in sorted(local_root.rglob("*")):
        if path.is_file():
            fs.put_file(str(path), f"{url}/{path.relative_to(local_root).as_posix()}")
