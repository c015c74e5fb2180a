"""``pixels``: the preprocessed intensities, block-averaged to a small grid (continuous features).

The zero-download default. A 2D image ``(C, R, R)`` is averaged down to ``(C, 32, 32)`` (1024
features per channel); a 3D volume ``(C, R, R, R)`` to ``(C, 16, 16, 16)`` (4096 per channel).
``pixels:N`` sets the grid side ``N`` for both. The averaging is that of
``torch.nn.functional.adaptive_avg_pool2d`` / ``adaptive_avg_pool3d``, to the last bit. When
``N`` divides the resolution (the usual case), the windows are the exact blocks and
:func:`block_means` computes them in NumPy with torch's arithmetic (each block summed in
float32 in row-major order, then divided by each side in turn), so the workers of a ``pixels``
run never import torch; other sizes go through torch itself. Values stay in [-1, 1],
``float32``, flattened channel-major.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import product
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import SettingsError
from .extractor import Extractor

if TYPE_CHECKING:
    import torch

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

    def to(self, device: Any) -> PixelsExtractor:
        """Kept on the CPU: averaging costs less than moving the images to a GPU."""
        return self

    def grid_side(self, volumes: bool) -> int:
        return self.grid or (VOLUME_GRID if volumes else IMAGE_GRID)

    def in_numpy(self, spatial: Sequence[int], volumes: bool) -> bool:
        """Whether inputs of ``spatial`` size are averaged in NumPy (the grid divides them)."""
        return all(n % self.grid_side(volumes) == 0 for n in spatial)

    def __call__(self, batch: Any) -> np.ndarray:
        if isinstance(batch, np.ndarray) and batch.ndim in (4, 5):
            volumes = batch.ndim == 5
            if self.in_numpy(batch.shape[2:], volumes):
                means = block_means(batch.astype(np.float32, copy=False), self.grid_side(volumes))
                return means.reshape(len(batch), -1)
        return super().__call__(batch)

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        if batch.ndim == 5:
            return F.adaptive_avg_pool3d(batch, self.grid_side(True))
        return F.adaptive_avg_pool2d(batch, self.grid_side(False))


def runs_without_torch(model: str, resolution: int, volumes: bool) -> bool:
    """Whether extractor ``model`` at ``resolution`` is ``pixels`` in NumPy (its grid side
    divides the resolution), so that workers need not import torch for it."""
    return _in_numpy(model, resolution, volumes) is not None


def known_output(
    model: str, num_channels: int, resolution: int, volumes: bool
) -> tuple[int, str] | None:
    """``(features per image, dtype name)`` of extractor ``model`` when it is ``pixels`` in
    NumPy, known without running it (``num_channels`` x grid side ** 2 or ** 3); else None."""
    extractor = _in_numpy(model, resolution, volumes)
    if extractor is None:
        return None
    side = extractor.grid_side(volumes)
    return num_channels * side ** (3 if volumes else 2), extractor.dtype.name


def _in_numpy(model: str, resolution: int, volumes: bool) -> PixelsExtractor | None:
    name, _, arg = model.partition(":")
    if name != "pixels":
        return None
    try:
        extractor = make(arg or None, None, None)
    except SettingsError:  # not a valid pixels:N: the registry says so where it is created
        return None
    return extractor if extractor.in_numpy((resolution,), volumes) else None


def block_means(batch: np.ndarray, side: int) -> np.ndarray:
    """``(B, C, *spatial)`` float32 -> ``(B, C, side, ...)``: the mean of each block, ``side``
    dividing every spatial size, with adaptive average pooling's float32 arithmetic (the block
    summed element by element in row-major order, then divided by each block side in turn)."""
    b, c, *spatial = batch.shape
    out = np.empty((b, c) + (side,) * len(spatial), dtype=np.float32)
    # A few images at a time: the block offsets of one row of blocks are then added from the
    # cache, not from memory (a whole batch made this 2x slower).
    step = max(1, _CHUNK_BYTES // max(1, batch[:1].nbytes))
    for start in range(0, b, step):
        _block_means(batch[start : start + step], side, out[start : start + step])
    return out


#: Bytes of images :func:`block_means` reduces at a time.
_CHUNK_BYTES = 2 * 2**20


def _block_means(batch: np.ndarray, side: int, total: np.ndarray) -> None:
    b, c, *spatial = batch.shape
    kernel = [n // side for n in spatial]
    split = batch.reshape(b, c, *(x for k in kernel for x in (side, k)))
    total[...] = 0
    every = slice(None)
    for offset in product(*(range(k) for k in kernel)):  # row-major, as the pooling loop
        total += split[(every, every) + tuple(x for o in offset for x in (every, o))]
    for k in kernel:
        total /= np.float32(k)


def make(
    arg: str | None, weights: str | None, storage_options: Mapping[str, Any] | None
) -> PixelsExtractor:
    """Registry factory of ``pixels`` / ``pixels:N``."""
    if arg is None:
        return PixelsExtractor()
    if not arg.isdigit():
        raise SettingsError(f"pixels:N wants an integer grid side, got {arg!r}")
    return PixelsExtractor(int(arg))
