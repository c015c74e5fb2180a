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

import dask.array as da
import numpy as np
from dask.base import tokenize
from dask.delayed import Delayed
from dask.highlevelgraph import HighLevelGraph

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
    other_patient,
    smallest_candidates,
    smallest_values,
)
from .registry import get_metric


class _Graph:
    """One graph layer built as a plain dict: cheap to build and to ship, whatever its size
    (one ``dask.delayed`` call per task grows far faster than the task count)."""

    def __init__(self, layer: str, dependencies: list) -> None:
        self.layer, self.dsk, self.dependencies = layer, {}, list(dependencies)

    def task(self, key: tuple, fn: Callable, *args) -> tuple:
        self.dsk[key] = (fn, *args)
        return key

    def value(self, key: tuple, obj) -> tuple:
        """Put ``obj`` in the graph once, to be referred to by ``key`` from many tasks."""
        self.dsk[key] = obj
        return key

    def input_keys(self, items: list) -> list:
        """Keys for a list of Delayed (added as dependencies) or in-memory values."""
        keys = []
        for i, item in enumerate(items):
            if isinstance(item, Delayed):
                self.dependencies.append(item)
                keys.append(item.key)
            else:
                keys.append(self.value((f"{self.layer}-input", i), item))
        return keys

    def block_values(self, name: str, values: np.ndarray, array: da.Array) -> list:
        """Keys of ``values`` (one entry per row of ``array``) cut into ``array``'s row blocks."""
        offsets = _block_keys(array)[1]
        return [
            self.value((f"{name}-{self.layer}", i), values[o : o + n])
            for i, (o, n) in enumerate(zip(offsets, array.chunks[0], strict=True))
        ]

    def outputs(self, keys: list) -> list[Delayed]:
        graph = HighLevelGraph.from_collections(self.layer, self.dsk, self.dependencies)
        return [Delayed(k, graph, layer=self.layer) for k in keys]


def _block_keys(array: da.Array) -> tuple[list, list[int]]:
    """Keys of the row blocks of a row-chunked array and the global index of each first row."""
    keys = [row[0] for row in array.__dask_keys__()]
    offsets = np.concatenate([[0], np.cumsum(array.chunks[0])[:-1]]).astype(int).tolist()
    return keys, offsets


def _in_block(sel: Candidates, start: int, size: int, on: str = "col") -> Candidates:
    key = sel.col if on == "col" else sel.row
    return sel.take((key >= start) & (key < start + size))


# --- real x real: the k+1 smallest distances of every real image ---------------------------


def _radii_candidates(
    x, y, x_offset, y_offset, same, metric, centre, nearest_k, backend, px=None, py=None
):
    """Candidates of the rows of x (global columns) and, unless same block, of the rows of y:
    the pairs that may be among the nearest_k + 1 smallest (self included). With patient codes
    ``px``, ``py`` of the two blocks, only pairs of different patients count."""
    block = get_metric(metric).block_bounds(x, y, centre, backend=backend)
    allowed = None if px is None else other_patient(px, py)
    # One selection pass serves both sides of an off-diagonal pair.
    rows, cols = smallest_candidates(block, nearest_k + 1, allowed, columns=not same)
    return rows.shifted(cols=y_offset), None if same else cols.shifted(cols=x_offset)


def _radii_select(parts: list[tuple], sides: list[int], nearest_k: int) -> Candidates:
    picked = [p[s] for p, s in zip(parts, sides, strict=True)]
    return keep_smallest(Candidates.concat(picked), nearest_k + 1)


def _radii_exact(x, y, x_offset, y_offset, same, metric, sel_x: Candidates, sel_y: Candidates):
    """Exact distances of the selected pairs between blocks x and y, for both blocks' rows."""
    exact = get_metric(metric).exact_distances

    def side(a, b, sel: Candidates, b_offset: int):
        sel = _in_block(sel, b_offset, len(b))
        return sel.row, exact(a, b, sel.row, sel.col - b_offset)

    return side(x, y, sel_x, y_offset), None if same else side(y, x, sel_y, x_offset)


def _radii_merge(parts: list[tuple], sides: list[int], n_rows: int, nearest_k: int) -> np.ndarray:
    pieces = [p[s] for p, s in zip(parts, sides, strict=True)]
    rows = np.concatenate([r for r, _ in pieces])
    values = np.concatenate([v for _, v in pieces])
    return smallest_values(rows, values, n_rows, nearest_k + 1)


