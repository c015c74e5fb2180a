"""``medsyn-dask train-vqvae``: train the VQ-VAE-2 feature extractor on a folder of real images.

Without ``--cluster``/``--scheduler-address`` training runs in this process (on its GPU when
it has one); with one, as one task on that cluster (on a GPU worker when there is one).
"""

from __future__ import annotations

import argparse
from typing import Any

from .cluster_options import add_cluster_arguments, cluster_spec
from .storage_options import add_storage_option_argument, parse_storage_options


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "train-vqvae",
        help="train the VQ-VAE-2 (discrete features) on your real images",
        description=(
            "Train the reference VQ-VAE-2 on the images under ROOT/CLASS/, read and "
            "preprocessed as extraction reads them, and write CKPT (a plain state dict that "
            "--model vqvae-bottom --weights CKPT loads), CKPT.train.pt (resume state), "
            "CKPT.json (record) and training.png, reconstructions.png. Rerunning the same "
            "command resumes from the last saved step."
        ),
    )
    p.add_argument("--real", required=True, help="dataset root ROOT/CLASS/ (path or fsspec URL)")
    p.add_argument("--output", required=True, metavar="CKPT", help="checkpoint (path or URL)")
    p.add_argument("--resolution", type=int, default=256, help="pixels per side (default 256)")
    p.add_argument("--num-channels", type=int, default=1, choices=(1, 3), help="1 gray, 3 RGB")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=int, help="passes over the images (default 100)")
    length.add_argument("--steps", type=int, help="optimiser steps in all (instead of --epochs)")
    p.add_argument("--batch-size", type=int, default=32, help="images per step (default 32)")
    p.add_argument("--lr", type=float, default=3e-4, help="Adam learning rate (default 3e-4)")
    p.add_argument("--class-names", help="comma-separated class folders to use (default: all)")
    a = p.add_argument_group("architecture (defaults: the reference's)")
    a.add_argument(
        "--model-size",
        type=int,
        default=512,
        choices=(256, 512, 1024),
        help="the reference's size: bottom stride size/64 (default 512, as the original "
        "builds it; --resolution must be a multiple of twice the stride)",
    )
    a.add_argument("--channels", type=int, default=128, help="encoder channels (default 128)")
    a.add_argument("--res-blocks", type=int, default=2, help="residual blocks (default 2)")
    a.add_argument("--res-channels", type=int, default=32, help="residual channels (default 32)")
    a.add_argument("--embed-dim", type=int, default=64, help="code vector length (default 64)")
    a.add_argument("--codebook-size", type=int, default=512, help="codes per level (default 512)")
    p.add_argument(
        "--save-every", type=int, default=500, help="steps between checkpoints (default 500)"
    )
    p.add_argument("--seed", type=int, default=0, help="model initialisation and batch order")
    p.add_argument(
        "--min-usage",
        type=float,
        default=0.1,
        help="warn when a level uses fewer than this share of its codes (default 0.1)",
    )
    p.add_argument(
        "--restart-below",
        type=float,
        default=1.0,
        metavar="COUNT",
        help="move a code whose running count falls below COUNT onto an encoder output "
        "(default 1; 0 trains the codebook exactly as the reference)",
    )
    p.add_argument("--plots", help="folder for training.png, reconstructions.png (default: CKPT's)")
    p.add_argument(
        "--overwrite", action="store_true", help="start afresh even if CKPT exists (no resume)"
    )
    add_storage_option_argument(p, "ROOT and CKPT")
    add_cluster_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..cluster import start_cluster
    from ..features.vqvae.train import train_vqvae

    classes = (
        [c.strip() for c in args.class_names.split(",") if c.strip()] if args.class_names else None
    )
    settings = {
        "resolution": args.resolution,
        "num_channels": args.num_channels,
        "epochs": args.epochs,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "storage_options": parse_storage_options(args.storage_option),
        "model_size": args.model_size,
        "channels": args.channels,
        "res_blocks": args.res_blocks,
        "res_channels": args.res_channels,
        "embed_dim": args.embed_dim,
        "codebook_size": args.codebook_size,
        "save_every": args.save_every,
        "seed": args.seed,
        "min_usage": args.min_usage,
        "restart_below": args.restart_below,
        "plots": args.plots,
        "overwrite": args.overwrite,
    }
    if args.cluster is None and args.scheduler_address is None:
        result = train_vqvae(args.real, args.output, class_names=classes, **settings)
    else:
        # Settings are checked before a cluster starts.
        from ..features.vqvae.train import TrainSettings

        TrainSettings(real=args.real, output=args.output, **settings)
        with start_cluster(cluster_spec(args, {})) as client:
            result = train_vqvae(
                args.real, args.output, class_names=classes, client=client, **settings
            )
    print(
        f"{result.checkpoint}: step {result.step}/{result.total_steps} on {result.n_images} "
        f"images ({result.device}, {result.seconds:.0f} s this run), loss {result.loss:.4f}, "
        f"reconstruction MSE {result.reconstruction_mse:.4f}, codebook usage top "
        f"{result.usage_top:.0%} bottom {result.usage_bottom:.0%}; plots: "
        f"{', '.join(result.plots)}"
    )
    return 0
