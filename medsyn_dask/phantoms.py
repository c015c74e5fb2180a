"""Demo data with a known truth: phantom images, real and synthetic, written as real files.

A real set and four synthetic groups are drawn from simple random anatomies (NumPy and SciPy,
no downloads), so that each quality axis has one group that is known to be worst:

* ``memorizer`` returns real images plus faint noise: every image is a copy (lowest privacy);
* ``faithful`` draws fresh anatomies from the real distribution (the good generator);
* ``collapsed`` returns one anatomy over and over with tiny jitter (lowest variety);
* ``poor`` paints random boxes and stripes, no anatomy at all (lowest fidelity).

2D phantoms are head slices in the spirit of Shepp-Logan (skull, brain, ventricles, nuclei),
written as 8-bit grayscale PNG. 3D phantoms are torso volumes (body, lungs, heart, liver,
spine), written as int16 NIfTI (``.nii.gz``, Hounsfield-like values, 1.5 x 1.5 x 2 mm voxels).
Class 0 (``normal`` by default) has no lesion; class ``k`` has ``k`` bright lesions.

The variety truth needs enough images: a mean image is blurry only over dozens of anatomies
per class (checked from 20 per class with the PNG and JPEG 2000 codecs of
:mod:`medsyn_dask.metrics.variety`; lossless WebP needs more in 3D). With a handful, the
smeared edges of a few anatomies cost as many bytes as the collapsed group's fixed grain.

Layout: ``root/real/CLASS/phantom_00000.png`` and ``root/synthetic/GROUP/CLASS/...``. Every
image has its own random stream derived from ``(seed, group, class, index)``, so the output is
a function of the arguments alone.

Run ``python -m medsyn_dask.phantoms OUTDIR [--dims 3]`` to write a demo set.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
from PIL import Image
from scipy import ndimage

#: The synthetic groups, each a generator with one known flaw (see the module docstring).
GROUPS = ("memorizer", "faithful", "collapsed", "poor")

#: The group expected to score lowest on each metric (the order of the others is not designed).
TRUTH = {"privacy": "memorizer", "fidelity": "poor", "variety": "collapsed"}

_GROUP_ID = {"real": 0, **{g: i + 1 for i, g in enumerate(GROUPS)}}
_TEMPLATE = 1_000_000  # stream index of the collapsed group's single anatomy
GRAIN = 0.1  # std of the tissue grain inside the body, fixed per subject ([0, 1] intensity)
NOISE = 0.015  # std of the acquisition noise, fresh in every image

#: NIfTI voxel size in mm (X, Y, Z) and the intensity mapping [0, 1] -> Hounsfield-like units.
VOXEL_MM = (1.5, 1.5, 2.0)
HU_OFFSET, HU_SCALE = -1000.0, 2000.0

# A shape is (offset, semi-axes, angle, value): offset and axes in units of the body's
# semi-axes, angle in radians in the plane of the first two axes, value an intensity in [0, 1].
Shape = tuple[np.ndarray, np.ndarray, float, float]


@dataclass(frozen=True)
class DemoDataset:
    """Where a demo set was written and what its metrics must show.

    ``truth`` maps a metric (``privacy``, ``fidelity``, ``variety``) to the synthetic group that
    must score lowest. ``memorized_from`` maps each memoriser image (path relative to ``root``)
    to the real image it copies (relative to ``root``).
    """

    root: Path
    real: Path
    synthetic: dict[str, Path]
    classes: tuple[str, ...]
    dims: int
    size: int
    n_real: int
    n_synthetic: int
    seed: int
    suffix: str
    truth: dict[str, str] = field(default_factory=lambda: dict(TRUTH))
    memorized_from: dict[str, str] = field(default_factory=dict)

    def files(self, group: str = "real", cls: str | None = None) -> list[Path]:
        """Sorted files of ``group`` (``"real"`` or a synthetic group), one class or all."""
        base = self.real if group == "real" else self.synthetic[group]
        classes = self.classes if cls is None else (cls,)
        return [p for c in classes for p in sorted((base / c).glob(f"phantom_*{self.suffix}"))]

    def paths_by_class(self, group: str = "real") -> dict[str, list[str]]:
        """Class -> sorted file paths (strings) of ``group``, the input of the metrics."""
        return {c: [str(p) for p in self.files(group, c)] for c in self.classes}


def write_demo_dataset(
    root: str | Path,
    *,
    n_real: int = 100,
    n_synthetic: int = 100,
    size: int | None = None,
    dims: int = 2,
    classes: Sequence[str] = ("normal", "lesion"),
    seed: int = 0,
) -> DemoDataset:
    """Write a real set and the four synthetic groups of :data:`GROUPS` under ``root``.

    ``n_real`` and ``n_synthetic`` are images per class; ``size`` is the side in pixels
    (default 128 for 2D, 48 for 3D; 2D 16..1024, 3D 8..128); ``dims`` is 2 (PNG) or 3 (NIfTI).
    Phantom files (``phantom_*``) already in the class folders written are replaced; nothing
    else there is touched. Returns a :class:`DemoDataset`.
    """
    size = _check_args(n_real, n_synthetic, size, dims, classes)
    root = Path(root)
    suffix = ".png" if dims == 2 else ".nii.gz"
    grid = _grid(size, dims)
    memorized: dict[str, str] = {}
    for k, cls in enumerate(classes):
        # The real images stay in memory (the memoriser copies them); the rest is streamed.
        real = [_real_like(_rng(seed, "real", k, i), grid, k) for i in range(n_real)]
        _write_all(root / "real" / cls, real, suffix)
        template = _anatomy(_rng(seed, "collapsed", k, _TEMPLATE), dims, k)
        for group in GROUPS:
            images = (
                _synthetic(group, _rng(seed, group, k, i), grid, k, real[i % n_real], template)
                for i in range(n_synthetic)
            )
            _write_all(root / "synthetic" / group / cls, images, suffix)
        for i in range(n_synthetic):
            copy = f"synthetic/memorizer/{cls}/{_name(i, suffix)}"
            memorized[copy] = f"real/{cls}/{_name(i % n_real, suffix)}"
    return DemoDataset(
        root=root,
        real=root / "real",
        synthetic={g: root / "synthetic" / g for g in GROUPS},
        classes=tuple(classes),
        dims=dims,
        size=size,
        n_real=n_real,
        n_synthetic=n_synthetic,
        seed=seed,
        suffix=suffix,
        memorized_from=memorized,
    )


def _check_args(
    n_real: int, n_synthetic: int, size: int | None, dims: int, classes: Sequence[str]
) -> int:
    if dims not in (2, 3):
        raise ValueError(f"dims must be 2 or 3, got {dims!r}")
    if n_real < 2:
        raise ValueError(f"n_real must be at least 2 (a copy needs a nearest other), got {n_real}")
    if n_synthetic < 1:
        raise ValueError(f"n_synthetic must be at least 1, got {n_synthetic}")
    size = (128 if dims == 2 else 48) if size is None else size
    lo, hi = (16, 1024) if dims == 2 else (8, 128)
    if not lo <= size <= hi:
        raise ValueError(f"size must be in {lo}..{hi} for {dims}D phantoms, got {size}")
    if isinstance(classes, str) or len(classes) < 1 or len(set(classes)) != len(classes):
        raise ValueError(f"classes must be distinct folder names, got {classes!r}")
    for c in classes:
        if not c or c in (".", "..") or "/" in c or "\\" in c:
            raise ValueError(f"class name {c!r} is not a plain folder name")
    return size


def _rng(seed: int, group: str, cls: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, _GROUP_ID[group], cls, index])


def _name(index: int, suffix: str) -> str:
    # Neutral, sequential names: nothing that reads like a patient or study identifier.
    return f"phantom_{index:05d}{suffix}"


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


def _grid(size: int, dims: int) -> np.ndarray:
    """Pixel-centre coordinates in [-1, 1], shape ``(dims,) + (size,) * dims``, float32."""
    axis = (np.arange(size, dtype=np.float32) + 0.5) / size * 2.0 - 1.0
    return np.stack(np.meshgrid(*([axis] * dims), indexing="ij"))


def _paint(image: np.ndarray, grid: np.ndarray, shapes: list[Shape], frame: Shape) -> None:
    """Paint ellipses (ellipsoids) in order, later ones over earlier ones, in a body frame.

    ``frame`` places the body: its offset is the body centre, its axes scale every shape, its
    angle rotates every shape in the plane of the first two axes.
    """
    centre, scale, turn, _ = frame
    cos, sin = math.cos(turn), math.sin(turn)
    for offset, axes, angle, value in shapes:
        o = offset * scale
        c = centre.copy()
        c[0] += cos * o[0] - sin * o[1]
        c[1] += sin * o[0] + cos * o[1]
        c[2:] += o[2:]
        image[_inside(grid, c, axes * scale, angle + turn)] = value


def _inside(grid: np.ndarray, centre: np.ndarray, axes: np.ndarray, angle: float) -> np.ndarray:
    d0, d1 = grid[0] - centre[0], grid[1] - centre[1]
    cos, sin = math.cos(angle), math.sin(angle)
    r = ((cos * d0 + sin * d1) / axes[0]) ** 2 + ((-sin * d0 + cos * d1) / axes[1]) ** 2
    for j in range(2, len(axes)):
        r += ((grid[j] - centre[j]) / axes[j]) ** 2
    return r <= 1.0


def _anatomy(rng: np.random.Generator, dims: int, lesions: int) -> dict:
    """One random subject: body frame, shapes, shading and grain (intensities in [0, 1])."""
    shapes = _head(rng, lesions) if dims == 2 else _torso(rng, lesions)
    frame = (
        rng.normal(0.0, 0.03, dims).astype(np.float32),
        np.asarray(
            [rng.uniform(0.82, 0.9), rng.uniform(0.64, 0.74)]
            if dims == 2
            else [rng.uniform(0.8, 0.9), rng.uniform(0.55, 0.65), 1.0],
            dtype=np.float32,
        ),
        float(rng.normal(0.0, 0.08)),
        0.0,
    )
    # Smooth multiplicative shading: a coarse random field, linearly upsampled.
    shading = rng.normal(0.0, 1.0, (6,) * dims if dims == 2 else (4,) * dims)
    # Pixel-fine tissue grain, fixed per subject (drawn at render time from this seed): what a
    # mean image averages away when subjects vary and keeps when they do not. Without it, one
    # piecewise-constant phantom compresses better than the noisy mean of many, and the
    # collapsed group would look the most varied.
    grain = int(rng.integers(2**63))
    return {"shapes": shapes, "frame": frame, "shading": shading.astype(np.float32), "grain": grain}


def _shape(offset, axes, angle: float, value: float) -> Shape:
    return (
        np.asarray(offset, dtype=np.float32),
        np.asarray(axes, dtype=np.float32),
        float(angle),
        float(value),
    )


def _head(rng: np.random.Generator, lesions: int) -> list[Shape]:
    skull, brain = rng.uniform(0.85, 0.97), rng.uniform(0.3, 0.42)
    csf = brain - rng.uniform(0.15, 0.22)
    v = rng.uniform(0.7, 1.3, 2)  # ventricle sizes
    shapes = [
        _shape([0, 0], [1, 1], 0, skull),
        _shape([0, 0], [0.91, 0.9], 0, brain),
        _shape([-0.05, -0.22], [0.32 * v[0], 0.13 * v[0]], 0.3, csf),
        _shape([-0.05, 0.22], [0.32 * v[1], 0.13 * v[1]], -0.3, csf),
    ]
    for offset in ([0.35, -0.15], [0.35, 0.15], [-0.5, 0.0]):
        jitter = rng.normal(0.0, 0.04, 2)
        shapes.append(
            _shape(np.add(offset, jitter), [rng.uniform(0.06, 0.09)] * 2, 0, brain + 0.12)
        )
    for _ in range(lesions):
        r, phi = rng.uniform(0.2, 0.55), rng.uniform(0, 2 * np.pi)
        axes = rng.uniform(0.09, 0.16, 2)
        where = [r * math.cos(phi), r * math.sin(phi)]
        shapes.append(_shape(where, axes * 1.5, rng.uniform(0, np.pi), brain - 0.08))  # oedema
        shapes.append(_shape(where, axes, rng.uniform(0, np.pi), rng.uniform(0.75, 0.9)))
    return shapes


def _torso(rng: np.random.Generator, lesions: int) -> list[Shape]:
    lung = rng.uniform(0.8, 1.2, 2)
    heart, liver = rng.uniform(0.85, 1.15, 2)
    shapes = [
        _shape([0, 0, 0], [1, 1, 2], 0, 0.52),  # soft tissue, about +40 HU
        _shape([0.38, -0.05, 0.2], [0.3 * lung[0], 0.5 * lung[0], 0.7], 0.1, 0.1),  # lungs
        _shape([-0.38, -0.05, 0.2], [0.3 * lung[1], 0.5 * lung[1], 0.7], -0.1, 0.1),
        _shape([0.08, -0.15, 0.1], np.multiply([0.22, 0.25, 0.25], heart), 0, 0.54),
        _shape([-0.3, 0.0, -0.6], np.multiply([0.45, 0.5, 0.35], liver), 0, 0.53),
        _shape([0, 0.75, 0], [0.12, 0.14, 2], 0, 0.85),  # spine, about +700 HU
    ]
    for _ in range(lesions):
        side = rng.choice([-1.0, 1.0])
        where = [side * 0.38 + rng.normal(0, 0.06), rng.normal(-0.05, 0.12), rng.uniform(0, 0.5)]
        shapes.append(_shape(where, [rng.uniform(0.08, 0.14)] * 3, 0, rng.uniform(0.6, 0.7)))
    return shapes


def _render(anatomy: dict, grid: np.ndarray, rng: np.random.Generator, noise: float) -> np.ndarray:
    """Anatomy -> float32 image in [0, 1]: shapes, shading and grain in the body, white noise."""
    image = np.zeros(grid.shape[1:], dtype=np.float32)
    _paint(image, grid, anatomy["shapes"], anatomy["frame"])
    body = image > 0
    shading = anatomy["shading"]
    field_ = ndimage.zoom(shading, np.divide(image.shape, shading.shape), order=1)
    image *= 1.0 + 0.06 * field_[tuple(slice(0, n) for n in image.shape)]
    grain = np.random.default_rng(anatomy["grain"]).standard_normal(image.shape, np.float32)
    image += GRAIN * grain * body
    image += rng.normal(0.0, noise, image.shape).astype(np.float32)
    return np.clip(image, 0.0, 1.0)


def _boxes(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """The poor generator: random boxes over stripes and strong noise, no anatomy."""
    n = shape[0]
    axis = np.arange(n, dtype=np.float32) / n
    image = np.full(shape, rng.uniform(0.0, 0.3), dtype=np.float32)
    image += 0.2 * np.sin(2 * np.pi * rng.uniform(2, 8) * axis + rng.uniform(0, 2 * np.pi))
    for _ in range(int(rng.integers(3, 7))):
        lo = rng.integers(0, n - 2, len(shape))
        hi = lo + rng.integers(2, max(3, n // 2), len(shape))
        image[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))] = rng.uniform(0.2, 1.0)
    image += rng.normal(0.0, 0.04, shape).astype(np.float32)
    return np.clip(image, 0.0, 1.0)


# --------------------------------------------------------------------------------------------
# Real and synthetic images, in file pixel values (uint8 for 2D, int16 HU for 3D)
# --------------------------------------------------------------------------------------------


def _to_file_values(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return np.rint(image * 255.0).astype(np.uint8)
    return np.rint(image * HU_SCALE + HU_OFFSET).astype(np.int16)


def _real_like(rng: np.random.Generator, grid: np.ndarray, cls: int) -> np.ndarray:
    return _to_file_values(_render(_anatomy(rng, grid.shape[0], cls), grid, rng, noise=NOISE))


def _synthetic(
    group: str,
    rng: np.random.Generator,
    grid: np.ndarray,
    cls: int,
    source: np.ndarray,
    template: dict,
) -> np.ndarray:
    if group == "memorizer":
        # Faint noise: about 2 gray levels (2D) or 4 HU (3D), far below real-to-real distances.
        sigma = 2.0 if source.ndim == 2 else 4.0
        noisy = source.astype(np.float32) + rng.normal(0.0, sigma, source.shape)
        info = np.iinfo(source.dtype)
        return np.clip(np.rint(noisy), info.min, info.max).astype(source.dtype)
    if group == "faithful":
        return _real_like(rng, grid, cls)
    if group == "collapsed":
        centre, scale, turn, value = template["frame"]
        jitter = (centre + rng.normal(0.0, 0.003, centre.shape).astype(np.float32), scale)
        anatomy = {**template, "frame": (*jitter, turn, value)}
        return _to_file_values(_render(anatomy, grid, rng, noise=NOISE))
    if group == "poor":
        return _to_file_values(_boxes(rng, grid.shape[1:]))
    raise ValueError(f"unknown synthetic group {group!r}; known: {GROUPS}")


def _write_all(folder: Path, images: Iterable[np.ndarray], suffix: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    # A rerun with fewer images must not leave the old extras behind; only our names go.
    for stale in folder.glob(f"phantom_*{suffix}"):
        stale.unlink()
    for i, image in enumerate(images):
        path = folder / _name(i, suffix)
        if image.ndim == 2:
            # Level 1: the demo favours speed; PNG is lossless at every level.
            Image.fromarray(image).save(path, format="PNG", compress_level=1)
        else:
            affine = np.diag([*VOXEL_MM, 1.0])
            nib.save(nib.Nifti1Image(image, affine), path)


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m medsyn_dask.phantoms OUTDIR [--dims 3] ...``: write a demo set."""
    parser = argparse.ArgumentParser(
        prog="python -m medsyn_dask.phantoms", description=__doc__.split("\n")[0]
    )
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--dims", type=int, choices=(2, 3), default=2)
    parser.add_argument("--n-real", type=int, default=100, help="real images per class")
    parser.add_argument("--n-synthetic", type=int, default=100, help="images per group and class")
    parser.add_argument("--size", type=int, default=None, help="side in pixels (128 / 48)")
    parser.add_argument("--classes", nargs="+", default=["normal", "lesion"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        demo = write_demo_dataset(
            args.outdir,
            n_real=args.n_real,
            n_synthetic=args.n_synthetic,
            size=args.size,
            dims=args.dims,
            classes=args.classes,
            seed=args.seed,
        )
    except ValueError as err:
        parser.error(str(err))
    print(f"real: {demo.real}")
    for group, path in demo.synthetic.items():
        print(f"synthetic {group}: {path}")
    print("expected lowest: " + ", ".join(f"{m} = {g}" for m, g in demo.truth.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
