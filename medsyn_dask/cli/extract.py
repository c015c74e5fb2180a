"""``medsyn-dask extract``: image folders (local or object store) -> a Zarr feature store."""

from __future__ import annotations

import argparse
from typing import Any

from ..checks import DEFAULT_RESOLUTION
from .cluster_options import add_cluster_arguments, cluster_spec
from .storage_options import add_storage_option_argument, parse_storage_options


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "extract",
        help="extract features of a dataset root into a Zarr feature store",
        description=(
            "Extract features of every image under ROOT/CLASS/ into the Zarr store URL (group "
            "NAME), on Dask. Rerunning the same command resumes an interrupted extraction."
        ),
    )
    p.add_argument("--root", required=True, help="dataset root (path or fsspec URL)")
    p.add_argument("--store", required=True, help="Zarr feature store (path or fsspec URL)")
    p.add_argument("--group", default="real", help="group in the store (default: real)")
    p.add_argument(
        "--model",
        default="pixels",
        help="extractor: pixels, pixels:N, vqvae-top, vqvae-bottom, torchscript:PATH, "
        "timm:NAME, torchvision:NAME (default: pixels)",
    )
    p.add_argument("--weights", help="weights or checkpoint file (path or fsspec URL)")
    p.add_argument(
        "--resolution",
        type=int,
        default=DEFAULT_RESOLUTION,
        help=f"pixels per side (default {DEFAULT_RESOLUTION}, as analyze)",
    )
    p.add_argument(
        "--num-channels", type=int, default=1, choices=(1, 3), help="1: grayscale, 3: RGB"
    )
    p.add_argument("--class-names", help="comma-separated class folders to use (default: all)")
    add_cluster_arguments(p)
    p.add_argument("--partition-size", type=int, help="images per task (default: automatic)")
    p.add_argument("--batch-size", type=int, default=32, help="images per model call")
    p.add_argument(
        "--on-bad-image",
        choices=("error", "skip"),
        default="error",
        help="error: stop naming the file; skip: list it in the store and go on",
    )
    p.add_argument(
        "--verify-content",
        action="store_true",
        help="compare stored features with the files by a sha256 of their content (every "
        "file is read once more) instead of their size and modification time or ETag",
    )
    add_storage_option_argument(p, "ROOT, the weights and the store")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..cluster import start_cluster
    from ..features import extract_features

    options = parse_storage_options(args.storage_option)
    classes = (
        [c.strip() for c in args.class_names.split(",") if c.strip()] if args.class_names else None
    )
    with start_cluster(cluster_spec(args, {})) as client:
        result = extract_features(
            args.root,
            args.store,
            args.group,
            args.model,
            weights=args.weights,
            resolution=args.resolution,
            num_channels=args.num_channels,
            class_names=classes,
            storage_options=options,
            client=client,
            partition_size=args.partition_size,
            batch_size=args.batch_size,
            on_bad_image=args.on_bad_image,
            progress=True,
            verify_content=args.verify_content,
        )
    resumed = f", {result.n_resumed} resumed" if result.n_resumed else ""
    print(
        f"{result.group}/{result.name}: {result.n_images} images x {result.n_features} features "
        f"in {result.n_partitions} partitions{resumed}; {result.n_reused} images reused, "
        f"{result.n_reextracted} extracted; {result.n_bad} bad images"
    )
    return 0
