"""Euclidean distance blocks for continuous features: a float32 GEMM with rigorous bounds.

The exact distance is scipy's ``cdist``: ``sqrt(sum((x - y)**2))`` in float64, the squares
summed left to right. The fast score centres both blocks on a common vector (the real mean, so
features far from the origin keep their precision), casts them to float32 and gets every
squared distance from one GEMM of augmented rows ``[x, |x|^2, 1] . [-2y, 1, |y|^2]``.

Every source of error is bounded: the float32 cast of the centred values and of the norms, the
GEMM's accumulation of D + 2 products in any order (with or without FMA), and the float64
rounding of the exact value. The bounds are made uniform per row and per column (using the
largest norm on the other side), so a threshold on the distance is one threshold on the score.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.distance import cdist

from ..errors import SettingsError
from .backend import full_float32_matmul, torch_device
from .bounds import Envelope, ScoreBlock

#: Unit roundoff of float32 and float64.
U32 = 2.0**-24
U64 = 2.0**-53
#: Every error bound is doubled: an overestimate costs only a few more exact rechecks.
SAFETY = 2.0


def validate(name: str, features: np.ndarray) -> None:
    """Raise SettingsError unless ``features`` are numbers (float, int or bool) per image."""
    if features.dtype.kind not in "fiub":
        raise SettingsError(f"{name}: euclidean needs numeric features, got dtype {features.dtype}")


def exact_distances(x: np.ndarray, y: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Exact float64 distances ``d(x[rows[p]], y[cols[p]])``: scipy ``cdist``'s values, bit for bit.

    Pairs are grouped by row, one ``cdist`` call per row; distances are symmetric to the last
    bit, so a pair gets one value in the real x real and real x synthetic passes alike.
    """
    out = np.empty(len(rows), dtype=np.float64)
    if len(rows) == 0:
        return out
    order = np.argsort(rows, kind="stable")
    rows_sorted, cols_sorted = rows[order], cols[order]
    starts = np.flatnonzero(np.r_[True, rows_sorted[1:] != rows_sorted[:-1]])
    ends = np.r_[starts[1:], len(rows_sorted)]
    values = np.empty(len(rows), dtype=np.float64)
    for s, e in zip(starts, ends, strict=True):
        r = rows_sorted[s]
        values[s:e] = cdist(
            x[r : r + 1].astype(np.float64, copy=False),
            y[cols_sorted[s:e]].astype(np.float64, copy=False),
        )[0]
    out[order] = values
    return out


def block_bounds(
    x: np.ndarray, y: np.ndarray, centre: np.ndarray, *, backend: str = "auto"
) -> ScoreBlock:
    """Scores and bounds for a block: x (n_x, D), y (n_y, D), centre (D,) float64."""
    ax, nx = _augmented(x, centre, left=True)
    by, ny = _augmented(y, centre, left=False)
    score = _gemm_f32(ax, by, backend)
    rx, ry = np.sqrt(nx), np.sqrt(ny)
    dim = x.shape[1]
    # |score - |x - y|^2| <= gamma * (|x| + |y|)^2 for the float32 GEMM of D + 2 terms plus
    # the float32 norms; casting the centred values moves each point by U32 * |x|.
    gamma = SAFETY * ((dim + 4) * U32 / (1 - (dim + 4) * U32) + U32)
    cast = SAFETY * (U32 + 2 * U64)
    rel = SAFETY * (dim + 3) * U64  # the exact float64 value vs the true distance

    def envelope(r_own: np.ndarray, r_other_max: float) -> Envelope:
        return Envelope(gamma * (r_own + r_other_max) ** 2, cast * (r_own + r_other_max), rel, True)

    def exact(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        return exact_distances(x, y, rows, cols)

    return ScoreBlock(score, envelope(rx, ry.max()), envelope(ry, rx.max()), exact)


def _augmented(a: np.ndarray, centre: np.ndarray, left: bool) -> tuple[np.ndarray, np.ndarray]:
    """float32 rows ``[a - c, |a - c|^2, 1]`` (left) or ``[-2(a - c), 1, |a - c|^2]`` (right),
    and the squared norms of the float32 centred rows (float64).

    float32 features are centred in float32 on ``float32(c)``: a common shift of every point
    leaves distances unchanged, and the rounding of the difference is the cast error bounded
    in :func:`block_bounds`. Other dtypes are centred in float64, then cast.
    """
    a = np.asarray(a)
    out = np.empty((len(a), a.shape[1] + 2), dtype=np.float32)
    body = out[:, :-2]
    if a.dtype == np.float32:
        np.subtract(a, centre.astype(np.float32), out=body)
    else:
        np.subtract(a, centre, out=body, casting="unsafe")
    norms = np.einsum("ij,ij->i", body, body, dtype=np.float64)
    if left:
        out[:, -2], out[:, -1] = norms, 1.0
    else:
        body *= -2.0
        out[:, -2], out[:, -1] = 1.0, norms
    return out, norms


def _gemm_f32(a: np.ndarray, b: np.ndarray, backend: str) -> np.ndarray:
    """``a @ b.T`` in float32 (NumPy, or torch on the worker's GPU)."""
    device = torch_device(backend)
    if device is None:
        return a @ b.T
    import torch

    with full_float32_matmul():  # TF32 would void the error bound
        ta, tb = torch.from_numpy(a).to(device), torch.from_numpy(b).to(device)
        return (ta @ tb.T).cpu().numpy()
