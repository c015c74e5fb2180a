"""The Dask graphs of the neighbourhood method, built in one place around the NumPy reductions.

Inputs are Dask arrays chunked by rows (``block`` rows, all D columns per chunk). Exact
distances are computed once, for the candidates that survive a merge over all blocks, so their
cost does not grow with the number of blocks. Task key prefixes, as the dashboard shows them:

- ``real-radii-candidates``: a pair of real blocks (I <= J), scored once and reduced both ways
  (by symmetry) to the pairs that may be among the k+1 nearest;
- ``real-radii-select``, ``real-radii-exact``, ``real-radii-merge``: the candidates of one real
  block merged over all blocks, their exact distances, the k+1 smallest per real image;
- ``compare-real-synthetic``: a real x synthetic block reduced to per-real counts and
  per-synthetic candidates;
- ``combine-per-real``, ``select-per-synthetic``, ``exact-per-synthetic`` and
  ``combine-per-synthetic``: the same merging for the real x synthetic pass.
"""

from __future__ import annotations

from collections.abc import Callable

import dask
import dask.array as da
import numpy as np
from dask.base import tokenize
from dask.delayed import Delayed

from .reductions import (
    Candidates,
    RealPartial,
    SyntheticCandidates,
    SyntheticPartial,
    column_minimum,
    combine_real,
    compare_block,
    keep_smallest,
    merge_synthetic,
    row_candidates,
    smallest_values,
)
from .registry import get_metric


def _blocks(array: da.Array) -> tuple[list[Delayed], list[int]]:
    """Delayed row blocks of a row-chunked array and the global index of each block's first row."""
    blocks = list(array.to_delayed()[:, 0])
    offsets = np.concatenate([[0], np.cumsum(array.chunks[0])[:-1]]).astype(int).tolist()
    return blocks, offsets


def _task(name: str, index: tuple, fn: Callable, *args) -> Delayed:
    return dask.delayed(fn, pure=True)(*args, dask_key_name=(name, *index))


def _in_block(sel: Candidates, start: int, size: int, on: str = "col") -> Candidates:
    key = sel.col if on == "col" else sel.row
    return sel.take((key >= start) & (key < start + size))


# --- real x real: the k+1 smallest distances of every real image ---------------------------


def _radii_candidates(x, y, offsets, same: bool, metric: str, center, n: int, backend: str):
    """Candidates of the rows of x (global columns) and, unless same block, of the rows of y."""
    block = get_metric(metric).block_bounds(x, y, center, backend=backend)
    rows = row_candidates(block, n).shifted(cols=offsets[1])
    cols = None if same else row_candidates(block.transpose(), n).shifted(cols=offsets[0])
    return rows, cols


def _radii_select(parts: list[tuple], sides: list[int], n: int) -> Candidates:
    picked = [p[s] for p, s in zip(parts, sides, strict=True)]
    return keep_smallest(Candidates.concat(picked), n)


def _radii_exact(x, y, offsets, same: bool, metric: str, sel_x: Candidates, sel_y: Candidates):
    """Exact distances of the selected pairs between blocks x and y, for both blocks' rows."""
    exact = get_metric(metric).exact_distances

    def side(a, b, sel: Candidates, b_offset: int):
        sel = _in_block(sel, b_offset, len(b))
        return sel.row, exact(a, b, sel.row, sel.col - b_offset)

    return side(x, y, sel_x, offsets[1]), None if same else side(y, x, sel_y, offsets[0])


def _radii_merge(parts: list[tuple], sides: list[int], n_rows: int, n: int) -> np.ndarray:
    pieces = [p[s] for p, s in zip(parts, sides, strict=True)]
    rows = np.concatenate([r for r, _ in pieces])
    values = np.concatenate([v for _, v in pieces])
    return smallest_values(rows, values, n_rows, n)


