"""Feature sets whose neighbourhoods are hard to get exactly right, for both metrics."""

from __future__ import annotations

import numpy as np


def random(rng, n=160, m=130, d=24):
    return rng.normal(size=(n, d)).astype(np.float32), rng.normal(size=(m, d)).astype(np.float32)


def clustered(rng, n=180, m=140, d=32):
    centres = rng.normal(scale=5.0, size=(6, d))
    real = centres[rng.integers(0, 6, n)] + rng.normal(size=(n, d))
    synth = centres[rng.integers(0, 6, m)] + rng.normal(size=(m, d))
    return real.astype(np.float32), synth.astype(np.float32)


def duplicated(rng, n=150, m=120, d=16):
    """Duplicated reals (radius_1 = 0: nothing copies them) and exact copies of other reals."""
    real, synth = random(rng, n, m, d)
    real[10:20] = real[0:10]
    synth[:15] = real[25:40]
    synth[15:20] = real[0:5]  # copies of duplicated reals: not copies, by strict <
    return real, synth


def near_duplicated(rng, n=150, m=120, d=64):
    """Synthetic images a hair away from real ones: far below float32 GEMM resolution."""
    real, synth = random(rng, n, m, d)
    synth[:30] = real[:30] + rng.normal(scale=1e-6, size=(30, d)).astype(np.float32)
    real[40:45] = real[50:55] + np.float32(1e-6)
    return real, synth


def tied(rng, n=150, m=150, d=6):
    """Integer lattice features: many exactly equal distances, ties exactly at the radii."""
    real = rng.integers(0, 3, size=(n, d)).astype(np.float32)
    synth = rng.integers(0, 3, size=(m, d)).astype(np.float32)
    return real, synth


def far_from_origin(rng, n=160, m=140, d=48):
    """A tight cluster around 100.0 (spread 0.01): naive float32 GEMM distances are noise."""
    real = 100.0 + 0.01 * rng.normal(size=(n, d))
    synth = 100.0 + 0.01 * rng.normal(size=(m, d))
    synth[:10] = real[:10] + 1e-7 * rng.normal(size=(10, d))
    return real.astype(np.float32), synth.astype(np.float32)


def collapsed(rng, n=150, m=100, d=16):
    """Synthetic images near one point: std below the mode-collapse threshold, margin applies."""
    real = rng.normal(scale=0.05, size=(n, d)).astype(np.float32)
    synth = (real[3] + 0.005 * rng.normal(size=(m, d))).astype(np.float32)
    return real, synth


EUCLIDEAN = {
    f.__name__: f
    for f in (random, clustered, duplicated, near_duplicated, tied, far_from_origin, collapsed)
}


def codes_random(rng, n=150, m=130, d=256, n_codes=16):
    return rng.integers(0, n_codes, (n, d)), rng.integers(0, n_codes, (m, d))


def codes_background(rng, n=160, m=140, d=512, n_codes=512):
    """Half of the positions a constant background code, the rest spread over the codebook."""
    real, synth = codes_random(rng, n, m, d, n_codes)
    real[:, : d // 2] = 0
    synth[:, : d // 2] = 0
    synth[:12] = real[30:42]
    return real, synth


def codes_duplicated(rng, n=150, m=120, d=64, n_codes=4):
    real, synth = codes_random(rng, n, m, d, n_codes)
    real[5:15] = real[20:30]
    synth[:20] = real[:20]
    return real, synth


def codes_collapsed(rng, n=150, m=80, d=128, n_codes=8):
    """Synthetic codes nearly identical: std below the threshold, so the margin applies."""
    real = rng.integers(0, n_codes, (n, d))
    synth = np.repeat(real[7:8], m, axis=0)
    synth[0, 0] = (synth[0, 0] + 1) % n_codes
    return real, synth


HAMMING = {
    f.__name__: f for f in (codes_random, codes_background, codes_duplicated, codes_collapsed)
}
