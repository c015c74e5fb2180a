"""The int8 scores (neighbours/quantized.py): bounds that enclose cdist, and every number of
the method identical to the float64 brute force, in the runner and in the graph. torch's int8
matmul is exact on every CPU (fast where it has AMX), so these run everywhere."""

from __future__ import annotations

import threading

import dask.array as da
import numpy as np
import pytest
import scenarios
from brute_force import assert_matches, assert_patients_match, brute_force, brute_force_patients
from scipy.spatial.distance import cdist
from test_engine_local import FAMILIES, no_default_client  # noqa: F401 (a fixture)

from medsyn_dask import evaluate_features
from medsyn_dask.errors import SettingsError
from medsyn_dask.neighbours import backend, euclidean, quantized
from medsyn_dask.neighbours.centring import prepare
from medsyn_dask.neighbours.reductions import row_candidates

pytest.importorskip("torch")


def _enclosed(block, exact) -> None:
    rows, cols = np.arange(block.shape[0])[:, None], np.arange(block.shape[1])[None, :]
    assert (block.rows.lower(block.score, rows) <= exact).all()
    assert (exact <= block.rows.upper(block.score, rows)).all()
    assert (block.cols.lower(block.score, cols) <= exact).all()
    assert (exact <= block.cols.upper(block.score, cols)).all()


@pytest.mark.parametrize("name", sorted(scenarios.EUCLIDEAN))
def test_int8_bounds_enclose_cdist(name):
    real, synth = scenarios.EUCLIDEAN[name](np.random.default_rng(1))
    centre = real.astype(np.float64).mean(axis=0)
    block = euclidean.block_bounds(real, synth, centre, backend="int8")
    exact = cdist(real.astype(np.float64), synth.astype(np.float64))
    _enclosed(block, exact)
    width = (block.rows.upper(block.score, np.arange(len(real))[:, None]) - exact) / exact.max()
    assert np.median(width) < 1e-2  # and are useful


@pytest.fixture(params=["compiled", "numpy"])
def passes(request, monkeypatch):
    """The module's passes compiled (numba) or as without numba."""
    if request.param == "numpy":
        monkeypatch.setattr(quantized, "_kernels", lambda: False)
    return request.param


@pytest.mark.parametrize("scale", [1e-310, 1e-300, 1e-40, 1e-20, 1.0, 1e13])
@pytest.mark.parametrize("dim", [3, 200, 1100])
def test_int8_bounds_hold_at_every_scale(scale, dim, passes):
    """Tiny features (their squares below float32's normal range; subnormal doubles, whose
    rows are all residual), huge ones (within the largest norm the engine takes,
    MAX_ROW_NORM), a row with one large entry (a coarse step for the others), zero rows
    (step 0) and exact duplicates; block and diagonal scores."""
    rng = np.random.default_rng(dim)
    x = scale * rng.standard_normal((50, dim))
    y = scale * rng.standard_normal((40, dim))
    x[0, 0] *= 1e3
    x[1] = 0.0
    y[:3] = x[:3]
    centre = np.zeros(dim)
    block = euclidean.block_bounds(x, y, centre, backend="int8")
    _enclosed(block, cdist(x, y))
    diagonal = euclidean.symmetric_bounds(prepare(x, centre, int8=True), centre, backend="int8")
    _enclosed(diagonal, cdist(x, x))


def test_fixed_point_digits_and_residual(passes):
    """H in [-127, 127], L in [-64, 64], and the residual within its bound per row."""
    rng = np.random.default_rng(5)
    rows = rng.standard_normal((30, 77)) * rng.uniform(1e-3, 1e3, (30, 1))
    fixed = quantized.quantize(rows, np.zeros(77))
    dim = fixed.dim
    high, low = fixed.hl[:, :dim].numpy().astype(np.int64), fixed.hl[:, dim:].numpy()
    assert np.abs(high).max() <= 127 and np.abs(low).max() <= 64
    np.testing.assert_array_equal(fixed.lh[:, :dim].numpy(), low)  # [L, H] mirrors [H, L]
    step = fixed.stats[:, quantized.STEP][:, None]
    residual = rows - step * (128 * high + low)
    assert (np.linalg.norm(residual, axis=1) <= fixed.stats[:, quantized.ERR]).all()
    assert (np.abs(residual) <= 0.5 * step * (1 + 1e-9)).all()


