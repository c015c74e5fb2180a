"""The engine cells shared by ``bench_gpu.py`` and ``bench_threads.py``: isotropic Gaussian
features (the hard family) and a timed :func:`medsyn_dask.evaluate_features` call."""

from __future__ import annotations

import numpy as np
from _common import repeat
from _features import feature_pair

NEAREST_K = 5
SEED = 20260101


def gaussian_features(n: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(real, synthetic) isotropic Gaussian features, N = M = n, float32."""
    cfg = {"n": n, "m": n, "dim": dim, "block": 2048, "family": "gaussian"}
    return feature_pair("gaussian", cfg, SEED, as_dask=False)


def timed_engine(real: np.ndarray, synth: np.ndarray, backend: str, repeats: int):
    """(last result, Spread of seconds) of the engine without FID, after one untimed call."""
    import medsyn_dask

    return repeat(
        medsyn_dask.evaluate_features,
        repeats,
        real,
        synth,
        nearest_k=NEAREST_K,
        compute_fid=False,
        backend=backend,
        warmup=True,
    )
