"""Pretrained timm weights from the user's cache, for the compat CLI's ``--select_model NAME``.

The original called ``timm.create_model(NAME, pretrained=True)``, which downloads the weights
once into the Hugging Face hub cache (``$HF_HUB_CACHE``, by default
``~/.cache/huggingface/hub``) or, for older timm, torch hub's (``~/.cache/torch/hub/checkpoints``).
medsyn-dask never downloads: :func:`cached_timm_weights` finds the file a previous download
left there. A ``.safetensors`` file is copied once into a torch checkpoint in a temporary
folder of this process (the weights loader reads torch checkpoints), removed at exit.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from urllib.parse import urlparse

from ..errors import SettingsError

#: Files timm's hub loader reads from a model's Hugging Face repository, preferred first.
HUB_FILES = ("model.safetensors", "pytorch_model.bin")


def cached_timm_weights(name: str) -> str:
    """Path of the cached pretrained weights of timm model ``name`` (``NAME`` or ``NAME.TAG``).

    Raises :class:`SettingsError` when timm is not installed, ``name`` is no timm model, or no
    cached file exists (naming where it looked and ``--pretrained_model_path``).
    """
    try:
        import torch
        from timm.models import get_pretrained_cfg
    except ImportError:
        raise SettingsError(
            f"--select_model {name}: not a VQ-VAE or medsyn-dask extractor name, so a timm "
            "model, which needs the optional package timm: pip install 'medsyn-dask[vision]'"
        ) from None
    cfg = get_pretrained_cfg(name)
    if cfg is None:
        raise SettingsError(
            f"--select_model {name!r} is neither vqvae_top/vqvae_bottom, a medsyn-dask "
            "extractor name nor a timm model with pretrained weights"
        )
    looked = []
    if cfg.hf_hub_id:
        from huggingface_hub import constants, try_to_load_from_cache

        for filename in HUB_FILES:
            path = try_to_load_from_cache(cfg.hf_hub_id, filename)
            if isinstance(path, str) and os.path.isfile(path):
                return _as_torch_checkpoint(path, name)
        looked.append(f"{constants.HF_HUB_CACHE} ({cfg.hf_hub_id})")
    if cfg.url:
        path = os.path.join(
            torch.hub.get_dir(), "checkpoints", os.path.basename(urlparse(cfg.url).path)
        )
        if os.path.isfile(path):
            return path
        looked.append(path)
    raise SettingsError(
        f"no pretrained weights of timm model {name!r} in the cache ({'; '.join(looked)}): "
        "pass --pretrained_model_path FILE (medsyn-dask never downloads weights)"
    )


def _as_torch_checkpoint(path: str, name: str) -> str:
    if not path.endswith(".safetensors"):
        return path
    import torch
    from safetensors.torch import load_file

    folder = tempfile.mkdtemp(prefix="medsyn-timm-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    target = os.path.join(folder, f"{name}.pt")
    torch.save(load_file(path), target)
    return target
