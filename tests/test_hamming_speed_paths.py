"""The Hamming fast paths (bit planes, prepared blocks, the pair kernel) against scipy's ``cdist``
and the float64 brute force: ties, constant positions, wide and negative codes, odd shapes."""

from __future__ import annotations

import numpy as np
import pytest
from brute_force import assert_matches, brute_force
from scipy.spatial.distance import cdist

from medsyn_dask import evaluate_features
from medsyn_dask.neighbours import hamming, hamming_planes

pytestmark = pytest.mark.skipif(not hamming_planes.available(), reason="needs numba")


def _codes(rng, shape, low, high, dtype):
    return rng.integers(low, high, shape, endpoint=False).astype(dtype)


@pytest.mark.parametrize(
    "low, high, dtype",
    [
        (0, 2, np.bool_),
        (0, 4, np.uint8),
        (0, 256, np.uint8),
        (0, 300, np.int16),  # codes > 255: 9 planes
        (0, 512, np.int32),
        (0, 1 << 16, np.uint16),  # 16 planes, rounded up to 18
        (-7, 7, np.int8),  # negative codes: shifted by the smallest
        (-(1 << 62), 1 << 62, np.int64),  # 64 planes, rounded up to 66 (the last two zero)
        (0, 1 << 63, np.uint64),
    ],
)
def test_planes_count_every_mismatch(low, high, dtype):
    rng = np.random.default_rng(11)
    # 130 positions: words padded to 8 x 64; 70 x 45 rows: tiles of Y_TILE rows and a rest.
    x, y = _codes(rng, (70, 130), low, high, dtype), _codes(rng, (45, 130), low, high, dtype)
    y[:3] = x[:3]  # exact copies: 0 mismatches
    y[3, :] = x[4, :]
    y[3, ::2] = x[5, ::2]
    positions = np.arange(x.shape[1])
    start = min(0, int(x.min()), int(y.min()))
    planes = hamming_planes.planes_needed(max(int(x.max()), int(y.max())) - start)
    counts = hamming_planes.mismatches(
        hamming_planes.pack(x, positions, start, planes),
        hamming_planes.pack(y, positions, start, planes),
    )
    np.testing.assert_array_equal(counts, (x[:, None, :] != y[None, :, :]).sum(axis=2))


@pytest.mark.parametrize("planes, words", [(3, 0), (3, 8), (9, 40), (66, 16)])
@pytest.mark.parametrize(
    "n_x, n_y, tile",
    [(40, 29, 16), (70, 45, 128), (3, 1, 128), (5, 7, 3), (1, 2, 1), (8, 4, 4)],
)
def test_both_counting_kernels_agree_with_numpy(planes, words, n_x, n_y, tile):
    """The vector kernel and the portable one, on sparse random planes (many words equal in
    some pairs): whole blocks of BLOCK_ROWS x BLOCK_COLS pairs, tiles and the rows and columns
    left over."""
    if hamming_planes.kernels().vector is None:
        pytest.skip("this llvmlite cannot build the vector kernel")
    rng = np.random.default_rng(16)

    def draw(n):
        bits = rng.integers(0, 1 << 63, (n, planes, words), dtype=np.uint64)
        return bits & rng.integers(0, 1 << 63, (n, planes, words), dtype=np.uint64)

    x, y = draw(n_x), draw(n_y)
    y[:1] = x[:1]
    expected = hamming_planes.reference_mismatches(x, y)
    # the reference itself, on words with known counts
    assert hamming_planes.reference_mismatches(x[:1] | ~x[:1], x[:1] & 0)[0, 0] == 64 * words
    kernels = hamming_planes.kernels()
    for kernel in (kernels.vector, kernels.portable):
        out = np.full((n_x, n_y), -1, dtype=np.int64)
        kernel(x, y, out, tile)
        np.testing.assert_array_equal(out, expected)
    assert kernels.mismatches is kernels.vector  # it agreed with the portable one: in use


