"""Fréchet distance between Gaussians fitted to real and synthetic features (METHOD.md, ``fid``).

:func:`plan_fid` chooses how FID is computed and returns an :class:`FIDPlan`: its ``lazy``
part (Dask arrays) joins the caller's one ``dask.compute``, its :meth:`FIDPlan.finish` is plain
NumPy (:mod:`.fid_linalg`). Routes:

- ``covariance``: per set, one pass for the sums of ``x - shift`` and of their outer products,
  shifted by one of the set's own rows so that features far from the origin keep their
  precision; the real side may come ready-made from a :class:`RealFID` (computed once per run
  by :func:`real_fid_plan`), so that each group pays only its own pass;
- ``gram``: with fewer images than dimensions (pixels of 3D volumes, say) the covariances are
  low rank; the n_r x n_s matrix of dot products gives the same value with no D x D matrix;
- ``none``: FID is not computed, with the reason (discrete codes, not requested, too few
  images, D above ``fid_max_dim``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import dask.array as da

from .fid_linalg import (
    GaussianFit,
    RealFID,
    frechet_distance,
    frechet_distance_sqrtm,
    gaussian_fit,
    gram_distance,
)

__all__ = [
    "DEFAULT_FID_MAX_DIM",
    "GRAM_MAX_PAIRS",
    "FIDPlan",
    "GaussianFit",
    "RealFID",
    "frechet_distance",
    "frechet_distance_sqrtm",
    "moments",
    "plan_fid",
    "real_fid_plan",
]

#: Above this feature dimension the D x D covariances of FID are not formed.
DEFAULT_FID_MAX_DIM = 8192
#: Below this many real x synthetic pairs, FID of low-rank covariances uses the Gram matrix.
GRAM_MAX_PAIRS = 50_000_000
ROUTES = ("covariance", "gram", "none")


def moments(features: da.Array) -> tuple[da.Array, da.Array, int, da.Array]:
    """Lazy sum (D,) and sum of outer products (D, D) of ``features - shift``, the count, and
    the shift (the first row, float64)."""
    shift = features[0].astype("float64")
    centred = features.astype("float64") - shift
    return centred.sum(axis=0), centred.T @ centred, features.shape[0], shift


def _row_sums(features: da.Array) -> tuple[da.Array, da.Array, da.Array, int, da.Array]:
    """The shifted features ``X`` (lazy), their sum over images (D,), sum of squares, count,
    and the shift (the first row, float64)."""
    shift = features[0].astype("float64")
    shifted = features.astype("float64") - shift
    return shifted, shifted.sum(axis=0), (shifted**2).sum(), features.shape[0], shift


@dataclass(frozen=True)
class FIDPlan:
    """How FID is computed for one (real, synthetic) pair: compute ``lazy``, then ``finish``.

    Attributes:
        route: one of ``ROUTES``.
        lazy: the Dask part, to pass to ``dask.compute`` with the caller's other work.
        reason: why FID is not computed (route ``none``), else None.
        real: the real side already computed (route ``covariance``), else None.
    """

    route: str
    lazy: tuple = ()
    reason: str | None = None
    real: RealFID | None = None

    def finish(self, computed: tuple) -> float | None:
        """FID from the computed ``lazy`` part (plain NumPy); None for route ``none``.

        A squared distance: where rounding leaves it below 0 (a set against itself, with
        ill-conditioned covariances: -5e-8 seen, as pytorch-fid's ``sqrtm`` gives), 0."""
        if self.route == "none":
            return None
        if self.route == "gram":
            (sum_r, sq_r, n_r, shift_r), (sum_s, sq_s, n_s, shift_s), gram = computed
            fid = gram_distance(shift_r, sum_r, sq_r, n_r, shift_s, sum_s, sq_s, n_s, gram)
        else:
            real = self.real if self.real is not None else self._real(computed[0])
            fid = real.distance(gaussian_fit(*computed[-1]))
        return max(0.0, float(fid))

    def finish_real(self, computed: tuple) -> RealFID | None:
        """The real side of a plan from :func:`real_fid_plan`, ready to reuse; None if none."""
        return None if self.route == "none" else self._real(computed[0])

    @staticmethod
    def _real(moments_r: tuple[Any, ...]) -> RealFID:
        return RealFID(gaussian_fit(*moments_r), n_images=int(moments_r[2]))


def _unavailable(metric: str, compute_fid: bool, n_r: int, n_s: int) -> str | None:
    if metric != "euclidean":
        return "FID is not defined for discrete codes (Hamming metric)"
    if not compute_fid:
        return "FID not requested"
    if n_r < 2 or n_s < 2:
        return "FID needs at least 2 images in each set"
    return None


def _too_wide(dim: int, fid_max_dim: int) -> str | None:
    if dim > fid_max_dim:
        return f"FID skipped: D={dim} exceeds fid_max_dim={fid_max_dim} (D x D covariances)"
    return None


def plan_fid(
    real: da.Array,
    synthetic: da.Array,
    *,
    metric: str,
    compute_fid: bool = True,
    fid_max_dim: int = DEFAULT_FID_MAX_DIM,
    real_fid: RealFID | None = None,
) -> FIDPlan:
    """The FID plan for ``real`` (N, D) and ``synthetic`` (M, D), row-chunked Dask arrays.

    With ``real_fid`` (the real set's statistics, from an earlier run of :func:`real_fid_plan`
    on the same ``real``) only the synthetic set's moments are computed.
    """
    (n_r, dim), n_s = real.shape, synthetic.shape[0]
    reason = _unavailable(metric, compute_fid, n_r, n_s)
    if reason is not None:
        return FIDPlan("none", reason=reason)
    if real_fid is not None:
        too_wide = _too_wide(dim, fid_max_dim)  # the cap holds for cached statistics too
        if too_wide is not None:
            return FIDPlan("none", reason=too_wide)
        return FIDPlan("covariance", (moments(synthetic),), real=real_fid)
    if min(n_r, n_s) < dim and n_r * n_s <= GRAM_MAX_PAIRS:
        side_r, side_s = _row_sums(real), _row_sums(synthetic)
        return FIDPlan("gram", (side_r[1:], side_s[1:], side_r[0] @ side_s[0].T))
    reason = _too_wide(dim, fid_max_dim)
    if reason is not None:
        return FIDPlan("none", reason=reason)
    return FIDPlan("covariance", (moments(real), moments(synthetic)))


def real_fid_plan(
    real: da.Array,
    *,
    metric: str,
    fid_max_dim: int = DEFAULT_FID_MAX_DIM,
    requested: bool = True,
) -> FIDPlan:
    """The plan of the real side alone; :meth:`FIDPlan.finish_real` then gives its RealFID
    (None, with the plan's reason, where FID is not requested or not defined)."""
    n_r, dim = real.shape
    reason = _unavailable(metric, requested, n_r, 2) or _too_wide(dim, fid_max_dim)
    if reason is not None:
        return FIDPlan("none", reason=reason)
    return FIDPlan("covariance", (moments(real),))
