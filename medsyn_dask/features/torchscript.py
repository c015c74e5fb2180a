"""``torchscript:PATH``: any TorchScript model the user exported, 2D or 3D (continuous features).

``PATH`` (or ``--weights``) is a local path or fsspec URL of a file written by
``torch.jit.save``. The model gets the preprocessed batch ``(B, C, H, W)`` or ``(B, C, D, H, W)``
in [-1, 1] and its output (the first element if it returns a tuple) is flattened per image to
``float32``. Take care that the exported model ends at the layer you want (e.g. penultimate).
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from .builtins import TORCHSCRIPT_LABEL as WEIGHTS_LABEL
from .extractor import Extractor
from .weights import read_weights


class TorchScriptExtractor(Extractor):
    """A TorchScript module run in eval mode (see the module docstring)."""

    supports_volumes = True
    dtype = np.dtype(np.float32)

    def __init__(self, path: str, storage_options: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.name = "torchscript"
        data, self.weights_sha256 = read_weights(path, storage_options, WEIGHTS_LABEL)
        try:
            with warnings.catch_warnings():
                # TorchScript is deprecated upstream but remains the format users export.
                warnings.simplefilter("ignore", DeprecationWarning)
                self.model = torch.jit.load(io.BytesIO(data), map_location="cpu").eval()
        except (RuntimeError, ValueError) as exc:
            raise InputError(f"{path} is not a TorchScript file: {exc}") from None

    def modules(self) -> list[torch.nn.Module]:
        return [self.model]

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.model(batch)


def make(
    arg: str | None, weights: str, storage_options: Mapping[str, Any] | None
) -> TorchScriptExtractor:
    """Registry factory of ``torchscript`` (the file already resolved by the registry)."""
    return TorchScriptExtractor(weights, storage_options)
