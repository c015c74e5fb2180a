"""``pixels``: the preprocessed intensities, block-averaged to a small grid (continuous features).

The zero-download default. A 2D image ``(C, R, R)`` is averaged down to ``(C, 32, 32)`` (1024
features per channel); a 3D volume ``(C, R, R, R)`` to ``(C, 16, 16, 16)`` (4096 per channel).
``pixels:N`` sets the grid side ``N`` for both. The averaging is
``torch.nn.functional.adaptive_avg_pool2d`` / ``adaptive_avg_pool3d``: exact block means when
``N`` divides the resolution. Values stay in [-1, 1], ``float32``, flattened channel-major.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import SettingsError
from .extractor import Extractor

#: Default grid side for 2D images and for 3D volumes.
IMAGE_GRID = 32
VOLUME_GRID = 16


class PixelsExtractor(Extractor):
    """Block means of the preprocessed intensities (see the module docstring)."""

    supports_volumes = True

    def __init__(self, grid: int | None = None) -> None:
        super().__init__()
        if grid is not None and grid < 1:
            raise SettingsError(f"pixels grid side must be positive, got {grid}")
        self.grid = grid
        self.name = "pixels" if grid is None else f"pixels:{grid}"

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        if batch.ndim == 5:
            return F.adaptive_avg_pool3d(batch, self.grid or VOLUME_GRID)
        return F.adaptive_avg_pool2d(batch, self.grid or IMAGE_GRID)


def make(
    arg: str | None, weights: str | None, storage_options: Mapping[str, Any] | None
) -> PixelsExtractor:
    """Registry factory of ``pixels`` / ``pixels:N``."""
    if arg is None:
        return PixelsExtractor()
    if not arg.isdigit():
        raise SettingsError(f"pixels:N wants an integer grid side, got {arg!r}")
    return PixelsExtractor(int(arg))
