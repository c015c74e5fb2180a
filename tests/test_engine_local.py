"""The in-process runner (neighbours/local.py): same numbers as the float64 brute force and as
the Dask graph, on every input family; when it runs and when the graph keeps the work."""

from __future__ import annotations

import time

import dask
import dask.array as da
import numpy as np
import pytest
import scenarios
from brute_force import assert_matches, brute_force
from scipy.spatial.distance import cdist

from medsyn_dask import evaluate_features, real_neighbourhood
from medsyn_dask.neighbours import euclidean, layout, local, threads


def gaussian(rng, n=420, m=380, d=96):
    """Isotropic: every distance close to every other (many near-ties at the radii)."""
    return rng.standard_normal((n, d), np.float32), rng.standard_normal((m, d), np.float32)


def clustered_relu(rng, n=420, m=380, d=96):
    """Clustered low-rank post-ReLU features, as a CNN's pooled activations."""
    centres, basis = rng.normal(size=(8, d)), rng.normal(scale=0.4, size=(8, 4, d))

    def draw(count):
        c = rng.integers(0, 8, count)
        out = centres[c] + np.einsum("nr,nrd->nd", rng.normal(size=(count, 4)), basis[c])
        return np.maximum(out + 0.2 * rng.normal(size=(count, d)), 0).astype(np.float32)

    return draw(n), draw(m)


