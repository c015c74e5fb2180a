"""``vqvae-top`` / ``vqvae-bottom``: the discrete code maps of a VQ-VAE-2 (discrete features).

Features: the code indices of :meth:`~.model.VQVAE.encode`, top (``vqvae-top``,
``(H/(2*stride))^2`` codes) or bottom (``vqvae-bottom``, ``(H/stride)^2`` codes), flattened
row-major, ``int16`` in [0, n_embed). For a 512 x 512 input and the size-512 model: 32 x 32
top, 64 x 64 bottom. The checkpoint comes from ``--weights`` (a local path or fsspec URL) or
``vqvae-top:PATH``; a file holding ``{"model": state_dict}`` or ``{"state_dict": ...}``, or
keys prefixed ``module.`` (DataParallel), is accepted too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ..builtins import VQVAE_LABEL as WEIGHTS_LABEL
from ..extractor import Extractor
from ..weights import load_state_dict
from .model import vqvae_from_state_dict


class VQVAEExtractor(Extractor):
    """Top or bottom code indices of a VQ-VAE-2 checkpoint (see the module docstring)."""

    dtype = np.dtype(np.int16)
    #: The original ran batches of 16; batches of 1, 3 or 5 take another CPU convolution path
    #: and can flip near-tie codes (measured by benchmarks/compat_original.py): pad them.
    min_batch = 8

    def __init__(
        self, level: str, weights: str, storage_options: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__()
        if level not in ("top", "bottom"):
            raise ValueError(f"VQ-VAE level must be 'top' or 'bottom', got {level!r}")
        self.level = level
        self.name = f"vqvae-{level}"
        state, self.weights_sha256 = load_state_dict(weights, storage_options, WEIGHTS_LABEL)
        self.model = vqvae_from_state_dict(state)
        self.in_channels = self.model.enc_b.blocks[0].in_channels
        if self.model.quantize_t.n_embed > np.iinfo(np.int16).max:
            self.dtype = np.dtype(np.int32)

    def modules(self) -> list[torch.nn.Module]:
        return [self.model]

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        id_t, id_b = self.model.encode(batch)
        return id_t if self.level == "top" else id_b


def make_top(
    arg: str | None, weights: str, storage_options: Mapping[str, Any] | None
) -> VQVAEExtractor:
    """Registry factory of ``vqvae-top`` (the weights already resolved by the registry)."""
    return VQVAEExtractor("top", weights, storage_options)


def make_bottom(
    arg: str | None, weights: str, storage_options: Mapping[str, Any] | None
) -> VQVAEExtractor:
    """Registry factory of ``vqvae-bottom`` (the weights already resolved by the registry)."""
    return VQVAEExtractor("bottom", weights, storage_options)
