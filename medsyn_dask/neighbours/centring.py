"""The centred float32 forms of a block of rows for the Euclidean GEMM (:mod:`.euclidean`):
``left = [a - c, |a - c|^2, 1]`` for the rows of a block pair and ``right = [-2(a - c), 1,
|a - c|^2]`` for its columns, so that ``left . right`` is the squared distance; made once per
block by one compiled pass (or NumPy), and only the forms the block's pairs need.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np

from .backend import compiled
from .layout import equal_cuts

#: How :func:`prepare` may spread one block's pass: (map over items, number of pieces).
Split = tuple[Callable[[Callable, list], Any], int]

#: Dtypes of the compiled exact kernel (each value is cast to float64 exactly, as cdist does).
KERNEL_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


#: Which forms of a block :func:`prepare` makes: "left" (the block is the rows of a block pair),
#: "right" (its columns) or "both".
FORMS = ("left", "right", "both")


class Prepared:
    """A block of rows made ready for many :func:`block_bounds` calls (see :func:`prepare`):
    the rows as given (for exact distances), the float64 squared norms of their centred
    float32 values, and their float32 augmented forms: ``left`` for the rows of a block pair,
    ``right`` for its columns; or their fixed-point form ``int8`` (:mod:`.quantized`). Each
    is made when first needed, if :func:`prepare` did not make it."""

    def __init__(
        self,
        rows: np.ndarray,
        centre: np.ndarray,
        split: Split | None = None,
        forms: str = "both",
        int8: bool = False,
    ) -> None:
        self.rows, self.centre = rows, centre
        self._left = self._norms = self._right = self._int8 = None
        if int8:
            from .quantized import quantize

            self._int8 = quantize(rows, centre, split)
        else:
            self._left, self._norms, self._right = _augmented(rows, centre, split, forms)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, rows: slice) -> Prepared:
        """The prepared rows ``rows`` (views: nothing is recomputed)."""
        part = Prepared.__new__(Prepared)
        part.rows, part.centre = self.rows[rows], self.centre
        for name in ("_left", "_norms", "_right", "_int8"):
            made = getattr(self, name)
            setattr(part, name, None if made is None else made[rows])
        return part

    @property
    def left(self) -> np.ndarray:
        """``[a - c, |a - c|^2, 1]`` in float32."""
        if self._left is None:  # a race computes the same array twice, harmlessly
            self._left, self._norms, _ = _augmented(self.rows, self.centre, None, "left")
        return self._left

    @property
    def norms(self) -> np.ndarray:
        """The float64 squared norms of the centred float32 rows (of :attr:`left`)."""
        if self._norms is None:
            self._left, self._norms, _ = _augmented(self.rows, self.centre, None, "left")
        return self._norms

    @property
    def int8(self) -> Any:
        """The rows in fixed point (:class:`.quantized.Quantized`)."""
        if self._int8 is None:
            from .quantized import quantize

            self._int8 = quantize(self.rows, self.centre)
        return self._int8

    @property
    def right(self) -> np.ndarray:
        """``[-2(a - c), 1, |a - c|^2]``: doubling is exact, so this equals a fresh cast."""
        if self._right is None:
            left = self.left
            right = np.empty_like(left)
            np.multiply(left[:, :-2], -2.0, out=right[:, :-2])
            right[:, -2], right[:, -1] = 1.0, left[:, -2]
            self._right = right
        return self._right


def prepare(
    rows: np.ndarray,
    centre: np.ndarray,
    split: Split | None = None,
    forms: str = "both",
    int8: bool = False,
) -> Prepared:
    """``rows`` (n, D) centred on ``centre`` (D,) float64, to reuse in many block pairs.

    ``split`` = (map, pieces): the compiled pass runs on ``pieces`` row ranges through
    ``map(fn, items)`` (a thread pool's), writing one block: a wide block on every core.
    ``forms`` (one of FORMS): the sides of block pairs the rows will be on; the pass writes
    only those forms (each is as large as the rows), the other is made if ever needed.
    ``int8``: make the fixed-point form of :mod:`.quantized` instead (both sides at once).
    """
    return Prepared(np.asarray(rows), centre, split, forms, int8)


def _augmented(
    a: np.ndarray, centre: np.ndarray, split: Split | None = None, forms: str = "both"
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
    """(left, norms, right): float32 rows ``[a - c, |a - c|^2, 1]`` (:attr:`Prepared.left`),
    the squared norms of the float32 centred rows (float64), and the rows of
    :attr:`Prepared.right`; a form not in ``forms`` is None (NumPy makes left only).

    Every dtype is centred on the float64 ``c`` in float64, then cast to float32: the one
    rounding of the difference the cast error bounded in :func:`block_bounds` (with the
    float64 rounding before it). The shift must be the same for both sides of a block pair:
    real float32 features beside float64 synthetic ones centred on ``float32(c)`` and ``c``
    would differ by ``c - float32(c)``, which no bound counts. The norms are
    float64 sums of the float64 squares, to float64 accuracy in any order (the bounds count
    only their float32 cast), so the compiled pass and NumPy may differ in their last bits.
    """
    a = np.asarray(a)
    want_left, want_right = forms != "right", forms != "left"
    kernel = _centre_kernel() if a.dtype in KERNEL_DTYPES else None
    if kernel is not None:
        shape = (len(a), a.shape[1] + 2)
        # A form not made is a (0, D + 2) array to the kernel: it writes only those asked for.
        left, right = (
            np.empty(shape if want else (0, shape[1]), np.float32)
            for want in (want_left, want_right)
        )
        norms = np.empty(len(a))
        a, shift = np.ascontiguousarray(a), np.asarray(centre, np.float64)

        def centre_range(span: tuple[int, int]) -> None:
            lo, hi = span
            lo_left, lo_right = (lo if want else 0 for want in (want_left, want_right))
            hi_left, hi_right = (hi if want else 0 for want in (want_left, want_right))
            part_left, part_right = left[lo_left:hi_left], right[lo_right:hi_right]
            norms[lo:hi] = kernel(a[lo:hi], shift, part_left, part_right)

        pool_map, pieces = split if split is not None else (map, 1)
        list(pool_map(centre_range, equal_cuts(len(a), pieces)))
        return (left if want_left else None), norms, (right if want_right else None)
    out = np.empty((len(a), a.shape[1] + 2), dtype=np.float32)
    body = out[:, :-2]
    np.subtract(a, centre, out=body, casting="unsafe", dtype=np.float64)  # then cast
    norms = np.einsum("ij,ij->i", body, body, dtype=np.float64)
    out[:, -2], out[:, -1] = norms, 1.0
    return out, norms, None


@functools.cache
def _centre_kernel():
    """The numba pass of :func:`_augmented` (one read of the rows, no temporaries), or None.

    ``left`` or ``right`` with no rows is not written: the pass makes the forms asked for."""

    def centre_rows(a, shift, left, right):  # pragma: no cover - compiled
        n, dim = a.shape
        want_left, want_right = left.shape[0] == n, right.shape[0] == n
        norms = np.empty(n)
        scratch = np.empty(dim + 2, np.float32)
        for i in range(n):
            row = left[i] if want_left else scratch
            for j in range(dim):  # no branch, no reduction: vectorised
                row[j] = np.float32(a[i, j] - shift[j])  # in float64, then cast
            if want_right:
                twice = right[i]
                for j in range(dim):
                    twice[j] = row[j] * np.float32(-2.0)  # exact, as Prepared.right
            # Four partial sums: the order is free (see above) and the chains run in parallel.
            s0 = s1 = s2 = s3 = 0.0
            quads = dim - dim % 4
            for j in range(0, quads, 4):
                s0 += np.float64(row[j]) * np.float64(row[j])
                s1 += np.float64(row[j + 1]) * np.float64(row[j + 1])
                s2 += np.float64(row[j + 2]) * np.float64(row[j + 2])
                s3 += np.float64(row[j + 3]) * np.float64(row[j + 3])
            for j in range(quads, dim):
                s0 += np.float64(row[j]) * np.float64(row[j])
            total = (s0 + s1) + (s2 + s3)
            norms[i] = total
            row[dim], row[dim + 1] = np.float32(total), np.float32(1.0)
            if want_right:
                right[i, dim], right[i, dim + 1] = np.float32(1.0), np.float32(total)
        return norms

    return compiled(centre_rows)
