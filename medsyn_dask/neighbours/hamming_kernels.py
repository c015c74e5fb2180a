"""The compiled kernels of :mod:`.hamming_planes` (imported only where numba is installed).

Module-level functions, so that numba caches them on disk: a new worker loads them in
milliseconds instead of compiling them again.

- ``pack``: bit planes of codes at chosen positions;
- ``vector_mismatches``: the counting kernel on SIMD vectors of WORD_MULTIPLE words, its pair
  loop in LLVM IR so that the OR over planes stays in a register, then one vector popcount;
- ``portable_mismatches``: the same count in plain numba loops (the OR over planes goes through
  memory, three planes per pass): about half the speed, the fallback for an llvmlite that cannot
  build the vector kernel.
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


@intrinsic
def _pair_mismatches(typingctx, xp, yp, i, j):  # pragma: no cover - compiled
    """Differing positions of rows ``xp[i]`` and ``yp[j]``: (n, planes, words) uint64 C arrays,
    words a multiple of WORD_MULTIPLE."""
    for planes in (xp, yp):
        if not (planes.dtype == types.uint64 and planes.ndim == 3 and planes.layout == "C"):
            return None

    def codegen(context, builder, signature, args):
        x = context.make_array(signature.args[0])(context, builder, args[0])
        y = context.make_array(signature.args[1])(context, builder, args[1])
        n_planes, n_words = (builder.extract_value(x.shape, k) for k in (1, 2))
        row = builder.mul(n_planes, n_words)
        rows = [builder.gep(x.data, [builder.mul(args[2], row)])]
        rows.append(builder.gep(y.data, [builder.mul(args[3], row)]))
        zero = ir.Constant(_VECTOR, [0] * WORD_MULTIPLE)
        differ = cgutils.alloca_once_value(builder, zero)  # both promoted to registers
        counts = cgutils.alloca_once_value(builder, zero)
        ctpop = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(_VECTOR, [_VECTOR]), f"llvm.ctpop.v{WORD_MULTIPLE}i64"
        )
        n_vectors = builder.udiv(n_words, ir.Constant(_I64, WORD_MULTIPLE))
        with cgutils.for_range(builder, n_vectors) as over_vectors:
            builder.store(zero, differ)
            first = builder.mul(over_vectors.index, ir.Constant(_I64, WORD_MULTIPLE))
            with cgutils.for_range(builder, n_planes) as over_planes:
                at = builder.add(builder.mul(over_planes.index, n_words), first)
                pointers = [
                    builder.bitcast(builder.gep(r, [at]), _VECTOR.as_pointer()) for r in rows
                ]
                flips = builder.xor(*(builder.load(p, align=8) for p in pointers))
                builder.store(builder.or_(builder.load(differ), flips), differ)
            popcounts = builder.call(ctpop, [builder.load(differ)])
            builder.store(builder.add(builder.load(counts), popcounts), counts)
        total = cgutils.get_or_insert_function(
            builder.module,
            ir.FunctionType(_I64, [_VECTOR]),
            f"llvm.vector.reduce.add.v{WORD_MULTIPLE}i64",
        )
        return builder.call(total, [builder.load(counts)])

    return types.int64(xp, yp, types.intp, types.intp), codegen


def _vector_mismatches(xp, yp, out, tile):  # pragma: no cover - compiled
    for j0 in range(0, yp.shape[0], tile):
        for i in range(xp.shape[0]):
            for j in range(j0, min(j0 + tile, yp.shape[0])):
                out[i, j] = _pair_mismatches(xp, yp, i, j)


pack = compiled(_pack)
portable_mismatches = compiled(_portable_mismatches)
vector_mismatches = compiled(_vector_mismatches)
