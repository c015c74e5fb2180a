"""A bfloat16 first pass for Euclidean blocks on CPUs with AMX tiles (Intel Xeon 4th gen on).

AMX multiplies bfloat16 (8 significant bits) matrices with float32 sums about five times faster
than the float32 GEMM of :mod:`.euclidean` (one core, D = 512: 1.5 ms against 9.5 ms for a
1 000 x 2 000 block). Its scores are coarser, but their error is bounded as rigorously, and
the pairs they select are scored again as the float32 GEMM would (:func:`fine_scores`, the
``fine`` stage of the block) before anything is decided: the same pairs reach the exact pass.
So the pass is taken where it pays: on AMX, through torch when the process has loaded it (its
import costs about a second), and for a block of rows only if a sample of its rows shows the
coarse scores select few extra pairs (:func:`worth_it`); isotropic Gaussian features select
many (their distances concentrate) and keep the float32 GEMM.

The score of a pair (a, b) of centred float32 rows is one bfloat16 GEMM of the augmented rows
``[a, n_hi, n_lo, 1, 1] . [-2b, 1, 1, m_hi, m_lo]`` (``n_hi + n_lo`` the squared norm |a|^2 in
two bfloat16 terms, to about u^2), rounded to bfloat16, read as float32. With u = 2^-8 (bfloat16
keeps 8 significant bits):

- casting a and -2b to bfloat16 moves each product by at most (2u + u^2) |a_i 2b_i|, in all at
  most (2u + u^2) 2|a||b| <= (u + u^2 / 2) (|a| + |b|)^2; the split norms are off by 2u^2 each;
- the float32 sum of the D + 4 exact products (bfloat16 x bfloat16 fits float32), in any order
  and blocking, adds at most gamma_{D+4} (1 + u)^2 (|a| + |b|)^2;
- AMX treats subnormal inputs and sums as zero: an input flushed moves its product by at most
  2^-126 times the other factor, a sum flushed by 2^-126, which ``TINY`` (1 + |a| + |b|)
  covers (as the float32 envelopes' own term);
- oneDNN may round a partial sum, over some of the D + 4 terms, to bfloat16 before adding the
  others (seen where D + 4 is not a multiple of its blocking, or from D + 4 = 2 048 on: up to
  0.83 of the bound without this term, on values at a rounding boundary, for D + 4 from 64 to
  65 540 with torch 2.13): ``PARTIAL_ROUNDINGS`` such roundings add at most u (1 + u)^2
  (|a| + |b|)^2 each (a partial sum is at most the sum of the absolute products);
- the bfloat16 result is within u |acc| of the float32 sum acc: a relative error on the score,
  so at most u on the distance (``rel``), and u E where acc is below E (``sq_err`` (1 + u)).

All of it is doubled (``SAFETY``), as every bound of the engine.
"""

from __future__ import annotations

import functools
import sys
import threading
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import numpy as np

from .backend import Held, compiled, torch_device
from .bounds import TINY, Envelope
from .centring import Prepared

#: Unit roundoff of bfloat16 (8 significant bits), float32 and float64.
U16 = 2.0**-8
U32 = 2.0**-24
U64 = 2.0**-53
SAFETY = 2.0
#: Rows and columns of a block's sample in :func:`worth_it`.
SAMPLE_ROWS, SAMPLE_COLS = 16, 256
#: Rank whose neighbourhood the sample looks at (the default nearest_k is 5).
SAMPLE_RANK = 5
#: Extra pairs per row, per column of the block, that the first pass may select before the
#: float32 GEMM is the cheaper: each costs its fine score and its share of the passes over the
#: selected pairs, about 40 columns' worth of float32 GEMM (2 cores, D = 512), against the
#: ~80 % of the GEMM the first pass saves. Clustered, duplicated or far features select 0.3-0.8 %
#: of the columns (the first pass pays); isotropic Gaussian ones 5-9 % at D = 512 and ~40 % at
#: D = 2 048 (their distances concentrate: forced, the first pass is 1.5-1.7x slower there).
BREAK_EVEN = 0.02
#: Partial sums oneDNN may round to bfloat16 before the result (see the module's docstring).
PARTIAL_ROUNDINGS = 1
#: Largest squared norm of the pass: bfloat16's range is float32's less its last 2^-8.
LARGEST_NORM = 1e30


