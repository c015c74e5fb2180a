"""Synthetic features of the benchmarks: clustered Euclidean vectors and VQ-VAE-like code maps.

Features are generated block by block from (seed, kind, block index), so the engine can build
them on its Dask workers (nothing travels through the scheduler) and a baseline subprocess can
build the very same arrays in NumPy. Kind 0 = real, 1 = synthetic.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

#: Clusters of the Euclidean features and templates of the Hamming codes.
N_CLUSTERS = 64
#: Rank of each cluster's low-rank variation (Euclidean).
CLUSTER_RANK = 16
#: Per-dimension noise of real features, and the extra noise of synthetic ones.
REAL_NOISE = 0.3
ARTEFACT_NOISE = 0.85
#: Copies planted in every synthetic block: exact copies, then near copies of real rows.
EXACT_COPIES = 2
NEAR_COPIES = 2


def block_rows(n: int, block: int) -> list[tuple[int, int]]:
    """(index, rows) of each row block of an n-row array."""
    return [(i, min(block, n - s)) for i, s in enumerate(range(0, n, block))]


# --- Euclidean features: clustered, low-rank, post-ReLU like a CNN's pooled activations ---------


def _euclidean_structure(seed: int, dim: int):
    rng = np.random.default_rng([seed, 0])
    centres = rng.standard_normal((N_CLUSTERS, dim), dtype=np.float32)
    basis = rng.standard_normal((N_CLUSTERS, CLUSTER_RANK, dim), dtype=np.float32) * 0.35
    return centres, basis


def _euclidean_rows(seed: int, kind: int, index: int, rows: int, dim: int) -> np.ndarray:
    centres, basis = _euclidean_structure(seed, dim)
    rng = np.random.default_rng([seed, kind, index])
    # Synthetic (kind 1) drops a quarter of the clusters and carries generator artefacts
    # (extra noise): about half of it is "real" and under 10 % "copies" by the method.
    clusters = rng.integers(0, N_CLUSTERS if kind == 0 else (3 * N_CLUSTERS) // 4, rows)
    noise = REAL_NOISE if kind == 0 else np.hypot(REAL_NOISE, ARTEFACT_NOISE)
    latent = rng.standard_normal((rows, CLUSTER_RANK), dtype=np.float32)
    out = centres[clusters] + np.einsum("nr,nrd->nd", latent, basis[clusters])
    out += rng.standard_normal((rows, dim), dtype=np.float32) * np.float32(noise)
    return np.maximum(out, 0.0)


def euclidean_block(seed: int, kind: int, index: int, rows: int, dim: int) -> np.ndarray:
    """Rows of block ``index``: kind 0 = real, 1 = synthetic (rows float32, ``dim`` columns).

    Every real block holds one exact duplicate pair (so some radius_1 are 0); every synthetic
    block holds EXACT_COPIES exact and NEAR_COPIES near copies (1e-4 relative noise) of rows of
    the real block with the same index.
    """
    out = _euclidean_rows(seed, kind, index, rows, dim)
    if kind == 0 and rows >= 2:
        out[1] = out[0]
    n_copy = EXACT_COPIES + NEAR_COPIES
    if kind == 1 and rows >= n_copy + 8:
        real = _euclidean_rows(seed, 0, index, n_copy + 8, dim)
        out[:n_copy] = real[8 : 8 + n_copy]
        noise = np.random.default_rng([seed, 2, index]).standard_normal((NEAR_COPIES, dim))
        near = out[EXACT_COPIES:n_copy]
        near += (noise * 1e-4 * np.abs(near).mean()).astype(np.float32)
    return out


# --- Input families of the exact engine's benchmark ----------------------------------------------

#: Offset of the "far" family: features far from the origin (float32 spacing there ~6e-5).
FAR_OFFSET = 1000.0
#: Relative noise of the near duplicates of the "duplicates" family.
NEAR_NOISE = 1e-5


def family_block(seed: int, kind: int, index: int, rows: int, dim: int, family: str):
    """Rows of block ``index`` of one input family (float32, ``dim`` columns):

    - ``gaussian``: isotropic standard normal (distances concentrate: many near-ties);
    - ``clustered``: :func:`euclidean_block` (clustered low-rank post-ReLU, planted copies);
    - ``duplicates``: clustered, then a third of the rows exact duplicates and a third near
      duplicates (``NEAR_NOISE``) of the others; synthetic blocks copy half of their rows from
      the real block of the same index, exactly or nearly;
    - ``far``: clustered, shifted by ``FAR_OFFSET`` in every dimension.
    """
    if family == "gaussian":
        return np.random.default_rng([seed, kind, index]).standard_normal((rows, dim), np.float32)
    out = euclidean_block(seed, kind, index, rows, dim)
    if family == "far":
        return out + np.float32(FAR_OFFSET)
    if family == "clustered":
        return out
    if family != "duplicates":
        raise ValueError(f"unknown family {family!r}")
    rng = np.random.default_rng([seed, 3, kind, index])
    if kind == 1:
        real = family_block(seed, 0, index, rows, dim, family)
        half = rows // 2
        out[:half] = real[rng.permutation(rows)[:half]]
    base = out[0::3]
    exact, near = out[1::3], out[2::3]
    exact[:] = base[: len(exact)]
    noise = rng.standard_normal(near.shape, dtype=np.float32) * np.float32(NEAR_NOISE)
    near[:] = base[: len(near)] * (1 + noise)
    return out


FAMILIES = ("gaussian", "clustered", "duplicates", "far")


# --- Hamming codes: VQ-VAE-like code maps with a black border ----------------------------------


def _zipf_codes(rng: np.random.Generator, n_codes: int, size) -> np.ndarray:
    """Codes 1..n_codes-1 with a Zipf-like frequency (a few codes are very common)."""
    weights = 1.0 / (np.arange(1, n_codes) + 5.0) ** 1.1
    return rng.choice(np.arange(1, n_codes), size=size, p=weights / weights.sum())


def hamming_block(seed: int, kind: int, index: int, rows: int, side: int, n_codes: int):
    """Code maps of block ``index`` (rows x side*side int16, values 0..n_codes-1).

    Construction: a ``side x side`` code map whose outside of a centred disc (about half the
    positions) is background code 0 in every image, like a black border. The disc radius varies
    by +-6 % per image, so a ring of positions is background in some images only. Inside, each
    image is one of N_CLUSTERS template maps with 15-45 % of its positions redrawn from a
    Zipf-like code distribution. Synthetic blocks plant exact and near (20 positions changed)
    copies of real rows, as in :func:`euclidean_block`.
    """
    out = _hamming_rows(seed, kind, index, rows, side, n_codes)
    n_copy = EXACT_COPIES + NEAR_COPIES
    if kind == 1 and rows >= n_copy + 8:
        real = _hamming_rows(seed, 0, index, n_copy + 8, side, n_codes)
        out[:n_copy] = real[8 : 8 + n_copy]
        rng = np.random.default_rng([seed, 2, index])
        for row in range(EXACT_COPIES, n_copy):
            pos = rng.choice(out.shape[1], 20, replace=False)
            out[row, pos] = rng.integers(1, n_codes, 20)
    return out


def _hamming_rows(seed: int, kind: int, index: int, rows: int, side: int, n_codes: int):
    templates = _zipf_codes(np.random.default_rng([seed, 0]), n_codes, (N_CLUSTERS, side * side))
    rng = np.random.default_rng([seed, kind, index])
    codes = templates[rng.integers(0, N_CLUSTERS, rows)]
    redraw = rng.random((rows, side * side)) < rng.uniform(0.15, 0.45, (rows, 1))
    codes[redraw] = _zipf_codes(rng, n_codes, int(redraw.sum()))
    yy, xx = np.mgrid[:side, :side]
    dist = np.hypot(yy - (side - 1) / 2, xx - (side - 1) / 2).ravel()
    radius = side * 0.399 * rng.uniform(0.94, 1.06, (rows, 1))  # disc of ~50 % of the map
    codes[dist[None, :] > radius] = 0
    return codes.astype(np.int16)


# --- Assembling blocks ---------------------------------------------------------------------------


def numpy_features(make: Callable, n: int, block: int, *args) -> np.ndarray:
    """The whole array in NumPy: ``make(seed, kind, index, rows, ...)`` per block, stacked."""
    return np.concatenate([make(*args[:2], i, rows, *args[2:]) for i, rows in block_rows(n, block)])


def dask_features(make: Callable, n: int, block: int, width: int, dtype, *args):
    """The same array as a Dask array whose blocks are generated where they are computed."""
    import dask
    import dask.array as da

    parts = [
        da.from_delayed(
            dask.delayed(make, pure=True)(*args[:2], i, rows, *args[2:]), (rows, width), dtype
        )
        for i, rows in block_rows(n, block)
    ]
    return da.concatenate(parts, axis=0)


def feature_pair(case: str, cfg: dict, seed: int, as_dask: bool) -> tuple:
    """(real, synthetic) features of a benchmark case, as NumPy or Dask arrays.

    ``case`` "hamming": code maps, ``cfg`` with ``n``, ``m``, ``side``, ``codes``, ``block``
    (int16, side*side columns); any other case: Euclidean, ``cfg`` with ``n``, ``m``, ``dim``,
    ``block`` (float32, dim columns) and optionally ``family`` (:func:`family_block`).
    """
    block = cfg["block"]
    if case == "hamming":
        side = cfg["side"]
        make, width, dtype, extra = hamming_block, side * side, np.int16, (side, cfg["codes"])
    elif "family" in cfg:
        make, width, dtype = family_block, cfg["dim"], np.float32
        extra = (cfg["dim"], cfg["family"])
    else:
        make, width, dtype, extra = euclidean_block, cfg["dim"], np.float32, (cfg["dim"],)
    if as_dask:
        return tuple(
            dask_features(make, cfg[size], block, width, dtype, seed, kind, *extra)
            for kind, size in ((0, "n"), (1, "m"))
        )
    return tuple(
        numpy_features(make, cfg[size], block, seed, kind, *extra)
        for kind, size in ((0, "n"), (1, "m"))
    )
