"""The NumPy maths of FID: Gaussian fits, the trace of sqrt(C_r C_s), the Fréchet distance.

``FID = |mu_r - mu_s|^2 + Tr C_r + Tr C_s - 2 Tr sqrt(C_r C_s)``. pytorch-fid takes a general
``sqrtm`` of the D x D product (:func:`frechet_distance_sqrtm`, kept as the reference). Here
``Tr sqrt(C_r C_s)`` comes from symmetric eigendecompositions instead: with ``L L^T = C_r``
(``L = V sqrt(w)`` from ``C_r = V diag(w) V^T``), ``C_r C_s`` is similar to the symmetric
positive semi-definite ``L^T C_s L``, so the trace is the sum of the square roots of that
matrix's eigenvalues. The real side (``L``) is decomposed once per run (:class:`RealFID`) and
reused for every synthetic group; each group then costs two GEMMs and one ``eigvalsh``.
Where this process sees a CUDA GPU (``backend="auto"``, as the engine), the decompositions and
products run there in float64 (cuSOLVER, cuBLAS), the group's trace as singular values
(:func:`trace_sqrt_product`); else in LAPACK through SciPy.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy import linalg

from ..neighbours.backend import torch_device

log = logging.getLogger(__name__)

#: LAPACK driver of the symmetric eigensolvers: divide and conquer measured about 2x faster than
#: the default 'evr' at D = 2048 on this project's machines, with the same accuracy.
EIGH_DRIVER = "evd"


@dataclass(frozen=True)
class GaussianFit:
    """Mean (D,) and covariance (D, D, ddof=1) of a feature set, float64."""

    mean: np.ndarray
    cov: np.ndarray


def gaussian_fit(total: np.ndarray, outer: np.ndarray, n: int, shift: np.ndarray) -> GaussianFit:
    """Mean and ddof=1 covariance from the sums of ``x - shift`` (D,) and of their outer
    products (D, D) over ``n`` images (see :func:`medsyn_dask.metrics.fid.moments`)."""
    offset = total / n
    cov = (outer - n * np.outer(offset, offset)) / (n - 1)
    return GaussianFit(mean=shift + offset, cov=(cov + cov.T) / 2)


def sqrt_factor(cov: np.ndarray, *, backend: str = "auto") -> np.ndarray:
    """(D, r) ``L`` with ``L @ L.T == cov`` for a symmetric PSD ``cov`` (D, D).

    Eigenvalues below the usual rank tolerance (``D * eps * largest``, as ``matrix_rank``)
    are rounding noise of a rank-deficient covariance (they come out of either sign); they are
    dropped, which also makes the later products r x r. ``backend``: where the decomposition
    runs ("auto": the GPU where this process has one, else SciPy; "numpy"; "torch").
    """
    values, vectors = _eigh(cov, backend)
    keep = values > len(values) * np.finfo(np.float64).eps * max(values[-1], 0.0)
    return vectors[:, keep] * np.sqrt(values[keep])


def trace_sqrt_product(factor: np.ndarray, cov: np.ndarray, *, backend: str = "auto") -> float:
    """``Tr sqrt(C_r C_s)`` from ``factor`` (D, r), ``L L^T = C_r``, and ``cov`` = C_s (D, D).

    On the CPU: the eigenvalues of ``L^T C_s L`` (r x r, symmetric PSD) are those of
    ``C_r C_s``; tiny negative ones are rounding noise and count as zero. With torch
    (``backend`` as :func:`sqrt_factor`, the GPU's route): the singular values of ``L_s^T L``,
    ``L_s L_s^T = C_s``, whose squares are those eigenvalues, computed to within rounding of
    the largest singular value instead of its square. Where one direction dominates both
    covariances the eigenvalue route's small eigenvalues lose digits: at D = 2 048 (features
    with a common component, benchmarks/bench_gpu.py) LAPACK's three eigensolvers gave FIDs
    3e-7 apart and 1e-7 to 4e-7 off the singular-value route, which all of them and both SVD
    drivers reproduce to 1e-13; an H100's cuSOLVER eigenvalues were 1.2e-6 off. The second
    decomposition and the SVD cost a GPU a fraction of a second, a CPU three times the
    eigenvalue route (a D x D SVD): the CPU keeps the eigenvalue route, within 1e-6 of
    pytorch-fid's ``sqrtm`` (itself 1.5e-7 off there).
    """
    device = torch_device(backend)
    if device is not None:
        import torch

        try:
            cov_factor = sqrt_factor(cov, backend=backend)
            product = _on(torch, cov_factor, device).T @ _on(torch, factor, device)
            return float(torch.linalg.svdvals(product).sum())
        except torch.cuda.OutOfMemoryError as exc:  # the workers' models fill the GPU
            _on_the_cpu(exc)
    inner = factor.T @ (cov @ factor)
    inner = (inner + inner.T) / 2
    values = linalg.eigh(inner, eigvals_only=True, driver=EIGH_DRIVER, check_finite=False)
    return float(np.sqrt(np.clip(values, 0.0, None)).sum())


def _on_the_cpu(exc: BaseException) -> None:
    log.warning("FID's linear algebra on the CPU: no room on the GPU (%s)", exc)


def _on(torch, array: np.ndarray, device):
    """``array`` (float64) as a tensor on ``device``."""
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float64)).to(device)


def _eigh(matrix: np.ndarray, backend: str) -> tuple[np.ndarray, np.ndarray]:
    """Ascending eigenvalues of a symmetric float64 ``matrix`` and its eigenvectors (columns):
    torch on ``backend``'s device, or SciPy's LAPACK."""
    device = torch_device(backend)
    if device is not None:
        import torch

        try:
            values, vectors = torch.linalg.eigh(_on(torch, matrix, device))
            return values.cpu().numpy(), vectors.cpu().numpy()
        except torch.cuda.OutOfMemoryError as exc:
            _on_the_cpu(exc)
    return linalg.eigh(matrix, driver=EIGH_DRIVER, check_finite=False)


@dataclass(frozen=True, eq=False)
class RealFID:
    """The real set's side of every FID of a run: its Gaussian fit and a square-root factor of
    its covariance, decomposed once (on first use) and reused for every group.

    Attributes:
        fit: the real set's mean (D,) and covariance (D, D).
        n_images: how many real images the fit is over.
    """

    fit: GaussianFit
    n_images: int

    @property
    def dim(self) -> int:
        return len(self.fit.mean)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """``mean`` (D,), ``cov`` (D, D), ``factor`` (D, r) and ``n_images`` (0-d), to store
        with the real features (a later run of the same real set then skips both its pass and
        its decomposition: :meth:`from_arrays`)."""
        return {
            "mean": self.fit.mean,
            "cov": self.fit.cov,
            "factor": self.factor,
            "n_images": np.asarray(self.n_images),
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> RealFID:
        """The statistics saved by :meth:`to_arrays` (``factor`` optional: made when used)."""
        out = cls(GaussianFit(arrays["mean"], arrays["cov"]), n_images=int(arrays["n_images"]))
        if arrays.get("factor") is not None:
            out.__dict__["factor"] = np.asarray(arrays["factor"])  # primes the cached property
        return out

    @cached_property
    def factor(self) -> np.ndarray:
        """(D, r) ``L`` with ``L L^T = C_r`` (see :func:`sqrt_factor`)."""
        return sqrt_factor(self.fit.cov)

    @cached_property
    def trace(self) -> float:
        return float(np.trace(self.fit.cov))

    def distance(self, synthetic: GaussianFit) -> float:
        """The Fréchet distance from this real set to ``synthetic``."""
        diff = self.fit.mean - synthetic.mean
        tr_sqrt = trace_sqrt_product(self.factor, synthetic.cov)
        return float(diff @ diff + self.trace + np.trace(synthetic.cov) - 2 * tr_sqrt)


def frechet_distance(real: GaussianFit | RealFID, synthetic: GaussianFit) -> float:
    """``|mu_r - mu_s|^2 + Tr(C_r + C_s - 2 sqrt(C_r C_s))`` through the eigenvalue route.

    Pass a :class:`RealFID` to reuse the real set's decomposition across calls.
    """
    if isinstance(real, GaussianFit):
        real = RealFID(real, n_images=0)
    return real.distance(synthetic)


def frechet_distance_sqrtm(real: GaussianFit, synthetic: GaussianFit, eps: float = 1e-6) -> float:
    """pytorch-fid's ``calculate_frechet_distance``: a general ``sqrtm`` of ``C_r C_s``.

    When the product is singular enough that ``sqrtm`` fails, ``eps`` is added to the diagonals.
    The reference value for tests and benchmarks; about an order of magnitude slower at D = 2048.
    """
    diff = real.mean - synthetic.mean
    covmean = linalg.sqrtm(real.cov @ synthetic.cov)
    if not np.isfinite(covmean).all():
        offset = np.eye(real.cov.shape[0]) * eps
        covmean = linalg.sqrtm((real.cov + offset) @ (synthetic.cov + offset))
    covmean = np.real(covmean)
    return float(diff @ diff + np.trace(real.cov) + np.trace(synthetic.cov) - 2 * np.trace(covmean))


def gram_distance(
    shift_r: np.ndarray,
    sum_r: np.ndarray,
    sq_r: float,
    n_r: int,
    shift_s: np.ndarray,
    sum_s: np.ndarray,
    sq_s: float,
    n_s: int,
    gram: np.ndarray,
) -> float:
    """The Fréchet distance from the Gram matrix, for fewer images than dimensions.

    Each set is shifted by one of its own rows: ``X = features - shift``; ``sum_*`` (D,) and
    ``sq_*`` are the sums of its rows and of their squared norms, ``gram`` (n_r, n_s) is
    ``X_r X_s^T``. With ``H = I - 1 1^T / n`` the centring matrix, the centred features
    ``A = H X`` give ``C = A^T A / (n - 1)``, and the eigenvalues of ``C_r C_s`` are the squared
    singular values of ``A_r A_s^T / sqrt((n_r - 1)(n_s - 1))`` with ``A_r A_s^T = H_r G H_s``:
    ``Tr sqrt(C_r C_s)`` is the sum of those singular values (exact, no D x D matrix).
    """
    mean_r, mean_s = sum_r / n_r, sum_s / n_s
    centred = gram - gram.mean(axis=0, keepdims=True)
    centred -= centred.mean(axis=1, keepdims=True)
    tr_sqrt = np.linalg.svd(centred, compute_uv=False).sum() / np.sqrt((n_r - 1) * (n_s - 1))
    tr_r = (sq_r - n_r * (mean_r @ mean_r)) / (n_r - 1)
    tr_s = (sq_s - n_s * (mean_s @ mean_s)) / (n_s - 1)
    diff = (shift_r - shift_s) + (mean_r - mean_s)
    return float(diff @ diff + tr_r + tr_s - 2 * tr_sqrt)