def test_planes_count_only_the_positions_given():
    rng = np.random.default_rng(12)
    x, y = rng.integers(0, 9, (20, 200)), rng.integers(0, 9, (300, 200))
    positions = np.flatnonzero(rng.random(200) < 0.4)
    counts = hamming_planes.mismatches(
        hamming_planes.pack(x, positions, 0, 6), hamming_planes.pack(y, positions, 0, 6)
    )
    expected = (x[:, None, positions] != y[None, :, positions]).sum(axis=2)
    np.testing.assert_array_equal(counts, expected)


def test_block_of_constant_positions_only():
    """Every position constant in both blocks: some equal (dropped), some different (counted
    once for all pairs), nothing left to pack."""
    x = np.tile(np.array([3, 1, 4, 1, 5], dtype=np.int16), (6, 1))
    y = np.tile(np.array([3, 1, 5, 9, 5], dtype=np.int16), (4, 1))
    block = hamming.block_bounds(x, y)
    np.testing.assert_array_equal(block.score, np.full((6, 4), 2 / 5))
    np.testing.assert_array_equal(block.score, cdist(x, y, "hamming"))


def test_empty_blocks():
    x = np.zeros((0, 8), dtype=np.int16)
    y = np.arange(24, dtype=np.int16).reshape(3, 8)
    assert hamming.block_bounds(x, y).score.shape == (0, 3)
    assert hamming.block_bounds(y, x).score.shape == (3, 0)
    assert hamming.exact_distances(y, y, np.array([], int), np.array([], int)).shape == (0,)


def test_prepared_blocks_are_reused_across_position_sets():
    """A prepared block compared with partners whose constant positions differ packs one form
    per position set and gives the same distances as the raw codes."""
    rng = np.random.default_rng(13)
    base = rng.integers(0, 600, (90, 256))
    base[:, :100] = 0
    partners = [rng.integers(0, 600, (40, 256)) for _ in range(6)]
    for k, partner in enumerate(partners):
        partner[:, : 100 - 10 * k] = 0  # a different constant border each time
    prepared = hamming.prepare(base)
    for partner in partners:  # the CPU's packed path (a GPU's "auto" compares unpacked codes)
        expected = cdist(base, partner, "hamming")
        score = hamming.block_bounds(prepared, partner, backend="numpy").score
        np.testing.assert_array_equal(score, expected)
        other = hamming.prepare(partner)
        score = hamming.block_bounds(other, prepared, backend="numpy").score
        np.testing.assert_array_equal(score, expected.T)
    assert 1 <= len(prepared._packed) <= hamming.PACKED_PER_BLOCK


@pytest.mark.parametrize("dtype", [np.int16, np.uint16, np.int64, np.bool_])
def test_exact_distances_match_cdist(dtype):
    rng = np.random.default_rng(14)
    x = rng.integers(0, 2 if dtype is np.bool_ else 700, (50, 97)).astype(dtype)
    y = rng.integers(0, 2 if dtype is np.bool_ else 700, (30, 97)).astype(dtype)
    rows, cols = rng.integers(0, 50, 400), rng.integers(0, 30, 400)
    expected = cdist(x, y, "hamming")[rows, cols]
    np.testing.assert_array_equal(hamming.exact_distances(x, y, rows, cols), expected)


def _tied_codes(rng, n=240, m=200, d=300, n_codes=400):
    """Code maps with a constant border, codes > 255, and many exactly tied distances: rows
    built from a few templates with the same number of positions changed."""
    templates = rng.integers(1, n_codes, (6, d))
    templates[:, : d // 3] = 0

    def draw(count):
        rows = templates[rng.integers(0, 6, count)].copy()
        for row in rows:
            row[rng.choice(np.arange(d // 3, d), 12, replace=False)] = rng.integers(1, n_codes, 12)
        return rows

    real, synth = draw(n), draw(m)
    synth[:10] = real[:10]
    return real.astype(np.int16), synth.astype(np.int16)


@pytest.mark.parametrize("block_size", [64, 1000])
def test_engine_on_tied_wide_codes_equals_brute_force(block_size):
    real, synth = _tied_codes(np.random.default_rng(15))
    result = evaluate_features(real, synth, metric="hamming", block_size=block_size)
    assert_matches(result, brute_force(real, synth, metric="hamming"))
