"""The original package and medsyn-dask side by side: differing codes, set labels and scores.

Not in CI (the original needs torchvision and timm, i.e. torch 2.14.1 + torchvision 0.29.1,
about 6 GB). The script

1. creates the original's own environment (``--venv``, default /tmp/medsyn-original-venv):
   ``pip install torch==2.14.1 torchvision==0.29.1 timm opencv-python-headless pandas
   scikit-learn scipy tqdm synthetic-image-analyzer==1.0.0`` (skipped when it exists);
2. writes scanned-digit-like images (scikit-learn's bundled 8 x 8 digits, upsampled with sensor
   noise: ``tests/compat_checkpoint.py``): a real set and three synthetic groups of
   ``10 x --per-class`` images each (a multiple of 16, so the original's ``drop_last`` batches
   drop nothing): ``faithful`` (other digits), ``copies`` (the real digits, new noise) and
   ``rotated`` (other digits upside down);
3. makes a reference-shaped VQ-VAE-2 checkpoint (``in_channel=1``, size 512) whose codebooks
   are calibrated on the real set by k-means (a random codebook maps every image to one code);
4. runs the original (``_original_runner.py`` in its environment) and medsyn-dask (its compat
   command line, one local worker) on the same images and checkpoint, and prints the number of
   differing top/bottom codes (also medsyn-dask's model against the original's in the
   original's torch build), differing set labels, and both sets of scores.

The original crashes twice on this CPU path; ``_original_runner.py`` works around both at run
time in its own process, changing no file of the package: ``.cuda()`` on every batch whatever
``--gpu_ids`` says (``torch.Tensor.cuda`` returns the tensor itself there), and ``fid``
unbound for discrete features (its ``fid`` method records the original's message instead).

``--write-fixture`` also encodes 48 other digits with the original at 64 and 256 px and
stores them, the codebooks and the images in ``tests/data/compat/codes.npz``, which
``tests/test_compat_codes.py`` compares against medsyn-dask exactly. Regenerate with::

    .venv/bin/python benchmarks/compat_original.py --write-fixture
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
from compat_checkpoint import (  # noqa: E402
    SEED,
    calibrate_codebooks,
    checkpoint_state,
    digit_images,
    seeded_model,
    state_digest,
    write_images,
)

from medsyn_dask.cli.compat import main as compat_main  # noqa: E402
from medsyn_dask.features import create_extractor  # noqa: E402
from medsyn_dask.sources.preprocess import preprocess  # noqa: E402
from medsyn_dask.sources.readers import read_image  # noqa: E402

RUNNER = HERE / "_original_runner.py"
FIXTURE = HERE.parent / "tests" / "data" / "compat" / "codes.npz"
PACKAGES = [
    "torch==2.14.1", "torchvision==0.29.1", "timm", "opencv-python-headless", "pandas",
    "scikit-learn", "scipy", "tqdm", "synthetic-image-analyzer==1.0.0",
]  # fmt: skip
GROUPS = ("faithful", "copies", "rotated")


def ensure_venv(venv: Path) -> Path:
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *PACKAGES], check=True)
    return python


def write_data(work: Path, per_class: int) -> dict[str, Path]:
    classes = tuple(range(10))
    roots = {"real": work / "data" / "real"}
    write_images(roots["real"], digit_images(classes, per_class))
    groups = {
        "faithful": digit_images(classes, per_class, start=per_class),
        "copies": digit_images(classes, per_class, seed=SEED + 1),
        "rotated": {
            k: np.rot90(v, 2).copy()
            for k, v in digit_images(classes, per_class, start=2 * per_class).items()
        },
    }
    for name, images in groups.items():
        roots[name] = work / "data" / "synthetic" / name
        write_images(roots[name], images)
    return roots


def batch_of(root: Path, resolution: int) -> tuple[list[str], torch.Tensor]:
    names = sorted(str(p) for p in root.rglob("*.png"))
    return names, torch.from_numpy(np.stack([preprocess(read_image(n), resolution) for n in names]))


def make_checkpoint(work: Path, real: Path) -> tuple[Path, dict]:
    _, batch = batch_of(real, 256)
    embed_t, embed_b = calibrate_codebooks(seeded_model(), batch)
    state = checkpoint_state(embed_t, embed_b)
    path = work / "vqvae_calibrated.pt"
    torch.save(state, path)
    return path, {"embed_t": embed_t, "embed_b": embed_b, "digest": state_digest(state)}


def original_codes(python: Path, root: Path, ckpt: Path, out: Path, *res: int) -> dict:
    """The runner's ``codes`` mode (see ``_original_runner.py``) for the images under ``root``."""
    args = ["codes", root, ckpt, out, "--resolutions", *res]
    subprocess.run([str(python), str(RUNNER), *map(str, args)], check=True, capture_output=True)
    return json.loads(out.read_text())


def original_analyze(python: Path, out: Path, flags: list[object]) -> dict:
    """The runner's ``analyze`` mode: the original's command line with ``flags``."""
    args = ["analyze", out, "--", *flags]
    subprocess.run([str(python), str(RUNNER), *map(str, args)], check=True, capture_output=True)
    return json.loads(out.read_text())


