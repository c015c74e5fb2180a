"""The neighbourhood baselines of ``bench_neighbours.py``: full matrices, faiss, the GEMM rate.

The two searches run in a spawned subprocess (``_common.run_isolated``); each builds its own
copy of the features from the seed (``_features.feature_pair``) and times its computation only.
Both decide "real" and "copy" as the method does (METHOD.md): a synthetic image is real when it
lies within the k-th-neighbour radius of a real image, a copy when within that real image's
nearest-neighbour distance plus the copy margin.
"""

from __future__ import annotations

import time

import numpy as np
from _common import repeat, timed
from _features import feature_pair


def _decide(dist_rs: np.ndarray, radius_k: np.ndarray, copy_threshold: np.ndarray):
    is_real = (dist_rs < radius_k[:, None]).any(axis=0)
    is_copy = (dist_rs < copy_threshold[:, None]).any(axis=0)
    return is_real, is_copy


def sklearn_baseline(case: str, cfg: dict, seed: int, nearest_k: int, threshold: float) -> dict:
    """The original package's full-matrix computation with scikit-learn.

    R x R ``pairwise_distances``, the k+1 smallest per row by ``np.partition`` (radii), then
    R x S against the radii; the copy margin from the synthetic features' STD.
    """
    from sklearn.metrics import pairwise_distances

    real, synth = feature_pair(case, cfg, seed, as_dask=False)
    metric = "hamming" if case == "hamming" else "euclidean"
    start = time.perf_counter()
    margin = 0.0 if synth.std(axis=0).mean() > threshold else threshold
    dist = pairwise_distances(real, real, metric=metric)
    part = np.partition(dist, [1, nearest_k], axis=1)
    radius_k, radius_1 = part[:, nearest_k].astype(np.float64), part[:, 1].astype(np.float64)
    del dist, part
    dist = pairwise_distances(real, synth, metric=metric)
    is_real, is_copy = _decide(dist, radius_k, radius_1 + margin)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "is_real": is_real, "is_copy": is_copy, "radius_k": radius_k}


def _faiss_search(real: np.ndarray, synth: np.ndarray, nearest_k: int, threshold: float):
    """One faiss IndexFlatL2 search: k+1 nearest reals of each real, nearest real of each
    synthetic; (margin, squared distances real x real, to the nearest real, nearest index)."""
    import faiss

    margin = 0.0 if synth.std(axis=0).mean() > threshold else threshold
    index = faiss.IndexFlatL2(real.shape[1])
    index.add(real)
    dist_rr, _ = index.search(real, nearest_k + 1)  # squared L2, float32
    dist_sr, nearest = index.search(synth, 1)
    return margin, dist_rr, dist_sr, nearest


def _faiss_result(found: tuple, nearest_k: int) -> dict:
    margin, dist_rr, dist_sr, nearest = found
    radius_k = np.sqrt(dist_rr[:, nearest_k].astype(np.float64))
    radius_1 = np.sqrt(dist_rr[:, 1].astype(np.float64))
    nearest, dist_sr = nearest[:, 0], np.sqrt(dist_sr[:, 0].astype(np.float64))
    return {
        "radius_k": radius_k,
        "nearest_real": nearest,
        # Nearest-real rule: the only decision a 1-NN search supports.
        "is_real": dist_sr < radius_k[nearest],
        "is_copy": dist_sr < radius_1[nearest] + margin,
    }


def faiss_baseline(
    cfg: dict, seed: int, nearest_k: int, threshold: float, repeats: int = 1
) -> dict:
    """faiss IndexFlatL2 (Euclidean): k+1 nearest reals of each real, nearest real of each
    synthetic. A 1-NN search supports the nearest-real rule only (see the README).

    With ``repeats`` > 1 the search runs that many times after one untimed run; ``seconds`` is
    the median and ``spread`` holds min/median/max."""
    import faiss

    real, synth = feature_pair("euclidean", cfg, seed, as_dask=False)
    found, spread = repeat(
        _faiss_search, repeats, real, synth, nearest_k, threshold, warmup=repeats > 1
    )
    return {
        "seconds": spread.median,
        "spread": spread.to_dict(),
        **_faiss_result(found, nearest_k),
        "threads": faiss.omp_get_max_threads(),
    }


def faiss_server(conn, cfg: dict, seed: int, nearest_k: int, threshold: float) -> None:
    """faiss in its own process, one timed search per ``"run"`` received on ``conn`` (answers
    the seconds), so that a benchmark can alternate it with the engine: both then meet the same
    load of a shared machine. ``"result"`` answers :func:`faiss_baseline`'s fields of the last
    search; ``"stop"`` ends it. The features are built (from the seed) before the first answer.
    """
    import faiss

    real, synth = feature_pair("euclidean", cfg, seed, as_dask=False)
    conn.send("ready")
    found = None
    while (request := conn.recv()) != "stop":
        if request == "run":
            found, seconds = timed(_faiss_search, real, synth, nearest_k, threshold)
            conn.send(seconds)
        else:
            conn.send({**_faiss_result(found, nearest_k), "threads": faiss.omp_get_max_threads()})


def gemm_rate(size: int, threads: int, repeats: int = 3) -> dict:
    """float32 GFLOP/s of a (size x size/2) @ (size/2 x size) matmul with ``threads`` BLAS
    threads, after one warm-up: ``best`` (the machine's rate), ``median`` and ``worst``."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size // 2), dtype=np.float32)
    b = rng.standard_normal((size // 2, size), dtype=np.float32)
    with threadpool_limits(limits=threads, user_api="blas"):
        _, seconds = repeat(np.matmul, repeats, a, b, warmup=True)
    flops = 2.0 * size * size * (size // 2) / 1e9
    return {
        "best": flops / seconds.min,
        "median": flops / seconds.median,
        "worst": flops / seconds.max,
    }
