"""``timm:NAME`` and ``torchvision:NAME``: a named CNN with weights from a local file.

As the reference, the features are the penultimate activations: the network with its last
child (the classifier) removed, i.e. the pooled features (2048 for ``inception_v3``, the
default NAME). No weights are downloaded: pass the state dict file with ``--weights`` (a local
path or fsspec URL), e.g. one saved beforehand on a machine with network access by
``torch.save(timm.create_model("inception_v3", pretrained=True).state_dict(), "inception_v3.pt")``.
timm and torchvision are optional (``pip install 'medsyn-dask[vision]'``, with a torch build
they support).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import SettingsError
from .extractor import Extractor
from .weights import load_state_dict

DEFAULT_ARCH = "inception_v3"


class VisionExtractor(Extractor):
    """Penultimate activations of a timm or torchvision classifier (see the module docstring)."""

    dtype = np.dtype(np.float32)
    in_channels = 3

    def __init__(self, library: str, arch: str, model: nn.Module, sha256: str) -> None:
        super().__init__()
        self.name = f"{library}:{arch}"
        self.weights_sha256 = sha256
        self.model = model.eval()

    def modules(self) -> list[torch.nn.Module]:
        return [self.model]

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.model(batch)


def _import(module: str):
    try:
        return __import__(module)
    except ImportError as exc:
        raise SettingsError(
            f"the {module} extractor needs the optional package {module!r}, installed with a "
            f"torch build it supports: pip install 'medsyn-dask[vision]' ({exc})"
        ) from None


def make_timm(
    arg: str | None, weights: str, storage_options: Mapping[str, Any] | None
) -> VisionExtractor:
    """Registry factory of ``timm:NAME`` (the weights already resolved by the registry)."""
    arch = arg or DEFAULT_ARCH
    state, sha = load_state_dict(weights, storage_options)
    timm = _import("timm")
    model = timm.create_model(arch, pretrained=False)
    model.load_state_dict(state, strict=True)
    # The reference drops the last child; reset_classifier(0) makes that child an Identity.
    model.reset_classifier(0)
    return VisionExtractor("timm", arch, model, sha)


def make_torchvision(
    arg: str | None, weights: str, storage_options: Mapping[str, Any] | None
) -> VisionExtractor:
    """Registry factory of ``torchvision:NAME`` (the weights already resolved by the registry)."""
    arch = arg or DEFAULT_ARCH
    state, sha = load_state_dict(weights, storage_options)
    _import("torchvision")
    from torchvision import models

    kwargs: dict[str, Any] = {"weights": None}
    if arch == "inception_v3":
        # The published weights hold the auxiliary head; it is unused in eval mode.
        kwargs.update(aux_logits=any(k.startswith("AuxLogits.") for k in state), init_weights=False)
    model = models.get_model(arch, **kwargs)
    model.load_state_dict(state, strict=True)
    _drop_classifier(model, arch)
    return VisionExtractor("torchvision", arch, model, sha)


def _drop_classifier(model: nn.Module, arch: str) -> None:
    for attr in ("fc", "classifier", "head", "heads"):
        if isinstance(getattr(model, attr, None), nn.Module):
            setattr(model, attr, nn.Identity())
            return
    raise ValueError(f"cannot find the classifier of torchvision model {arch!r}")
