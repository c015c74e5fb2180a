"""The feature-extractor interface and the registry of short names (``pixels``, ``vqvae-top``)."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from ..sources.readers import read_bytes


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

    def __init__(self) -> None:
        self.device = torch.device("cpu")

    def to(self, device: str | torch.device) -> Extractor:
        """Move the model to ``device``; returns ``self``."""
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

    @torch.inference_mode()
    def __call__(self, batch: np.ndarray | torch.Tensor) -> np.ndarray:
        """Features of ``batch`` (``(B, C, H, W)`` or ``(B, C, D, H, W)``, in [-1, 1]).

        Returns ``(B, n_features)`` of ``self.dtype``. A 1-channel batch is repeated to 3
        channels for a model that wants 3.
        """
        x = torch.as_tensor(batch, dtype=torch.float32)
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


Factory = Callable[[str | None, str | None, Mapping[str, Any] | None], Extractor]
_REGISTRY: dict[str, Factory] = {}


def register(prefix: str) -> Callable[[Factory], Factory]:
    """Register ``factory(arg, weights, storage_options)`` under the short name ``prefix``.

    ``arg`` is what follows ``prefix:`` in the name (``None`` without a colon).
    """

    def deco(factory: Factory) -> Factory:
        _REGISTRY[prefix] = factory
        return factory

    return deco


def available_extractors() -> list[str]:
    """The registered short names (``NAME`` or ``NAME:ARG`` forms)."""
    _load_builtin()
    return sorted(_REGISTRY)


def create_extractor(
    name: str,
    weights: str | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> Extractor:
    """The extractor called ``name`` (``pixels``, ``pixels:32``, ``vqvae-top``,
    ``torchscript:PATH``, ``timm:NAME``, ``torchvision:NAME``), on the CPU.

    ``weights`` is a local path or fsspec URL of the weights (read with ``storage_options``).
    Raises ``ValueError`` for an unknown name and ``FileNotFoundError`` for missing weights.
    """
    _load_builtin()
    prefix, _, arg = name.partition(":")
    factory = _REGISTRY.get(prefix)
    if factory is None:
        raise ValueError(f"unknown feature extractor {name!r}; known: {sorted(_REGISTRY)}")
    return factory(arg or None, weights, storage_options)


#: Extractors whose argument (``NAME:PATH``) is the weights file rather than an option.
_ARG_IS_WEIGHTS = ("torchscript", "vqvae-top", "vqvae-bottom")


def resolve_name(name: str, weights: str | None = None) -> tuple[str, str | None]:
    """``(canonical name, weights path)`` for an extractor name and ``--weights``.

    The canonical name is what provenance records: ``torchscript:PATH`` becomes
    ``torchscript`` (the weights sha256 identifies the file), ``pixels`` stays ``pixels``.
    Raises ``ValueError`` for an unknown name.
    """
    _load_builtin()
    prefix, _, arg = name.partition(":")
    if prefix not in _REGISTRY:
        raise ValueError(f"unknown feature extractor {name!r}; known: {sorted(_REGISTRY)}")
    if prefix in _ARG_IS_WEIGHTS:
        if arg and weights and arg != weights:
            raise ValueError(f"give the weights once: {prefix}:PATH or --weights PATH")
        return prefix, (arg or weights)
    return name, weights


_CACHE: dict[str, Extractor] = {}
_CACHE_LOCK = threading.Lock()


def cached_extractor(
    name: str,
    weights: str | None,
    storage_options: Mapping[str, Any] | None,
    device: str,
) -> Extractor:
    """:func:`create_extractor` on ``device``, built once per process and reused.

    Dask workers call this from every task: the model is loaded by the first task of a worker
    and later tasks (and threads) get the same object.
    """
    key = json.dumps([name, weights, dict(storage_options or {}), device], default=str)
    with _CACHE_LOCK:
        if key not in _CACHE:
            _CACHE[key] = create_extractor(name, weights, storage_options).to(device)
        return _CACHE[key]


def read_weights(
    path: str | None, storage_options: Mapping[str, Any] | None, what: str
) -> tuple[bytes, str]:
    """The bytes of a weights file and their sha256 (hex). ``what`` names the extractor."""
    if not path:
        raise ValueError(f"extractor {what!r} needs weights: pass --weights PATH (or weights=)")
    try:
        data = read_bytes(path, storage_options)
    except FileNotFoundError:
        raise FileNotFoundError(f"weights file for {what!r} not found: {path}") from None
    return data, hashlib.sha256(data).hexdigest()


def weights_digest(
    path: str | None, storage_options: Mapping[str, Any] | None = None
) -> str | None:
    """sha256 (hex) of the weights file at ``path``, or ``None`` without one."""
    if not path:
        return None
    return read_weights(path, storage_options, "weights")[1]


def _load_builtin() -> None:
    # Importing the modules registers their names; kept lazy to avoid an import cycle.
    from . import pixels, torchscript, vision, vqvae  # noqa: F401
