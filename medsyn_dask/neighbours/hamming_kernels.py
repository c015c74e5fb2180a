"""The compiled kernels of :mod:`.hamming_planes` (imported only where numba is installed).

Module-level functions, so that numba caches them on disk: a new worker loads them in
milliseconds instead of compiling them again.

- ``pack``: bit planes of codes at chosen positions;
- ``vector_mismatches``: the counting kernel on SIMD vectors of WORD_MULTIPLE words, its inner
  loops in LLVM IR so that the OR over planes stays in a register (a vector popcount then
  counts it), for BLOCK_ROWS x BLOCK_COLS pairs at once;
- ``portable_mismatches``: the same count in plain numba loops (the OR over planes goes through
  memory, three planes per pass): about a third of the speed, the fallback for an llvmlite that
  cannot build the vector kernel.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .backend import compiled
from .hamming_planes import WORD_MULTIPLE

_I64 = ir.IntType(64)
_VECTOR = ir.VectorType(_I64, WORD_MULTIPLE)


def _pack(codes, positions, low, out):  # pragma: no cover - compiled
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


@intrinsic
def _popcount(typingctx, word):  # pragma: no cover - compiled
    """Set bits of a uint64."""

    def codegen(context, builder, signature, args):
        return builder.ctpop(args[0])

    return types.uint64(types.uint64), codegen


def _portable_mismatches(xp, yp, out, tile):  # pragma: no cover - compiled
    n_planes, n_words = xp.shape[1], xp.shape[2]
    differ = np.empty(n_words, dtype=np.uint64)
    for j0 in range(0, yp.shape[0], tile):
        for i in range(xp.shape[0]):
            x = xp[i]
            for j in range(j0, min(j0 + tile, yp.shape[0])):
                y = yp[j]
                for w in range(n_words):
                    differ[w] = (x[0, w] ^ y[0, w]) | (x[1, w] ^ y[1, w]) | (x[2, w] ^ y[2, w])
                for b in range(3, n_planes, 3):  # planes come in threes (see planes_needed)
                    for w in range(n_words):
                        differ[w] |= (
                            (x[b, w] ^ y[b, w])
                            | (x[b + 1, w] ^ y[b + 1, w])
                            | (x[b + 2, w] ^ y[b + 2, w])
                        )
                count = np.uint64(0)
                for w in range(n_words):
                    count += _popcount(differ[w])
                out[i, j] = count


def _block_intrinsic(n_rows: int, n_cols: int):
    """An intrinsic ``(xp, yp, i, j)`` -> the differing positions of rows ``xp[i:i + n_rows]``
    and ``yp[j:j + n_cols]``, row-major in a tuple; (n, planes, words) uint64 C arrays, words a
    multiple of WORD_MULTIPLE. Each loaded vector serves several pairs, and every pair's OR
    over planes stays in a register."""
    n_pairs = n_rows * n_cols

    @intrinsic
    def block_mismatches(typingctx, xp, yp, i, j):  # pragma: no cover - compiled
        for planes in (xp, yp):
            if not (planes.dtype == types.uint64 and planes.ndim == 3 and planes.layout == "C"):
                return None

        def codegen(context, builder, signature, args):
            x = context.make_array(signature.args[0])(context, builder, args[0])
            y = context.make_array(signature.args[1])(context, builder, args[1])
            n_planes, n_words = (builder.extract_value(x.shape, k) for k in (1, 2))
            row = builder.mul(n_planes, n_words)

            def starts(array, first, count):
                at = [builder.add(first, ir.Constant(_I64, k)) for k in range(count)]
                return [builder.gep(array.data, [builder.mul(k, row)]) for k in at]

            x_rows, y_rows = starts(x, args[2], n_rows), starts(y, args[3], n_cols)
            zero = ir.Constant(_VECTOR, [0] * WORD_MULTIPLE)
            # allocas of the entry block: promoted to registers
            differ = [cgutils.alloca_once_value(builder, zero) for _ in range(n_pairs)]
            counts = [cgutils.alloca_once_value(builder, zero) for _ in range(n_pairs)]
            ctpop = cgutils.get_or_insert_function(
                builder.module,
                ir.FunctionType(_VECTOR, [_VECTOR]),
                f"llvm.ctpop.v{WORD_MULTIPLE}i64",
            )
            n_vectors = builder.udiv(n_words, ir.Constant(_I64, WORD_MULTIPLE))
            with cgutils.for_range(builder, n_vectors) as over_vectors:
                for d in differ:
                    builder.store(zero, d)
                first = builder.mul(over_vectors.index, ir.Constant(_I64, WORD_MULTIPLE))
                with cgutils.for_range(builder, n_planes) as over_planes:
                    at = builder.add(builder.mul(over_planes.index, n_words), first)

                    def load(start):
                        pointer = builder.bitcast(builder.gep(start, [at]), _VECTOR.as_pointer())
                        return builder.load(pointer, align=8)

                    xs, ys = [load(r) for r in x_rows], [load(r) for r in y_rows]
                    for k, d in enumerate(differ):
                        flips = builder.xor(xs[k // n_cols], ys[k % n_cols])
                        builder.store(builder.or_(builder.load(d), flips), d)
                for d, c in zip(differ, counts, strict=True):
                    popcounts = builder.call(ctpop, [builder.load(d)])
                    builder.store(builder.add(builder.load(c), popcounts), c)
            total = cgutils.get_or_insert_function(
                builder.module,
                ir.FunctionType(_I64, [_VECTOR]),
                f"llvm.vector.reduce.add.v{WORD_MULTIPLE}i64",
            )
            values = [builder.call(total, [builder.load(c)]) for c in counts]
            return context.make_tuple(builder, signature.return_type, values)

        return types.UniTuple(types.int64, n_pairs)(xp, yp, types.intp, types.intp), codegen

    return block_mismatches


#: Pairs per call of the vector kernel: 4 rows of x by 2 of y (8 accumulators and 6 loaded
#: vectors fit the 16 or 32 vector registers; 2.2x the speed of one pair at a time).
BLOCK_ROWS, BLOCK_COLS = 4, 2
_block_mismatches = _block_intrinsic(BLOCK_ROWS, BLOCK_COLS)
_pair_mismatches = _block_intrinsic(1, 1)


def _vector_mismatches(xp, yp, out, tile):  # pragma: no cover - compiled
    n_x, n_y = xp.shape[0], yp.shape[0]
    whole_x = n_x - n_x % BLOCK_ROWS
    for j0 in range(0, n_y, tile):
        j1 = min(j0 + tile, n_y)
        whole_j = j1 - (j1 - j0) % BLOCK_COLS
        for i in range(0, whole_x, BLOCK_ROWS):
            for j in range(j0, whole_j, BLOCK_COLS):
                counts = _block_mismatches(xp, yp, i, j)
                for r in range(BLOCK_ROWS):
                    for c in range(BLOCK_COLS):
                        out[i + r, j + c] = counts[r * BLOCK_COLS + c]
            for j in range(whole_j, j1):  # the tile's last columns
                for r in range(BLOCK_ROWS):
                    out[i + r, j] = _pair_mismatches(xp, yp, i + r, j)[0]
        for i in range(whole_x, n_x):  # the last rows
            for j in range(j0, j1):
                out[i, j] = _pair_mismatches(xp, yp, i, j)[0]


pack = compiled(_pack)
portable_mismatches = compiled(_portable_mismatches)
vector_mismatches = compiled(_vector_mismatches)