def test_int8_symmetric_candidates_hold_the_smallest():
    """The diagonal blocks of the radii pass: the candidates of each row hold its n smallest
    distances, as those of the float32 path do."""
    rng = np.random.default_rng(6)
    x = rng.standard_normal((300, 1100)).astype(np.float32)
    centre = x.mean(axis=0).astype(np.float64)
    block = prepare(x, centre, int8=True)
    found = euclidean.symmetric_candidates(block, centre, 6, backend="int8")
    exact = cdist(x.astype(np.float64), x.astype(np.float64))
    kept = np.zeros_like(exact, dtype=bool)
    kept[found.row, found.col] = True
    smallest = np.argsort(exact, axis=1, kind="stable")[:, :6]
    assert kept[np.arange(300)[:, None], smallest].all()
    full = row_candidates(euclidean.symmetric_bounds(block, centre, backend="int8"), 6)
    pairs = {(r, c) for r, c in zip(found.row, found.col, strict=True)}
    assert pairs == {(r, c) for r, c in zip(full.row, full.col, strict=True)}


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_int8_families_equal_brute_force_here_and_in_the_graph(name, no_default_client):  # noqa: F811
    real, synth = FAMILIES[name](np.random.default_rng(41), d=1100)
    expected = brute_force(real, synth)
    here = evaluate_features(real, synth, backend="int8", compute_fid=False)
    assert_matches(here, expected)
    graph = evaluate_features(
        da.from_array(real, chunks=(100, -1)),
        da.from_array(synth, chunks=(100, -1)),
        block_size=128,
        backend="int8",
        compute_fid=False,
    )
    assert_matches(graph, expected)


@pytest.mark.parametrize("name", sorted(scenarios.EUCLIDEAN))
def test_int8_scenarios_equal_brute_force(name, passes, no_default_client):  # noqa: F811
    real, synth = scenarios.EUCLIDEAN[name](np.random.default_rng(2))
    result = evaluate_features(real, synth, backend="int8", block_size=64, compute_fid=False)
    assert_matches(result, brute_force(real, synth))


def test_auto_takes_int8_for_wide_features_with_amx_and_torch(tmp_path, monkeypatch):
    flags = tmp_path / "cpuinfo"
    flags.write_text("processor: 0\nflags\t\t: fpu sse avx512f amx_tile amx_int8 amx_bf16\n")
    assert backend.amx_int8(str(flags))
    flags.write_text("processor: 0\nflags\t\t: fpu sse avx512f\n")
    backend.amx_int8.cache_clear()
    assert not backend.amx_int8(str(flags))
    backend.amx_int8.cache_clear()
    monkeypatch.setattr(backend, "amx_int8", lambda: True)
    monkeypatch.setattr(backend, "torch_device", lambda name: None)
    wide, narrow = backend.INT8_MIN_DIM, backend.INT8_MIN_DIM - 1
    assert backend.int8_scores("auto", wide) and not backend.int8_scores("auto", narrow)
    assert backend.int8_scores("int8", 3) and not backend.int8_scores("numpy", wide)
    assert not backend.int8_scores("int8", backend.INT8_MAX_DIM + 1)  # int32 sums would wrap
    monkeypatch.setattr(backend, "amx_int8", lambda: False)
    assert not backend.int8_scores("auto", wide)