def radii_graph(real: da.Array, metric: str, center, n: int, backend: str) -> list[Delayed]:
    """Per real block, a Delayed (rows, n) array: the ``n`` smallest distances to all reals.

    Only block pairs I <= J are scored: pair (I, J) serves the rows of I against J and, through
    its transpose, the rows of J against I, halving the GEMM work.
    """
    blocks, offsets = _blocks(real)
    nb = len(blocks)
    token = tokenize(real, metric, center, n, backend)
    pairs = [(i, j) for i in range(nb) for j in range(i, nb)]
    cands = {
        (i, j): _task(
            f"real-radii-candidates-{token}",
            (i, j),
            _radii_candidates,
            blocks[i],
            blocks[j],
            (offsets[i], offsets[j]),
            i == j,
            metric,
            center,
            n,
            backend,
        )
        for i, j in pairs
    }
    # Block i is the rows of (i, j >= i) (side 0) and the transposed rows of (j < i, i) (side 1).
    keys = [[(i, j) for j in range(i, nb)] + [(j, i) for j in range(i)] for i in range(nb)]
    sides = [[0] * (nb - i) + [1] * i for i in range(nb)]
    selected = [
        _task(
            f"real-radii-select-{token}",
            (i,),
            _radii_select,
            [cands[k] for k in keys[i]],
            sides[i],
            n,
        )
        for i in range(nb)
    ]
    exact = {
        (i, j): _task(
            f"real-radii-exact-{token}",
            (i, j),
            _radii_exact,
            blocks[i],
            blocks[j],
            (offsets[i], offsets[j]),
            i == j,
            metric,
            selected[i],
            selected[j],
        )
        for i, j in pairs
    }
    return [
        _task(
            f"real-radii-merge-{token}",
            (i,),
            _radii_merge,
            [exact[k] for k in keys[i]],
            sides[i],
            real.chunks[0][i],
            n,
        )
        for i in range(nb)
    ]


# --- real x synthetic: per-real counts and per-synthetic results ---------------------------


def _compare(x, y, smallest, margin, k, offset, metric, center, backend):
    block = get_metric(metric).block_bounds(x, y, center, backend=backend)
    return compare_block(block, smallest[:, k], smallest[:, 1] + margin, offset)


def _combine_real(partials: list[tuple[RealPartial, SyntheticCandidates]]) -> RealPartial:
    return combine_real([p[0] for p in partials])


def _select_synthetic(partials: list[tuple]) -> SyntheticCandidates:
    return merge_synthetic([p[1] for p in partials])


def _synthetic_exact(x, y, smallest, margin, offset, metric, merged: SyntheticCandidates):
    """Exact distances (and ratios) of the merged candidates whose real image is in block x."""
    exact = get_metric(metric).exact_distances
    nearest = _in_block(merged.nearest, offset, len(x), on="row")
    ratio = _in_block(merged.ratio, offset, len(x), on="row")
    near_d = exact(x, y, nearest.row - offset, nearest.col)
    copy_threshold = smallest[ratio.row - offset, 1] + margin
    ratio_d = exact(x, y, ratio.row - offset, ratio.col) / copy_threshold
    return (nearest.col, nearest.row, near_d), (ratio.col, ratio.row, ratio_d)


def _combine_synthetic(merged: SyntheticCandidates, parts: list[tuple], n_cols: int):
    near = [np.concatenate(v) for v in zip(*(p[0] for p in parts), strict=True)]
    ratio = [np.concatenate(v) for v in zip(*(p[1] for p in parts), strict=True)]
    nearest_distance, nearest_real = column_minimum(*near, n_cols)
    copy_ratio, _ = column_minimum(*ratio, n_cols)
    return SyntheticPartial(
        merged.is_real, merged.is_copy, nearest_distance, nearest_real, copy_ratio
    )


def compare_graph(
    real: da.Array,
    synthetic: da.Array,
    smallest: list,
    margin: float,
    k: int,
    metric: str,
    center,
    backend: str,
) -> tuple[list[Delayed], list[Delayed]]:
    """Per real block a Delayed RealPartial, per synthetic block a Delayed SyntheticPartial.

    ``smallest`` holds, per real block, the (rows, k+1) smallest real distances (Delayed or
    NumPy): column ``k`` is radius_k, column 1 is radius_1.
    """
    real_blocks, offsets = _blocks(real)
    synth_blocks, _ = _blocks(synthetic)
    token = tokenize(real, synthetic, margin, k, metric, center, backend)
    grid = [
        [
            _task(
                f"compare-real-synthetic-{token}",
                (i, j),
                _compare,
                x,
                y,
                smallest[i],
                margin,
                k,
                offsets[i],
                metric,
                center,
                backend,
            )
            for j, y in enumerate(synth_blocks)
        ]
        for i, x in enumerate(real_blocks)
    ]
    per_real = [
        _task(f"combine-per-real-{token}", (i,), _combine_real, row) for i, row in enumerate(grid)
    ]
    per_synthetic = []
    for j, y in enumerate(synth_blocks):
        merged = _task(
            f"select-per-synthetic-{token}", (j,), _select_synthetic, [row[j] for row in grid]
        )
        exact = [
            _task(
                f"exact-per-synthetic-{token}",
                (i, j),
                _synthetic_exact,
                x,
                y,
                smallest[i],
                margin,
                offsets[i],
                metric,
                merged,
            )
            for i, x in enumerate(real_blocks)
        ]
        per_synthetic.append(
            _task(
                f"combine-per-synthetic-{token}",
                (j,),
                _combine_synthetic,
                merged,
                exact,
                synthetic.chunks[0][j],
            )
        )
    return per_real, per_synthetic
