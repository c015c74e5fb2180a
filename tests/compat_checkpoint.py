"""The compat fixture's VQ-VAE-2 checkpoint and images, rebuilt from a seed and two codebooks.

The reference-shaped checkpoint (``in_channel=1``, size 512: bottom stride 8) is 6.6 MB, too big
for ``tests/data``, so the fixture stores its recipe instead: every convolution is drawn from
``numpy.random.default_rng(SEED)`` (He-normal, biases zero, in sorted parameter-name order, so
no torch initialiser or module order is involved), and the two codebooks, which were calibrated
on the digit images by k-means (:func:`calibrate_codebooks`, run once by
``benchmarks/compat_original.py``: a random codebook maps every image to one code), are stored
as they came out. :func:`state_digest` pins the rebuilt state.

The images are scanned-digit-like: scikit-learn's bundled 8 x 8 digits (``load_digits``, no
download), 0..16 scaled to 0..255, upsampled bilinearly to ``side`` pixels, with seeded sensor
noise, as 8-bit gray.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import numpy as np
import torch
from PIL import Image
from torch import nn

from medsyn_dask.features.vqvae import VQVAE

#: Seed of the convolutions and of the images; size of the reference model the original builds.
SEED, SIZE = 2023, 512
#: Relative distance of each calibrated code's twin (:func:`calibrate_codebooks`).
TWIN = 1e-4


def digit_images(
    classes: tuple[int, ...], per_class: int, *, start: int = 0, side: int = 64, seed: int = SEED
) -> dict[str, np.ndarray]:
    """``CLASS/digit_INDEX.png`` -> uint8 ``(side, side)`` image, ``per_class`` digits of each
    class in ``classes`` taken from the ``start``-th one of that class in ``load_digits``."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed + start)
    out = {}
    for cls in classes:
        rows = np.flatnonzero(digits.target == cls)[start : start + per_class]
        if len(rows) < per_class:
            raise ValueError(f"load_digits has only {len(rows)} digits {cls} from {start}")
        for row in rows:
            small = (digits.images[row] * (255 / 16)).astype(np.uint8)
            big = np.asarray(Image.fromarray(small).resize((side, side), Image.BILINEAR))
            noisy = big.astype(np.float64) + rng.normal(0, 6, big.shape)
            out[f"{cls}/digit_{row:04d}.png"] = np.clip(noisy, 0, 255).astype(np.uint8)
    return out


def write_images(root, images: Mapping[str, np.ndarray]) -> None:
    """Write ``images`` (relative name -> uint8 array) as PNG files under ``root``."""
    from pathlib import Path

    for name, array in images.items():
        path = Path(root) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(array).save(path)


def seeded_model(seed: int = SEED) -> VQVAE:
    """The reference-shaped VQ-VAE with its convolutions drawn from ``seed`` (module doc)."""
    model = VQVAE(in_channel=1, size=SIZE).eval()
    fan_in = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.ConvTranspose2d):  # weight (in, out, k, k), stride 2
            fan_in[f"{name}.weight"] = module.in_channels * module.kernel_size[0] ** 2 / 4
        elif isinstance(module, nn.Conv2d):
            fan_in[f"{name}.weight"] = module.in_channels * module.kernel_size[0] ** 2
    rng = np.random.default_rng(seed)
    state = model.state_dict()
    for name in sorted(state):
        if name in fan_in:
            std = np.sqrt(2.0 / fan_in[name])
            state[name] = torch.from_numpy(
                rng.normal(0.0, std, tuple(state[name].shape)).astype(np.float32)
            )
        elif name.endswith(".bias"):
            state[name] = torch.zeros_like(state[name])
    model.load_state_dict(state)
    return model


