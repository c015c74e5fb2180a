"""Scores left on torch's device (:mod:`medsyn_dask.neighbours.device_scores`): each pass gives
the NumPy scan's values, each reduction the NumPy block's candidates and decisions to the last
bit, and the engine with ``backend="torch"`` (scores kept in torch tensors) the brute force's
answer, patient mode included. On torch's CPU here; on the GPU too where CUDA is present."""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager

import dask
import dask.array as da
import numpy as np
import pytest
import scenarios
from brute_force import assert_matches, assert_patients_match, brute_force, brute_force_patients

from medsyn_dask import evaluate_features
from medsyn_dask.neighbours import device_scores, euclidean, layout, local, scans
from medsyn_dask.neighbours.bounds import ScoreBlock
from medsyn_dask.neighbours.device_scores import DeviceScores
from medsyn_dask.neighbours.reductions import (
    column_min_candidates,
    compare_block,
    pairs_below,
    ratio_candidates,
    smallest_candidates,
)

torch = pytest.importorskip("torch")

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _on(score: np.ndarray, device: str) -> DeviceScores:
    return DeviceScores(torch.from_numpy(score.copy()).to(device))


def _tied_scores(rng) -> np.ndarray:
    score = np.round(rng.random((150, 131)) * 4 - 1, 2).astype(np.float32)  # ties, negatives
    score[3, :125] = np.inf  # a row with fewer finite scores than n
    score[:, 7] = np.inf  # a column with none
    return score


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("n", [1, 6, 130, 131, 140])
@pytest.mark.parametrize("axis", [0, 1])
def test_kth_smallest_on_the_device_equals_numpy(device, n, axis):
    score = _tied_scores(np.random.default_rng(1))
    got = scans.kth_smallest(_on(score, device), n, axis)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, scans.kth_smallest(score, n, axis))


@pytest.mark.parametrize("device", DEVICES)
def test_column_minima_select_and_scaled_below_on_the_device_equal_numpy(device):
    rng = np.random.default_rng(2)
    score = _tied_scores(rng)
    on = _on(score, device)
    weight = (rng.random(len(score)) + 0.5).astype(np.float32)
    for shared in (rng.random(len(score)) < 0.7, np.zeros(len(score), bool)):
        for got, want in zip(
            scans.column_minima(on, weight, shared),
            scans.column_minima(score, weight, shared),
            strict=True,
        ):
            np.testing.assert_array_equal(got, want)
    row_limit = np.quantile(score[np.isfinite(score)], rng.random(len(score)) * 0.1)
    col_limit = np.full(score.shape[1], -np.inf, np.float32)
    col_limit[::3] = 0.2
    ratio = np.full(score.shape[1], 0.1, np.float32)
    select_weight = np.where(rng.random(len(score)) < 0.5, weight, np.float32(np.nan))
    cases = [
        (row_limit.astype(np.float32),),
        (row_limit.astype(np.float32), col_limit),
        (row_limit.astype(np.float32), col_limit, select_weight, ratio),
    ]
    for args in cases:
        got, want = scans.select(on, *args), scans.select(score, *args)
        assert len(want[0]) > 0
        for g, w in zip(got, want, strict=True):  # the same pairs, in the same order
            np.testing.assert_array_equal(g, w)
    rows = rng.random(len(score)) < 0.6
    got, want = (
        scans.scaled_below(on, weight, rows, ratio),
        scans.scaled_below(score, weight, rows, ratio),
    )
    assert len(want[0]) > 0
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("device", DEVICES)
def test_device_scores_read_as_the_numpy_block(device):
    rng = np.random.default_rng(3)
    score = _tied_scores(rng)
    on = _on(score, device)
    rows, cols = rng.integers(0, 150, 40), rng.integers(0, 131, 40)
    assert on.shape == score.shape and on.dtype == score.dtype and len(on) == len(score)
    np.testing.assert_array_equal(np.asarray(on), score)
    np.testing.assert_array_equal(on[rows, cols], score[rows, cols])
    np.testing.assert_array_equal(on[rows], score[rows])
    np.testing.assert_array_equal(on[2:9], score[2:9])
    np.testing.assert_array_equal(on <= score[:, :1], score <= score[:, :1])
    np.testing.assert_array_equal(on < score[:1], score < score[:1])
    np.testing.assert_array_equal(on.min(axis=0), score.min(axis=0))
    np.testing.assert_array_equal(on.max(axis=1), score.max(axis=1))
    np.testing.assert_array_equal(np.asarray(on.transposed()), score.T)
    allowed = rng.random(score.shape) < 0.8
    np.testing.assert_array_equal(
        np.asarray(scans.masked(on, allowed)), scans.masked(score, allowed)
    )


