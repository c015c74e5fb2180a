"""The files of VQ-VAE training, each written atomically: checkpoint, resume state, record.

For a checkpoint ``CKPT`` (a local path or fsspec URL):

- ``CKPT``: the plain ``state_dict`` of the model with the original's parameter names, so that
  ``model.load_state_dict(torch.load(CKPT))`` works as in the original package, and
  ``--weights CKPT`` loads it with ``strict=True``;
- ``CKPT.train.pt``: what resuming needs (model, optimizer and RNG state, the record), a
  dict of tensors and plain values (``torch.load(..., weights_only=True)`` reads it);
- ``CKPT.json``: the record a person reads: settings, data (count, classes, sha256 of the
  sorted file list), loss curve, codebook usage, package and torch versions.

Each file is written under a temporary name beside its final one, then renamed
(``os.replace`` on a local disk, ``mv`` through fsspec elsewhere): a kill never leaves a
partial file under a final name. The resume state is written first, so it is never behind.
"""

from __future__ import annotations

import io
import json
import os
import uuid
from collections.abc import Mapping
from typing import Any

import fsspec
import torch
from fsspec.implementations.local import LocalFileSystem

from ...errors import InputError

#: Endings added to the checkpoint's name for the resume state and the record.
TRAIN_SUFFIX, RECORD_SUFFIX = ".train.pt", ".json"


def write_atomic(url: str, data: bytes, storage_options: Mapping[str, Any] | None = None) -> None:
    """Write ``data`` to ``url`` through a temporary name and a rename (folders created)."""
    fs, path = fsspec.core.url_to_fs(url, **dict(storage_options or {}))
    parent, _, name = path.rpartition("/")
    tmp = f"{parent or '.'}/.{name}.{uuid.uuid4().hex[:12]}.tmp"
    if isinstance(fs, LocalFileSystem):
        os.makedirs(parent or ".", exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return
    fs.pipe_file(tmp, data)
    fs.mv(tmp, path)


def remove_stale_temporaries(
    checkpoint: str, storage_options: Mapping[str, Any] | None = None
) -> None:
    """Delete the temporary files that a killed run left beside ``checkpoint`` and its
    companions (names ``.NAME.HEX.tmp``, as :func:`write_atomic` makes them)."""
    fs, path = fsspec.core.url_to_fs(checkpoint, **dict(storage_options or {}))
    parent, _, name = path.rpartition("/")
    pattern = f"{parent or '.'}/.{name}*.tmp"
    for stale in fs.glob(pattern):
        fs.rm(stale)


def torch_bytes(obj: Any) -> bytes:
    """``obj`` as ``torch.save`` writes it."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def save_training(
    checkpoint: str,
    model_state: Mapping[str, torch.Tensor],
    optimizer_state: Mapping[str, Any],
    rng_state: torch.Tensor,
    record: Mapping[str, Any],
    storage_options: Mapping[str, Any] | None = None,
) -> None:
    """Write the resume state, then the checkpoint, then the record (see the module doc).

    ``rng_state``: torch's CPU generator state (codebook restarts draw from it)."""
    state = {
        "model": dict(model_state),
        "optimizer": dict(optimizer_state),
        "rng": rng_state,
        "record": record,
    }
    write_atomic(checkpoint + TRAIN_SUFFIX, torch_bytes(state), storage_options)
    write_atomic(checkpoint, torch_bytes(dict(model_state)), storage_options)
    text = json.dumps(record, indent=1) + "\n"
    write_atomic(checkpoint + RECORD_SUFFIX, text.encode(), storage_options)


def load_training(
    checkpoint: str, storage_options: Mapping[str, Any] | None = None
) -> dict[str, Any] | None:
    """The resume state saved for ``checkpoint`` (keys ``model``, ``optimizer``, ``rng``,
    ``record``), or ``None`` when there is none. Raises :class:`InputError` for an unreadable
    one."""
    url = checkpoint + TRAIN_SUFFIX
    fs, path = fsspec.core.url_to_fs(url, **dict(storage_options or {}))
    if not fs.exists(path):
        return None
    with fs.open(path, "rb") as f:
        data = f.read()
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a damaged file
        raise InputError(f"{url} is not a readable training state: {exc}") from None
    if not isinstance(state, dict) or not {"model", "optimizer", "rng", "record"} <= set(state):
        raise InputError(f"{url} is not a training state of medsyn-dask train-vqvae")
    return state


def exists(url: str, storage_options: Mapping[str, Any] | None = None) -> bool:
    """Whether a file is at ``url``."""
    fs, path = fsspec.core.url_to_fs(url, **dict(storage_options or {}))
    return bool(fs.exists(path))