def radii_graph(
    real: da.Array,
    metric: str,
    centre,
    nearest_k: int,
    backend: str,
    patients: np.ndarray | None = None,
) -> list[Delayed]:
    """Per real block, a Delayed (rows, nearest_k + 1) array: the nearest_k + 1 smallest
    distances of each real image to all real images, self included, ascending.

    Only block pairs I <= J are scored: pair (I, J) serves the rows of I against J and, through
    its transpose, the rows of J against I, halving the GEMM work. With ``patients`` (N,) int
    codes, only pairs of different patients are seen (the mask is applied inside each block's
    reduction): see :func:`patient_radii_graph`.
    """
    blocks, offsets = _block_keys(real)
    nb = len(blocks)
    token = tokenize(real, metric, centre, nearest_k, backend, patients)
    g = _Graph(f"real-radii-{token}", [real])
    centre_key = g.value((f"centre-{token}",), centre)
    codes = [None] * nb if patients is None else g.block_values("patients", patients, real)
    pairs = [(i, j) for i in range(nb) for j in range(i, nb)]
    for i, j in pairs:
        g.task(
            (f"real-radii-candidates-{token}", i, j),
            _radii_candidates,
            blocks[i],
            blocks[j],
            offsets[i],
            offsets[j],
            i == j,
            metric,
            centre_key,
            nearest_k,
            backend,
            codes[i],
            codes[j],
        )
    # Block i is the rows of (i, j >= i) (side 0) and the transposed rows of (j < i, i) (side 1).
    keys = [[(i, j) for j in range(i, nb)] + [(j, i) for j in range(i)] for i in range(nb)]
    sides = [[0] * (nb - i) + [1] * i for i in range(nb)]
    for i in range(nb):
        g.task(
            (f"real-radii-select-{token}", i),
            _radii_select,
            [(f"real-radii-candidates-{token}", *k) for k in keys[i]],
            sides[i],
            nearest_k,
        )
    for i, j in pairs:
        g.task(
            (f"real-radii-exact-{token}", i, j),
            _radii_exact,
            blocks[i],
            blocks[j],
            offsets[i],
            offsets[j],
            i == j,
            metric,
            (f"real-radii-select-{token}", i),
            (f"real-radii-select-{token}", j),
        )
    merged = [
        g.task(
            (f"real-radii-merge-{token}", i),
            _radii_merge,
            [(f"real-radii-exact-{token}", *k) for k in keys[i]],
            sides[i],
            real.chunks[0][i],
            nearest_k,
        )
        for i in range(nb)
    ]
    return g.outputs(merged)


# --- real x synthetic: per-real counts and per-synthetic results ---------------------------


def _compare(x, y, smallest, margin, nearest_k, offset, metric, centre, backend):
    block = get_metric(metric).block_bounds(x, y, centre, backend=backend)
    return compare_block(block, smallest[:, nearest_k], smallest[:, 1] + margin, offset)


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
    nearest_k: int,
    metric: str,
    centre,
    backend: str,
) -> tuple[list[Delayed], list[Delayed]]:
    """Per real block a Delayed RealPartial, per synthetic block a Delayed SyntheticPartial.

    ``smallest`` holds, per real block, the (rows, nearest_k + 1) smallest real distances
    (Delayed or NumPy): column ``nearest_k`` is radius_k, column 1 is radius_1.
    """
    real_blocks, offsets = _block_keys(real)
    synth_blocks, _ = _block_keys(synthetic)
    token = tokenize(real, synthetic, smallest, margin, nearest_k, metric, centre, backend)
    g = _Graph(f"compare-{token}", [real, synthetic])
    centre_key = g.value((f"centre-{token}",), centre)
    radii = g.input_keys(smallest)
    grid = [
        [
            g.task(
                (f"compare-real-synthetic-{token}", i, j),
                _compare,
                x,
                y,
                radii[i],
                margin,
                nearest_k,
                offsets[i],
                metric,
                centre_key,
                backend,
            )
            for j, y in enumerate(synth_blocks)
        ]
        for i, x in enumerate(real_blocks)
    ]
    per_real = [
        g.task((f"combine-per-real-{token}", i), _combine_real, row) for i, row in enumerate(grid)
    ]
    per_synthetic = []
    for j, y in enumerate(synth_blocks):
        merged = g.task(
            (f"select-per-synthetic-{token}", j), _select_synthetic, [row[j] for row in grid]
        )
        exact = [
            g.task(
                (f"exact-per-synthetic-{token}", i, j),
                _synthetic_exact,
                x,
                y,
                radii[i],
                margin,
                offsets[i],
                metric,
                merged,
            )
            for i, x in enumerate(real_blocks)
        ]
        per_synthetic.append(
            g.task(
                (f"combine-per-synthetic-{token}", j),
                _combine_synthetic,
                merged,
                exact,
                synthetic.chunks[0][j],
            )
        )
    outputs = g.outputs(per_real + per_synthetic)
    return outputs[: len(per_real)], outputs[len(per_real) :]
