"""Where block maths runs: NumPy on the CPU, or torch (on the worker's GPU when it has one)."""

from __future__ import annotations

import functools
import os
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

from ..checks import check_choice
from ..errors import SettingsError

#: ``"auto"``: torch on a CUDA GPU when the worker has one; else the int8 scores of
#: :mod:`.quantized` for wide features on a CPU with AMX int8 tiles in a process that has
#: torch loaded (:func:`int8_scores`); else NumPy. ``"numpy"``: always NumPy. ``"torch"``:
#: always torch (CUDA when available, else its CPU kernels). ``"int8"``: always the int8
#: scores (exact on every CPU, fast on those with AMX).
BACKENDS = ("auto", "numpy", "torch", "int8")

#: Held by every float32 torch GEMM of the package from clearing the TF32 flag to restoring it.
#: The flag is process-wide; without the lock, two tasks on one multi-threaded worker interleave
#: (A saves True and clears; B saves False; A restores True; B multiplies with TF32 on).
_FULL_FLOAT32 = threading.Lock()


def check_backend(backend: str) -> str:
    """``backend`` if it is one of BACKENDS (and, for "int8", torch multiplies int8 matrices
    on this CPU); SettingsError otherwise."""
    check_choice(backend, "backend", BACKENDS)
    if backend == "int8" and not int8_matmul():
        raise SettingsError(
            "backend='int8': needs torch with an int8 matmul on the CPU (torch._int_mm); "
            "this process's torch has none (or torch is missing): use 'auto' or 'numpy'"
        )
    return backend


def torch_device(backend: str) -> Any | None:
    """The torch device that ``backend`` asks for on this worker, or None for NumPy."""
    if check_backend(backend) in ("numpy", "int8"):
        return None
    if backend == "auto" and not _may_have_cuda():
        return None
    import torch

    if torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu") if backend == "torch" else None


#: Features of fewer dimensions keep the float32 GEMM under "auto". Measured on an AMX Xeon
#: (2 cores, ``benchmarks/bench_int8.py``), float32 time / int8 time: D = 512: N = M = 2 000
#: 1.19x, 5 000 1.01x, 20 000 1.16x; D = 1 024: 1.35x, 1.45x; D = 2 048: 1.83x, 1.65x. Narrower
#: features were not measured: the fixed point and the scores' assembly weigh more there.
INT8_MIN_DIM = 512
#: The widest features of the int8 scores: their int32 sums (at most 2 x 127 x 64 per
#: feature) stay exact; wider ones keep the float32 GEMM, "int8" backend included.
INT8_MAX_DIM = (2**31 - 1) // (2 * 127 * 64)


def int8_scores(backend: str, dim: int) -> bool:
    """Whether Euclidean scores of ``dim``-feature rows come from :mod:`.quantized`'s int8
    GEMMs under ``backend``: for "int8" up to INT8_MAX_DIM features; for "auto" also where no
    GPU takes the work, the CPU has AMX int8 tiles (:func:`amx_int8`), the features are at
    least INT8_MIN_DIM wide and torch is already loaded (importing it costs a second or two,
    more than a small problem's whole GEMM; a job that extracted features with torch has it)."""
    if dim > INT8_MAX_DIM:
        return False
    if backend == "int8":
        return True
    if backend != "auto" or dim < INT8_MIN_DIM or "torch" not in sys.modules:
        return False
    return amx_int8() and torch_device(backend) is None and int8_matmul()


@functools.cache
def int8_matmul() -> bool:
    """Whether torch (imported here if it is not yet) multiplies int8 matrices on the CPU into
    exact int32 sums (``torch._int_mm``: on the CPU in recent releases only)."""
    try:
        import torch

        ones = torch.ones((8, 8), dtype=torch.int8)
        return int(torch._int_mm(ones, ones)[0, 0]) == 8
    except Exception:  # noqa: BLE001 - missing, or not for this device: the float32 GEMM
        return False


@functools.cache
def amx_int8(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether this CPU has AMX int8 tiles (Linux's ``amx_int8`` flag in ``cpuinfo``)."""
    try:
        with open(cpuinfo, encoding="ascii", errors="replace") as info:
            for line in info:
                if line.startswith("flags"):
                    return "amx_int8" in line.split()
    except OSError:
        pass
    return False


@contextmanager
def full_float32_matmul() -> Iterator[None]:
    """Run the enclosed torch matmuls in full float32, never TF32 nor oneDNN's bfloat16 (which
    would void the error bounds of :mod:`.euclidean`), whatever other threads of the process
    do meanwhile.

    The enclosed code must launch its GPU matmuls before leaving: torch reads the flag on the
    host when it launches one (it sets the cuBLAS handle's math mode then), so the product may
    still be running, or waiting in the stream, after the flag is restored.
    """
    import torch

    with _FULL_FLOAT32:
        restore = _full_float32(torch)
        try:
            yield
        finally:
            restore()


def _full_float32(torch: Any) -> Callable[[], None]:
    """Set torch's float32 matmuls to full float32 on every backend (cuBLAS's TF32 off; oneDNN's
    bfloat16 off, which a user's ``torch.set_float32_matmul_precision("medium")`` turns on for
    the CPU) and return what restores the user's settings. Through the generic setting where
    it reads: setting one backend's flag beside it makes torch raise when it is next read
    ("mix of the legacy and new APIs"); else (the backends' settings already differ) through
    each backend's own."""
    try:
        generic = torch.get_float32_matmul_precision()
    except RuntimeError:
        generic = None
    if generic is not None:
        torch.set_float32_matmul_precision("highest")
        return lambda: torch.set_float32_matmul_precision(generic)
    cuda, cpu = torch.backends.cuda.matmul, getattr(torch.backends.mkldnn, "matmul", None)
    saved_tf32, saved_cpu = cuda.allow_tf32, getattr(cpu, "fp32_precision", None)
    cuda.allow_tf32 = False
    if saved_cpu is not None:
        cpu.fp32_precision = "ieee"

    def restore() -> None:
        if saved_cpu is not None:
            cpu.fp32_precision = saved_cpu
        cuda.allow_tf32 = saved_tf32

    return restore


def _may_have_cuda() -> bool:
    """Cheap test before importing torch (seconds per worker) just to find no GPU."""
    return "torch" in sys.modules or os.path.exists("/dev/nvidiactl")


def compiled(fn: Callable, *, reassociate: bool = False) -> Callable | None:
    """``fn`` compiled by numba (no GIL; cached on disk where the package's folder or the user's
    cache allows, so a new process loads it in milliseconds), or None without numba.

    ``reassociate``: its float sums may be reordered (vectorised), for a sum whose order does
    not matter; NaN and Inf keep their meaning."""
    try:
        import numba
    except ImportError:
        return None
    options = {"nogil": True, "fastmath": {"reassoc"} if reassociate else False}
    try:
        return numba.njit(cache=True, **options)(fn)
    except RuntimeError:  # no writable cache location: compile in each process
        return numba.njit(**options)(fn)


@functools.cache
def kernel_module() -> ModuleType | None:
    """:mod:`.scan_kernels` (the compiled passes, imported only where numba is), or None."""
    try:
        from . import scan_kernels
    except ImportError:
        return None
    return scan_kernels
