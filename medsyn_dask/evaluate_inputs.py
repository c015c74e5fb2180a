"""The inputs of the neighbourhood method: features as row-blocked Dask arrays, and their checks.

:func:`scattered_inputs` turns NumPy, Dask or Zarr (n, D) arrays into Dask arrays in row
blocks and owns the blocks it scatters to a distributed cluster until its ``with`` ends.
:func:`check_options` and :func:`check_features` are the one set of checks that every entry
point of :mod:`medsyn_dask.evaluate` applies; each raises
:class:`~medsyn_dask.errors.SettingsError` naming the offending value.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dask.array as da
import numpy as np

from .checks import check_int, check_nearest_k_below, check_number
from .errors import SettingsError
from .metrics.fid_linalg import RealFID
from .neighbours import get_metric
from .neighbours.backend import check_backend
from .neighbours.registry import max_row_norm


def array_like(features: Any) -> Any:
    """``features`` as given where it has a dtype (NumPy, Dask, Zarr...), else as NumPy: lists,
    pandas DataFrames (which have one dtype per column); in the machine's byte order (the
    compiled kernels take no other: big-endian codes stopped the Hamming pass)."""
    features = features if hasattr(features, "dtype") else np.asarray(features)
    dtype = np.dtype(features.dtype)
    if not dtype.isnative and hasattr(features, "astype"):
        return features.astype(dtype.newbyteorder("="))
    return features


@contextmanager
def scattered_inputs(
    arrays: dict[str, Any], block_size: int, *, scatter: bool = True
) -> Iterator[tuple[da.Array, ...]]:
    """The named (n, D) arrays as Dask arrays of ``block_size`` rows, in the given order.

    With a distributed Client, NumPy arrays are scattered to the workers once (rather than
    embedded in every graph); the futures are held until the ``with`` block ends, since
    released futures take their data with them. Zarr, h5py and other array-likes are read
    block by block on the workers; Dask arrays are rechunked. ``scatter=False``: NumPy arrays
    stay in this process, unhashed (for work computed here, :mod:`.neighbours.local`).
    """
    held: list | None = [] if scatter else None
    try:
        yield tuple(_as_features(a, name, block_size, held) for name, a in arrays.items())
    finally:
        for future in held or ():
            future.release()


def _as_features(array: Any, name: str, block_size: int, held: list | None) -> da.Array:
    array = array_like(array)
    if array.ndim != 2:
        raise SettingsError(
            f"{name}: features must be 2-D (images x dimensions), got {array.shape}"
        )
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise SettingsError(f"{name}: features are empty (shape {array.shape})")
    if isinstance(array, da.Array):
        darr = array
    elif isinstance(array, np.ndarray) and held is None:
        return _in_place(array, block_size)  # blocks of block_size rows already
    elif isinstance(array, np.ndarray):
        darr = _from_numpy(array, block_size, held)
    else:
        darr = da.from_array(array, chunks=(block_size, -1), asarray=True)
    return darr.rechunk({0: block_size, 1: -1})


def _in_place(array: np.ndarray, block_size: int) -> da.Array:
    """A Dask array whose blocks are views of ``array``: ``da.from_array`` copies the whole
    array first (tens of milliseconds per call for features computed in this process)."""
    name = f"in-memory-{uuid.uuid4().hex}"
    starts = range(0, len(array), block_size)
    graph = {(name, i, 0): array[s : s + block_size] for i, s in enumerate(starts)}
    rows = tuple(min(block_size, len(array) - s) for s in starts)
    return da.Array(graph, name, chunks=(rows, (array.shape[1],)), dtype=array.dtype)


def _from_numpy(array: np.ndarray, block_size: int, held: list) -> da.Array:
    try:
        from distributed import get_client

        client = get_client()
    except (ImportError, ValueError):
        return da.from_array(array, chunks=(block_size, -1))
    blocks = [array[s : s + block_size] for s in range(0, len(array), block_size)]
    futures = client.scatter(blocks, hash=False)  # fresh keys: no race with a release
    held.extend(futures)
    parts = [
        da.from_delayed(f, shape=b.shape, dtype=array.dtype)
        for f, b in zip(futures, blocks, strict=True)
    ]
    return da.concatenate(parts, axis=0) if len(parts) > 1 else parts[0]


def check_options(
    metric: str,
    block_size: int,
    *,
    backend: str = "auto",
    nearest_k: int | None = None,
    threshold: float | None = None,
) -> None:
    """The settings of a call, before any input is touched (None: not an option of the call)."""
    get_metric(metric)
    check_backend(backend)
    check_int(block_size, "block_size", minimum=2)
    if nearest_k is not None:
        check_int(nearest_k, "nearest_k", minimum=1)
    if threshold is not None:
        check_number(threshold, "mode_collapse_threshold")


def check_features(
    real: da.Array, synthetic: da.Array | None, metric: str, nearest_k: int | None = None
) -> None:
    """Real (N, D) and synthetic (M, D) features suit ``metric``; N >= 2 and, when given,
    ``nearest_k < N``; the dimensions agree."""
    kind = get_metric(metric)
    kind.validate("real", real)
    n = real.shape[0]
    if n < 2:
        raise SettingsError(f"real: at least 2 real images are needed, got {n}")
    if nearest_k is not None:
        check_nearest_k_below(nearest_k, n)
    if synthetic is None:
        return
    kind.validate("synthetic", synthetic)
    if hasattr(kind, "validate_pair"):
        kind.validate_pair(real, synthetic)
    if synthetic.shape[1] != real.shape[1]:
        raise SettingsError(
            "real and synthetic features differ in dimension: "
            f"D={real.shape[1]} vs D={synthetic.shape[1]}"
        )


def check_reference(reference: Any, real: da.Array, metric: str, nearest_k: int) -> None:
    """A RealNeighbourhood computed with these settings on a real set of this size."""
    if reference is None:
        return
    if reference.metric != metric or reference.nearest_k != nearest_k:
        raise SettingsError(
            f"reference was computed with metric={reference.metric!r}, nearest_k="
            f"{reference.nearest_k}; asked for metric={metric!r}, nearest_k={nearest_k}"
        )
    if len(reference.smallest) != real.shape[0]:
        raise SettingsError(
            f"reference has radii for {len(reference.smallest)} real images, "
            f"real has {real.shape[0]}"
        )
    check_real_statistics(reference.fid_statistics, real)


def check_real_statistics(statistics: RealFID | None, real: da.Array) -> None:
    """FID statistics of a real set of this shape (same image count and dimension)."""
    if statistics is None:
        return
    shape = (statistics.n_images, statistics.dim)
    if shape != real.shape:
        raise SettingsError(
            f"real FID statistics are of {shape[0]} images x {shape[1]} dimensions, "
            f"real has {real.shape[0]} x {real.shape[1]}"
        )


def finite_flag(array: da.Array) -> Any:
    """Lazy "every value is finite" (True for integer features)."""
    return da.isfinite(array).all() if array.dtype.kind == "f" else True


def usable_flag(array: da.Array, metric: str) -> Any:
    """Lazy "fit for ``metric``'s engine": :func:`finite_flag`, and where the metric has a
    ``MAX_ROW_NORM`` (Euclidean), every row's norm at most that."""
    limit = max_row_norm(metric)
    if limit is None:
        return finite_flag(array)
    return da.logical_and(finite_flag(array), _square_norms(array).max() <= limit * limit)


