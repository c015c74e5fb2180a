"""The feature-extractor interface: a batch of preprocessed images in, one feature row each out.

3D volumes given to an extractor that only takes 2D images go through the 2.5D mode of
:meth:`Extractor.extract` (three orthogonal central slices, features concatenated).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch


class Extractor:
    """A feature extractor: a batch of preprocessed images in, one flat feature row per image out.

    Subclasses set ``name`` (the canonical short name), ``dtype`` (``float32`` for continuous
    features, ``int16`` for discrete codes), ``in_channels`` (channels the model wants, or
    ``None`` for any) and ``weights_sha256`` (of the weights file, or ``None``), and implement
    :meth:`forward`.
    """

    name: str = ""
    dtype: np.dtype = np.dtype(np.float32)
    in_channels: int | None = None
    weights_sha256: str | None = None
    #: Whether 3D volumes ``(B, C, D, H, W)`` are accepted besides images ``(B, C, H, W)``.
    supports_volumes: bool = False
    #: Smallest batch given to the model: a shorter one is padded by repeating its last image
    #: (the extra rows are dropped). On the CPU, batches of 1, 3 or 5 images take another
    #: convolution path whose rounding differs, which can flip near-tie VQ-VAE codes.
    min_batch: int = 1

    def __init__(self) -> None:
        self.device: str | torch.device = "cpu"

    def to(self, device: str | torch.device) -> Extractor:
        """Move the model to ``device`` ("auto": the GPU when torch sees one, else the CPU);
        returns ``self``. An extractor that does not run on torch overrides this to stay on
        the CPU without importing torch."""
        import torch

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        for module in self.modules():
            module.to(self.device)
        return self

    def modules(self) -> list[torch.nn.Module]:
        """The torch modules to move between devices (none for a model-free extractor)."""
        return []

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """Features ``(B, ...)`` of a batch on ``self.device``; flattened by :meth:`__call__`."""
        raise NotImplementedError

    def __call__(self, batch: np.ndarray | torch.Tensor) -> np.ndarray:
        """Features of ``batch`` (``(B, C, H, W)`` or ``(B, C, D, H, W)``, in [-1, 1]).

        Returns ``(B, n_features)`` of ``self.dtype``. A 1-channel batch is repeated to 3
        channels for a model that wants 3.
        """
        import torch

        with torch.inference_mode():
            return self._features(torch.as_tensor(batch, dtype=torch.float32))

    def _features(self, x: torch.Tensor) -> np.ndarray:
        if x.ndim == 5 and not self.supports_volumes:
            raise ValueError(f"extractor {self.name!r} takes 2D images, not 3D volumes")
        if x.ndim not in (4, 5):
            raise ValueError(f"expected a batch (B, C, H, W) or (B, C, D, H, W), got {x.shape}")
        channels = x.shape[1]
        if self.in_channels is not None and channels != self.in_channels:
            if channels == 1 and self.in_channels == 3:
                x = x.expand(-1, 3, *x.shape[2:])
            else:
                raise ValueError(
                    f"extractor {self.name!r} wants {self.in_channels}-channel input, "
                    f"got {channels} channels (set num_channels={self.in_channels})"
                )
        out = self.forward(x.to(self.device))
        if isinstance(out, (tuple, list)):
            out = out[0]
        return out.reshape(out.shape[0], -1).cpu().numpy().astype(self.dtype, copy=False)

    def extract(self, batch: np.ndarray) -> np.ndarray:
        """Features ``(B, n_features)`` of a preprocessed batch of images or volumes.

        A batch of volumes ``(B, C, R, R, R)`` given to a 2D-only extractor goes through the
        2.5D mode: the three orthogonal central slices of each volume (at ``D//2``, ``H//2``,
        ``W//2``) are featurised as three images and their features concatenated in that
        order, giving ``(B, 3 * n_features_2d)``.
        """
        n = len(batch)
        if 0 < n < self.min_batch:
            padded = np.concatenate([batch, np.repeat(batch[-1:], self.min_batch - n, axis=0)])
            return self.extract(padded)[:n]
        if batch.ndim != 5 or self.supports_volumes:
            return self(batch)
        d, h, w = (n // 2 for n in batch.shape[2:])
        slices = (batch[:, :, d], batch[:, :, :, h], batch[:, :, :, :, w])
        return np.concatenate([self(np.ascontiguousarray(s)) for s in slices], axis=1)
