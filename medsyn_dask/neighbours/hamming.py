"""Hamming distance blocks for discrete codes (VQ-VAE code maps), exact by construction.

The distance is the FRACTION of differing positions, ``mismatches / D`` in float64, as
scikit-learn's ``hamming``. Counts are integers, so the block is exact and needs no recheck.

Positions that hold one code in every image of both blocks (a black border, say) cannot differ
and are dropped first. The rest are compared by a small compiled kernel (numba; SIMD over
positions). Without numba, matches are counted as a sparse product instead: a code ``c`` at
position ``p`` is a one-hot column ``(p, c)``; frequent columns go into a dense 0/1 float32 GEMM
(exact: counts stay far below 2**24) and rare ones are listed pair by pair.
On a GPU, or with ``backend="torch"``, positions are compared directly in torch instead.
"""

from __future__ import annotations

import functools

import numpy as np

from ..errors import SettingsError
from .backend import compiled, torch_device
from .bounds import ScoreBlock, nonzero_2d

#: Measured costs (ns, one core) that choose the method: one position compared by the compiled
#: kernel, one match listed by the sparse product, one multiply-add of the dense GEMM.
KERNEL_NS_PER_COMPARISON = 0.4
LISTED_MATCH_NS = 25.0
DENSE_MAC_NS = 0.03
#: A column is dense when ``count_x * count_y * SPARSE_COST > n_x * n_y``: a sparse match costs
#: about this many dense multiply-adds.
SPARSE_COST = int(LISTED_MATCH_NS / DENSE_MAC_NS)
#: Columns per dense GEMM: bounds the 0/1 matrices to n x DENSE_WIDTH float32.
DENSE_WIDTH = 2048
#: Beyond this many one-hot columns (positions x codebook size) the direct comparison is used.
MAX_ONEHOT_COLUMNS = 1 << 26
#: Bytes of comparison results per chunk in the direct path.
DIRECT_CHUNK_BYTES = 1 << 28
#: Matching pairs listed at once in the sparse product (int64 entries).
PAIR_CHUNK = 1 << 22


def validate(name: str, codes: np.ndarray) -> None:
    """Raise SettingsError unless ``codes`` are integer code indices."""
    if codes.dtype.kind not in "iub":
        raise SettingsError(
            f"{name}: hamming needs integer codes (e.g. VQ-VAE indices), got dtype {codes.dtype}; "
            "use metric='euclidean' for continuous features"
        )


def prepare(rows: np.ndarray, centre: object = None) -> np.ndarray:
    """``rows`` as they are: which positions vary depends on both blocks of a pair."""
    return np.asarray(rows)


def block_bounds(
    x: np.ndarray, y: np.ndarray, centre: object = None, *, backend: str = "auto"
) -> ScoreBlock:
    """Exact Hamming distances of a block: x (n_x, D), y (n_y, D) integer codes."""
    dim = x.shape[1]
    return ScoreBlock.from_exact((dim - match_counts(x, y, backend=backend)) / dim)


def exact_distances(x: np.ndarray, y: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Hamming distances of the pairs ``(x[rows[p]], y[cols[p]])``, as scipy's ``cdist``."""
    out = np.empty(len(rows), dtype=np.float64)
    step = max(1, DIRECT_CHUNK_BYTES // max(1, x.shape[1]))
    for s in range(0, len(rows), step):
        pairs = slice(s, s + step)
        out[pairs] = (x[rows[pairs]] != y[cols[pairs]]).sum(axis=1) / x.shape[1]
    return out


def match_counts(x: np.ndarray, y: np.ndarray, *, backend: str = "auto") -> np.ndarray:
    """Number of positions where ``x[i]`` and ``y[j]`` hold the same code, (n_x, n_y) int64."""
    x, y = np.asarray(x), np.asarray(y)
    device = torch_device(backend)
    if device is not None:
        return _matches_torch(x, y, device)
    varying = _varying_positions(x, y)
    constant = x.shape[1] - int(varying.sum())
    return constant + _varying_matches(x[:, varying], y[:, varying], _compiled_kernel())


def _varying_matches(x: np.ndarray, y: np.ndarray, kernel) -> np.ndarray:
    """Matches over positions that vary: by whichever of the two methods costs less here
    (``kernel`` None: the one-hot product, or direct comparison for codes it cannot index)."""
    kernel_ns = KERNEL_NS_PER_COMPARISON * len(x) * len(y) * x.shape[1]
    # Listing matches one by one only pays when there are few: estimate from sampled pairs
    # before paying for the plan.
    few = LISTED_MATCH_NS * _sampled_matches(x, y) * len(x) * len(y) < kernel_ns
    plan = _onehot_plan(x, y) if kernel is None or few else None
    if plan is not None and (kernel is None or plan.cost_ns < kernel_ns):
        return plan.run()
    if kernel is None or not len(x) or not len(y):
        return _matches_direct(x, y)
    out = np.empty((len(x), len(y)), dtype=np.int64)
    kernel(_compact_codes(x), _compact_codes(y), out)
    return x.shape[1] - out


def _sampled_matches(x: np.ndarray, y: np.ndarray, n: int = 256) -> float:
    """Mean matches per pair over ``n`` pairs drawn (deterministically) from the block."""
    if not len(x) or not len(y):
        return 0.0
    rng = np.random.default_rng(0)
    i, j = rng.integers(0, len(x), n), rng.integers(0, len(y), n)
    return float((x[i] == y[j]).sum(axis=1).mean())


def _varying_positions(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(D,) bool: positions whose code is not the same in every row of both blocks."""
    if len(x) == 0:
        return np.ones(x.shape[1], dtype=bool)
    first = x[0]
    return ~((x == first).all(axis=0) & (y == first).all(axis=0))


def _compact_codes(codes: np.ndarray) -> np.ndarray:
    """C-contiguous codes in the narrowest dtype the kernel compares fastest."""
    if codes.size and codes.min() >= 0 and codes.max() < 2**16:
        return np.ascontiguousarray(codes, dtype=np.uint16)
    return np.ascontiguousarray(codes, dtype=np.int64)


@functools.cache
def _compiled_kernel():
    """The numba mismatch-count kernel, or None when numba is not installed."""

    def mismatches(x, y, out):  # pragma: no cover - compiled
        for i in range(x.shape[0]):
            for j in range(y.shape[0]):
                count = 0
                for k in range(x.shape[1]):
                    count += x[i, k] != y[j, k]
                out[i, j] = count

    return compiled(mismatches)


class _OneHotPlan:
    """The one-hot product for a block: columns split into constant, dense and sparse ones,
    and its estimated cost (listed sparse matches dominate)."""

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
        self.cost_ns = LISTED_MATCH_NS * float(pairs[self.sparse].sum()) + (
            DENSE_MAC_NS * len(x) * len(y) * float(self.dense.sum())
        )

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


def _matches_torch(x: np.ndarray, y: np.ndarray, device: object) -> np.ndarray:
    import torch

    tx = torch.from_numpy(np.ascontiguousarray(x, dtype=np.int32)).to(device)
    ty = torch.from_numpy(np.ascontiguousarray(y, dtype=np.int32)).to(device)
    out = torch.empty((len(x), len(y)), dtype=torch.int64, device=device)
    step = max(1, DIRECT_CHUNK_BYTES // max(1, len(y) * x.shape[1]))
    for s in range(0, len(x), step):
        out[s : s + step] = (tx[s : s + step, None, :] == ty[None, :, :]).sum(dim=2)
    return out.cpu().numpy()