def available(backend: str) -> bool:
    """Whether ``backend`` may take the first pass here: "auto", torch already loaded, no GPU
    (the float32 GEMM runs there), torch's bfloat16 GEMM through oneDNN, AMX."""
    if backend != "auto" or "torch" not in sys.modules or torch_device(backend) is not None:
        return False
    if not (sys.modules["torch"].backends.mkldnn.enabled and onednn_bfloat16()):
        return False
    return _amx() if _forced["on"] is None else _forced["on"]


@functools.cache
def onednn_bfloat16() -> bool:
    """Whether torch multiplies bfloat16 through oneDNN on this CPU (AVX-512 or AMX): float32
    sums and one rounding of the result, as the bound counts. Torch's own kernels, used
    elsewhere, were seen to use up to 0.73 of it where oneDNN's use 0.48: not modelled."""
    import torch

    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    try:
        return bool(torch.backends.mkldnn.is_available() and check is not None and check())
    except RuntimeError:
        return False


@functools.cache
def _amx() -> bool:
    import torch

    supported = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool(supported is not None and supported() and torch.backends.mkldnn.is_available())


#: None: the first pass where AMX is and a block's sample favours it. True: on every block
#: wherever torch is loaded and multiplies bfloat16 through oneDNN (AVX-512 without AMX:
#: slower, bounded alike); False: never. Set by :func:`force` (the tests take both paths).
_forced: dict[str, bool | None] = {"on": None}


def force(on: bool | None) -> None:
    """Set how the first pass is chosen (see ``_forced``); None restores the default."""
    _forced["on"] = on


def one_torch_thread() -> AbstractContextManager:
    """torch's own threads held to one while the context lasts, if the process loaded torch:
    the runner's pool has one thread per core already (as BLAS is held to one), and each pool
    thread's GEMM would otherwise start a team of torch threads of its own."""
    if "torch" not in sys.modules:
        return nullcontext()
    return _torch_threads.at(lambda found: 1)


_torch_threads = Held(
    lambda: sys.modules["torch"].get_num_threads(),
    lambda n: sys.modules["torch"].set_num_threads(n),
)


def worth_it(px: Prepared, py: Prepared, backend: str) -> bool:
    """Whether blocks of rows ``px`` (and its slices) take the first pass, decided once per
    block on its first partner ``py``: extra selected pairs per sampled row within BREAK_EVEN."""
    if not available(backend) or max(_largest(px), _largest(py)) > LARGEST_NORM:
        return False
    if _forced["on"]:
        return True
    root = px.root()
    if "bf16" not in root.cache:
        with _lock(root):  # a block's threads probe it once
            if "bf16" not in root.cache:
                root.cache["bf16"] = _probe(root, py)
    return root.cache["bf16"]


def _lock(p: Prepared) -> threading.RLock:
    """The lock of a whole block's derived state (dict.setdefault is atomic)."""
    return p.cache.setdefault("lock", threading.RLock())


def _largest(p: Prepared) -> float:
    """The largest squared norm of the whole block ``p`` is part of (once per block)."""
    root = p.root()
    if "largest" not in root.cache:
        root.cache["largest"] = float(root.norms.max(initial=0.0))
    return root.cache["largest"]


