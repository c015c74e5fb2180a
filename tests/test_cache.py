"""The real set's cached radii and FID statistics: keyed by the features' bytes, never stale."""

from __future__ import annotations

import dask.array as da
import numpy as np

from medsyn_dask.cache import (
    cache_key,
    features_digest,
    load_real_neighbourhood,
    save_real_neighbourhood,
)
from medsyn_dask.evaluate import real_neighbourhood


def test_digest_sees_every_byte_and_every_block_layout_alike():
    x = np.random.default_rng(0).normal(size=(50, 7)).astype(np.float32)
    d = features_digest(x)
    assert d == features_digest(da.from_array(x, chunks=(13, 7)))  # blocks do not matter
    y = x.copy()
    y[37, 4] = np.nextafter(y[37, 4], np.float32(1))  # one ulp in one value
    assert features_digest(y) != d
    assert features_digest(x[::-1]) != d  # order matters: rows align with paths
    assert features_digest(x[:-1]) != d
    assert features_digest(x.astype(np.float64)) != d


def test_key_depends_on_metric_and_k():
    keys = {cache_key("abc", m, k) for m in ("euclidean", "hamming") for k in (1, 5)}
    assert len(keys) == 4


def test_round_trip_equals_a_fresh_computation(tmp_path):
    x = np.random.default_rng(1).normal(size=(40, 6))
    ref = real_neighbourhood(x, nearest_k=3, compute_fid=True)
    key = cache_key(features_digest(x), "euclidean", 3)
    store = str(tmp_path / "features.zarr")
    assert load_real_neighbourhood(store, key, len(x)) is None
    save_real_neighbourhood(store, key, ref)
    got = load_real_neighbourhood(store, key, len(x))
    np.testing.assert_array_equal(got.smallest, ref.smallest)
    np.testing.assert_array_equal(got.centre, ref.centre)
    assert (got.metric, got.nearest_k) == ("euclidean", 3)
    np.testing.assert_array_equal(got.fid_statistics.fit.cov, ref.fid_statistics.fit.cov)
    assert load_real_neighbourhood(store, key, len(x) + 1) is None  # another size: not used
    assert not list((tmp_path / "features.zarr").rglob("*.partial"))


def test_damaged_entry_is_ignored(tmp_path):
    store = str(tmp_path / "s")
    x = np.arange(20.0).reshape(10, 2)
    key = cache_key(features_digest(x), "euclidean", 2)
    save_real_neighbourhood(store, key, real_neighbourhood(x, nearest_k=2))
    (entry,) = (tmp_path / "s").rglob("*.npz")
    entry.write_bytes(b"not an npz")
    assert load_real_neighbourhood(store, key, 10) is None


def test_a_second_study_reuses_the_real_side_and_a_changed_real_set_does_not(
    tmp_path, extract_client, capsys
):
    import json
    import os

    from PIL import Image

    from medsyn_dask.cli import main
    from medsyn_dask.phantoms import write_demo_dataset

    data = write_demo_dataset(tmp_path / "d", n_real=10, n_synthetic=6, size=32)
    address = extract_client.scheduler.address
    store = tmp_path / "features.zarr"

    def run(out, group):
        args = ["analyze", "--real", str(data.real), "--synthetic",
                f"{group}={data.synthetic[group]}", "--output", str(out), "--resolution", "16",
                "--features-store", str(store), "--scheduler-address", address]
        assert main(args) == 0
        return json.loads((out / "metrics.json").read_text()), capsys.readouterr().err

    run(tmp_path / "a", "memorizer")
    metrics, err = run(tmp_path / "b", "faithful")
    assert "reused from the feature store" in err
    fresh = tmp_path / "fresh"
    args = ["analyze", "--real", str(data.real), "--synthetic",
            f"faithful={data.synthetic['faithful']}", "--output", str(fresh), "--resolution", "16",
            "--scheduler-address", address]
    assert main(args) == 0
    assert "reused" not in capsys.readouterr().err
    expected = json.loads((fresh / "metrics.json").read_text())
    for key in ("fidelity", "privacy", "precision_privacy", "fid", "std", "sets"):
        assert metrics["groups"]["faithful"][key] == expected["groups"]["faithful"][key], key
    # one real image changed in place: its features change, so the cache is not used
    first = data.files("real")[0]
    pixels = np.asarray(Image.open(first))
    Image.fromarray(255 - pixels).save(first)
    os.utime(first, (os.stat(first).st_atime, os.stat(first).st_mtime + 10))
    _, err = run(tmp_path / "c", "faithful")
    assert "reused from the feature store" not in err
