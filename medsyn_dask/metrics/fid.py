"""Fréchet distance between Gaussians fitted to real and synthetic features (METHOD.md, ``fid``).

The moments come from one distributed pass: sums of ``x - s`` and of its outer products, with a
shift ``s`` (a sample row) so that features far from the origin keep their precision.

With fewer images than dimensions (pixels of 3D volumes, say) the covariances are low rank and a
D x D ``sqrtm`` is both slow and ill-conditioned; :func:`frechet_distance_gram` gets the same
value from the n_r x n_s matrix of centred dot products instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import dask
import dask.array as da
import numpy as np
from scipy import linalg


@dataclass(frozen=True)
class GaussianFit:
    """Mean (D,) and covariance (D, D, ddof=1) of a feature set, float64."""

    mean: np.ndarray
    cov: np.ndarray


def moments(features: da.Array, shift: np.ndarray) -> tuple[da.Array, da.Array, int]:
    """Lazy sum (D,) and sum of outer products (D, D) of ``features - shift``, and the count."""
    centred = features.astype("float64") - shift
    return centred.sum(axis=0), centred.T @ centred, features.shape[0]


def gaussian_fit(total: np.ndarray, outer: np.ndarray, n: int, shift: np.ndarray) -> GaussianFit:
    """Mean and ddof=1 covariance from the shifted sums of :func:`moments`."""
    offset = total / n
    cov = (outer - n * np.outer(offset, offset)) / (n - 1)
    return GaussianFit(mean=shift + offset, cov=cov)


def frechet_distance(real: GaussianFit, synthetic: GaussianFit, eps: float = 1e-6) -> float:
    """``|mu_r - mu_s|^2 + Tr(C_r + C_s - 2 sqrtm(C_r C_s))``, as pytorch-fid computes it.

    When the product is singular enough that ``sqrtm`` fails, ``eps`` is added to the diagonals.
    """
    diff = real.mean - synthetic.mean
    covmean = linalg.sqrtm(real.cov @ synthetic.cov)
    if not np.isfinite(covmean).all():
        offset = np.eye(real.cov.shape[0]) * eps
        covmean = linalg.sqrtm((real.cov + offset) @ (synthetic.cov + offset))
    covmean = np.real(covmean)
    return float(diff @ diff + np.trace(real.cov) + np.trace(synthetic.cov) - 2 * np.trace(covmean))


def frechet_distance_gram(real: da.Array, synthetic: da.Array) -> float:
    """The Fréchet distance through the Gram matrix, for features with D above the image count.

    With A_r, A_s the centred features (n x D) and C = A^T A / (n - 1), the eigenvalues of
    C_r C_s are the squared singular values of A_r A_s^T / sqrt((n_r - 1)(n_s - 1)), so
    ``Tr sqrtm(C_r C_s)`` is the sum of those singular values (exact, no D x D matrix).
    """
    shift = real[0].astype("float64")
    xr, xs = real.astype("float64") - shift, synthetic.astype("float64") - shift
    mean_r, mean_s = dask.compute(xr.mean(axis=0), xs.mean(axis=0))
    ar, as_ = xr - mean_r, xs - mean_s
    gram, ss_r, ss_s = dask.compute(ar @ as_.T, (ar**2).sum(), (as_**2).sum())
    n_r, n_s = real.shape[0], synthetic.shape[0]
    tr_sqrt = np.linalg.svd(gram, compute_uv=False).sum() / np.sqrt((n_r - 1) * (n_s - 1))
    diff = mean_r - mean_s
    return float(diff @ diff + ss_r / (n_r - 1) + ss_s / (n_s - 1) - 2 * tr_sqrt)
