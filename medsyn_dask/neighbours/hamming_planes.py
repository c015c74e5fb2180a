"""Mismatch counts of integer codes from packed bit planes: a compiled XOR / OR / popcount kernel.

Two codes differ exactly when one of their bits does. Bit ``b`` of every code of a row, over the
compared positions, is packed into a bit plane (64 positions per uint64 word); for a pair of rows
the differing positions are the OR over planes of the XOR of the two rows' planes, and their
number is its popcount. Codes below 512 take 9 planes, so 512 positions of a pair cost about
20 SIMD instructions instead of 512 comparisons. Counts are integers: exact by construction.
The kernels themselves are in :mod:`.hamming_kernels`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

#: The portable kernel takes planes three at a time (fewer passes over its accumulator): the
#: number of planes is rounded up to a multiple of this, the extra planes zero (never differ).
PLANES_PER_PASS = 3
#: Words per row are rounded up to a multiple of this (whole SIMD vectors; zero padding).
WORD_MULTIPLE = 8
#: Rows of ``y`` per tile: a tile of packed rows stays in a core's L2 cache while every row of
#: ``x`` goes by (9 planes x 2 300 positions: 128 rows take about 340 kB).
Y_TILE = 128


def planes_needed(span: int) -> int:
    """Planes that hold codes ``0..span`` (span >= 0), rounded up to PLANES_PER_PASS."""
    bits = max(1, int(span).bit_length())
    return -(-bits // PLANES_PER_PASS) * PLANES_PER_PASS


def pack(codes: np.ndarray, positions: np.ndarray, low: int, planes: int) -> np.ndarray:
    """Bit planes of ``codes[:, positions] - low``: (n, planes, words) uint64.

    ``codes`` (n, D) integers with every compared value in ``low..low + 2**planes - 1``;
    bit ``s`` of word ``w`` in plane ``b`` is bit ``b`` of the code at ``positions[64 w + s]``.
    """
    words = -(-len(positions) // 64)
    words = -(-words // WORD_MULTIPLE) * WORD_MULTIPLE
    out = np.zeros((len(codes), planes, words), dtype=np.uint64)
    if codes.dtype == np.bool_:
        codes = codes.view(np.uint8)
    kernels().pack(codes, positions.astype(np.int64), np.uint64(low % (1 << 64)), out)
    return out


def mismatches(x_planes: np.ndarray, y_planes: np.ndarray) -> np.ndarray:
    """(n_x, n_y) int64: positions where row ``i`` of x and row ``j`` of y differ, from the
    planes :func:`pack` made of both with the same positions, ``low`` and ``planes``."""
    out = np.empty((len(x_planes), len(y_planes)), dtype=np.int64)
    if len(x_planes) and len(y_planes):
        kernels().mismatches(x_planes, y_planes, out, Y_TILE)
    return out


def available() -> bool:
    """True when numba is installed (the kernels are compiled)."""
    return kernels() is not None


@functools.cache
def kernels() -> _Kernels | None:
    """The compiled kernels (:mod:`.hamming_kernels`), or None without numba."""
    try:
        from . import hamming_kernels as compiled
    except ImportError:
        return None
    if compiled.pack is None:  # pragma: no cover - numba importable but not njit
        return None
    try:
        in_use = compiled.vector_mismatches
        if not _agrees(in_use):
            in_use = compiled.portable_mismatches
    except Exception:  # noqa: BLE001 - an llvmlite that cannot build it: the portable one serves
        in_use = compiled.portable_mismatches
    return _Kernels(compiled.pack, in_use, compiled.portable_mismatches, compiled.vector_mismatches)


class _Kernels(NamedTuple):
    pack: Callable
    #: The kernel in use: the vector one where it builds and agrees, else the portable one.
    mismatches: Callable
    portable: Callable
    vector: Callable


def reference_mismatches(x_planes: np.ndarray, y_planes: np.ndarray) -> np.ndarray:
    """What :func:`mismatches` computes, in NumPy (small inputs only: n_x x n_y x words)."""
    differ = np.bitwise_or.reduce(x_planes[:, None] ^ y_planes[None, :], axis=2)
    bits = np.unpackbits(np.ascontiguousarray(differ).view(np.uint8), axis=-1)
    return bits.sum(axis=-1, dtype=np.int64)


def _agrees(kernel: Callable) -> bool:
    """True when ``kernel`` counts as :func:`reference_mismatches` on random planes."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 1 << 63, (9, PLANES_PER_PASS * 2, 2 * WORD_MULTIPLE), np.uint64)
    y = x[::-1] & rng.integers(0, 1 << 63, x.shape, np.uint64)
    got = np.empty((len(x), len(y)), np.int64)
    kernel(x, y, got, 3)
    return bool(np.array_equal(got, reference_mismatches(x, y)))
