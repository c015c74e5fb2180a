"""Seconds of VQ-VAE training per 1 000 images and epoch, against the reference's step.

The package's training step (:class:`medsyn_dask.features.vqvae.train_loop.Trainer`: EMA
codebooks plus dead-code restarts, usage counting, batch drawing) is timed against the
reference's bare step on the same model and batch (rosinality's loop: forward, MSE + 0.25 x
latent loss, Adam; no restarts), in one run, on each case below, with torch on 1 thread and on
all cores (a busy machine makes spinning threads much slower than one). Prints seconds per
1 000 images (= per epoch of 1 000 images) and the ratio package / reference.

    .venv/bin/python benchmarks/bench_train_vqvae.py          # test model and reference, 32/256 px
    .venv/bin/python benchmarks/bench_train_vqvae.py --quick  # 32 px only, few steps
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
from _common import OtherLoad, quick_note  # noqa: E402

from medsyn_dask.features.vqvae import VQVAE  # noqa: E402
from medsyn_dask.features.vqvae.train_loop import LATENT_LOSS_WEIGHT, Trainer  # noqa: E402

#: (label, resolution, VQVAE keyword arguments, batch size, timed steps)
CASES = (
    (
        "test model, 32 px",
        32,
        {
            "size": 256,
            "channel": 32,
            "n_res_block": 1,
            "n_res_channel": 16,
            "embed_dim": 16,
            "n_embed": 64,
        },
        16,
        30,
    ),
    ("reference model (size 512), 32 px", 32, {}, 32, 10),
    ("reference model (size 512), 256 px", 256, {}, 32, 2),
)


def _reference_step(model: VQVAE, optimizer: torch.optim.Optimizer, x: torch.Tensor) -> None:
    out, latent, _ = model(x)
    loss = torch.nn.functional.mse_loss(out, x) + LATENT_LOSS_WEIGHT * latent
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def _per_1000(step, steps: int, batch: int) -> float:
    step(0)  # warm-up (allocation, first restarts)
    start = time.perf_counter()
    for s in range(1, steps + 1):
        step(s)
    return (time.perf_counter() - start) / steps / batch * 1000


def measure(resolution: int, arch: dict, batch: int, steps: int) -> tuple[float, float]:
    """(package, reference) seconds per 1 000 images."""
    images = np.random.default_rng(0).uniform(-1, 1, (4 * batch, 1, resolution, resolution))
    images = images.astype(np.float32)
    torch.manual_seed(0)
    model = VQVAE(in_channel=1, **{"size": 512, **arch}).train()
    for q in (model.quantize_t, model.quantize_b):
        q.restart_below = 1.0
    trainer = Trainer(
        model, torch.optim.Adam(model.parameters(), 3e-4), images, batch, 0, 0.1, lambda m: None
    )
    package = _per_1000(trainer.step, steps, batch)
    torch.manual_seed(0)
    ref = VQVAE(in_channel=1, **{"size": 512, **arch}).train()
    opt = torch.optim.Adam(ref.parameters(), 3e-4)
    x = torch.from_numpy(images[:batch])
    reference = _per_1000(lambda s: _reference_step(ref, opt, x), steps, batch)
    return package, reference


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    cases = CASES[:2] if args.quick else CASES
    cores = os.cpu_count() or 1
    quick_note(args.quick)
    with OtherLoad() as load:
        for label, resolution, arch, batch, steps in cases:
            steps = max(2, steps // 5) if args.quick else steps
            for threads in sorted({1, cores}):
                torch.set_num_threads(threads)
                package, reference = measure(resolution, arch, batch, steps)
                print(
                    f"{label}, batch {batch}, {threads} thread(s): package {package:.1f} s, "
                    f"reference step {reference:.1f} s per 1000 images; ratio "
                    f"{package / reference:.2f}",
                    flush=True,
                )
    print(f"other processes used {load.cores:.1f} cores during the run (a lower bound)")


if __name__ == "__main__":
    main()
