"""In-process neighbourhoods for features in this process's memory: the block maths of
:mod:`.graph` run in a thread pool, without a graph, a scheduler or a scatter.

For NumPy inputs a Dask graph costs more than it gives: the inputs are hashed and shipped, every
task recomputes its blocks' centred float32 forms, and a small problem waits on scheduling.
Here each block is prepared once (``metric.prepare``) and reused by every pair it is in, block
pairs run on one thread per core with one BLAS thread each, and the candidates of a block are
merged as soon as its pairs are done. The block functions are the graph's (``block_bounds``,
``smallest_candidates``, ``keep_smallest``, ``compare_block``, ``merge_synthetic``,
``exact_distances``...), so results are the same to the last bit; a diagonal block of the real
pass takes the metric's ``symmetric_candidates`` where it has one (the same candidates from
half the work), and a pair needed twice (both ways among the real radii, or as the nearest
real image and the smallest copy ratio of a synthetic one) gets its exact distance once.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from contextlib import ExitStack
from typing import Any

import numpy as np

from ..progress import Counter
from .exact_pairs import exact_once, exact_unordered
from .layout import (  # noqa: F401 (block_starts, column_starts: the runner's layout)
    LOCAL_BLOCK,
    MIN_LOCAL_BLOCK,
    block_starts,
    column_starts,
    device_layout,
    equal_cuts,
    larger_first,
    radii_tasks,
    useful_threads,
)
from .reductions import (
    Candidates,
    RealPartial,
    SyntheticPartial,
    column_minimum,
    combine_real,
    compare_block,
    keep_smallest,
    merge_synthetic,
    smallest_candidates,
    smallest_values,
)
from .registry import get_metric
from .summary import summary as feature_summary
from .threads import counted, one_gemm_thread, pool, short_switch_interval, threads

#: With a distributed Client active, in-memory inputs of at most this many blocks of
#: ``block_size`` rows (real and synthetic each) still run here: shipping them costs more.
LOCAL_BLOCKS = 4

#: Comparison block pairs per thread scored while the radii pass ends (:meth:`Runner.radii`),
#: each holding its scores (16 MiB at LOCAL_BLOCK rows; on a GPU, there) until the radii are known.
AHEAD_PER_THREAD = 1

#: Lazy inputs (Dask, Zarr) of at most LOCAL_BLOCKS blocks and this many bytes each are read
#: into this process and computed here (:func:`in_memory_when_small`).
LOCAL_BYTES = 256 * 2**20


def in_memory_when_small(
    arrays: Sequence[Any], block_size: int, scheduler: str | None = None
) -> list[Any]:
    """``arrays`` as NumPy when each is a 2-D array of at most LOCAL_BLOCKS blocks of
    ``block_size`` rows and LOCAL_BYTES bytes; else as given.

    Features loaded from a store are Dask arrays; a small problem would pay a graph of tasks
    and a scatter for work that takes this process a fraction of a second. Lazy arrays are read
    in one ``dask.compute`` on ``scheduler`` (default: the current one, the cluster when a
    Client is active: a graph of the user's may live there; "threads" reads a store this
    process reaches here); NumPy arrays are passed through.
    """
    shapes = [getattr(a, "shape", ()) for a in arrays]
    small = all(
        len(shape) == 2
        and shape[0] <= LOCAL_BLOCKS * block_size
        and math.prod(shape) * np.dtype(a.dtype).itemsize <= LOCAL_BYTES
        for a, shape in zip(arrays, shapes, strict=True)
    )
    lazy = [i for i, a in enumerate(arrays) if not isinstance(a, np.ndarray)]
    if not small or not lazy:
        return list(arrays)
    import dask
    import dask.array as da

    read = dask.compute(*(_as_dask(arrays[i], da) for i in lazy), scheduler=scheduler)
    out = list(arrays)
    for i, array in zip(lazy, read, strict=True):
        out[i] = np.asarray(array)
    return out


def _as_dask(array: Any, da: Any) -> Any:
    return array if isinstance(array, da.Array) else da.from_array(array, chunks=array.shape)


def runs_here(arrays: Sequence[Any], block_size: int) -> bool:
    """True when ``arrays`` are NumPy arrays that should be computed in this process.

    Dask, Zarr and other lazy arrays keep the graph (their blocks are read where they are
    computed). NumPy arrays run here unless a distributed Client is active and they are larger
    than LOCAL_BLOCKS blocks: then the cluster's cores pay for the scatter.
    """
    if not all(isinstance(a, np.ndarray) and a.ndim == 2 for a in arrays):
        return False
    if max(len(a) for a in arrays) <= LOCAL_BLOCKS * block_size:
        return True
    try:
        from distributed import get_client

        get_client()
    except (ImportError, ValueError):
        return True
    return False


class Runner:
    """One thread per core, fewer for a small problem (BLAS held to one thread each), for the
    passes of one evaluation; each array's blocks are prepared once and shared by both passes.
    Scores kept on a GPU take fewer threads and larger blocks (:data:`.layout.DEVICE_SCALE`).

    ``with Runner(metric, centre, backend) as run: run.radii(real, k); run.compare(...)``.
    """

    def __init__(
        self,
        metric: str,
        centre: np.ndarray | None,
        backend: str,
        *,
        block_size: int = LOCAL_BLOCK,
        progress: bool = False,
        work: float | None = None,
    ) -> None:
        self.kind, self.centre, self.backend = get_metric(metric), centre, backend
        self.progress = progress
        if getattr(self.kind, "scores_on_device", lambda backend: False)(backend):
            self.block_size, self.n_threads = device_layout(block_size, threads())
        else:  # a thread's block of scores: LOCAL_BLOCK^2 at most. work: the problem's GEMM
            # multiply-adds (layout.pass_work); a small one takes fewer threads than cores.
            self.block_size = min(block_size, LOCAL_BLOCK)
            self.n_threads = threads() if work is None else useful_threads(work, threads())
        self._prepared: dict[int, tuple[np.ndarray, list, list]] = {}
        self._ahead: dict[tuple[int, int], Future] = {}
        self._ahead_of: tuple[int, int] | None = None  # ids of the arrays _ahead scores

    def __enter__(self) -> Runner:
        self._stack = ExitStack()
        if self.n_threads > 1:
            self._stack.enter_context(one_gemm_thread())
            self._stack.enter_context(short_switch_interval())
        self._pool = pool(self.n_threads)
        return self

    def __exit__(self, *exc: object) -> None:
        self._drop_ahead()  # an error stopped the comparison: free its scores
        self._prepared.clear()
        self._stack.close()

    def map(self, fn: Callable, items) -> list:
        """``[fn(item) for item in items]`` on the pool's threads."""
        return list(self._pool.map(fn, items))

    def blocks(
        self, array: np.ndarray, starts: list[int] | None = None, forms: str = "left"
    ) -> tuple[list[tuple[int, int]], list]:
        """(start, stop) of each row block of ``array`` and the block prepared for the metric.

        ``starts`` (as :func:`block_starts`) splits an array not prepared yet (default
        :func:`block_starts`); ``forms``: the sides of block pairs its blocks are on ("left",
        "right", or "radii": the first block on the left, the others on both sides). An
        array already prepared keeps its blocks."""
        key = id(array)
        if key not in self._prepared:  # the array is kept with its entry: ids stay unique
            if starts is None:
                starts = block_starts(len(array), self.block_size, self.n_threads)
            spans = list(zip(starts[:-1], starts[1:], strict=True))
            sides = [forms] * len(spans)
            if forms == "radii":  # pair (i, j) scores block i on the left, j > i on the right
                sides = ["left"] + ["both"] * (len(spans) - 1)
            prepared = self._prepare(array, spans, sides)
            self._prepared[key] = (array, spans, prepared)
        return self._prepared[key][1], self._prepared[key][2]

    def _prepare(self, array: np.ndarray, spans: list[tuple[int, int]], sides: list[str]) -> list:
        """Each block of ``array`` prepared: one block per thread, or, with fewer blocks than
        threads (the wide synthetic blocks of a small comparison), each on every thread."""
        backend = self.backend
        if len(spans) >= self.n_threads:

            def one(k: int) -> Any:
                (a, b), forms = spans[k], sides[k]
                return self.kind.prepare(array[a:b], self.centre, forms=forms, backend=backend)

            return self.map(one, range(len(spans)))
        split = (self.map, self.n_threads)
        return [
            self.kind.prepare(array[a:b], self.centre, split, forms=forms, backend=backend)
            for (a, b), forms in zip(spans, sides, strict=True)
        ]

    def _scored(self, x, y):
        return self.kind.block_bounds(x, y, self.centre, backend=self.backend)

    def radii(
        self, real: np.ndarray, nearest_k: int, synthetic: np.ndarray | None = None
    ) -> np.ndarray:
        """(N, nearest_k + 1) float64: the nearest_k + 1 smallest distances of each real image
        to all real images, self included, ascending (as :func:`.graph.radii_graph`).

        Only block pairs I <= J are scored; pair (I, J) serves the rows of I and, through its
        transpose, the rows of J. With ``synthetic``, the first block pairs of its comparison
        (:meth:`compare`) are scored once the pairs of this pass are under way
        (:meth:`_score_ahead`): their scores need no radii, and they keep the threads busy
        while the last pairs of this pass finish and its candidates are merged.
        """
        spans, prepared = self.blocks(real, forms="radii")
        nb, n = len(spans), nearest_k + 1
        symmetric = getattr(self.kind, "symmetric_candidates", None)
        tasks = radii_tasks(spans, self.n_threads)

        def candidates(task: tuple[int, int, int, int]) -> tuple[Candidates, Candidates | None]:
            i, j, first, last = task  # rows first:last of block i with block j
            (oi, _), (oj, _) = spans[i], spans[j]
            if i == j and symmetric is not None:
                rows = symmetric(prepared[i], self.centre, n, backend=self.backend)
                return rows.shifted(rows=oi, cols=oi), None
            block = self._scored(self._rows(real, prepared[i], spans[i], first, last), prepared[j])
            # One selection pass serves both sides of an off-diagonal pair.
            rows, cols = smallest_candidates(block, n, columns=i != j)
            oi += first
            return rows.shifted(rows=oi, cols=oj), None if cols is None else cols.shifted(oj, oi)

        ahead = None if synthetic is None else functools.partial(self._score_ahead, real, synthetic)
        done = self._run_pairs("real radii", candidates, tasks, then=ahead)
        found: dict[tuple[int, int], list] = {}
        for (i, j, _, _), pair in done.items():
            found.setdefault((i, j), []).append(pair)

        def merge(i: int) -> Candidates:
            """The candidates of block i's rows in every pair that may be among its n smallest."""
            parts = [p[0] for j in range(i, nb) for p in found[(i, j)]]
            parts += [p[1] for j in range(i) for p in found[(j, i)]]
            return keep_smallest(Candidates.concat(parts), n)

        kept = self.map(merge, range(nb))
        pairs = [(k.row, k.col) for k in kept]
        values = exact_unordered(self.kind.exact_distances, real, pairs, self.map, self.n_threads)

        def smallest(i: int) -> np.ndarray:
            start, stop = spans[i]
            return smallest_values(kept[i].row - start, values[i], stop - start, n)

        return np.concatenate(self.map(smallest, range(nb)))

    def _rows(self, array: np.ndarray, prepared: Any, span: tuple[int, int], first: int, last: int):
        """Rows first:last of a prepared block (rows ``span`` of ``array``): the block, a view
        of it, or prepared again where the metric's prepared blocks are not sliced."""
        if (first, last) == (0, span[1] - span[0]):
            return prepared
        if hasattr(prepared, "__getitem__"):
            return prepared[first:last]
        rows = array[span[0] + first : span[0] + last]
        return self.kind.prepare(rows, self.centre, forms="left", backend=self.backend)

    def compare(
        self,
        real: np.ndarray,
        synthetic: np.ndarray,
        smallest: np.ndarray,
        margin: float,
        nearest_k: int,
    ) -> tuple[list[RealPartial], list[SyntheticPartial]]:
        """Per real block a RealPartial and per synthetic block a SyntheticPartial, as
        :func:`.graph.compare_graph` computes them; ``smallest`` is the (N, nearest_k + 1) array
        of :meth:`radii` (column ``nearest_k`` is radius_k, column 1 radius_1)."""
        copy_threshold = smallest[:, 1] + margin
        real_spans, real_blocks, synth_spans, synth_blocks, pairs = self._comparison(
            real, synthetic
        )
        ahead = self._take_ahead(real, synthetic)

        def reduce(pair: tuple[int, int]) -> tuple[RealPartial, Any]:
            i, j = pair
            scored = ahead.pop(pair, None)
            block = (
                self._scored(real_blocks[i], synth_blocks[j]) if scored is None else scored.result()
            )
            rows = slice(*real_spans[i])
            return compare_block(
                block, smallest[rows, nearest_k], copy_threshold[rows], real_spans[i][0]
            )

        found = self._run_pairs("real x synthetic", reduce, pairs)

        def per_synthetic(piece: tuple[int, int, int]) -> SyntheticPartial:
            j, first, last = piece  # columns first:last of synthetic block j
            parts = [found[(i, j)][1] for i in range(len(real_spans))]
            merged = merge_synthetic([p.columns(first, last) for p in parts])
            start, stop = synth_spans[j][0] + first, synth_spans[j][0] + last
            block, exact = synthetic[start:stop], self.kind.exact_distances
            near, ratio = merged.nearest, merged.ratio
            near_d, ratio_d = exact_once(
                exact, real, block, [(near.row, near.col), (ratio.row, ratio.col)]
            )
            ratio_d = ratio_d / copy_threshold[ratio.row]
            nearest_distance, nearest_real = column_minimum(
                near.col, near.row, near_d, stop - start
            )
            copy_ratio, _ = column_minimum(ratio.col, ratio.row, ratio_d, stop - start)
            return SyntheticPartial(
                merged.is_real, merged.is_copy, nearest_distance, nearest_real, copy_ratio
            )

        per_real = [
            combine_real([found[(i, j)][0] for j in range(len(synth_spans))])
            for i in range(len(real_spans))
        ]
        return per_real, self.map(per_synthetic, self._pieces(synth_spans))

    def _pieces(self, spans: list[tuple[int, int]]) -> list[tuple[int, int, int]]:
        """(block, first, last) column ranges that split ``spans`` into pieces that the threads
        share evenly: the exact distances of a few wide blocks then run on every core, and three
        blocks on two threads do not leave one thread the third alone (each is cut in two).
        Many blocks (four per thread) are not cut: their count evens out."""
        blocks = max(1, len(spans))
        threads = self.n_threads
        split = 1 if blocks >= 4 * threads else threads // math.gcd(blocks, threads)
        out = []
        for j, (start, stop) in enumerate(spans):
            out += [(j, a, b) for a, b in equal_cuts(stop - start, split) if b > a]
        return out

    def _comparison(self, real: np.ndarray, synthetic: np.ndarray) -> tuple:
        """(real spans, real blocks, synthetic spans, synthetic blocks, block pairs largest
        first) of the comparison of ``synthetic`` with ``real``, the blocks prepared."""
        real_spans, real_blocks = self.blocks(real)
        wide = column_starts(len(synthetic), len(real_spans), self.block_size, self.n_threads)
        synth_spans, synth_blocks = self.blocks(synthetic, wide, forms="right")
        pairs = [(i, j) for i in range(len(real_spans)) for j in range(len(synth_spans))]
        pairs.sort(key=larger_first(real_spans, synth_spans))
        return real_spans, real_blocks, synth_spans, synth_blocks, pairs

    def _score_ahead(self, real: np.ndarray, synthetic: np.ndarray) -> None:
        """Queue the scores of the comparison's first AHEAD_PER_THREAD pairs per thread (the
        largest) behind the pool's tasks, for :meth:`compare` to take (replacing any queued
        for an earlier call)."""
        self._drop_ahead()
        _, real_blocks, _, synth_blocks, pairs = self._comparison(real, synthetic)
        self._ahead_of = (id(real), id(synthetic))  # both kept alive by self._prepared
        for i, j in pairs[: AHEAD_PER_THREAD * self.n_threads]:
            self._ahead[(i, j)] = self._pool.submit(self._scored, real_blocks[i], synth_blocks[j])

    def _take_ahead(self, real: np.ndarray, synthetic: np.ndarray) -> dict[tuple[int, int], Future]:
        """The scores queued ahead for the comparison of these arrays (none for others)."""
        if self._ahead_of != (id(real), id(synthetic)):
            self._drop_ahead()
        ahead, self._ahead, self._ahead_of = self._ahead, {}, None
        return ahead

    def _drop_ahead(self) -> None:
        """Cancel the scores queued ahead (those running finish) and forget them."""
        for scored in self._ahead.values():
            scored.cancel()
        self._ahead, self._ahead_of = {}, None

    def _run_pairs(
        self, label: str, fn: Callable, pairs: list, then: Callable[[], None] | None = None
    ) -> dict:
        """{pair: fn(pair)} computed on the pool; ``then()`` is called in this thread once
        every pair is queued (it may queue more work behind them). An error or Ctrl-C here
        cancels the pairs not started, as ``Executor.map`` does."""
        with Counter(label, len(pairs), "block pairs", enabled=self.progress) as counter:
            step = counted(fn, counter)
            queued = [self._pool.submit(step, pair) for pair in pairs]
            try:
                if then is not None:
                    then()
                return {pair: done.result() for pair, done in zip(pairs, queued, strict=True)}
            except BaseException:
                for done in queued:
                    done.cancel()
                raise


def summary(
    real: np.ndarray, synthetic: np.ndarray, metric: str
) -> tuple[bool, bool, float, np.ndarray | None]:
    """(real finite, synthetic finite, synthetic feature std, centre) of in-memory features
    (:func:`.summary.summary`), on one thread per core."""
    return feature_summary(real, synthetic, metric, pool(threads()).map)