def _blocks(name: str, device: str, rng) -> tuple[ScoreBlock, ScoreBlock, np.ndarray, np.ndarray]:
    """A real x synthetic block of a scenario with NumPy scores, the same block with the same
    scores on the device, and the real radii (k = 5) and copy thresholds of the scenario."""
    real, synth = scenarios.EUCLIDEAN[name](rng)
    centre = real.astype(np.float64).mean(axis=0)
    block = euclidean.block_bounds(real, synth, centre, backend="numpy")
    on = ScoreBlock(_on(block.score, device), block.rows, block.cols, block.exact)
    result = brute_force(real, synth)
    return block, on, result["radius_k"], result["radius_1"] + 1e-3


def _assert_same(got, want) -> None:
    """Candidates, partial results or tuples of them equal field by field, to the last bit."""
    if isinstance(want, tuple | list):
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            _assert_same(g, w)
    elif want is None:
        assert got is None
    elif dataclasses.is_dataclass(want):
        for field in dataclasses.fields(want):
            _assert_same(getattr(got, field.name), getattr(want, field.name))
    else:
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", sorted(scenarios.EUCLIDEAN))
def test_reductions_of_a_device_block_equal_the_numpy_blocks(name, device):
    block, on, radius_k, copy_threshold = _blocks(name, device, np.random.default_rng(4))
    for n, sides in ((1, {}), (6, {}), (6, {"columns": False}), (6, {"rows": False}), (70, {})):
        _assert_same(smallest_candidates(on, n, **sides), smallest_candidates(block, n, **sides))
    allowed = np.random.default_rng(5).random(block.shape) < 0.7
    _assert_same(smallest_candidates(on, 6, allowed), smallest_candidates(block, 6, allowed))
    real_part, synth_part = compare_block(on, radius_k, copy_threshold, 7)
    want_real, want_synth = compare_block(block, radius_k, copy_threshold, 7)
    _assert_same((real_part, synth_part), (want_real, want_synth))
    assert want_synth.is_real.any() and len(want_synth.nearest) >= block.shape[1]
    _assert_same(column_min_candidates(on), column_min_candidates(block))
    _assert_same(ratio_candidates(on, copy_threshold), ratio_candidates(block, copy_threshold))
    _assert_same(pairs_below(on, radius_k), pairs_below(block, radius_k))
    _assert_same(smallest_candidates(on.transpose(), 2), smallest_candidates(block.transpose(), 2))


@pytest.fixture
def scores_stay(monkeypatch):
    """The torch backend's scores kept in torch tensors on the CPU too (as on a GPU), in this
    process: the graph on the synchronous scheduler, whatever Client an earlier test left as
    the default. Yields the count of device blocks made, for the test to check it used them."""
    made = []

    class Counted(DeviceScores):
        def __init__(self, tensor) -> None:
            made.append(1)
            super().__init__(tensor)

    monkeypatch.setattr(euclidean, "_scores_stay", lambda device: True)
    monkeypatch.setattr(euclidean, "DeviceScores", Counted)
    with dask.config.set(scheduler="sync"):
        yield made


def _here(name: str, rng) -> tuple[np.ndarray, np.ndarray]:
    """A scenario's features at 600 real x 500 synthetic: with ``block_size=HERE`` at most
    LOCAL_BLOCKS blocks (run in this process even beside a Client) and, on a device's layout
    (blocks up to 4 x HERE rows), three real blocks."""
    return scenarios.EUCLIDEAN[name](rng, n=600, m=500)


HERE = 150


def test_a_gpus_scores_stay_there_the_cpus_come_back():
    real, synth = scenarios.EUCLIDEAN["clustered"](np.random.default_rng(6))
    centre = real.astype(np.float64).mean(axis=0)
    block = euclidean.block_bounds(real, synth, centre, backend="torch")
    on_gpu = torch.cuda.is_available()
    assert isinstance(block.score, DeviceScores if on_gpu else np.ndarray)
    assert isinstance(
        euclidean.block_bounds(real, synth, centre, backend="numpy").score, np.ndarray
    )
    assert euclidean._scores_stay(torch.device("cuda"))
    assert not euclidean._scores_stay(torch.device("cpu"))


@pytest.mark.parametrize("name", sorted(scenarios.EUCLIDEAN))
def test_engine_with_scores_in_torch_equals_brute_force(name, scores_stay):
    real, synth = _here(name, np.random.default_rng(20))
    result = evaluate_features(real, synth, block_size=HERE, backend="torch")
    assert_matches(result, brute_force(real, synth))
    assert scores_stay  # the blocks were scored into torch tensors here


@pytest.mark.parametrize("block_size", [HERE, 1000])
@pytest.mark.parametrize("name", sorted(scenarios.EUCLIDEAN))
def test_patient_mode_with_scores_in_torch_equals_brute_force(name, block_size, scores_stay):
    rng = np.random.default_rng(20)
    real, synth = _here(name, rng)
    patients = rng.integers(0, 150, len(real))
    result = evaluate_features(
        real, synth, block_size=block_size, backend="torch", patients=patients
    )
    assert_matches(result, brute_force(real, synth))
    assert_patients_match(result.patients, brute_force_patients(real, synth, patients))
    assert scores_stay


