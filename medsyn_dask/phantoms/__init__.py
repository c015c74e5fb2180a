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
a function of the arguments alone. The drawing lives in :mod:`.anatomy`.

Run ``python -m medsyn_dask.phantoms OUTDIR [--dims 3]`` to write a demo set.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
from PIL import Image

from ..errors import SettingsError
from .anatomy import make_grid, random_anatomy, real_like, synthetic_like

#: The synthetic groups, each a generator with one known flaw (see the module docstring).
GROUPS = ("memorizer", "faithful", "collapsed", "poor")

#: The group expected to score lowest on each metric (the order of the others is not designed).
TRUTH = {"privacy": "memorizer", "fidelity": "poor", "variety": "collapsed"}

_GROUP_ID = {"real": 0, **{g: i + 1 for i, g in enumerate(GROUPS)}}
_TEMPLATE = 1_000_000  # stream index of the collapsed group's single anatomy

#: NIfTI voxel size in mm (X, Y, Z).
VOXEL_MM = (1.5, 1.5, 2.0)


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
    size = _check_args(n_real, n_synthetic, size, dims, classes, seed)
    root = Path(root)
    suffix = ".png" if dims == 2 else ".nii.gz"
    grid = make_grid(size, dims)
    memorized: dict[str, str] = {}
    for k, cls in enumerate(classes):
        # The real images stay in memory (the memoriser copies them); the rest is streamed.
        real = [real_like(_rng(seed, "real", k, i), grid, k) for i in range(n_real)]
        _write_all(root / "real" / cls, real, suffix)
        template = random_anatomy(_rng(seed, "collapsed", k, _TEMPLATE), dims, k)
        for group in GROUPS:
            images = (
                synthetic_like(group, _rng(seed, group, k, i), grid, k, real[i % n_real], template)
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
    n_real: int, n_synthetic: int, size: int | None, dims: int, classes: Sequence[str], seed: int
) -> int:
    """The checked size (SettingsError naming the first bad argument: one line in the CLI)."""
    if not isinstance(seed, int | np.integer) or seed < 0:
        raise SettingsError(f"seed must be a whole number >= 0, got {seed!r}")
    if dims not in (2, 3):
        raise SettingsError(f"dims must be 2 or 3, got {dims!r}")
    if n_real < 2:
        raise SettingsError(
            f"n_real must be at least 2 (a copy needs a nearest other), got {n_real}"
        )
    if n_synthetic < 1:
        raise SettingsError(f"n_synthetic must be at least 1, got {n_synthetic}")
    size = (128 if dims == 2 else 48) if size is None else size
    lo, hi = (16, 1024) if dims == 2 else (8, 128)
    if not lo <= size <= hi:
        raise SettingsError(f"size must be in {lo}..{hi} for {dims}D phantoms, got {size}")
    if isinstance(classes, str) or len(classes) < 1 or len(set(classes)) != len(classes):
        raise SettingsError(f"classes must be distinct folder names, got {classes!r}")
    for c in classes:
        if not c or c in (".", "..") or "/" in c or "\\" in c:
            raise SettingsError(f"class name {c!r} is not a plain folder name")
    return size


def _rng(seed: int, group: str, cls: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, _GROUP_ID[group], cls, index])


def _name(index: int, suffix: str) -> str:
    # Neutral, sequential names: nothing that reads like a patient or study identifier.
    return f"phantom_{index:05d}{suffix}"


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
