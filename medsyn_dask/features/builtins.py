"""The built-in extractors as data: short name -> module, factory and weights wording.

Kept apart from the extractor modules so that the registry knows them without importing them:
torch loads when an extractor is first created (on a worker), not when a driver checks a name.
"""

from __future__ import annotations

from dataclasses import dataclass

#: How errors name a missing model file, per kind of file.
TORCHSCRIPT_LABEL = "TorchScript file"
VQVAE_LABEL = "VQ-VAE checkpoint"

#: What the registry says when ``--weights`` is missing, per library (never downloaded).
VISION_WEIGHTS_HELP = {
    "timm": (
        "medsyn-dask never downloads weights: save the model's state dict on a machine with "
        "network access, e.g. torch.save(timm.create_model(NAME, pretrained=True)"
        ".state_dict(), 'NAME.pt'), and pass --weights NAME.pt"
    ),
    "torchvision": (
        "medsyn-dask never downloads weights: save the model's state dict on a machine with "
        "network access, e.g. torch.save(torchvision.models.get_model(NAME, "
        "weights='DEFAULT').state_dict(), 'NAME.pt'), and pass --weights NAME.pt"
    ),
}


@dataclass(frozen=True)
class Builtin:
    """Where a built-in factory lives (``module`` relative to this package) and what its
    weights mean (see :func:`.registry.register`)."""

    module: str
    factory: str
    takes_weights: bool = False
    weights_in_name: bool = False
    weights_label: str = "weights file"
    weights_help: str = ""


BUILTINS = {
    "pixels": Builtin("pixels", "make"),
    "torchscript": Builtin("torchscript", "make", True, True, TORCHSCRIPT_LABEL),
    "vqvae-top": Builtin("vqvae.extractor", "make_top", True, True, VQVAE_LABEL),
    "vqvae-bottom": Builtin("vqvae.extractor", "make_bottom", True, True, VQVAE_LABEL),
    "timm": Builtin("vision", "make_timm", True, weights_help=VISION_WEIGHTS_HELP["timm"]),
    "torchvision": Builtin(
        "vision", "make_torchvision", True, weights_help=VISION_WEIGHTS_HELP["torchvision"]
    ),
}
