"""The reference VQ-VAE-2 (encoder, quantisers, decoder), loadable from the original checkpoints.

The module rebuilds MedSynAnalyzer's ``vqvae.py`` (after rosinality's vq-vae-2-pytorch) with
the same parameter names and shapes, so that the original checkpoints load by name with
``strict=True``. The bottom encoder downsamples by ``stride = size // 64`` (4 for
``size=256``, 8 for 512, 16 for 1024); the top encoder by 2 more. When loading a checkpoint
the stride and ``in_channel`` are read from its shapes (:func:`vqvae_from_state_dict`), so any
of the reference sizes loads without being told which.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import nn


class Quantize(nn.Module):
    """Nearest-codeword quantiser; buffers ``embed`` (dim x n_embed), ``cluster_size``,
    ``embed_avg`` as in the reference, whose EMA codebook update :meth:`quantise` makes in
    training mode (``decay``, ``eps``: the reference's 0.99 and 1e-5)."""

    def __init__(self, dim: int, n_embed: int, decay: float = 0.99, eps: float = 1e-5) -> None:
        super().__init__()
        self.dim = dim
        self.n_embed = n_embed
        self.decay = decay
        self.eps = eps
        #: EMA count below which a code is restarted in training (0: never, as the reference).
        self.restart_below = 0.0
        embed = torch.randn(dim, n_embed)
        self.register_buffer("embed", embed)
        self.register_buffer("cluster_size", torch.zeros(n_embed))
        self.register_buffer("embed_avg", embed.clone())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` (..., dim) -> (quantised (..., dim), code indices (...))."""
        flat = x.reshape(-1, self.dim)
        dist = (
            flat.pow(2).sum(1, keepdim=True)
            - 2 * flat @ self.embed
            + self.embed.pow(2).sum(0, keepdim=True)
        )
        ind = (-dist).max(1)[1].view(*x.shape[:-1])
        return nn.functional.embedding(ind, self.embed.transpose(0, 1)), ind

    def quantise(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The reference's training pass: ``x`` (..., dim) -> (quantised with the straight-through
        gradient (..., dim), commitment loss (scalar), code indices (...)).

        In training mode the codebook follows the exponential moving average of the vectors
        assigned to each code (the reference's update, Laplace-smoothed counts).
        """
        quantised, ind = self(x.detach())
        if self.training:
            with torch.no_grad():
                flat = x.detach().reshape(-1, self.dim)
                onehot = nn.functional.one_hot(ind.reshape(-1), self.n_embed).type(flat.dtype)
                self.cluster_size.mul_(self.decay).add_(onehot.sum(0), alpha=1 - self.decay)
                self.embed_avg.mul_(self.decay).add_(flat.T @ onehot, alpha=1 - self.decay)
                n = self.cluster_size.sum()
                size = (self.cluster_size + self.eps) / (n + self.n_embed * self.eps) * n
                self.embed.copy_(self.embed_avg / size.unsqueeze(0))
                if self.restart_below > 0:
                    self.restart_dead_codes(flat)
        diff = (quantised.detach() - x).pow(2).mean()
        return x + (quantised - x).detach(), diff, ind

    @torch.no_grad()
    def restart_dead_codes(self, flat: torch.Tensor) -> None:
        """Move each code whose EMA count is below ``restart_below`` onto a random vector of
        ``flat`` (N, dim), with that count (as Jukebox does; not in the reference). The first
        step thus initialises the codebook from encoder outputs, and codes that fall out of
        use come back where the data is. Draws from torch's CPU generator."""
        dead = (self.cluster_size < self.restart_below).nonzero().flatten()
        if len(dead) == 0:
            return
        pick = torch.randint(len(flat), (len(dead),)).to(flat.device)
        self.embed[:, dead] = flat[pick].T
        self.embed_avg[:, dead] = flat[pick].T * self.restart_below
        self.cluster_size[dead] = self.restart_below


class ResBlock(nn.Module):
    def __init__(self, in_channel: int, channel: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(in_channel, channel, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(channel, in_channel, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x)


class Encoder(nn.Module):
    """Downsample by ``stride`` (a power of 2, >= 2) with 4x4 stride-2 convolutions, then a 3x3
    convolution and the residual blocks (the reference's layout for strides 2, 4, 8, 16)."""

    def __init__(
        self, in_channel: int, channel: int, n_res_block: int, n_res_channel: int, stride: int
    ) -> None:
        super().__init__()
        n_down = _log2(stride)
        half = channel // 2
        if n_down == 1:
            blocks: list[nn.Module] = [
                nn.Conv2d(in_channel, half, 4, stride=2, padding=1),
                nn.ReLU(inplace=True),
                nn.Conv2d(half, channel, 3, padding=1),
            ]
        else:
            blocks = [nn.Conv2d(in_channel, half, 4, stride=2, padding=1), nn.ReLU(inplace=True)]
            for _ in range(n_down - 2):
                blocks += [nn.Conv2d(half, half, 4, stride=2, padding=1), nn.ReLU(inplace=True)]
            blocks += [
                nn.Conv2d(half, channel, 4, stride=2, padding=1),
                nn.ReLU(inplace=True),
                nn.Conv2d(channel, channel, 3, padding=1),
            ]
        blocks += [ResBlock(channel, n_res_channel) for _ in range(n_res_block)]
        blocks.append(nn.ReLU(inplace=True))
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


class Decoder(nn.Module):
    """Mirror of :class:`Encoder` with transposed convolutions (reference layout)."""

    def __init__(
        self,
        in_channel: int,
        out_channel: int,
        channel: int,
        n_res_block: int,
        n_res_channel: int,
        stride: int,
    ) -> None:
        super().__init__()
        n_up = _log2(stride)
        half = channel // 2
        blocks: list[nn.Module] = [nn.Conv2d(in_channel, channel, 3, padding=1)]
        blocks += [ResBlock(channel, n_res_channel) for _ in range(n_res_block)]
        blocks.append(nn.ReLU(inplace=True))
        if n_up == 1:
            blocks.append(nn.ConvTranspose2d(channel, out_channel, 4, stride=2, padding=1))
        else:
            blocks += [nn.ConvTranspose2d(channel, half, 4, stride=2, padding=1), nn.ReLU(True)]
            for _ in range(n_up - 2):
                blocks += [nn.ConvTranspose2d(half, half, 4, stride=2, padding=1), nn.ReLU(True)]
            blocks.append(nn.ConvTranspose2d(half, out_channel, 4, stride=2, padding=1))
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


class VQVAE(nn.Module):
    """The reference two-level VQ-VAE-2; ``size`` sets the bottom stride to ``size // 64``."""

    def __init__(
        self,
        in_channel: int = 1,
        channel: int = 128,
        n_res_block: int = 2,
        n_res_channel: int = 32,
        embed_dim: int = 64,
        n_embed: int = 512,
        size: int = 512,
    ) -> None:
        super().__init__()
        stride = size // 64
        if stride < 2 or stride & (stride - 1):
            raise ValueError(f"VQVAE size must be 64 times a power of 2 >= 2, got {size}")
        self.enc_b = Encoder(in_channel, channel, n_res_block, n_res_channel, stride=stride)
        self.enc_t = Encoder(channel, channel, n_res_block, n_res_channel, stride=2)
        self.quantize_conv_t = nn.Conv2d(channel, embed_dim, 1)
        self.quantize_t = Quantize(embed_dim, n_embed)
        self.dec_t = Decoder(embed_dim, embed_dim, channel, n_res_block, n_res_channel, stride=2)
        self.quantize_conv_b = nn.Conv2d(embed_dim + channel, embed_dim, 1)
        self.quantize_b = Quantize(embed_dim, n_embed)
        self.upsample_t = nn.ConvTranspose2d(embed_dim, embed_dim, 4, stride=2, padding=1)
        self.dec = Decoder(
            embed_dim + embed_dim, in_channel, channel, n_res_block, n_res_channel, stride=stride
        )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Code maps ``(id_t (B, H/(2s), W/(2s)), id_b (B, H/s, W/s))`` of ``x`` (B, C, H, W)."""
        enc_b = self.enc_b(x)
        enc_t = self.enc_t(enc_b)
        z_t = self.quantize_conv_t(enc_t).permute(0, 2, 3, 1)
        quant_t, id_t = self.quantize_t(z_t)
        # The top decoder gets what the reference gave it: the straight-through sum
        # z + (q - z) (not q: it rounds differently), laid out as NCHW (the embedding alone is
        # channels-last, and the CPU convolution rounds differently on it). Anything else
        # flips near-tie bottom codes (about 1 % at 256 px on a trained model).
        dec_t = self.dec_t((z_t + (quant_t - z_t)).permute(0, 3, 1, 2))
        enc_b = torch.cat([dec_t, enc_b], 1)
        _, id_b = self.quantize_b(self.quantize_conv_b(enc_b).permute(0, 2, 3, 1))
        return id_t, id_b

    def forward(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """The reference's training pass: ``x`` (B, C, H, W) -> (reconstruction (B, C, H, W),
        latent loss: the summed commitment losses of both levels, a scalar, and the code maps
        ``(id_t, id_b)`` as :meth:`encode` gives them). In training mode it also updates both
        codebooks (:meth:`Quantize.quantise`)."""
        enc_b = self.enc_b(x)
        enc_t = self.enc_t(enc_b)
        quant_t, diff_t, id_t = self.quantize_t.quantise(
            self.quantize_conv_t(enc_t).permute(0, 2, 3, 1)
        )
        quant_t = quant_t.permute(0, 3, 1, 2)
        enc_b = torch.cat([self.dec_t(quant_t), enc_b], 1)
        quant_b, diff_b, id_b = self.quantize_b.quantise(
            self.quantize_conv_b(enc_b).permute(0, 2, 3, 1)
        )
        recon = self.decode(quant_t, quant_b.permute(0, 3, 1, 2))
        return recon, diff_t + diff_b, (id_t, id_b)

    def decode(self, quant_t: torch.Tensor, quant_b: torch.Tensor) -> torch.Tensor:
        """Image (B, C, H, W) from the quantised maps ``quant_t`` (B, D, H/(2s), W/(2s)) and
        ``quant_b`` (B, D, H/s, W/s), both channels-first."""
        return self.dec(torch.cat([self.upsample_t(quant_t), quant_b], 1))


def _log2(stride: int) -> int:
    n = int(math.log2(stride)) if stride > 0 else 0
    if stride < 2 or 2**n != stride:
        raise ValueError(f"stride must be a power of 2 >= 2, got {stride}")
    return n


def vqvae_from_state_dict(state: Mapping[str, torch.Tensor]) -> VQVAE:
    """A :class:`VQVAE` shaped after ``state`` (in_channel, channel, embeddings, stride), with
    ``state`` loaded strictly. Raises ``ValueError`` naming the mismatching keys."""
    try:
        first = state["enc_b.blocks.0.weight"]
        embed = state["quantize_t.embed"]
        channel = state["enc_t.blocks.0.weight"].shape[1]
        n_res_channel = state["enc_t.blocks.3.conv.1.weight"].shape[0]
    except KeyError as exc:
        raise ValueError(f"not a VQ-VAE-2 checkpoint: no parameter {exc}") from None
    n_down = sum(
        1
        for k, v in state.items()
        if k.startswith("enc_b.blocks.") and k.endswith(".weight") and v.shape[-1] == 4
    )
    n_res_block = len(
        {k.split(".")[2] for k in state if k.startswith("dec_t.blocks.") and ".conv." in k}
    )
    model = VQVAE(
        in_channel=first.shape[1],
        channel=channel,
        n_res_block=n_res_block,
        n_res_channel=n_res_channel,
        embed_dim=embed.shape[0],
        n_embed=embed.shape[1],
        size=64 * 2**n_down,
    )
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"checkpoint does not match the VQ-VAE-2 layout: {exc}") from None
    return model.eval()