def checkpoint_state(
    embed_t: np.ndarray, embed_b: np.ndarray, seed: int = SEED
) -> dict[str, torch.Tensor]:
    """The fixture checkpoint's state dict: :func:`seeded_model` with the two codebooks
    (``(64, 512)`` float32 each) as ``embed`` and ``embed_avg``, counts one."""
    state = seeded_model(seed).state_dict()
    for level, embed in (("t", embed_t), ("b", embed_b)):
        tensor = torch.from_numpy(np.ascontiguousarray(embed, dtype=np.float32))
        state[f"quantize_{level}.embed"] = tensor
        state[f"quantize_{level}.embed_avg"] = tensor.clone()
        state[f"quantize_{level}.cluster_size"] = torch.ones(tensor.shape[1])
    return state


def state_digest(state: Mapping[str, torch.Tensor]) -> str:
    """sha256 over the names, shapes and float32 bytes of ``state`` (file-format free)."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def calibrate_codebooks(
    model: VQVAE,
    batch: torch.Tensor,
    *,
    steps: int = 8,
    seed: int = SEED,
    sample: int = 60000,
    twin: float = TWIN,
) -> tuple[np.ndarray, np.ndarray]:
    """k-means codebooks ``(embed_t, embed_b)`` (64 x 512 each) of ``model`` on ``batch``
    ``(B, 1, H, W)`` in [-1, 1]: the top level first, then the bottom level given the top codes.

    ``steps`` Lloyd iterations in float64 give ``n_embed / 2`` centres, from as many distinct
    vectors drawn by ``seed`` (at most ``sample`` vectors per level; an empty cluster keeps its
    previous centre). Each centre is then given a twin ``twin`` (relative) away: trained
    codebooks hold such near-duplicate codes, and the vectors between twins are near-ties that
    only the exact arithmetic of the reference decides, which is what the fixture tests.
    """
    rng = np.random.default_rng(seed)
    with torch.inference_mode():
        enc_b = model.enc_b(batch)
        z_t = model.quantize_conv_t(model.enc_t(enc_b)).permute(0, 2, 3, 1)
        embed_t = _kmeans(
            z_t.reshape(-1, z_t.shape[-1]).numpy(),
            model.quantize_t.n_embed,
            steps,
            rng,
            sample,
            twin,
        )
        model.quantize_t.embed.copy_(torch.from_numpy(embed_t))
        quant_t, _ = model.quantize_t(z_t)
        dec_t = model.dec_t(quant_t.permute(0, 3, 1, 2))
        z_b = model.quantize_conv_b(torch.cat([dec_t, enc_b], 1)).permute(0, 2, 3, 1)
        embed_b = _kmeans(
            z_b.reshape(-1, z_b.shape[-1]).numpy(),
            model.quantize_b.n_embed,
            steps,
            rng,
            sample,
            twin,
        )
        model.quantize_b.embed.copy_(torch.from_numpy(embed_b))
    return embed_t, embed_b


def _kmeans(
    vectors: np.ndarray, k: int, steps: int, rng: np.random.Generator, sample: int, twin: float
) -> np.ndarray:
    """Centres ``(dim, k)`` float32 of ``vectors`` ``(n, dim)``; see :func:`calibrate_codebooks`."""
    x = vectors.astype(np.float64)
    if len(x) > sample:
        x = x[rng.choice(len(x), sample, replace=False)]
    distinct = np.unique(x, axis=0)
    if len(distinct) < k:
        raise ValueError(f"only {len(distinct)} distinct vectors for {k} codes: more images")
    centres = distinct[rng.choice(len(distinct), k // 2, replace=False)]
    for _ in range(steps):
        d = (x**2).sum(1)[:, None] - 2 * x @ centres.T + (centres**2).sum(1)[None, :]
        assign = d.argmin(1)
        for j in np.unique(assign):
            centres[j] = x[assign == j].mean(0)
    scale = np.linalg.norm(centres, axis=1, keepdims=True) / np.sqrt(centres.shape[1])
    twins = centres + twin * scale * rng.standard_normal(centres.shape)
    return np.ascontiguousarray(np.concatenate([centres, twins]).T, dtype=np.float32)
