"""Exact distances of candidate pairs, each distinct pair computed once: the in-process runner
asks for a pair twice where both of its images hold it among their nearest (the real radii),
or where it is both the nearest real image and the smallest copy ratio of a synthetic one.
The metric's exact distance is symmetric to the last bit (``d(a, b) == d(b, a)``), and an image
is at distance 0 from itself."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .layout import equal_cuts

Pairs = list[tuple[np.ndarray, np.ndarray]]


def exact_once(exact: Callable, x: np.ndarray, y: np.ndarray, pairs: Pairs) -> list[np.ndarray]:
    """``[exact(x, y, rows, cols) for rows, cols in pairs]``, a pair in several lists (or
    twice in one) computed once."""
    rows, cols = _concatenated(pairs)
    width = max(1, len(y))
    unique, inverse = np.unique(rows * width + cols, return_inverse=True)
    values = exact(x, y, unique // width, unique % width)[inverse.ravel()]
    return _split(values, pairs)


def exact_unordered(
    exact: Callable, real: np.ndarray, pairs: Pairs, map_: Callable = map, pieces: int = 1
) -> list[np.ndarray]:
    """``[exact(real, real, rows, cols) for rows, cols in pairs]``, (i, j) and (j, i) computed
    once and (i, i) not at all (0), in ``pieces`` parts through ``map_`` (a pool's)."""
    rows, cols = _concatenated(pairs)
    n = max(1, len(real))
    key = np.minimum(rows, cols) * n + np.maximum(rows, cols)
    unique, inverse = np.unique(key, return_inverse=True)
    low, high = unique // n, unique % n
    parts = [slice(a, b) for a, b in equal_cuts(len(unique), pieces)]
    done = list(map_(lambda p: self_excluded(exact, real, low[p], high[p]), parts))
    return _split(np.concatenate(done)[inverse.ravel()], pairs)


def self_excluded(exact: Callable, real: np.ndarray, rows: np.ndarray, cols: np.ndarray):
    """``exact(real, real, rows, cols)`` without computing the pairs of an image with itself:
    their distance is 0 exactly (the features are checked finite; cdist sums zeros)."""
    values = np.zeros(len(rows))
    other = rows != cols
    values[other] = exact(real, real, rows[other], cols[other])
    return values


def _concatenated(pairs: Pairs) -> tuple[np.ndarray, np.ndarray]:
    rows = np.concatenate([np.asarray(r, np.int64) for r, _ in pairs])
    cols = np.concatenate([np.asarray(c, np.int64) for _, c in pairs])
    return rows, cols


def _split(values: np.ndarray, pairs: Pairs) -> list[np.ndarray]:
    return np.split(values, np.cumsum([len(r) for r, _ in pairs])[:-1])
