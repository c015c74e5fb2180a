"""Statistics of in-memory features for the in-process runner: the usable flags (finite, and
rows within the metric's ``MAX_ROW_NORM``), the real mean (the Euclidean centre) and the
synthetic feature std, as the lazy ``usable_flag``, ``lazy_centre``
(:mod:`medsyn_dask.evaluate_inputs`) and ``feature_std`` (:mod:`medsyn_dask.metrics.std`) give
them, without a graph.

Compiled (numba): two row-major reads of each array in row chunks, one chunk per task (the
column sums and the rows' squared norms, then the squared deviations from the column means, in
float64), so no float64 copy of the features is made; without numba, NumPy over column slices.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

from .backend import compiled
from .registry import max_row_norm

#: Columns per task of the NumPy way (its float64 temporaries stay in cache).
SUMMARY_COLUMNS = 64
#: Rows per task of the compiled way.
SUMMARY_ROWS = 512


def summary(
    real: np.ndarray, synthetic: np.ndarray, metric: str, map_: Callable = map
) -> tuple[bool, bool, float, np.ndarray | None]:
    """(real usable, synthetic usable, synthetic feature std, centre or None) of (n, D)
    features; ``map_`` runs the tasks (a thread pool's map). Usable: every value finite and,
    where the metric has a ``MAX_ROW_NORM``, every row's norm at most that."""
    kernels = _kernels()
    plain = [a.flags.c_contiguous and _compiled_dtype(a.dtype) for a in (real, synthetic)]
    limit = max_row_norm(metric) or np.inf
    if kernels is None or not all(plain):
        return _numpy_summary(real, synthetic, metric, map_, limit)
    ok_real, centre = _usable_and_mean(real, kernels, map_, limit)
    ok_synth, mean = _usable_and_mean(synthetic, kernels, map_, limit)
    if not ok_synth:  # the caller raises on it: no std needed
        return ok_real, ok_synth, float("nan"), centre if metric == "euclidean" else None
    chunks = _chunks(len(synthetic))
    parts = list(map_(lambda s: kernels["squares"](synthetic[s], mean), chunks))
    n = len(synthetic)
    # Less the squared mean deviation: what the mean's own rounding leaves (as feature_std).
    variance = sum(p[0] for p in parts) / n - (sum(p[1] for p in parts) / n) ** 2
    std = float(np.sqrt(np.maximum(variance, 0.0)).mean())
    return ok_real, ok_synth, std, centre if metric == "euclidean" else None


def _compiled_dtype(dtype: np.dtype) -> bool:
    """Integers, float32 and float64: what the kernels take (numba has no float16 or float128)."""
    return dtype.kind in "iu" or dtype in (np.float32, np.float64)


def _chunks(n: int) -> list[slice]:
    return [slice(s, s + SUMMARY_ROWS) for s in range(0, n, SUMMARY_ROWS)]


def _usable_and_mean(array: np.ndarray, kernels: dict, map_: Callable, limit: float):
    parts = list(map_(lambda s: kernels["sums"](array[s]), _chunks(len(array))))
    finite = all(p[1] for p in parts)
    largest = max((p[2] for p in parts), default=0.0)
    return finite and largest <= limit * limit, sum(p[0] for p in parts) / len(array)


def _numpy_summary(real, synthetic, metric, map_, limit: float):
    step = SUMMARY_COLUMNS
    slices = [slice(s, s + step) for s in range(0, real.shape[1], step)]

    def part(cols: slice) -> tuple[bool, bool, np.ndarray, np.ndarray | None, list]:
        r, s = real[:, cols], synthetic[:, cols]
        finite = [a.dtype.kind != "f" or bool(np.isfinite(a).all()) for a in (r, s)]
        std = s.std(axis=0, dtype=np.float64)  # each value cast exactly, as astype would
        centre = r.mean(axis=0, dtype=np.float64) if metric == "euclidean" else None
        squares = [np.einsum("ij,ij->i", a, a, dtype=np.float64, casting="unsafe") for a in (r, s)]
        return finite[0], finite[1], std, centre, squares

    parts = list(map_(part, slices))
    centre = None if metric != "euclidean" else np.concatenate([p[3] for p in parts])
    std = float(np.concatenate([p[2] for p in parts]).mean())
    usable = [
        all(p[side] for p in parts) and _largest(sum(p[4][side] for p in parts)) <= limit * limit
        for side in (0, 1)
    ]
    return usable[0], usable[1], std, centre


def _largest(values: np.ndarray) -> float:
    return float(values.max(initial=0.0))


@functools.cache
def _kernels() -> dict | None:
    kernels = {"sums": compiled(_sums, reassociate=True), "squares": compiled(_squares)}
    return None if None in kernels.values() else kernels


def _sums(rows):  # pragma: no cover - compiled
    """(column sums in float64, every value finite, the largest squared row norm in float64)
    of a chunk of rows."""
    total = np.zeros(rows.shape[1])
    largest = 0.0
    for i in range(rows.shape[0]):
        square = 0.0
        for j in range(rows.shape[1]):
            value = np.float64(rows[i, j])
            total[j] += value
            square += value * value  # reassociated: vectorised, its order free
        largest = max(largest, square)  # NaN rows: the finite flag's
    finite = np.isfinite(total).all()  # NaN or Inf anywhere makes its column's sum so
    if not finite:  # or finite values large enough for their sum to overflow
        finite = np.isfinite(rows).all()
    return total, finite, largest


def _squares(rows, mean):  # pragma: no cover - compiled
    """Column sums of the squared deviations from ``mean`` of a chunk of rows, and of the
    deviations."""
    total = np.zeros(rows.shape[1])
    first = np.zeros(rows.shape[1])
    for i in range(rows.shape[0]):
        for j in range(rows.shape[1]):
            d = np.float64(rows[i, j]) - mean[j]
            total[j] += d * d
            first[j] += d
    return total, first
