"""Where block maths runs: NumPy on the CPU, or torch (on the worker's GPU when it has one)."""

from __future__ import annotations

import os
import sys
from typing import Any

#: ``"auto"``: torch on a CUDA GPU when the worker has one, else NumPy. ``"numpy"``: always
#: NumPy. ``"torch"``: always torch (CUDA when available, else its CPU kernels).
BACKENDS = ("auto", "numpy", "torch")


def check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    return backend


def torch_device(backend: str) -> Any | None:
    """The torch device that ``backend`` asks for on this worker, or None for NumPy."""
    if check_backend(backend) == "numpy":
        return None
    if backend == "auto" and not _may_have_cuda():
        return None
    import torch

    if torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu") if backend == "torch" else None


def _may_have_cuda() -> bool:
    """Cheap test before importing torch (seconds per worker) just to find no GPU."""
    return "torch" in sys.modules or os.path.exists("/dev/nvidiactl")
