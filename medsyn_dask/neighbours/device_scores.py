"""Score blocks kept where torch computed them (a GPU's memory): the full passes of
:mod:`.scans` in torch, and only the selected pairs back on the host.

With torch on a device (``backend="torch"``, or ``"auto"`` on a worker with a GPU) the float32
GEMM of a block (:func:`.euclidean.block_bounds`) leaves its (n_x, n_y) scores on the device
as a :class:`DeviceScores`. The reductions' passes over every pair of the block (the k-th
smallest score of each row and column, the column minima, the pairs at most per-row and
per-column limits) run there; the host gets a few values per row and column, and the scores of
the selected pairs (a few per row). The limits are still computed on the host, in float64 from
the envelopes, and cast to float32 as for NumPy scores; the device compares the same float32
values with the same float32 limits (and multiplies by the same float32 weights, one IEEE
rounding), so it selects the same pairs, in the same row-major order, and every decision is
then made by the same host code on bounds and exact distances.

Anything else that reads the block as an array (``np.asarray``, a slice, a comparison) gets the
values copied to the host: correct everywhere, fast where the passes above are all it needs. So
does a pass for which the GPU has no room left (:func:`on_device`). Scores are finite or +inf
(masked pairs): the engine refuses non-finite features, and NaN does not get the NumPy scans'
meaning here. On torch's CPU the scores come back as NumPy (the compiled scans beat torch's
there); the tests keep them in CPU tensors to run this module's code.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


class DeviceScores:
    """(n_x, n_y) float32 scores in a torch tensor, read as the reductions read a NumPy block.

    ``tensor``: the scores, on any torch device. Indexing with two integer arrays gathers the
    pairs there and returns them as NumPy; other reads copy the block (or its rows) to the host.
    """

    def __init__(self, tensor: Any) -> None:
        self.tensor = tensor

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.tensor.shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.float32)

    @property
    def ndim(self) -> int:
        return 2

    def __len__(self) -> int:
        return self.shape[0]

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        host = self.tensor.cpu().numpy()
        return host if dtype is None else host.astype(dtype, copy=False)

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, tuple) and len(key) == 2 and all(_is_index(k) for k in key):
            rows, cols = (self._upload(k, np.int64) for k in key)
            return _host(self.tensor[rows, cols])
        if _is_index(key):
            return _host(self.tensor[self._upload(key, np.int64)])
        return np.asarray(self)[key]

    def __le__(self, other: Any) -> np.ndarray:
        return _host(self.tensor <= self._upload(other))

    def __lt__(self, other: Any) -> np.ndarray:
        return _host(self.tensor < self._upload(other))

    def min(self, axis: int) -> np.ndarray:
        return _host(self.tensor.amin(dim=axis))

    def max(self, axis: int) -> np.ndarray:
        return _host(self.tensor.amax(dim=axis))

    def transposed(self) -> DeviceScores:
        """The (n_y, n_x) block, row-major on the device."""
        return DeviceScores(self.tensor.T.contiguous())

    def masked(self, allowed: np.ndarray) -> DeviceScores:
        """The block with +inf where ``allowed`` (n_x, n_y) bool is False."""
        inf = self.tensor.new_tensor(float("inf"))
        return DeviceScores(self.tensor.where(self._upload(allowed), inf))

    # --- the passes of :mod:`.scans` (same names, same arguments after the scores) ------------

    def kth_upper_bounds(
        self, n: int, sides: tuple[bool, bool] = (True, True)
    ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """As :func:`.scans.kth_upper_bounds`: the ``n``-th smallest itself, of the rows and
        of the columns where ``sides`` asks (None for a side not asked)."""
        return tuple(
            self.kth_smallest(n, axis) if wanted else None
            for wanted, axis in zip(sides, (1, 0), strict=True)
        )

    def kth_smallest(self, n: int, axis: int) -> np.ndarray:
        """The ``n``-th smallest score of each row (``axis=1``) or column (``axis=0``); +inf
        where fewer than ``n`` are finite or the axis has fewer than ``n`` entries."""
        if self.shape[axis] < n:
            return np.full(self.shape[1 - axis], np.inf, np.float32)
        smallest = self.tensor.topk(n, dim=axis, largest=False, sorted=True).values
        return _host(smallest.select(axis, n - 1))

    def column_minima(
        self, weight: np.ndarray, shared: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """As :func:`.scans.column_minima`: per column the smallest score and the smallest
        ``score * weight[row]`` (float32) over the ``shared`` rows (+inf without one)."""
        t, none = self.tensor, np.full(self.shape[1], np.inf, np.float32)
        if t.shape[0] == 0:
            return none, none.copy()
        rows = self._upload(np.flatnonzero(shared))
        if len(rows) == 0:
            return self.min(axis=0), none
        w = self._upload(weight, np.float32)[rows]
        return self.min(axis=0), _host((t[rows] * w[:, None]).amin(dim=0))

    def select(
        self,
        row_limit: np.ndarray,
        col_limit: np.ndarray | None = None,
        weight: np.ndarray | None = None,
        ratio_limit: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """As :func:`.scans.select`: (rows, cols), row-major, of the pairs at most their row's
        or column's limit, or whose scaled score is at most its column's ratio limit (float32
        limits; None: no such test)."""
        t = self.tensor
        keep = t <= self._upload(row_limit, np.float32)[:, None]
        if col_limit is not None:
            keep |= t <= self._upload(col_limit, np.float32)[None, :]
        if weight is not None and ratio_limit is not None and (ratio_limit > -np.inf).any():
            w, q = (self._upload(a, np.float32) for a in (weight, ratio_limit))
            keep |= t * w[:, None] <= q[None, :]
        return self._pairs(keep)

    def scaled_below(
        self, weight: np.ndarray, rows: np.ndarray, limit: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """As :func:`.scans.scaled_below`: the pairs of the ``rows`` (bool) with ``score *
        weight[row] <= limit[col]`` in float32."""
        w, q = (self._upload(a, np.float32) for a in (weight, limit))
        keep = (self.tensor * w[:, None] <= q[None, :]) & self._upload(rows)[:, None]
        return self._pairs(keep)

    # --- transfers ---------------------------------------------------------------------------

    def _pairs(self, keep: Any) -> tuple[np.ndarray, np.ndarray]:
        found = _host(keep.nonzero())
        return found[:, 0].copy(), found[:, 1].copy()

    def _upload(self, values: Any, dtype: type | None = None) -> Any:
        """``values`` (NumPy, or a tensor) on the scores' device; NumPy cast to ``dtype``."""
        import torch

        if isinstance(values, torch.Tensor):
            return values.to(self.tensor.device)
        array = np.ascontiguousarray(values, dtype)
        return torch.from_numpy(array).to(self.tensor.device)


def on_device(scan: Callable) -> Callable:
    """A scan of :mod:`.scans` that reads scores left on a GPU there (the
    :class:`DeviceScores` method of its name); where the GPU has no room for the pass's
    temporaries (the workers' models beside it), on the block copied to the host instead,
    with a warning (once a process)."""

    @functools.wraps(scan)
    def read(score: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(score, DeviceScores):
            import torch

            try:
                return getattr(score, scan.__name__)(*args, **kwargs)
            except torch.cuda.OutOfMemoryError as exc:  # the name since torch 1.13
                no_room(exc)
            score = np.asarray(score)
        return scan(score, *args, **kwargs)

    return read


def no_room(exc: BaseException) -> None:
    """Log, once a process, that a block's work went to the CPU for want of GPU memory."""
    global _warned
    if not _warned:
        _warned = True
        log.warning("neighbour blocks on the CPU: no room on the GPU (%s)", exc)


_warned = False


def _is_index(key: Any) -> bool:
    """An integer array (or list) of indices, as the reductions' gathers pass them."""
    return isinstance(key, np.ndarray | list) and np.asarray(key).dtype.kind in "iu"


def _host(tensor: Any) -> np.ndarray:
    return tensor.cpu().numpy()
