"""``synthetic_image_analyzer``: the original package's command line, run as medsyn-dask's job.

Accepts the original flags so existing scripts keep working. ``--data_dir`` is one synthetic
group (``DATA/CLASS/files``), or a folder of groups (``DATA/GROUP/CLASS/files``) when its
sub-folders hold the real set's classes. ``--gpu_ids`` restricts the embedded cluster's GPUs.
"""

from __future__ import annotations

import argparse
import os
import sys

import fsspec

from ..cluster import ClusterSpec
from ..settings import AnalyzeSettings
from ..sources import list_images
from . import run_command
from .analyze import run_job

#: The original ``--select_model`` values and their extractor names here.
MODELS = {"vqvae_top": "vqvae-top", "vqvae_bottom": "vqvae-bottom"}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="synthetic_image_analyzer",
        description="MedSynAnalyzer-compatible command line (runs medsyn-dask analyze)",
    )
    p.add_argument("--data_dir", required=True, help="synthetic images (one group or a folder)")
    p.add_argument("--ref_dir", required=True, help="real images")
    p.add_argument("--output_dir", required=True)
    p.add_argument("--resolution", type=int, default=512)
    p.add_argument("--num_channels", type=int, default=1, choices=(1, 3))
    p.add_argument("--select_model", default="pixels",
                   help="vqvae_top, vqvae_bottom, or any medsyn-dask extractor name")
    p.add_argument("--pretrained_model_path", default=None)
    p.add_argument("--class_names", default=None, help="comma-separated")
    p.add_argument("--gpu_ids", default=None, help="e.g. 0,1: the GPUs the workers may use")
    p.add_argument("--nearest_k", type=int, default=5)
    return p


def synthetic_groups(data_dir: str, real_classes: tuple[str, ...]) -> dict[str, str]:
    """Groups under ``data_dir``: its sub-folders if they hold the real classes, else itself."""
    fs, root = fsspec.core.url_to_fs(data_dir)
    if not fs.isdir(root):
        raise FileNotFoundError(f"--data_dir not found: {data_dir}")
    subdirs = sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(root) if fs.isdir(p))
    if set(real_classes) <= set(subdirs):
        return {os.path.basename(data_dir.rstrip("/")) or "synthetic": data_dir}
    return {name: f"{data_dir.rstrip('/')}/{name}" for name in subdirs}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command("synthetic_image_analyzer", lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    if args.gpu_ids is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = args.gpu_ids
    classes = tuple(args.class_names.split(",")) if args.class_names else None
    real_classes = list_images(args.ref_dir, classes).class_names
    model = MODELS.get(args.select_model, args.select_model)
    settings = AnalyzeSettings(
        real=args.ref_dir,
        synthetic=synthetic_groups(args.data_dir, real_classes),
        output=args.output_dir,
        models=(model,),
        resolutions=(args.resolution,),
        weights={model: args.pretrained_model_path} if args.pretrained_model_path else {},
        num_channels=args.num_channels,
        nearest_k=args.nearest_k,
        class_names=classes,
    )
    run_job(settings, ClusterSpec())
    return 0


if __name__ == "__main__":
    sys.exit(main())