def test_scores_on_a_device_take_fewer_threads_and_larger_blocks(scores_stay, monkeypatch):
    """The runner's layout where the scores stay on a GPU: DEVICE_THREADS threads, blocks up to
    DEVICE_SCALE x block_size (the graph's and the CPU's blocks unchanged)."""
    monkeypatch.setattr(local, "threads", lambda: 16)
    real = np.random.default_rng(7).standard_normal((3000, 8)).astype(np.float32)
    sizes = {}
    for backend in ("numpy", "torch"):
        with local.Runner("euclidean", real.mean(axis=0), backend, block_size=400) as run:
            spans, _ = run.blocks(real)
            sizes[backend] = (run.n_threads, max(b - a for a, b in spans))
    assert sizes["numpy"][0] == 16 and sizes["numpy"][1] <= 400
    threads, rows = sizes["torch"]
    assert threads == layout.DEVICE_THREADS and 400 < rows <= layout.DEVICE_SCALE * 400
    assert euclidean.scores_on_device("torch") and not euclidean.scores_on_device("numpy")
    big = layout.LOCAL_BLOCK + 1000  # a cluster's block size: the runner's blocks stay within
    for backend, rows in (("numpy", layout.LOCAL_BLOCK), ("torch", 4 * layout.LOCAL_BLOCK)):
        with local.Runner("euclidean", None, backend, block_size=big) as run:
            assert run.block_size == rows


@pytest.fixture
def gpu_full(monkeypatch, caplog):
    """Every pass on a device block, or every GEMM too (``full("gemm")``), raises torch's
    out-of-memory error, as on a GPU that the workers' models fill."""

    def oom(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory (raised by the test)")

    passes = ("kth_smallest", "kth_upper_bounds", "column_minima", "select", "scaled_below")
    for name in (*passes, "masked"):
        monkeypatch.setattr(DeviceScores, name, oom)
    monkeypatch.setattr(device_scores, "_warned", False)

    def full(what: str = "passes") -> None:
        if what == "gemm":

            @contextmanager
            def no_room_for_a_product():
                oom()
                yield

            monkeypatch.setattr(euclidean, "full_float32_matmul", no_room_for_a_product)

    caplog.set_level("WARNING")
    return full


@pytest.mark.parametrize("what", ["passes", "gemm"])
def test_no_room_on_the_gpu_moves_blocks_to_the_cpu(what, gpu_full, scores_stay, caplog):
    """A GPU without room for a block's passes (or its product) leaves them to the CPU: the
    same answer, one warning a process."""
    gpu_full(what)
    real, synth = _here("near_duplicated", np.random.default_rng(8))
    patients = np.random.default_rng(9).integers(0, 150, len(real))
    result = evaluate_features(real, synth, block_size=HERE, backend="torch", patients=patients)
    assert_matches(result, brute_force(real, synth))
    assert_patients_match(result.patients, brute_force_patients(real, synth, patients))
    warned = [r for r in caplog.records if "no room on the GPU" in r.getMessage()]
    assert len(warned) == 1 and "raised by the test" in warned[0].getMessage()
    assert bool(scores_stay) == (what == "passes")  # no product: no device block


@pytest.fixture
def no_block_copies(monkeypatch):
    """A device block that refuses to be read whole on the host (``np.asarray``, a comparison
    with the whole block, a slice): the engine's flow must read it through its passes and
    gathers of selected pairs only."""

    def refuse(self, *args, **kwargs):
        raise AssertionError("a whole score block was copied to the host")

    for name in ("__array__", "__le__", "__lt__"):
        monkeypatch.setattr(DeviceScores, name, refuse)


@pytest.mark.parametrize("name", ["clustered", "near_duplicated", "tied"])
def test_the_engine_reads_device_blocks_through_their_passes_only(
    name, scores_stay, no_block_copies
):
    """Image level and patient mode, in-process and through the Dask graph: no block comes
    back to the host whole (only its passes' results and the selected pairs' scores)."""
    real, synth = _here(name, np.random.default_rng(10))
    patients = np.random.default_rng(11).integers(0, 150, len(real))
    # Dask arrays of more than LOCAL_BLOCKS blocks take the graph (its tasks in this process).
    lazy = [da.from_array(a, chunks=(100, -1)) for a in (real, synth)]
    assert len(lazy[0].chunks[0]) > local.LOCAL_BLOCKS
    for inputs, block_size in (((real, synth), HERE), (lazy, 100)):
        scores_stay.clear()
        result = evaluate_features(
            *inputs, block_size=block_size, backend="torch", patients=patients
        )
        assert_matches(result, brute_force(real, synth))
        assert_patients_match(result.patients, brute_force_patients(real, synth, patients))
        assert scores_stay
