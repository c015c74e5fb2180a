"""Weights files: reading them (local or fsspec), their sha256, and cleaning a state dict."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..errors import InputError
from ..sources.readers import read_bytes

if TYPE_CHECKING:
    import torch


def read_weights(
    path: str, storage_options: Mapping[str, Any] | None = None, label: str = "weights file"
) -> tuple[bytes, str]:
    """The bytes of the weights file at ``path`` and their sha256 (hex).

    ``label`` names the kind of file in the error: a missing file raises
    ``FileNotFoundError("LABEL not found: PATH")``.
    """
    try:
        data = read_bytes(path, storage_options)
    except FileNotFoundError:
        raise FileNotFoundError(f"{label} not found: {path}") from None
    return data, hashlib.sha256(data).hexdigest()


def weights_digest(
    path: str | None, storage_options: Mapping[str, Any] | None = None
) -> str | None:
    """sha256 (hex) of the weights file at ``path``, or ``None`` without one."""
    if not path:
        return None
    return read_weights(path, storage_options)[1]


def load_state_dict(
    path: str, storage_options: Mapping[str, Any] | None = None, label: str = "weights file"
) -> tuple[dict[str, torch.Tensor], str]:
    """``(state dict, sha256)`` of a torch checkpoint file, cleaned by :func:`clean_state_dict`.

    Raises :class:`~medsyn_dask.errors.InputError` naming ``path`` when it is not a readable
    torch checkpoint (only tensors are unpickled: ``weights_only=True``).
    """
    data, sha = read_weights(path, storage_options, label)
    try:
        import torch  # here: the driver hashes weights files without loading torch

        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a non-checkpoint file
        raise InputError(f"{path} is not a readable torch checkpoint: {exc}") from None
    try:
        return clean_state_dict(obj), sha
    except ValueError as exc:
        raise InputError(f"{path}: {exc}") from None


def clean_state_dict(obj: Any) -> dict[str, torch.Tensor]:
    import torch

    """The state dict inside a loaded checkpoint (unwrapping ``model``/``state_dict`` and the
    DataParallel ``module.`` prefix)."""
    if isinstance(obj, torch.nn.Module):
        obj = obj.state_dict()
    for key in ("model", "state_dict"):
        if isinstance(obj, Mapping) and key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
    if not isinstance(obj, Mapping) or not obj:
        raise ValueError("checkpoint holds no state dict")
    return {k.removeprefix("module."): v for k, v in obj.items()}
