"""Per-group reductions of candidate lists (a group: one row, or one column): the ``n``-th
smallest value of each group, the ``n`` smallest values, the smallest value and its index.

Compiled by numba: one pass over the list with a small insertion buffer per group, where NumPy
needs a ``lexsort`` of the whole list (most of the merge time of a small problem). Without numba
these functions return None and the callers in :mod:`.reductions` sort. Ties are broken as the
sort does, so both give the same values and indices.
"""

from __future__ import annotations

import functools

import numpy as np

from .backend import compiled


def group_kth(key: np.ndarray, values: np.ndarray, n: int, n_groups: int) -> np.ndarray | None:
    """(n_groups,) float64: the ``n``-th smallest of ``values`` (float) per group ``key`` (int,
    0 <= key < n_groups), +inf where a group has fewer; None without numba."""
    kernels = _kernels()
    if kernels is None:
        return None
    return kernels["smallest"](key, values, n, n_groups)[:, n - 1].copy()


def group_smallest(key: np.ndarray, values: np.ndarray, n: int, n_groups: int):
    """(n_groups, n) float64: the ``n`` smallest ``values`` of each group, ascending, +inf
    padded; None without numba."""
    kernels = _kernels()
    return None if kernels is None else kernels["smallest"](key, values, n, n_groups)


def group_minimum(key: np.ndarray, index: np.ndarray, values: np.ndarray, n_groups: int):
    """Per group the smallest value (NaN after every number, as a sort puts it) and its
    ``index`` (the lowest among ties): (n_groups,) float64 and int64, +inf and -1 where a
    group is empty; None without numba."""
    kernels = _kernels()
    return None if kernels is None else kernels["minimum"](key, index, values, n_groups)


@functools.cache
def _kernels() -> dict | None:
    kernels = {"smallest": _smallest, "minimum": _minimum}
    compiled_kernels = {name: compiled(fn) for name, fn in kernels.items()}
    return None if None in compiled_kernels.values() else compiled_kernels


def _smallest(key, values, n, n_groups):  # pragma: no cover - compiled
    buf = np.full((n_groups, n), np.inf)
    for p in range(key.shape[0]):
        g, v = key[p], np.float64(values[p])
        if v < buf[g, n - 1]:  # NaN never enters: a sort puts it last
            k = n - 1
            while k > 0 and buf[g, k - 1] > v:
                buf[g, k] = buf[g, k - 1]
                k -= 1
            buf[g, k] = v
    return buf


def _minimum(key, index, values, n_groups):  # pragma: no cover - compiled
    best = np.full(n_groups, np.inf)
    best_index = np.full(n_groups, -1, np.int64)
    for p in range(key.shape[0]):
        g, v, i = key[p], np.float64(values[p]), np.int64(index[p])
        b, bi = best[g], best_index[g]
        if bi < 0:
            better = True
        elif np.isnan(b):
            better = not np.isnan(v) or i < bi
        elif np.isnan(v):
            better = False
        else:
            better = v < b or (v == b and i < bi)
        if better:
            best[g], best_index[g] = v, i
    return best, best_index