def test_int8_backend_without_an_int8_matmul_is_refused(monkeypatch):
    """A torch without ``_int_mm`` on the CPU: "int8" refused at the boundary with the reason,
    "auto" keeps the float32 GEMM."""
    monkeypatch.setattr(backend, "int8_matmul", lambda: False)
    with pytest.raises(SettingsError, match="backend='int8'.*int8 matmul"):
        evaluate_features(np.zeros((10, 4)), np.zeros((10, 4)), backend="int8")
    monkeypatch.setattr(backend, "amx_int8", lambda: True)
    assert not backend.int8_scores("auto", backend.INT8_MIN_DIM)


@pytest.mark.parametrize("block_size", [40, 1000])  # the graph / the runner
def test_int8_patient_mode_equals_brute_force(block_size):
    rng = np.random.default_rng(23)
    real, synth = scenarios.clustered(rng)
    synth[:5] = real[10:15]  # copies of real patients
    patients = rng.integers(0, 40, len(real))
    result = evaluate_features(
        real, synth, block_size=block_size, patients=patients, backend="int8", compute_fid=False
    )
    assert_patients_match(result.patients, brute_force_patients(real, synth, patients))


def test_int8_gemms_run_on_one_torch_thread_in_the_pool(monkeypatch, no_default_client):  # noqa: F811
    """OpenMP's thread count is per thread: the runner's pool threads, at two threads there,
    must still run each int8 GEMM on one (a team per GEMM beside the other threads'
    oversubscribed the cores), keep their own count afterwards, and leave torch's
    process-wide count (what a new thread takes) as the user set it."""
    import torch

    from medsyn_dask.neighbours import local
    from medsyn_dask.neighbours.threads import pool, threads

    n_threads = threads()
    monkeypatch.setattr(local, "useful_threads", lambda work, n: n)  # the runner: every core
    workers = pool(n_threads)
    barrier = threading.Barrier(n_threads, timeout=60)
    saved: dict[int, int] = {}

    def set_threads(count: int | None) -> int:
        barrier.wait()  # one call per pool thread
        me = threading.get_ident()
        if count is None:
            count = saved[me]
        else:
            saved[me] = torch.get_num_threads()
        torch.set_num_threads(count)
        barrier.wait()
        return torch.get_num_threads()

    main = torch.get_num_threads()
    try:
        assert list(workers.map(set_threads, [2] * n_threads)) == [2] * n_threads
        torch.set_num_threads(3)  # the user's count: also what a new thread takes
        _check_one_thread(monkeypatch, torch, workers, barrier, n_threads)
    finally:
        list(workers.map(set_threads, [None] * n_threads))
        torch.set_num_threads(main)


def _check_one_thread(monkeypatch, torch, workers, barrier, n_threads):
    backend.check_backend("int8")  # its probe (once a process) runs in this thread
    seen = []
    int_mm = torch._int_mm

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return int_mm(*args, **kwargs)

    monkeypatch.setattr(torch, "_int_mm", spy)
    rng = np.random.default_rng(3)
    real, synth = rng.standard_normal((600, 40)), rng.standard_normal((500, 40))
    got = evaluate_features(
        real, synth, nearest_k=3, backend="int8", block_size=200, compute_fid=False
    )
    assert_matches(got, brute_force(real, synth, nearest_k=3))
    assert seen and set(seen) == {1}

    def own(_):
        barrier.wait()
        return torch.get_num_threads()

    assert list(workers.map(own, range(n_threads))) == [2] * n_threads
    fresh = []
    thread = threading.Thread(target=lambda: fresh.append(torch.get_num_threads()))
    thread.start()
    thread.join()
    assert (torch.get_num_threads(), fresh) == (3, [3])


def _scores_from_digits(x, y) -> np.ndarray:
    """:func:`quantized.scores` from NumPy's int64 products of the digits: the same float64
    steps, so the same float32 bits."""
    nx, ny = x.stats[:, quantized.NORM], y.stats[:, quantized.NORM]
    return (nx[:, None] + ny[None, :] - 2.0 * _g_from_digits(x, y)).astype(np.float32)