def _square_norms(array: da.Array) -> da.Array:
    as64 = array.astype("float64")
    return (as64 * as64).sum(axis=1)


def check_finite(arrays: dict[str, da.Array], flags: list[bool], metric: str | None = None) -> None:
    """SettingsError naming the array and first row holding NaN or Inf, or (with ``metric``)
    the first row whose norm is above the metric's ``MAX_ROW_NORM``, where a flag is False
    (:func:`finite_flag`, :func:`usable_flag`)."""
    for (name, array), ok in zip(arrays.items(), flags, strict=True):
        if ok:
            continue
        if array.dtype.kind == "f":
            finite = np.asarray(da.isfinite(array).all(axis=1))  # (N,): computed once
            if not finite.all():
                row = int(np.argmin(finite))
                raise SettingsError(f"{name}: features contain NaN or Inf (first at row {row})")
        limit = max_row_norm(metric) if metric else None
        if limit is not None:
            norms = np.asarray(_square_norms(array))
            row = int(np.argmax(norms > limit * limit))
            norm = float(np.sqrt(norms[row]))
            raise SettingsError(
                f"{name}: row {row} has norm {norm:.3g}, above the {limit:.3g} that the "
                f"{metric} engine holds (its first pass squares distances in float32); "
                "scale the features down: a power of two such as 2**-40 scales every distance "
                "exactly"
            )


def lazy_centre(real: da.Array, metric: str) -> da.Array | None:
    """The centre of the Euclidean fast path (the real mean, float64), lazily; None otherwise."""
    return real.astype("float64").mean(axis=0) if metric == "euclidean" else None
