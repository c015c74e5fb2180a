"""Euclidean distance blocks for continuous features: float32 GEMM with rigorous error bounds.

The exact distance is ``sqrt(sum((x - y)**2))`` in float64 from differences, as scipy's
``cdist`` computes it. The fast path centres both blocks on a common vector (the real mean, so
features far from the origin keep their precision), casts to float32 and uses one GEMM:
``|x - y|^2 = |x|^2 + |y|^2 - 2 x.y``. Every source of error (the float32 cast, the GEMM's
accumulation of D products, the float64 assembly, the float64 rounding of the exact value) is
bounded from above, so :class:`PairBounds` encloses the exact value for every pair.
"""

from __future__ import annotations

import numpy as np

from .backend import torch_device
from .bounds import PairBounds

#: Unit roundoff of float32 and float64.
U32 = 2.0**-24
U64 = 2.0**-53
#: Pairs per chunk times D, for exact recomputation: caps that temporary at 32 MiB.
EXACT_CHUNK_ELEMENTS = 1 << 22


def validate(name: str, features: np.ndarray) -> None:
    """Raise ValueError unless ``features`` are numbers (float, int or bool) per image."""
    if features.dtype.kind not in "fiub":
        raise ValueError(f"{name}: euclidean needs numeric features, got dtype {features.dtype}")


def exact_distances(x: np.ndarray, y: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Exact float64 distances ``d(x[rows[p]], y[cols[p]])``, computed from differences.

    The squares are summed left to right, as scipy's ``cdist`` does, so the values equal
    ``cdist``'s to the last bit; they are symmetric too (``(a - b)**2 == (b - a)**2``), so a
    pair gets one value in the real x real and the real x synthetic passes alike.
    """
    out = np.empty(len(rows), dtype=np.float64)
    step = max(1, EXACT_CHUNK_ELEMENTS // max(1, x.shape[1]))
    for s in range(0, len(rows), step):
        a = np.asarray(x[rows[s : s + step]], np.float64)
        sq = np.square(a - np.asarray(y[cols[s : s + step]], np.float64))
        # cumsum is a sequential sum; np.sum's pairwise order would differ in the last bits.
        out[s : s + step] = np.sqrt(np.cumsum(sq, axis=1, out=sq)[:, -1])
    return out


def block_bounds(
    x: np.ndarray, y: np.ndarray, center: np.ndarray, *, backend: str = "auto"
) -> PairBounds:
    """Bounds on ``d(x[i], y[j])`` for a block: x (n_x, D), y (n_y, D), center (D,) float64."""
    xc, nx = _centred(x, center)
    yc, ny = _centred(y, center)
    gram = _gemm_f32(xc, yc, backend)
    sq = nx[:, None] + ny[None, :] - 2.0 * gram
    rx, ry = np.sqrt(nx), np.sqrt(ny)
    dim = x.shape[1]
    # GEMM: each dot product of D float32 terms errs by at most gamma * |x||y| (any summation
    # order, FMA or not); the float64 norms and the assembly add a few float64 roundings.
    gamma = (dim + 2) * U32 / (1 - (dim + 2) * U32)
    err_sq = 2.0 * gamma * np.outer(rx, ry) + (dim + 4) * U64 * (nx[:, None] + ny[None, :])
    # Casting the centred values to float32 moves each point by at most U32 * |x| (and centring
    # in float64 by U64 * |x|); the exact float64 value differs from the true one by (D+3)*U64.
    err_cast = (U32 + 2 * U64) * (rx[:, None] + ry[None, :])
    rel = (dim + 3) * U64
    # A factor of 2 on every bound: safety against an underestimate costs only a few rechecks.
    lower = (np.sqrt(np.maximum(sq - 2 * err_sq, 0.0)) - 2 * err_cast) * (1 - 2 * rel)
    upper = (np.sqrt(np.maximum(sq + 2 * err_sq, 0.0)) + 2 * err_cast) * (1 + 2 * rel)

    def exact(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        return exact_distances(x, y, rows, cols)

    return PairBounds(np.maximum(lower, 0.0), upper, exact)


def _centred(a: np.ndarray, center: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float32 centred copy of ``a`` and its squared row norms, exact in float64."""
    ac = (np.asarray(a, np.float64) - center).astype(np.float32)
    a64 = ac.astype(np.float64)
    return ac, np.einsum("ij,ij->i", a64, a64)


def _gemm_f32(a: np.ndarray, b: np.ndarray, backend: str) -> np.ndarray:
    """``a @ b.T`` in float32 (NumPy, or torch on the worker's GPU), returned as float64."""
    device = torch_device(backend)
    if device is None:
        return (a @ b.T).astype(np.float64)
    import torch

    # Full float32 products: TF32 would void the error bound.
    saved = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        ta, tb = torch.from_numpy(a).to(device), torch.from_numpy(b).to(device)
        return (ta @ tb.T).double().cpu().numpy()
    finally:
        torch.backends.cuda.matmul.allow_tf32 = saved