def _g_from_digits(x, y) -> np.ndarray:
    """``g`` (float64) from NumPy's int64 products of the digits and the float64 steps."""
    dim = x.dim
    hx, lx = (x.hl.numpy()[:, s].astype(np.int64) for s in (slice(0, dim), slice(dim, None)))
    hy, ly = (y.hl.numpy()[:, s].astype(np.int64) for s in (slice(0, dim), slice(dim, None)))
    high, mixed = hx @ hy.T, hx @ ly.T + lx @ hy.T
    sx, sy = x.stats[:, quantized.STEP], y.stats[:, quantized.STEP]
    return (16384.0 * high + 128.0 * mixed) * (sx[:, None] * sy[None, :])


def test_scores_through_the_scratch_stay_right_across_shapes(monkeypatch):
    """The product arrays are lent from a scratch and kept for the next block: blocks of other
    shapes in turn, kept pairs, pairs too large to keep (made afresh) and no pair kept at all
    score as from the digits."""
    rng = np.random.default_rng(5)
    centre = np.zeros(20)
    sizes = (5, 30, 40, 70, 90, 300)
    rows = {n: quantized.quantize(rng.standard_normal((n, 20)), centre) for n in sizes}
    shapes = [(30, 40), (70, 90), (30, 40), (5, 300), (90, 70)]
    for pair_bytes, kept_bytes in ((1 << 20, 1 << 22), (0, 1 << 22), (1 << 20, 0)):
        monkeypatch.setattr(quantized, "SCRATCH", quantized.Scratch(pair_bytes, kept_bytes))
        for a, b in shapes:
            got = quantized.scores(rows[a], rows[b])
            assert np.array_equal(got, _scores_from_digits(rows[a], rows[b]))
        assert quantized.SCRATCH.kept() <= kept_bytes


@pytest.mark.parametrize("strip", [1, 7, 64, 256])
@pytest.mark.parametrize("n", [0, 1, 5, 130])
def test_gram_in_strips_is_the_lower_triangle_from_the_digits(strip, n, passes, monkeypatch):
    """:func:`quantized.gram` multiplies strips of rows with the rows up to their last only
    (one strip, strips of one row, an uneven last strip): its lower triangle is the digits'
    ``g`` to the last bit, and the norms are the float32 squared norms."""
    monkeypatch.setattr(quantized, "GRAM_STRIP", strip)
    rng = np.random.default_rng(n)
    x = quantized.quantize(rng.standard_normal((n, 24)) * 3.0, np.zeros(24))
    g, norms32 = quantized.gram(x)
    lower = np.tril_indices(n)
    assert g.shape == (n, n)
    assert np.array_equal(g[lower], _g_from_digits(x, x).astype(np.float32)[lower])
    assert np.array_equal(norms32, x.stats[:, quantized.NORM].astype(np.float32))


def test_scratch_lends_each_pair_to_one_block_on_cache_lines():
    scratch = quantized.Scratch(pair_bytes=1 << 20, kept_bytes=12_000)  # a pair: 8 000 bytes
    with scratch.arrays(10, 100) as first, scratch.arrays(10, 100) as second:
        arrays = [*first, *second]
        for a in arrays:
            assert a.shape == (10, 100) and a.flags.c_contiguous and a.ctypes.data % 64 == 0
        starts = {a.ctypes.data for a in arrays}
        assert len(starts) == 4  # none shared while lent
    assert scratch.kept() == 8_000  # one pair given back, the other over the cap
    with scratch.arrays(20, 40) as again:  # fits in the kept pair: lent again
        assert {a.ctypes.data for a in again} <= starts
        assert scratch.kept() == 0
    with scratch.arrays(1, 0) as empty:
        assert empty[0].shape == (1, 0)