def medsyn_codes(root: Path, ckpt: Path, resolution: int) -> dict[str, dict[str, np.ndarray]]:
    names, batch = batch_of(root, resolution)
    out = {}
    for level in ("top", "bottom"):
        codes = create_extractor(f"vqvae-{level}", weights=str(ckpt))(batch.numpy())
        out[level] = dict(zip(names, codes, strict=True))
    return out


def compare(args: argparse.Namespace) -> None:
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    python = ensure_venv(Path(args.venv))
    roots = write_data(work, args.per_class)
    ckpt, _ = make_checkpoint(work, roots["real"])
    res = args.resolution
    print(f"# codes: original (torch in its venv) vs medsyn-dask, {ckpt.name}")
    print("set       px  level   positions  differing  same-build differing")
    for name, root in roots.items() if not args.no_codes else ():
        orig = original_codes(python, root, ckpt, work / f"codes_{name}.json", 64, res)
        for px in (64, res):
            ours = medsyn_codes(root, ckpt, px)
            for level in ("top", "bottom"):
                theirs = orig["codes"][f"vqvae_{level}_{px}"]
                n = sum(len(v) for v in theirs.values())
                diff = sum(int((np.asarray(v) != ours[level][k]).sum()) for k, v in theirs.items())
                same = orig[f"same_build_{px}"][f"differing_{level}"]
                print(f"{name:9s} {px:4d}  {level:6s} {n:10d} {diff:10d} {same:21d}")
    out = work / "medsyn"
    flags = ["--resolution", res, "--pretrained_model_path", ckpt, "--gpu_ids", -1]
    compat_main([str(a) for a in ["-d", roots["real"].parent / "synthetic", "-r",
                                  roots["real"], "-o", out, "--workers", 1, *flags]])  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())["groups"]
    print("\n# set labels and scores: original vs medsyn-dask (vqvae_bottom)")
    for name in GROUPS:
        (work / f"original_{name}").mkdir()
        dirs = ["-d", roots[name], "-r", roots["real"], "-o", work / f"original_{name}"]
        theirs = original_analyze(
            python,
            work / f"original_{name}.json",
            [*dirs, "--select_model", "vqvae_bottom", *flags],
        )
        table = pd.read_csv(out / "per_image" / f"{name}.csv")
        ours = dict(zip(table["path"], table["set"], strict=True))
        differing = sum(ours[p] != label for p, label in theirs["labels"].items())
        m, g = theirs["metrics"], metrics[name]
        print(f"{name}: {differing} of {len(theirs['labels'])} labels differ")
        for key, mine in (("precision", g["fidelity"]), ("privacy", g["privacy"]),
                          ("precision_privacy", g["precision_privacy"]), ("std", g["std"]),
                          ("filesize", f"{int(g['mean_image_bytes'] / 1024)} kB")):  # fmt: skip
            print(f"  {key:18s} original {m[key]!s:>22}   medsyn-dask {mine!s:>22}")
        print(f"  {'fid':18s} original {m['fid']!r}   medsyn-dask {g['fid']} ({g['fid_reason']})")


def write_fixture(args: argparse.Namespace) -> None:
    work = Path(args.work) / "fixture"
    shutil.rmtree(work, ignore_errors=True)
    python = ensure_venv(Path(args.venv))
    real = write_data(work, args.per_class)["real"]
    ckpt, recipe = make_checkpoint(work, real)
    images = digit_images(tuple(range(6)), 8, start=150)
    write_images(work / "fixture", images)
    orig = original_codes(python, work / "fixture", ckpt, work / "codes.json", 64, 256)
    names = sorted(images)
    codes = {}
    for key, per_file in orig["codes"].items():
        by_name = {str(Path(p).relative_to(work / "fixture")): v for p, v in per_file.items()}
        codes[key] = np.asarray([by_name[n] for n in names], dtype=np.int16)
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        FIXTURE,
        names=np.asarray(names),
        images=np.stack([images[n] for n in names]),
        embed_t=recipe["embed_t"],
        embed_b=recipe["embed_b"],
        digest=np.asarray(recipe["digest"]),
        torch=np.asarray(orig["torch"]),
        **codes,
    )
    same = {k: v for k, v in orig.items() if k.startswith("same_build")}
    print(f"wrote {FIXTURE} ({FIXTURE.stat().st_size} bytes), original torch {orig['torch']}")
    print(f"medsyn-dask's model vs the original's in that build: {same}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--work", default="/tmp/medsyn-compat", help="scratch folder (emptied)")
    p.add_argument("--venv", default="/tmp/medsyn-original-venv", help="the original's venv")
    p.add_argument("--per-class", type=int, default=16, help="digits per class (10 classes)")
    p.add_argument("--resolution", type=int, default=256)
    p.add_argument("--no-codes", action="store_true", help="labels and scores only")
    p.add_argument("--write-fixture", action="store_true", help="write tests/data/compat/")
    args = p.parse_args()
    if (10 * args.per_class) % 16:
        p.error("10 x --per-class must be a multiple of 16 (the original drops partial batches)")
    (write_fixture if args.write_fixture else compare)(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
