"""Mismatch counts of integer codes from packed bit planes: a compiled XOR / OR / popcount kernel.

Two codes differ exactly when one of their bits does. Bit ``b`` of every code of a row, over the
compared positions, is packed into a bit plane (64 positions per uint64 word); for a pair of rows
the differing positions are the OR over planes of the XOR of the two rows' planes, and their
number is its popcount. Codes below 512 take 9 planes, so a word of 64 positions costs about
20 integer operations instead of 64 comparisons. Counts are integers: exact by construction.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from .backend import compiled

#: Planes are handled three at a time (fewer passes over the accumulator): the number of planes
#: is rounded up to a multiple of this, the extra planes all zero (they never differ).
PLANES_PER_PASS = 3
#: Words per row are rounded up to a multiple of this (whole SIMD registers; zero padding).
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
    """The compiled kernels, or None without numba."""
    try:
        from numba import types
        from numba.extending import intrinsic
    except ImportError:
        return None
    pack_kernel = compiled(_pack_planes)
    portable = compiled(_portable_source(_popcount_intrinsic(intrinsic, types)))
    if pack_kernel is None or portable is None:
        return None
    try:
        vector = _vector_kernel(intrinsic, types)
        in_use = vector if _agrees(vector, portable) else portable
    except Exception:  # noqa: BLE001 - an llvmlite that cannot build it: the portable one serves
        vector, in_use = None, portable
    return _Kernels(pack_kernel, in_use, portable, vector)


class _Kernels(NamedTuple):
    pack: Callable
    #: The kernel in use: the vector one where it builds and agrees, else the portable one.
    mismatches: Callable
    portable: Callable
    vector: Callable | None


def _pack_planes(codes, positions, low, out):  # pragma: no cover - compiled
    n_planes, n_words = out.shape[1], out.shape[2]
    buffer = np.zeros(64, dtype=np.uint64)
    for i in range(codes.shape[0]):
        for w in range(n_words):
            for s in range(64):
                k = 64 * w + s
                # uint64 arithmetic wraps: code - low is exact for any integer codes
                code = np.uint64(codes[i, positions[k]]) if k < len(positions) else low
                buffer[s] = code - low
            for b in range(min(n_planes, 64)):  # planes past 64 stay zero
                plane = np.uint64(0)
                for s in range(64):
                    plane |= ((buffer[s] >> np.uint64(b)) & np.uint64(1)) << np.uint64(s)
                out[i, b, w] = plane


def _popcount_intrinsic(intrinsic, types):
    @intrinsic
    def popcount(typingctx, word):  # pragma: no cover - compiled
        def codegen(context, builder, signature, args):
            return builder.ctpop(args[0])

        return types.uint64(types.uint64), codegen

    return popcount


def _portable_source(popcount) -> Callable:
    """The counting kernel in plain numba loops: the OR over planes goes through memory, three
    planes per pass (about twice the vector kernel's time)."""

    def count_mismatches(xp, yp, out, tile):  # pragma: no cover - compiled
        n_planes, n_words = xp.shape[1], xp.shape[2]
        differ = np.empty(n_words, dtype=np.uint64)
        for j0 in range(0, yp.shape[0], tile):
            for i in range(xp.shape[0]):
                x = xp[i]
                for j in range(j0, min(j0 + tile, yp.shape[0])):
                    y = yp[j]
                    for w in range(n_words):
                        differ[w] = (x[0, w] ^ y[0, w]) | (x[1, w] ^ y[1, w]) | (x[2, w] ^ y[2, w])
                    for b in range(PLANES_PER_PASS, n_planes, PLANES_PER_PASS):
                        for w in range(n_words):
                            differ[w] |= (
                                (x[b, w] ^ y[b, w])
                                | (x[b + 1, w] ^ y[b + 1, w])
                                | (x[b + 2, w] ^ y[b + 2, w])
                            )
                    count = np.uint64(0)
                    for w in range(n_words):
                        count += popcount(differ[w])
                    out[i, j] = count

    return count_mismatches


def _vector_kernel(intrinsic, types) -> Callable:
    """The counting kernel on SIMD vectors of WORD_MULTIPLE words, its pair loop in LLVM IR:
    per vector of positions, the OR over planes stays in registers (numba's own loops keep it in
    memory), then one vector popcount."""
    from llvmlite import ir
    from numba.core import cgutils

    i64 = ir.IntType(64)
    vector = ir.VectorType(i64, WORD_MULTIPLE)

    @intrinsic
    def pair_mismatches(typingctx, xp, yp, i, j):  # pragma: no cover - compiled
        """Differing positions of rows ``xp[i]`` and ``yp[j]`` ((n, planes, words) uint64)."""
        for planes in (xp, yp):
            if not (planes.dtype == types.uint64 and planes.ndim == 3 and planes.layout == "C"):
                return None

        def codegen(context, builder, signature, args):
            x = context.make_array(signature.args[0])(context, builder, args[0])
            y = context.make_array(signature.args[1])(context, builder, args[1])
            n_planes, n_words = (builder.extract_value(x.shape, k) for k in (1, 2))
            row = builder.mul(n_planes, n_words)
            x_row = builder.gep(x.data, [builder.mul(args[2], row)])
            y_row = builder.gep(y.data, [builder.mul(args[3], row)])
            zero = ir.Constant(vector, [0] * WORD_MULTIPLE)
            differ = cgutils.alloca_once_value(builder, zero)  # promoted to a register
            counts = cgutils.alloca_once_value(builder, zero)
            unary = ir.FunctionType(vector, [vector])
            ctpop = cgutils.get_or_insert_function(
                builder.module, unary, f"llvm.ctpop.v{WORD_MULTIPLE}i64"
            )
            n_vectors = builder.udiv(n_words, ir.Constant(i64, WORD_MULTIPLE))
            with cgutils.for_range(builder, n_vectors) as over_vectors:
                builder.store(zero, differ)
                first = builder.mul(over_vectors.index, ir.Constant(i64, WORD_MULTIPLE))
                with cgutils.for_range(builder, n_planes) as over_planes:
                    at = builder.add(builder.mul(over_planes.index, n_words), first)
                    words = [
                        builder.load(
                            builder.bitcast(builder.gep(base, [at]), vector.as_pointer()), align=8
                        )
                        for base in (x_row, y_row)
                    ]
                    flips = builder.xor(*words)
                    builder.store(builder.or_(builder.load(differ), flips), differ)
                popcounts = builder.call(ctpop, [builder.load(differ)])
                builder.store(builder.add(builder.load(counts), popcounts), counts)
            total = cgutils.get_or_insert_function(
                builder.module,
                ir.FunctionType(i64, [vector]),
                f"llvm.vector.reduce.add.v{WORD_MULTIPLE}i64",
            )
            return builder.call(total, [builder.load(counts)])

        return types.int64(xp, yp, types.intp, types.intp), codegen

    def count_mismatches(xp, yp, out, tile):  # pragma: no cover - compiled
        for j0 in range(0, yp.shape[0], tile):
            for i in range(xp.shape[0]):
                for j in range(j0, min(j0 + tile, yp.shape[0])):
                    out[i, j] = pair_mismatches(xp, yp, i, j)

    return compiled(count_mismatches)


def _agrees(kernel: Callable, reference: Callable) -> bool:
    """True when ``kernel`` counts as ``reference`` on random planes."""
    rng = np.random.default_rng(0)
    planes = rng.integers(0, 1 << 63, (5, PLANES_PER_PASS * 2, 2 * WORD_MULTIPLE), np.uint64)
    got, expected = np.empty((5, 5), np.int64), np.empty((5, 5), np.int64)
    kernel(planes, planes[::-1].copy(), got, 2)
    reference(planes, planes[::-1].copy(), expected, 2)
    return bool(np.array_equal(got, expected))
