"""The Dask graphs of the neighbourhood method, built in one place around the NumPy reductions.

Inputs are Dask arrays chunked by rows (``block`` rows, all D columns per chunk). Task key
prefixes, as the dashboard shows them:

- ``real-radii-pair``: one pair of real blocks (I <= J), reduced both ways by symmetry;
- ``real-radii-merge``: the k+1 smallest distances of one real block, over all blocks;
- ``compare-real-synthetic``: one real x synthetic block, reduced to partial results;
- ``combine-per-real`` / ``combine-per-synthetic``: partial results merged across blocks.
"""

from __future__ import annotations

from collections.abc import Callable

import dask
import dask.array as da
import numpy as np
from dask.base import tokenize
from dask.delayed import Delayed

from .reductions import (
    RealPartial,
    SyntheticPartial,
    combine_real,
    combine_synthetic,
    compare_block,
    merge_smallest,
    smallest_per_row,
)

BoundsFn = Callable  # metric.block_bounds(x, y, center, backend=...) -> PairBounds


def _blocks(array: da.Array) -> tuple[list[Delayed], list[int]]:
    """Delayed row blocks of a row-chunked array and the global index of each block's first row."""
    blocks = list(array.to_delayed()[:, 0])
    offsets = np.concatenate([[0], np.cumsum(array.chunks[0])[:-1]]).astype(int).tolist()
    return blocks, offsets


def _radii_pair(x, y, same: bool, bounds_fn: BoundsFn, center, n: int, backend: str):
    bounds = bounds_fn(x, y, center, backend=backend)
    rows = smallest_per_row(bounds, n)
    cols = None if same else smallest_per_row(bounds.transpose(), n)
    return rows, cols


def _merge_radii(pairs: list[tuple], sides: list[int], n: int) -> np.ndarray:
    return merge_smallest([pair[side] for pair, side in zip(pairs, sides, strict=True)], n)


def radii_graph(real: da.Array, bounds_fn: BoundsFn, center, n: int, backend: str) -> list[Delayed]:
    """Per real block, a Delayed (rows, n) array: the ``n`` smallest distances to all reals.

    Only block pairs I <= J are computed: pair (I, J) yields the rows of I against J and,
    transposed, the rows of J against I, halving the distance work.
    """
    blocks, _ = _blocks(real)
    token = tokenize(real, bounds_fn.__module__, center, n, backend)
    pair_name, merge_name = f"real-radii-pair-{token}", f"real-radii-merge-{token}"
    pairs = {}
    for i, xi in enumerate(blocks):
        for j in range(i, len(blocks)):
            pairs[i, j] = dask.delayed(_radii_pair, pure=True)(
                xi,
                blocks[j],
                i == j,
                bounds_fn,
                center,
                n,
                backend,
                dask_key_name=(pair_name, i, j),
            )
    merged = []
    for i in range(len(blocks)):
        # Row block i appears as the rows of (i, j >= i) and as the columns of (j < i, i).
        keys = [(i, j) for j in range(i, len(blocks))] + [(j, i) for j in range(i)]
        sides = [0] * (len(blocks) - i) + [1] * i
        merged.append(
            dask.delayed(_merge_radii, pure=True)(
                [pairs[k] for k in keys], sides, n, dask_key_name=(merge_name, i)
            )
        )
    return merged


def _compare(x, y, smallest, margin: float, k: int, offset: int, bounds_fn, center, backend):
    bounds = bounds_fn(x, y, center, backend=backend)
    return compare_block(bounds, smallest[:, k], smallest[:, 1] + margin, offset)


def _combine_real(partials: list[tuple[RealPartial, SyntheticPartial]]) -> RealPartial:
    return combine_real([p[0] for p in partials])


def _combine_synthetic(partials: list[tuple[RealPartial, SyntheticPartial]]) -> SyntheticPartial:
    return combine_synthetic([p[1] for p in partials])


def compare_graph(
    real: da.Array,
    synthetic: da.Array,
    smallest: list,
    margin: float,
    k: int,
    bounds_fn: BoundsFn,
    center,
    backend: str,
) -> tuple[list[Delayed], list[Delayed]]:
    """Per real block a Delayed RealPartial, per synthetic block a Delayed SyntheticPartial.

    ``smallest`` holds, per real block, the (rows, k+1) smallest real distances (Delayed or
    NumPy): column ``k`` is radius_k, column 1 is radius_1.
    """
    real_blocks, offsets = _blocks(real)
    synth_blocks, _ = _blocks(synthetic)
    token = tokenize(real, synthetic, margin, k, bounds_fn.__module__, center, backend)
    name = f"compare-real-synthetic-{token}"
    grid = [
        [
            dask.delayed(_compare, pure=True)(
                x,
                y,
                smallest[i],
                margin,
                k,
                offsets[i],
                bounds_fn,
                center,
                backend,
                dask_key_name=(name, i, j),
            )
            for j, y in enumerate(synth_blocks)
        ]
        for i, x in enumerate(real_blocks)
    ]
    per_real = [
        dask.delayed(_combine_real, pure=True)(row, dask_key_name=(f"combine-per-real-{token}", i))
        for i, row in enumerate(grid)
    ]
    per_synthetic = [
        dask.delayed(_combine_synthetic, pure=True)(
            [row[j] for row in grid], dask_key_name=(f"combine-per-synthetic-{token}", j)
        )
        for j in range(len(synth_blocks))
    ]
    return per_real, per_synthetic
