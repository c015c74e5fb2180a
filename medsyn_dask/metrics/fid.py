"""Fréchet distance between Gaussians fitted to real and synthetic features (METHOD.md, ``fid``).

The moments come from one distributed pass: sums of ``x - s`` and of its outer products, with a
shift ``s`` (a sample row) so that features far from the origin keep their precision.
"""

from __future__ import annotations

from dataclasses import dataclass

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
