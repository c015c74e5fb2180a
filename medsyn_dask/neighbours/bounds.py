"""Distance bounds for one block of pairs, the common currency of the neighbourhood reductions.

A metric turns a block of rows ``x`` (n_x x D) and ``y`` (n_y x D) into a :class:`PairBounds`:
cheap lower and upper bounds on every pair's distance, and a function that computes the exact
distance (the float64 value a brute force gives) for chosen pairs. The reductions decide every
comparison from the bounds where they are conclusive and ask for exact values only where they
are not, so a fast float32 GEMM can never change a result.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

ExactFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class PairBounds:
    """Bounds on the distances of one block of pairs.

    Attributes:
        lower: (n_x, n_y) float64, ``lower[i, j] <= d(x[i], y[j])``.
        upper: (n_x, n_y) float64, ``upper[i, j] >= d(x[i], y[j])``.
        exact: ``exact(rows, cols)`` -> float64 exact distances of the pairs
            ``(x[rows[p]], y[cols[p]])``; ``rows`` and ``cols`` are local int arrays.
    """

    lower: np.ndarray
    upper: np.ndarray
    exact: ExactFn

    @property
    def shape(self) -> tuple[int, int]:
        return self.lower.shape

    def transpose(self) -> PairBounds:
        """The same block seen from ``y``: bounds of ``d(y[j], x[i])`` (distances are symmetric)."""
        exact = self.exact
        return PairBounds(self.lower.T, self.upper.T, lambda rows, cols: exact(cols, rows))

    @classmethod
    def from_exact(cls, distances: np.ndarray) -> PairBounds:
        """Bounds that are the exact distances themselves (e.g. integer-count Hamming)."""
        return cls(distances, distances, lambda rows, cols: distances[rows, cols])
