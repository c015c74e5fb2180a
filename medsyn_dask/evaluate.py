"""The entry point of the neighbourhood method: features in, scores and per-image tables out.

``evaluate_features`` composes the pieces: input checks, one pass for statistics (centre,
finiteness, std), then one Dask graph for the real radii, the real x synthetic comparison and
the FID moments. ``real_neighbourhood`` computes the radii alone, to reuse them across several
synthetic groups.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import dask
import dask.array as da
import numpy as np
import pandas as pd

from .metrics import fid as fid_metric
from .metrics import scores
from .metrics.std import feature_std
from .neighbours import get_metric, graph
from .neighbours.backend import check_backend
from .neighbours.reductions import RealPartial, SyntheticPartial

#: Rows per block: a worker's peak memory grows with block_size**2 (about 40 bytes per pair).
DEFAULT_BLOCK_SIZE = 2048
#: Above this feature dimension the D x D covariances of FID are not formed.
DEFAULT_FID_MAX_DIM = 8192
#: Below this many real x synthetic pairs, FID of low-rank covariances uses the Gram matrix.
GRAM_MAX_PAIRS = 50_000_000


@dataclass(frozen=True)
class RealNeighbourhood:
    """The k-th-neighbour radii of a real set, reusable for several synthetic groups.

    Attributes:
        smallest: (N, k+1) float64, the k+1 smallest distances of each real image to all real
            images, self included, ascending.
        center: (D,) float64 centre of the Euclidean fast path (the real mean), None for Hamming.
        metric, nearest_k: the settings the radii were computed with.
    """

    smallest: np.ndarray
    center: np.ndarray | None
    metric: str
    nearest_k: int

    @property
    def radius_k(self) -> np.ndarray:
        """(N,) distance to the k-th nearest other real image."""
        return self.smallest[:, self.nearest_k]

    @property
    def radius_1(self) -> np.ndarray:
        """(N,) distance to the nearest other real image (0 for a duplicated image)."""
        return self.smallest[:, 1]


@dataclass
class EvaluationResult:
    """Scores of one synthetic set against a real set (METHOD.md, "Scores").

    ``per_synthetic`` has one row per synthetic image (in input order) with columns ``set``
    (copy / real / non-real), ``nearest_real`` (row index into the real set), ``distance`` (to
    that image), ``copy_ratio`` and ``privacy_score``. ``per_real`` has one row per real image
    with ``copies``, ``in_radius``, ``radius_k`` and ``radius_1``.
    """

    fidelity: float
    privacy: float
    precision_privacy: float
    std: float
    fid: float | None
    fid_reason: str | None
    copy_margin: float
    metric: str
    nearest_k: int
    radius_k: np.ndarray
    radius_1: np.ndarray
    per_synthetic: pd.DataFrame
    per_real: pd.DataFrame
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def set_counts(self) -> dict[str, int]:
        """Number of synthetic images in each set."""
        counts = self.per_synthetic["set"].value_counts()
        return {s: int(counts.get(s, 0)) for s in (scores.COPY, scores.REAL, scores.NON_REAL)}

    def to_dict(self) -> dict[str, Any]:
        """The scalar results and settings, JSON-serialisable (no per-image tables)."""
        return {
            "fidelity": self.fidelity,
            "privacy": self.privacy,
            "precision_privacy": self.precision_privacy,
            "std": self.std,
            "fid": self.fid,
            "fid_reason": self.fid_reason,
            "copy_margin": self.copy_margin,
            "mode_collapse": self.copy_margin > 0,
            "metric": self.metric,
            "nearest_k": self.nearest_k,
            "n_real": int(len(self.per_real)),
            "n_synthetic": int(len(self.per_synthetic)),
            "sets": self.set_counts,
            **self.settings,
        }


def as_features(array: Any, name: str, block_size: int, keep: list | None = None) -> da.Array:
    """A NumPy, Dask or Zarr (or any array-like) (n, D) array as a Dask array in row blocks.

    With a distributed Client, NumPy blocks are scattered to the workers; their futures are
    appended to ``keep``, which the caller holds until its computation is done.
    """
    if getattr(array, "ndim", None) is None:
        array = np.asarray(array)
    if array.ndim != 2:
        raise ValueError(f"{name}: features must be 2-D (images x dimensions), got {array.shape}")
    if isinstance(array, da.Array):
        darr = array
    elif isinstance(array, np.ndarray):
        darr = _from_numpy(array, block_size, keep)
    else:  # Zarr, h5py, ...: read block by block on the workers
        darr = da.from_array(array, chunks=(block_size, -1), asarray=True)
    if darr.shape[0] == 0 or darr.shape[1] == 0:
        raise ValueError(f"{name}: features are empty (shape {darr.shape})")
    return darr.rechunk({0: block_size, 1: -1})


def _from_numpy(array: np.ndarray, block_size: int, keep: list | None) -> da.Array:
    """Row blocks of an in-memory array; sent to the workers once when a Client is active,
    rather than embedded in every graph."""
    try:
        from distributed import get_client

        client = get_client()
    except (ImportError, ValueError):
        return da.from_array(array, chunks=(block_size, -1))
    if len(array) == 0 or keep is None:
        return da.from_array(array, chunks=(block_size, -1))
    blocks = [array[s : s + block_size] for s in range(0, len(array), block_size)]
    futures = client.scatter(blocks, hash=False)  # fresh keys: no race with a release
    keep.extend(futures)  # released futures would take their data with them
    parts = [
        da.from_delayed(f, shape=b.shape, dtype=array.dtype)
        for f, b in zip(futures, blocks, strict=True)
    ]
    return da.concatenate(parts, axis=0) if len(parts) > 1 else parts[0]


def _check_settings(metric: str, nearest_k: int, threshold: float, block_size: int, backend: str):
    get_metric(metric)
    check_backend(backend)
    if not isinstance(nearest_k, (int, np.integer)) or nearest_k < 1:
        raise ValueError(f"nearest_k must be a positive integer, got {nearest_k!r}")
    if not np.isfinite(threshold) or threshold < 0:
        raise ValueError(f"mode_collapse_threshold must be finite and >= 0, got {threshold!r}")
    if block_size < 2:
        raise ValueError(f"block_size must be at least 2, got {block_size!r}")


def _check_real(real: da.Array, metric: str, nearest_k: int) -> None:
    get_metric(metric).validate("real", real)
    n = real.shape[0]
    if n < 2:
        raise ValueError(f"real: at least 2 real images are needed, got {n}")
    if nearest_k >= n:
        raise ValueError(
            f"nearest_k={nearest_k} must be smaller than the number of real images {n}"
        )


def _check_finite(arrays: dict[str, da.Array], flags: list[bool]) -> None:
    """Raise ValueError naming the array and first row holding NaN or Inf."""
    for (name, array), ok in zip(arrays.items(), flags, strict=True):
        if not ok:
            row = int(da.argmin(da.isfinite(array).all(axis=1)).compute())
            raise ValueError(f"{name}: features contain NaN or Inf (first at row {row})")


def _finite_flag(array: da.Array) -> Any:
    return da.isfinite(array).all() if array.dtype.kind == "f" else True


def _compute(*objs: Any, progress: bool) -> tuple:
    """``dask.compute`` on the current scheduler, with a progress bar when asked."""
    if not progress:
        return dask.compute(*objs)
    try:
        from distributed import get_client
        from distributed import progress as show_progress

        client = get_client()
    except (ImportError, ValueError):
        from dask.diagnostics import ProgressBar

        with ProgressBar():
            return dask.compute(*objs)
    futures = client.compute(list(objs))
    show_progress(futures)
    return tuple(client.gather(futures))


def real_neighbourhood(
    real: Any,
    *,
    metric: str = "euclidean",
    nearest_k: int = 5,
    block_size: int = DEFAULT_BLOCK_SIZE,
    backend: str = "auto",
    progress: bool = False,
) -> RealNeighbourhood:
    """The k-th-neighbour radii of ``real`` (N x D), block by block (see RealNeighbourhood)."""
    _check_settings(metric, nearest_k, 0.0, block_size, backend)
    keep: list = []
    real = as_features(real, "real", block_size, keep)
    _check_real(real, metric, nearest_k)
    ok, center = _compute(_finite_flag(real), _lazy_center(real, metric), progress=progress)
    _check_finite({"real": real}, [ok])
    smallest = _compute(_radii(real, metric, center, nearest_k, backend), progress=progress)[0]
    return RealNeighbourhood(np.concatenate(smallest), center, metric, nearest_k)


def _lazy_center(real: da.Array, metric: str) -> da.Array | None:
    """The centre of the Euclidean fast path (the real mean, float64), lazily; None otherwise."""
    return real.astype("float64").mean(axis=0) if metric == "euclidean" else None


def _radii(real: da.Array, metric: str, center, nearest_k: int, backend: str) -> list:
    return graph.radii_graph(real, metric, center, nearest_k + 1, backend)


def evaluate_features(
    real: Any,
    synthetic: Any,
    *,
    metric: str = "euclidean",
    nearest_k: int = 5,
    mode_collapse_threshold: float = 0.05,
    block_size: int = DEFAULT_BLOCK_SIZE,
    backend: str = "auto",
    compute_fid: bool = True,
    fid_max_dim: int = DEFAULT_FID_MAX_DIM,
    reference: RealNeighbourhood | None = None,
    progress: bool = False,
) -> EvaluationResult:
    """Fidelity, privacy and their per-image details of ``synthetic`` against ``real``.

    Args:
        real: (N, D) real features; NumPy, Dask or Zarr. Floats for ``metric="euclidean"``,
            integer codes for ``metric="hamming"`` (distance = fraction of differing positions).
        synthetic: (M, D) synthetic features, same kind.
        nearest_k: k of the k-th-neighbour radius (default 5, as the reference).
        mode_collapse_threshold: copy margin applied when the synthetic feature std is at most
            this value (METHOD.md, "Mode collapse").
        block_size: rows per block; bounds each worker's memory, whatever N and M are.
        backend: "auto" (torch on a worker's GPU, else NumPy), "numpy" or "torch".
        reference: radii from :func:`real_neighbourhood` on the same ``real``, to skip that pass.
        progress: show a progress bar (distributed's when a Client is active).

    Runs on the current Dask scheduler: a distributed Client's cluster when one is active.
    """
    _check_settings(metric, nearest_k, mode_collapse_threshold, block_size, backend)
    keep: list = []  # scattered inputs, held until the results are in
    real = as_features(real, "real", block_size, keep)
    synthetic = as_features(synthetic, "synthetic", block_size, keep)
    _check_real(real, metric, nearest_k)
    get_metric(metric).validate("synthetic", synthetic)
    if synthetic.shape[1] != real.shape[1]:
        raise ValueError(
            "real and synthetic features differ in dimension: "
            f"D={real.shape[1]} vs D={synthetic.shape[1]}"
        )
    _check_reference(reference, real, metric, nearest_k)

    center_lazy = None if reference is not None else _lazy_center(real, metric)
    flags_std = _compute(
        _finite_flag(real),
        _finite_flag(synthetic),
        feature_std(synthetic),
        center_lazy,
        progress=progress,
    )
    _check_finite({"real": real, "synthetic": synthetic}, list(flags_std[:2]))
    std = float(flags_std[2])
    center = reference.center if reference is not None else flags_std[3]
    margin = scores.copy_margin(std, mode_collapse_threshold)

    if reference is None:
        smallest_blocks = _radii(real, metric, center, nearest_k, backend)
    else:
        smallest_blocks = np.split(reference.smallest, np.cumsum(real.chunks[0])[:-1])
    per_real, per_synth = graph.compare_graph(
        real, synthetic, smallest_blocks, margin, nearest_k, metric, center, backend
    )
    fid_parts, fid_reason = _fid_graph(real, synthetic, metric, compute_fid, fid_max_dim)
    smallest, per_real, per_synth, fid_moments = _compute(
        smallest_blocks, per_real, per_synth, _lazy_moments(fid_parts), progress=progress
    )
    neighbourhood = RealNeighbourhood(np.concatenate(smallest), center, metric, nearest_k)
    return _assemble(
        neighbourhood,
        combine_blocks(per_real),
        combine_blocks(per_synth),
        std,
        margin,
        _fid_value(fid_parts, fid_moments),
        fid_reason,
        block_size,
    )


def feature_statistics(
    real: Any,
    synthetic: Any,
    *,
    metric: str = "euclidean",
    block_size: int = DEFAULT_BLOCK_SIZE,
    fid_max_dim: int = DEFAULT_FID_MAX_DIM,
) -> dict[str, float | str | None]:
    """``std`` of the synthetic features and ``fid`` (None, with ``fid_reason``, for codes).

    The per-(model, resolution) numbers behind MM-FID and MM-STD; no neighbourhoods.
    """
    get_metric(metric)
    keep: list = []
    real = as_features(real, "real", block_size, keep)
    synthetic = as_features(synthetic, "synthetic", block_size, keep)
    fid_parts, fid_reason = _fid_graph(real, synthetic, metric, True, fid_max_dim)
    std, fid_moments = dask.compute(feature_std(synthetic), _lazy_moments(fid_parts))
    fid = _fid_value(fid_parts, fid_moments)
    return {"std": float(std), "fid": fid, "fid_reason": fid_reason}


def _check_reference(reference, real: da.Array, metric: str, nearest_k: int) -> None:
    if reference is None:
        return
    if reference.metric != metric or reference.nearest_k != nearest_k:
        raise ValueError(
            f"reference was computed with metric={reference.metric!r}, nearest_k="
            f"{reference.nearest_k}; asked for metric={metric!r}, nearest_k={nearest_k}"
        )
    if len(reference.smallest) != real.shape[0]:
        raise ValueError(
            f"reference has radii for {len(reference.smallest)} real images, "
            f"real has {real.shape[0]}"
        )


def _fid_graph(real, synthetic, metric: str, compute_fid: bool, fid_max_dim: int):
    """Lazy FID moments, or None and the reason FID is not computed."""
    if metric != "euclidean":
        return None, "FID is not defined for discrete codes (Hamming metric)"
    if not compute_fid:
        return None, "FID not requested"
    dim, n_r, n_s = real.shape[1], real.shape[0], synthetic.shape[0]
    if n_r < 2 or n_s < 2:
        return None, "FID needs at least 2 images in each set"
    if min(n_r, n_s) < dim and n_r * n_s <= GRAM_MAX_PAIRS:
        return ("gram", real, synthetic), None  # low-rank covariances: see frechet_distance_gram
    if dim > fid_max_dim:
        return None, f"FID skipped: D={dim} exceeds fid_max_dim={fid_max_dim} (D x D covariances)"
    shift = real[0].astype("float64")
    return (fid_metric.moments(real, shift), fid_metric.moments(synthetic, shift), shift), None


def _lazy_moments(parts):
    """The part of the FID graph that joins the main computation (not the Gram route)."""
    return None if parts is None or parts[0] == "gram" else parts


def _fid_value(parts, moments) -> float | None:
    """FID from the computed moments, or by the Gram route (its own two passes)."""
    if parts is None:
        return None
    if parts[0] == "gram":
        return fid_metric.frechet_distance_gram(parts[1], parts[2])
    (sum_r, outer_r, n_r), (sum_s, outer_s, n_s), shift = moments
    fit_r = fid_metric.gaussian_fit(sum_r, outer_r, n_r, shift)
    fit_s = fid_metric.gaussian_fit(sum_s, outer_s, n_s, shift)
    return fid_metric.frechet_distance(fit_r, fit_s)


def combine_blocks(parts: list):
    """Concatenate per-block partial results (RealPartial or SyntheticPartial) in block order."""
    cls = type(parts[0])
    names = cls.__dataclass_fields__
    return cls(**{n: np.concatenate([getattr(p, n) for p in parts]) for n in names})


def _assemble(
    neighbourhood: RealNeighbourhood,
    per_real: RealPartial,
    per_synth: SyntheticPartial,
    std: float,
    margin: float,
    fid: float | None,
    fid_reason: str | None,
    block_size: int,
) -> EvaluationResult:
    is_real, is_copy = per_synth.is_real, per_synth.is_copy
    synthetic_table = pd.DataFrame(
        {
            "set": scores.assign_sets(is_real, is_copy),
            "nearest_real": per_synth.nearest_real,
            "distance": per_synth.nearest_distance,
            "copy_ratio": per_synth.copy_ratio,
            "privacy_score": scores.privacy_scores(is_copy),
        }
    )
    real_table = pd.DataFrame(
        {
            "copies": per_real.copies,
            "in_radius": per_real.in_radius,
            "radius_k": neighbourhood.radius_k,
            "radius_1": neighbourhood.radius_1,
        }
    )
    return EvaluationResult(
        fidelity=scores.fidelity(is_real),
        privacy=scores.privacy(is_copy),
        precision_privacy=scores.precision_privacy(is_real, is_copy),
        std=std,
        fid=fid,
        fid_reason=fid_reason,
        copy_margin=margin,
        metric=neighbourhood.metric,
        nearest_k=neighbourhood.nearest_k,
        radius_k=neighbourhood.radius_k,
        radius_1=neighbourhood.radius_1,
        per_synthetic=synthetic_table,
        per_real=real_table,
        settings={"block_size": block_size},
    )