def many_duplicates(rng, n=420, m=380, d=96):
    """A third exact and a third near duplicates; half of the synthetic set copies reals."""
    real, synth = clustered_relu(rng, n, m, d)
    real[1::3] = real[0::3][: len(real[1::3])]
    near = real[0::3][: len(real[2::3])]
    real[2::3] = near * (1 + 1e-6 * rng.normal(size=near.shape)).astype(np.float32)
    synth[: m // 2] = real[rng.permutation(n)[: m // 2]]
    return real, synth


def far(rng, n=420, m=380, d=96):
    real, synth = clustered_relu(rng, n, m, d)
    return real + np.float32(1000.0), synth + np.float32(1000.0)


FAMILIES = {f.__name__: f for f in (gaussian, clustered_relu, many_duplicates, far)}


@pytest.fixture
def no_default_client():
    """No distributed Client is the default here (a session fixture's client otherwise is), so
    that NumPy inputs of many blocks take the in-process runner."""
    # distributed's registry of defaults, and the client a `with Client(...)` made current
    from distributed.client import _current_client, _global_clients

    saved = dict(_global_clients)
    _global_clients.clear()
    token = _current_client.set(None)
    with dask.config.set(scheduler="threads"):  # a Client also made itself dask's scheduler
        yield
    _current_client.reset(token)
    _global_clients.update(saved)


@pytest.mark.parametrize("block_size", [64, 2048])  # many blocks / the runner's own blocks
@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_families_equal_brute_force_and_graph(name, block_size, no_default_client):
    real, synth = FAMILIES[name](np.random.default_rng(40))
    assert local.runs_here([real, synth], block_size)
    expected = brute_force(real, synth)
    here = evaluate_features(real, synth, block_size=block_size, compute_fid=False)
    assert_matches(here, expected)
    graph = evaluate_features(
        da.from_array(real, chunks=(100, -1)),
        da.from_array(synth, chunks=(100, -1)),
        block_size=block_size,
        compute_fid=False,
    )
    assert_matches(graph, expected)


@pytest.mark.parametrize("scale", [1e-22, 1e-25, 1e-40])
def test_features_below_float32s_normal_range_equal_brute_force(scale, no_default_client):
    """Features so small their squares underflow in float32 (150 of 150 rows were wrong at
    1e-25 before the envelopes had an absolute term)."""
    rng = np.random.default_rng(64)
    real, synth = scale * rng.standard_normal((150, 32)), scale * rng.standard_normal((120, 32))
    expected = brute_force(real, synth)
    assert_matches(evaluate_features(real, synth, block_size=64, compute_fid=False), expected)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("offset", [0.0, 0.5])
def test_rows_up_to_the_largest_norm_equal_brute_force(dtype, offset, no_default_client):
    """Rows as long as MAX_ROW_NORM allows (about 5.8e17), around the origin or far from it:
    the float32 scores stay finite and the answers exact."""
    rng = np.random.default_rng(65)
    real, synth = rng.standard_normal((150, 32)), rng.standard_normal((120, 32))
    synth[:4] = real[10:14]  # copies
    real, synth = real + offset * 8.0, synth + offset * 8.0
    longest = max(np.linalg.norm(a, axis=1).max() for a in (real, synth))
    scale = euclidean.MAX_ROW_NORM * (1 - 1e-6) / longest  # 1e-6: float32 rounding
    real, synth = (real * scale).astype(dtype), (synth * scale).astype(dtype)
    expected = brute_force(real, synth)
    assert_matches(evaluate_features(real, synth, block_size=64, compute_fid=False), expected)


@pytest.mark.parametrize("name", sorted(scenarios.HAMMING))
def test_hamming_here_equals_brute_force(name):
    real, synth = scenarios.HAMMING[name](np.random.default_rng(41))
    result = evaluate_features(real, synth, metric="hamming", block_size=48)
    assert_matches(result, brute_force(real, synth, metric="hamming"))


def test_reference_computed_here_is_reused_by_the_graph():
    real, synth = many_duplicates(np.random.default_rng(42))
    reference = real_neighbourhood(real, block_size=100)
    expected = brute_force(real, synth)
    np.testing.assert_array_equal(reference.radius_k, expected["radius_k"])
    lazy = da.from_array(synth, chunks=(90, -1))
    assert_matches(evaluate_features(real, lazy, block_size=100, reference=reference), expected)


def assert_parts_match(per_real: list, per_synth: list, expected: dict) -> None:
    """The runner's per-real and per-synthetic parts, concatenated, equal the brute force on
    every field."""
    names = {"nearest_distance": "distance"}
    for field in ("is_real", "is_copy", "nearest_distance", "nearest_real", "copy_ratio"):
        got = np.concatenate([getattr(p, field) for p in per_synth])
        np.testing.assert_array_equal(got, expected[names.get(field, field)])
    for field in ("copies", "in_radius"):
        got = np.concatenate([getattr(p, field) for p in per_real])
        np.testing.assert_array_equal(got, expected[field])


def test_runner_radii_and_compare_directly():
    """The runner's two passes on their own, with blocks smaller than the rows per thread."""
    real, synth = gaussian(np.random.default_rng(43), n=300, m=260, d=20)
    expected = brute_force(real, synth, nearest_k=3)
    centre = real.astype(np.float64).mean(axis=0)
    with local.Runner("euclidean", centre, "numpy", block_size=70) as run:
        smallest = run.radii(real, 3)
        per_real, per_synth = run.compare(real, synth, smallest, 0.0, 3)
        synth_spans = run._comparison(real, synth)[2]
    np.testing.assert_array_equal(smallest[:, 3], expected["radius_k"])
    assert len(per_real) == 5 and len(synth_spans) == 4  # 300 / 70 and 260 / 70 rows
    # One part per piece of a synthetic block: as many as the threads share evenly.
    assert len(per_synth) == len(run._pieces(synth_spans))
    assert_parts_match(per_real, per_synth, expected)


def hamming_codes(rng, n, m, d=60):
    """VQ-VAE-like codes: a constant background, half the synthetic set copied from reals."""
    real, synth = rng.integers(0, 16, (n, d)), rng.integers(0, 16, (m, d))
    real[:, : d // 3], synth[:, : d // 3] = 0, 0
    synth[: m // 2] = real[rng.permutation(n)[: m // 2]]
    return real, synth


@pytest.mark.parametrize("n_threads", [3, 8, 16])
@pytest.mark.parametrize("block_size", [64, 2048])
@pytest.mark.parametrize(
    "name, backend",
    [("gaussian", "numpy"), ("many_duplicates", "numpy"), ("gaussian", "int8"), ("codes", "numpy")],
)
def test_runner_on_many_cores_equals_brute_force(name, backend, block_size, n_threads, monkeypatch):
    """The layouts of a machine with more cores than CI's two (the pool's threads, the radii
    tasks, the comparison's wide blocks and their pieces): the same numbers on every image,
    on float32 and int8 scores and on Hamming codes."""
    monkeypatch.setattr(local, "threads", lambda: n_threads)
    rng = np.random.default_rng(47)
    if name == "codes":
        (real, synth), metric, centre = hamming_codes(rng, 300, 261), "hamming", None
    else:
        real, synth = FAMILIES[name](rng, n=300, m=261, d=20)
        metric, centre = "euclidean", real.astype(np.float64).mean(axis=0)
    expected = brute_force(real, synth, metric=metric, nearest_k=3)
    with local.Runner(metric, centre, backend, block_size=block_size) as run:
        assert run.n_threads == n_threads
        smallest = run.radii(real, 3, synth)
        per_real, per_synth = run.compare(real, synth, smallest, expected["margin"], 3)
    np.testing.assert_array_equal(smallest[:, 3], expected["radius_k"])
    np.testing.assert_array_equal(smallest[:, 1], expected["radius_1"])
    assert_parts_match(per_real, per_synth, expected)


def test_comparison_scored_ahead_during_the_radii_pass():
    """With the synthetic array, the radii pass queues the comparison's largest pairs (one per
    thread) behind its own; the comparison takes those scores, and the answer is the same as
    scoring every pair in the comparison. An error in between frees the queued scores."""
    real, synth = many_duplicates(np.random.default_rng(46), n=300, m=261, d=20)
    expected = brute_force(real, synth, nearest_k=3)
    centre = real.astype(np.float64).mean(axis=0)
    with local.Runner("euclidean", centre, "numpy", block_size=70) as run:
        smallest = run.radii(real, 3, synth)
        assert len(run._ahead) == local.AHEAD_PER_THREAD * run.n_threads
        first = run._comparison(real, synth)[-1][: len(run._ahead)]
        assert sorted(run._ahead) == sorted(first)  # the largest pairs
        per_real, per_synth = run.compare(real, synth, smallest, expected["margin"], 3)
        assert run._ahead == {}
    np.testing.assert_array_equal(smallest[:, 3], expected["radius_k"])
    assert_parts_match(per_real, per_synth, expected)
    other = synth[::-1].copy()  # scored ahead for synth, compared with another array
    with local.Runner("euclidean", centre, "numpy", block_size=70) as run:
        per_synth = run.compare(real, other, run.radii(real, 3, synth), expected["margin"], 3)[1]
    got = np.concatenate([p.nearest_distance for p in per_synth])
    np.testing.assert_array_equal(got, expected["distance"][::-1])
    with pytest.raises(RuntimeError), local.Runner("euclidean", centre, "numpy") as run:
        run.radii(real, 3, synth)
        assert run._ahead
        raise RuntimeError("stopped between the passes")
    assert run._ahead == {}


def test_scores_ahead_of_an_earlier_radii_call_are_not_taken():
    """radii() for one synthetic array, then for another: the comparison of the second takes
    none of the scores queued for the first (same block pairs, other columns)."""
    rng = np.random.default_rng(47)
    real, first, second = (rng.normal(size=(n, 20)).astype(np.float32) for n in (300, 70, 140))
    expected = brute_force(real, second, nearest_k=3)
    centre = real.astype(np.float64).mean(axis=0)
    with local.Runner("euclidean", centre, "numpy", block_size=70) as run:
        run.radii(real, 3, first)
        smallest = run.radii(real, 3, second)
        per_synth = run.compare(real, second, smallest, expected["margin"], 3)[1]
    got = np.concatenate([p.nearest_distance for p in per_synth])
    np.testing.assert_array_equal(got, expected["distance"])


def test_an_error_while_pairs_are_queued_cancels_them():
    """Ctrl-C (or an error) while the radii pass queues the comparison's scores: its block
    pairs not yet started are cancelled, as Executor.map does, not left to run on the pool
    that other evaluations share."""
    started = []

    def slow(pair):
        started.append(pair)
        time.sleep(0.01)

    def interrupted():
        raise KeyboardInterrupt

    with local.Runner("euclidean", np.zeros(3), "numpy") as run:
        with pytest.raises(KeyboardInterrupt):
            run._run_pairs("pairs", slow, list(range(200)), then=interrupted)
        run._pool.submit(lambda: None).result()  # every pair still queued would run first
    assert len(started) <= 2 * run.n_threads


def test_small_problems_take_fewer_threads_than_cores():
    """16 threads made N = M = 2 000, D = 512 2.4-3.9x slower than 2 on a 16-core machine
    (their blocks' Python, one thread at a time): threads grow as the square root of the work,
    in powers of two, from two (where there are two cores) to every core."""
    work = layout.pass_work
    assert work(2000, 2000, 512) == 512 * (2000 * 2001 / 2 + 2000 * 2000)
    assert work(2000, 0, 512) == 512 * 2000 * 2001 / 2  # the radii pass alone
    assert work(2000, 2000, 512, radii=False) == 512 * 2000 * 2000  # radii cached
    expected = {(2000, 512): 2, (2000, 2048): 4, (5000, 512): 4, (10_000, 512): 8}
    for (n, dim), count in expected.items():
        assert layout.useful_threads(work(n, n, dim), 16) == count, (n, dim)
    assert layout.useful_threads(work(20_000, 20_000, 512), 16) == 16
    assert layout.useful_threads(work(100, 100, 8), 16) == 2
    assert layout.useful_threads(work(100, 100, 8), 1) == 1
    assert layout.useful_threads(work(20_000, 20_000, 2048), 2) == 2
    assert layout.useful_threads(work(20_000, 20_000, 2048), 12) == 12  # all: not rounded
    assert layout.useful_threads(float("inf"), 16) == layout.useful_threads(float("nan"), 16) == 16
    counts = [layout.useful_threads(work(n, n, 512), 64) for n in range(500, 80_000, 500)]
    assert counts == sorted(counts) and counts[-1] == 64
    assert set(counts) == {2, 4, 8, 16, 32, 64}  # a pool per count: few of them
    run = local.Runner("euclidean", np.zeros(8), "numpy", work=work(100, 100, 8))
    assert run.n_threads == min(2, threads.threads())
    assert local.Runner("euclidean", np.zeros(8), "numpy").n_threads == threads.threads()


def test_hyperthreads_of_one_core_count_once(tmp_path):
    """Two GEMMs on one core's two hyperthreads take as long as one after the other: the
    runner takes a thread per physical core (Linux topology files; without them, per CPU)."""
    siblings = ["0,2", "1,3", "0,2", "1,3", "4-5", "4-5"]  # CPUs 0-3: two cores; 4-5: one
    for cpu, listed in enumerate(siblings):
        topology = tmp_path / f"cpu{cpu}" / "topology"
        topology.mkdir(parents=True)
        (topology / "thread_siblings_list").write_text(f"{listed}\n")
    sysfs = str(tmp_path)
    assert threads.physical_cores(frozenset({0, 1, 2, 3}), sysfs) == 2
    assert threads.physical_cores(frozenset({0, 1, 4, 5}), sysfs) == 3
    assert threads.physical_cores(frozenset({0}), sysfs) == 1
    assert threads.physical_cores(frozenset({0, 7}), sysfs) == 2  # cpu7 unreadable: count CPUs


def test_block_starts_give_every_thread_work():
    assert local.block_starts(2000, 2048, 2) == [0, 1000, 2000]
    assert local.block_starts(5000, 2048, 2) == [0, 1250, 2500, 3750, 5000]  # even, <= 2048
    assert local.block_starts(100, 2048, 2) == [0, 100]  # below MIN_LOCAL_BLOCK: one block
    assert local.block_starts(50_000, 2048, 2)[1] <= local.LOCAL_BLOCK
    assert local.block_starts(1000, 64, 2)[1] <= 64  # the caller's block size bounds memory


@pytest.mark.parametrize("n_threads", [8, 16, 32])
def test_many_threads_get_fewer_larger_blocks_with_enough_pairs(n_threads):
    """A block per thread made small blocks on many threads: at N = 5 000 on 16 threads (an
    H100 machine's CPU) 16 blocks of 313 rows, 0.54 s; 8 blocks of 625, 0.28 s, the same
    answer. The real pass's pairs still give every thread two."""
    for n in (5000, 20_000):
        starts = local.block_starts(n, 2048, n_threads)
        blocks = len(starts) - 1
        assert blocks <= max(layout.pair_blocks(n_threads), -(-n // local.LOCAL_BLOCK))
        assert layout.pair_blocks(n_threads) < n_threads
        assert blocks * (blocks + 1) // 2 >= layout.PAIRS_PER_THREAD * n_threads
        assert max(np.diff(starts)) <= local.LOCAL_BLOCK


def test_wide_synthetic_blocks_merged_in_pieces():
    """Fewer synthetic blocks than threads: each is merged in column pieces, one per thread,
    with the numbers of one merge per block."""
    real, synth = many_duplicates(np.random.default_rng(45), n=300, m=261, d=20)
    expected = brute_force(real, synth, nearest_k=3)
    centre = real.astype(np.float64).mean(axis=0)
    with local.Runner("euclidean", centre, "numpy") as run:
        run.n_threads = 4  # one synthetic block of 261 rows, four pieces
        smallest = run.radii(real, 3)
        per_real, per_synth = run.compare(real, synth, smallest, expected["margin"], 3)
    assert len(per_synth) == 4
    np.testing.assert_array_equal(smallest[:, 3], expected["radius_k"])
    assert_parts_match(per_real, per_synth, expected)


def test_merge_pieces_shared_evenly_by_the_threads():
    """Three synthetic blocks on two threads are merged in six pieces (not three: one thread
    would merge the third alone); many blocks are not cut."""
    run = local.Runner("euclidean", np.zeros(3), "numpy")
    run.n_threads = 2
    three = [(0, 1667), (1667, 3334), (3334, 5000)]
    halves = [(0, 0, 834), (0, 834, 1667), (1, 0, 834), (1, 834, 1667), (2, 0, 833), (2, 833, 1666)]
    assert run._pieces(three) == halves
    assert len(run._pieces([(0, 10), (10, 20)])) == 2
    assert len(run._pieces([(0, 10)])) == 2
    assert len(run._pieces([(i, i + 1) for i in range(9)])) == 9


def test_column_starts_make_few_wide_pairs():
    """The comparison's synthetic blocks: two pairs per thread with the real blocks, equal."""
    assert local.column_starts(2000, 4, 2048, 2) == [0, 2000]
    assert local.column_starts(5000, 4, 2048, 2) == [0, 1667, 3334, 5000]
    assert local.column_starts(50_000, 25, 2048, 2)[1] <= local.LOCAL_BLOCK
    assert local.column_starts(260, 5, 70, 2) == [0, 65, 130, 195, 260]  # within block_size
    assert local.column_starts(0, 1, 2048, 2) == [0]


def test_dask_and_zarr_like_inputs_keep_the_graph():
    real = np.zeros((10, 3), np.float32)
    assert not local.runs_here([da.from_array(real), real], 4)
    assert not local.runs_here([real, real.tolist()], 4)


def test_small_inputs_run_here_with_a_client_large_ones_on_it(extract_client):
    """With a Client, inputs of a few blocks are not scattered (no task reaches the cluster);
    larger ones go to the cluster as a graph."""
    real, synth = scenarios.near_duplicated(np.random.default_rng(44), n=200, m=150)
    with extract_client.as_current():
        assert local.runs_here([real, synth], 64)  # 200 rows <= LOCAL_BLOCKS * 64
        assert not local.runs_here([real, synth], 32)
        before = set(extract_client.run_on_scheduler(_task_prefixes))
        result = evaluate_features(real, synth, block_size=64, compute_fid=False)
        after = set(extract_client.run_on_scheduler(_task_prefixes))
        assert_matches(result, brute_force(real, synth))
        assert after == before  # nothing ran on the cluster
        on_cluster = evaluate_features(real, synth, block_size=32, compute_fid=False)
        assert "compare-real-synthetic" in set(extract_client.run_on_scheduler(_task_prefixes))
    assert_matches(on_cluster, brute_force(real, synth))


def test_small_lazy_inputs_are_read_here_large_ones_kept(tmp_path):
    """Dask and Zarr arrays of a few blocks become NumPy (one read), larger ones stay lazy;
    the evaluation of small lazy inputs then runs here and equals the brute force."""
    import zarr

    real, synth = scenarios.near_duplicated(np.random.default_rng(46), n=200, m=150)
    on_disk = zarr.create_array(str(tmp_path / "s.zarr"), shape=synth.shape, dtype=synth.dtype)
    on_disk[...] = synth
    lazy = da.from_array(real, chunks=(50, -1))
    got = local.in_memory_when_small([lazy, on_disk], 64, "threads")
    assert all(isinstance(a, np.ndarray) for a in got)
    np.testing.assert_array_equal(got[0], real)
    np.testing.assert_array_equal(got[1], synth)
    assert local.in_memory_when_small([lazy, on_disk], 32)[0] is lazy  # 200 rows > 4 x 32
    assert_matches(evaluate_features(lazy, on_disk, block_size=64), brute_force(real, synth))


def _task_prefixes(dask_scheduler) -> list[str]:
    return list(dask_scheduler.task_prefixes)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, np.int16])
def test_exact_distances_equal_cdist_bit_for_bit(dtype):
    """The compiled kernel (float32/float64) and the cdist fallback (others) alike."""
    rng = np.random.default_rng(45)
    scale = rng.choice([1e-3, 1.0, 100.0], (80, 1))
    x = (100 + rng.normal(size=(80, 300)) * scale).astype(dtype)
    y = (100 + rng.normal(size=(70, 300)) * scale[:70]).astype(dtype)
    rows, cols = rng.integers(0, 80, 2000), rng.integers(0, 70, 2000)
    want = cdist(x.astype(np.float64), y.astype(np.float64))[rows, cols]
    np.testing.assert_array_equal(euclidean.exact_distances(x, y, rows, cols), want)
    np.testing.assert_array_equal(euclidean.exact_distances(y, x, cols, rows), want)