def _probe(px: Prepared, py: Prepared) -> bool:
    """Whether the coarse envelopes select few extra pairs in a sample of ``px``'s rows: the
    count depends on their width, not on the scores' precision, so float32 scores serve. On a
    sample of ``py``'s columns too (a fraction f): the neighbour of rank (k + 1) f there stands
    for the k-th, and each pair selected for 1 / f pairs."""
    if len(py) <= SAMPLE_RANK:
        return True
    rows = px[0 : len(px) : max(1, len(px) // SAMPLE_ROWS)]
    step = max(1, len(py) // SAMPLE_COLS)  # columns between the sampled rows: no self pairs
    cols = py[step // 2 : len(py) : step]
    fraction = len(cols) / len(py)
    rank = max(0, round((SAMPLE_RANK + 1) * fraction) - 1)
    (a, fa), (b, fb) = rows.centred(), cols.centred()
    dots = (a @ b.T) * np.float32(1.0 / (fa * fb))
    score = (rows.norms[:, None] + cols.norms[None, :]).astype(np.float32) - 2 * dots
    row_env, _ = envelopes(rows, py)
    kth = np.partition(score, rank, axis=1)[:, rank]
    limit = row_env.score_upto(row_env.upper(kth), score.dtype)
    extra = (score <= limit[:, None]).sum(axis=1) / fraction - (SAMPLE_RANK + 1)
    return float(extra.mean()) <= BREAK_EVEN * len(py)


def scores(px: Prepared, py: Prepared) -> np.ndarray:
    """(len(px), len(py)) float32 scores of the first pass (squared distances, coarse)."""
    left, right = forms(px, "left"), forms(py, "right")
    return (left @ right.T).float().numpy()


def forms(p: Prepared, side: str) -> Any:
    """The bfloat16 torch tensor of ``p``'s rows on ``side`` ("left" or "right") of a pair,
    made once per prepared block (a slice takes its rows of the whole block's)."""
    key = f"bf16_{side}"
    got = p.cache.get(key)
    if got is not None:
        return got
    if p.parent is not None:
        whole, rows = p.parent
        got = forms(whole, side)[rows]
    else:
        # The threads scoring one synthetic block against their real blocks make it once.
        with _lock(p):
            got = p.cache.get(key)
            if got is None:
                got = p.cache[key] = _form(p, side)
        return got
    p.cache[key] = got
    return got


def _form(p: Prepared, side: str) -> Any:
    """``[a, n_hi, n_lo, 1, 1]`` (left) or ``[-2a, 1, 1, n_hi, n_lo]`` (right) in bfloat16."""
    import torch

    centred, factor = p.centred()
    dim = centred.shape[1]
    out = torch.empty((len(p), dim + 4), dtype=torch.bfloat16)
    body = out[:, :dim]
    body.copy_(torch.from_numpy(centred))  # rounds to nearest even
    wanted = 1.0 if side == "left" else -2.0
    if factor != wanted:  # exact in bfloat16 too (subnormals aside, see TINY)
        body.mul_(wanted / factor)
    norms = torch.from_numpy(p.norms)
    high = norms.float().to(torch.bfloat16)
    low = (norms - high.double()).float().to(torch.bfloat16)
    tail = (high, low, 1.0, 1.0) if side == "left" else (1.0, 1.0, high, low)
    for j, column in enumerate(tail):
        out[:, dim + j] = column
    return out


def envelopes(px: Prepared, py: Prepared) -> tuple[Envelope, Envelope]:
    """The row and column envelopes of :func:`scores` (see the module's docstring)."""
    rx, ry = np.sqrt(px.norms), np.sqrt(py.norms)
    dim = px.rows.shape[1]
    terms = dim + 4
    gamma = terms * U32 / (1 - terms * U32)
    partial = PARTIAL_ROUNDINGS * U16 * (1 + U16) ** 2
    error = U16 + 5 * U16**2 + gamma * (1 + U16) ** 2 + partial + 4 * U32
    scale = SAFETY * error * (1 + U16)
    cast = SAFETY * (U32 + 2 * U64)  # the float32 centred rows against the exact ones
    rel = SAFETY * ((dim + 3) * U64 + U16 * (1 + U16))

    def envelope(r_own: np.ndarray, r_other_max: float) -> Envelope:
        reach = r_own + r_other_max
        sq_err = scale * reach**2 + SAFETY * TINY * (1 + reach)
        return Envelope(sq_err, cast * reach + SAFETY * TINY, rel, True)

    return envelope(rx, ry.max(initial=0.0)), envelope(ry, rx.max(initial=0.0))


#: Pairs per NumPy step of :func:`fine_scores` without numba (bounds its temporaries).
FINE_CHUNK = 4096


def fine_scores(px: Prepared, py: Prepared, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """(P,) float32 scores of the pairs ``(px[rows[p]], py[cols[p]])`` as the float32 GEMM of
    :func:`.euclidean.block_bounds` makes them (D + 2 float32 products summed in some order):
    its envelopes bound them. The fine stage of the pairs the first pass leaves open."""
    left, right = px.left, py.right
    rows, cols = np.asarray(rows, np.int64), np.asarray(cols, np.int64)
    out = np.empty(len(rows), np.float32)
    kernel = _dots_kernel()
    if kernel is not None:
        kernel(left, right, rows, cols, out)
        return out
    for start in range(0, len(rows), FINE_CHUNK):
        part = slice(start, start + FINE_CHUNK)
        out[part] = np.einsum("ij,ij->i", left[rows[part]], right[cols[part]])
    return out


@functools.cache
def _dots_kernel():
    def dots(left, right, rows, cols, out):  # pragma: no cover - compiled
        for p in range(rows.shape[0]):
            a, b = left[rows[p]], right[cols[p]]
            acc = np.float32(0.0)
            for j in range(a.shape[0]):
                acc += a[j] * b[j]
            out[p] = acc

    return compiled(dots, reassociate=True)
