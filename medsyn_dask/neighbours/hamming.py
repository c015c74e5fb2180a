"""Hamming distance blocks for discrete codes (VQ-VAE code maps), exact by construction.

The distance is the FRACTION of differing positions, ``mismatches / D`` in float64, as
scikit-learn's ``hamming``. Counts are integers, so the block is exact and needs no recheck.

Positions that hold one code in every image of both blocks (a black border, say) cannot differ
and are dropped first. The rest are compared by a compiled kernel on packed bit planes
(numba; :mod:`.hamming_planes`), packed once per block and position set (:class:`Codes`).
Without numba, matches are counted as a sparse product instead: a code ``c`` at position ``p``
is a one-hot column ``(p, c)``; frequent columns go into a dense 0/1 float32 GEMM (exact:
counts stay far below 2**24) and rare ones are listed pair by pair.
On a GPU, or with ``backend="torch"``, positions are compared directly in torch instead.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

from ..errors import SettingsError
from . import hamming_planes
from .backend import compiled, torch_device
from .bounds import ScoreBlock, nonzero_2d

#: Measured costs (ns, one core) of the NumPy method: one match listed by the sparse product,
#: one multiply-add of the dense GEMM. A column is dense when
#: ``count_x * count_y * SPARSE_COST > n_x * n_y``: a sparse match costs about SPARSE_COST
#: dense multiply-adds.
LISTED_MATCH_NS = 25.0
DENSE_MAC_NS = 0.03
SPARSE_COST = int(LISTED_MATCH_NS / DENSE_MAC_NS)
#: Columns per dense GEMM: bounds the 0/1 matrices to n x DENSE_WIDTH float32.
DENSE_WIDTH = 2048
#: Beyond this many one-hot columns (positions x codebook size) the direct comparison is used.
MAX_ONEHOT_COLUMNS = 1 << 26
#: Bytes of comparison results per chunk in the direct path.
DIRECT_CHUNK_BYTES = 1 << 28
#: Matching pairs listed at once in the sparse product (int64 entries).
PAIR_CHUNK = 1 << 22
#: Packed forms kept per block, one per position set it was compared on (the real pass and the
#: comparison pass may differ): each is about a third of the int16 codes' size at 9 planes, and
#: packing again costs far less than counting a block pair.
PACKED_PER_BLOCK = 2


def validate(name: str, codes: np.ndarray) -> None:
    """Raise SettingsError unless ``codes`` are integer code indices."""
    if codes.dtype.kind not in "iub":
        raise SettingsError(
            f"{name}: hamming needs integer codes (e.g. VQ-VAE indices), got dtype {codes.dtype}; "
            "use metric='euclidean' for continuous features"
        )


def validate_pair(real: np.ndarray, synthetic: np.ndarray) -> None:
    """Raise SettingsError where one set's codes are uint64 and the other's signed: together
    they may span more than 64 bits (-1 and 2**64 - 1 would pack alike)."""
    kinds = {real.dtype.kind, synthetic.dtype.kind}
    if np.dtype(np.uint64) in (real.dtype, synthetic.dtype) and "i" in kinds:
        raise SettingsError(
            f"hamming codes: real {real.dtype} and synthetic {synthetic.dtype} mix uint64 and "
            "signed codes; convert both to one dtype"
        )


class Codes:
    """A block of codes made ready for many block pairs (see :func:`prepare`).

    Holds the rows (n, D), which positions hold one code in every row (``constant``, (D,) bool)
    and that code (``value``), the range ``low..high`` of the codes (``low`` at most 0), and the
    bit planes packed for the position sets the block was compared on so far.
    """

    def __init__(self, rows: np.ndarray) -> None:
        self.rows = rows.view(np.uint8) if rows.dtype == np.bool_ else rows
        self.value = self.rows[0] if len(rows) else np.zeros(rows.shape[1], self.rows.dtype)
        # An empty block has no pairs: calling no position constant keeps every one compared.
        self.constant = (self.rows == self.value).all(axis=0) & (len(rows) > 0)
        self.low, self.high = int(self.rows.min(initial=0)), int(self.rows.max(initial=0))
        self._packed: dict[tuple, np.ndarray] = {}

    def planes(self, positions: np.ndarray, low: int, planes: int) -> np.ndarray:
        """:func:`.hamming_planes.pack` of the rows, packed once per argument set."""
        key = (positions.tobytes(), low, planes)
        packed = self._packed.get(key)
        if packed is None:
            packed = hamming_planes.pack(self.rows, positions, low, planes)
            if len(self._packed) >= PACKED_PER_BLOCK:
                self._packed.clear()
            self._packed[key] = packed
        return packed


def prepare(
    rows: np.ndarray,
    centre: object = None,
    split: object = None,
    forms: str = "both",
    backend: str = "auto",
) -> Codes:
    """``rows`` (n, D) integer codes as :class:`Codes`, for many :func:`block_bounds` calls
    (nothing to compute: ``split``, ``forms`` and ``backend`` are not needed)."""
    return Codes(np.asarray(rows))


def block_bounds(
    x: np.ndarray | Codes, y: np.ndarray | Codes, centre: object = None, *, backend: str = "auto"
) -> ScoreBlock:
    """Exact Hamming distances of a block: x (n_x, D), y (n_y, D) integer codes or their
    :func:`prepare` forms."""
    x, y = _as_codes(x), _as_codes(y)
    dim = x.rows.shape[1]
    return ScoreBlock.from_exact(mismatch_counts(x, y, backend=backend) / dim)


def exact_distances(x: np.ndarray, y: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Hamming distances of the pairs ``(x[rows[p]], y[cols[p]])``, as scipy's ``cdist``."""
    x, y = np.asarray(x), np.asarray(y)
    kernel = _pair_kernel()
    if kernel is not None and x.dtype == y.dtype:  # mixed dtypes would compare as float64
        counts = np.empty(len(rows), dtype=np.int64)
        kernel(np.ascontiguousarray(x), np.ascontiguousarray(y), rows, cols, counts)
        return counts / x.shape[1]
    # Without numba: rows gathered in chunks that bound the temporaries.
    out = np.empty(len(rows), dtype=np.float64)
    step = max(1, DIRECT_CHUNK_BYTES // max(1, x.shape[1]))
    for s in range(0, len(rows), step):
        pairs = slice(s, s + step)
        out[pairs] = (x[rows[pairs]] != y[cols[pairs]]).sum(axis=1) / x.shape[1]
    return out


@functools.cache
def _pair_kernel() -> Callable | None:
    """The compiled kernel of :func:`exact_distances` (no gathered copies), or None."""

    def count_pairs(x, y, rows, cols, out):  # pragma: no cover - compiled
        for p in range(len(rows)):
            a, b = x[rows[p]], y[cols[p]]
            count = 0
            for k in range(len(a)):
                count += a[k] != b[k]
            out[p] = count

    return compiled(count_pairs)


def match_counts(
    x: np.ndarray | Codes, y: np.ndarray | Codes, *, backend: str = "auto"
) -> np.ndarray:
    """Number of positions where ``x[i]`` and ``y[j]`` hold the same code, (n_x, n_y) int64."""
    x, y = _as_codes(x), _as_codes(y)
    return x.rows.shape[1] - mismatch_counts(x, y, backend=backend)


def mismatch_counts(
    x: np.ndarray | Codes, y: np.ndarray | Codes, *, backend: str = "auto"
) -> np.ndarray:
    """Number of positions where ``x[i]`` and ``y[j]`` differ, (n_x, n_y) int64."""
    x, y = _as_codes(x), _as_codes(y)
    device = torch_device(backend)
    if device is not None:
        wide = min(x.low, y.low) < -(2**31) or max(x.high, y.high) >= 2**31
        return x.rows.shape[1] - _matches_torch(x.rows, y.rows, device, wide)
    # Positions constant in both blocks are decided once for every pair, then dropped.
    fixed = x.constant & y.constant
    differ = int((fixed & (x.value != y.value)).sum())
    kept = np.flatnonzero(~fixed)
    if not hamming_planes.available() or not len(x.rows) or not len(y.rows):
        return differ + len(kept) - _varying_matches(x.rows[:, kept], y.rows[:, kept])
    low = min(x.low, y.low)
    planes = hamming_planes.planes_needed(max(x.high, y.high) - low)
    counts = hamming_planes.mismatches(x.planes(kept, low, planes), y.planes(kept, low, planes))
    counts += differ  # in place: a block pair's counts are large
    return counts


def _as_codes(codes: np.ndarray | Codes) -> Codes:
    return codes if isinstance(codes, Codes) else Codes(np.asarray(codes))


def _varying_matches(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Matches in NumPy (no numba): the one-hot product, or direct comparison for codes it
    cannot index."""
    plan = _onehot_plan(x, y)
    return _matches_direct(x, y) if plan is None else plan.run()


class _OneHotPlan:
    """The one-hot product for a block: columns split into constant, dense and sparse ones."""

    def __init__(self, x: np.ndarray, y: np.ndarray, n_codes: int) -> None:
        dim, n_columns = x.shape[1], x.shape[1] * n_codes
        offsets = np.arange(dim, dtype=np.int64) * n_codes
        self.col_x, self.col_y = x.astype(np.int64) + offsets, y.astype(np.int64) + offsets
        count_x = np.bincount(self.col_x.ravel(), minlength=n_columns)
        count_y = np.bincount(self.col_y.ravel(), minlength=n_columns)
        shared = (count_x > 0) & (count_y > 0)
        self.constant = shared & (count_x == len(x)) & (count_y == len(y))
        pairs = count_x * count_y
        self.dense = shared & ~self.constant & (pairs * SPARSE_COST > len(x) * len(y))
        self.sparse = shared & ~self.constant & ~self.dense
        self.shape = (len(x), len(y))

    def run(self) -> np.ndarray:
        matches = np.full(self.shape, int(self.constant.sum()), dtype=np.int64)
        if self.dense.any():
            matches += _dense_product(self.col_x, self.col_y, self.dense)
        if self.sparse.any():
            matches += _sparse_product(self.col_x, self.col_y, self.sparse)
        return matches


def _onehot_plan(x: np.ndarray, y: np.ndarray) -> _OneHotPlan | None:
    """The one-hot plan, or None for codes it cannot index (negative, or a huge codebook)."""
    if min(x.min(initial=0), y.min(initial=0)) < 0:
        return None
    n_codes = int(max(x.max(initial=0), y.max(initial=0))) + 1
    if x.shape[1] * n_codes > MAX_ONEHOT_COLUMNS:
        return None
    return _OneHotPlan(x, y, n_codes)


def _compact_ids(selected: np.ndarray) -> np.ndarray:
    """Map each selected column to 0..n_selected-1 and every other column to -1."""
    ids = np.full(selected.shape, -1, dtype=np.int64)
    ids[selected] = np.arange(int(selected.sum()))
    return ids


def _one_hot_rows(columns: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row, compact column) of every entry of ``columns`` (n, D) that ``ids`` selects."""
    mapped = ids[columns]
    rows, pos = nonzero_2d(mapped >= 0)
    return rows, mapped[rows, pos]


def _dense_product(col_x: np.ndarray, col_y: np.ndarray, selected: np.ndarray) -> np.ndarray:
    """Matches through frequent columns: 0/1 float32 GEMMs, DENSE_WIDTH columns at a time."""
    ids = _compact_ids(selected)
    rows_x, cols_x = _one_hot_rows(col_x, ids)
    rows_y, cols_y = _one_hot_rows(col_y, ids)
    out = np.zeros((len(col_x), len(col_y)), dtype=np.float32)
    for start in range(0, int(selected.sum()), DENSE_WIDTH):
        hot_x = _one_hot_slice(rows_x, cols_x, len(col_x), start)
        hot_y = _one_hot_slice(rows_y, cols_y, len(col_y), start)
        out += hot_x @ hot_y.T  # integers below 2**24: exact in float32
    return np.rint(out).astype(np.int64)


def _one_hot_slice(rows: np.ndarray, cols: np.ndarray, n: int, start: int) -> np.ndarray:
    keep = (cols >= start) & (cols < start + DENSE_WIDTH)
    hot = np.zeros((n, DENSE_WIDTH), dtype=np.float32)
    hot[rows[keep], cols[keep] - start] = 1.0
    return hot


def _sparse_product(col_x: np.ndarray, col_y: np.ndarray, selected: np.ndarray) -> np.ndarray:
    """Matches through rare columns, by listing the (i, j) pairs that share each column.

    The work is proportional to the number of actual matches, with no sparse-matrix machinery:
    entries are grouped by column with one sort of ``column * n_rows + row`` keys.
    """
    n_x, n_y = len(col_x), len(col_y)
    rows_x, group_x = _grouped_entries(col_x, selected)
    rows_y, group_y = _grouped_entries(col_y, selected)
    count_y = np.bincount(group_y, minlength=int(selected.sum()))
    start_y = np.cumsum(count_y) - count_y
    fan_out = count_y[group_x]  # partners of each x entry
    flat = np.zeros(n_x * n_y, dtype=np.int64)
    # Chunks of x entries bound the pair list to about PAIR_CHUNK entries.
    marks = np.arange(PAIR_CHUNK, fan_out.sum() + PAIR_CHUNK, PAIR_CHUNK)
    bounds = np.searchsorted(np.cumsum(fan_out), marks)
    lo = 0
    for hi in np.unique(np.minimum(bounds + 1, len(fan_out))):
        n_pairs = fan_out[lo:hi]
        first = np.repeat(start_y[group_x[lo:hi]] - (np.cumsum(n_pairs) - n_pairs), n_pairs)
        partner = rows_y[first + np.arange(first.size)]
        flat += np.bincount(np.repeat(rows_x[lo:hi], n_pairs) * n_y + partner, minlength=n_x * n_y)
        lo = hi
    return flat.reshape(n_x, n_y)


def _grouped_entries(columns: np.ndarray, selected: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows and compact column ids of the selected entries of ``columns`` (n, D), by column."""
    shift = max(1, int(len(columns) - 1).bit_length())
    keys = (_compact_ids(selected)[columns] << shift) | np.arange(len(columns))[:, None]
    keys = np.sort(keys[keys >= 0])  # one fast integer sort groups the entries by column
    return keys & ((1 << shift) - 1), keys >> shift


def _matches_direct(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Position-by-position comparison, in row chunks that bound the temporary."""
    out = np.empty((len(x), len(y)), dtype=np.int64)
    step = max(1, DIRECT_CHUNK_BYTES // max(1, len(y) * x.shape[1]))
    for s in range(0, len(x), step):
        out[s : s + step] = (x[s : s + step, None, :] == y[None, :, :]).sum(axis=2)
    return out


def _matches_torch(x: np.ndarray, y: np.ndarray, device: object, wide: bool) -> np.ndarray:
    """Matching positions compared in int32 (half the memory), or int64 where a code is
    beyond int32 (``wide``): a cast that wrapped would make different codes equal."""
    import torch

    dtype = np.int64 if wide else np.int32
    tx = torch.from_numpy(np.ascontiguousarray(x, dtype=dtype)).to(device)
    ty = torch.from_numpy(np.ascontiguousarray(y, dtype=dtype)).to(device)
    out = torch.empty((len(x), len(y)), dtype=torch.int64, device=device)
    step = max(1, DIRECT_CHUNK_BYTES // max(1, len(y) * x.shape[1]))
    for s in range(0, len(x), step):
        out[s : s + step] = (tx[s : s + step, None, :] == ty[None, :, :]).sum(dim=2)
    return out.cpu().numpy()
