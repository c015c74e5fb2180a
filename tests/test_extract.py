"""Extraction on a real 2-worker LocalCluster into Zarr stores on disk and on S3 (moto)."""

from __future__ import annotations

import hashlib
import shutil

import numpy as np
import pytest
import torch
from image_files import mixed_dataset, png_dataset, upload, volume_dataset, write_nifti

from medsyn_dask.features import create_extractor, extract_features, load_features
from medsyn_dask.features.store import list_feature_sets
from medsyn_dask.features.vqvae import VQVAE
from medsyn_dask.sources import BadImageError, list_images, preprocess, read_image

RES = 32


def _direct(paths, model="pixels", weights=None, resolution=RES, volume=False, options=None):
    """Features computed one image at a time in this process: the expected values."""
    ext = create_extractor(model, weights=weights)
    rows = [
        ext(preprocess(read_image(p, options), resolution, 1, volume=volume)[None])[0]
        for p in paths
    ]
    return np.stack(rows)


def test_features_align_with_paths_whatever_the_partitioning(tmp_path, extract_client):
    root = str(mixed_dataset(tmp_path / "data", per_class=6))
    listed = list_images(root)
    stores = {}
    for size, seed in [(1, 7), (4, 3), (50, None)]:
        store = str(tmp_path / f"s{size}.zarr")
        res = extract_features(
            root,
            store,
            "real",
            resolution=RES,
            partition_size=size,
            shuffle_seed=seed,
            client=extract_client,
        )
        assert res.n_partitions == -(-12 // size) and res.n_resumed == 0
        stores[size] = load_features(store, "real")
    expected = _direct(listed.paths)
    for size, loaded in stores.items():
        assert list(loaded.paths) == list(listed.paths), size
        assert list(loaded.classes) == list(listed.classes)
        assert loaded.features.chunks[0][0] == min(size, 12)
        np.testing.assert_allclose(loaded.features.compute(), expected, atol=1e-6)
    # distinct images: a row swap would be caught
    assert len({r.tobytes() for r in expected}) == len(expected)
    prov = stores[4].provenance
    assert prov.extractor == "pixels" and prov.resolution == RES
    assert prov.num_channels == 1 and prov.weights_sha256 is None
    assert prov.package_version and prov.complete and prov.n_images == 12


def test_interrupted_run_resumes_and_equals_a_clean_run(tmp_path, extract_client):
    root = png_dataset(tmp_path / "data", per_class=10)
    bad = root / "b" / "009.png"  # in the last partition
    good_bytes = bad.read_bytes()
    bad.write_bytes(good_bytes[:40])  # truncated
    store = str(tmp_path / "f.zarr")
    kw = dict(resolution=RES, partition_size=4, client=extract_client)
    with pytest.raises(BadImageError, match=r"b/009.png: cannot decode"):
        extract_features(str(root), store, "real", **kw)
    ((name, attrs),) = list_feature_sets(store, "real").items()
    assert not attrs.complete
    with pytest.raises(ValueError, match="incomplete"):
        load_features(store, "real")
    done_before = len(list((tmp_path / "f.zarr" / "real" / name / "partitions").iterdir())) - 1
    assert 1 <= done_before < 5
    bad.write_bytes(good_bytes)  # the file is fixed; the rerun finishes the job
    res = extract_features(str(root), store, "real", **kw)
    assert res.name == name and res.n_resumed >= done_before and res.n_bad == 0
    clean = str(tmp_path / "clean.zarr")
    extract_features(str(root), clean, "real", **kw)
    a, b = load_features(store, "real"), load_features(clean, "real")
    np.testing.assert_array_equal(a.features.compute(), b.features.compute())
    assert list(a.paths) == list(b.paths)


def test_finished_partitions_are_not_recomputed(tmp_path, extract_client):
    root = png_dataset(tmp_path / "data", per_class=4)
    store = str(tmp_path / "f.zarr")
    kw = dict(resolution=RES, partition_size=2, client=extract_client)
    first = extract_features(str(root), store, "real", **kw)
    before = load_features(store, "real").features.compute()
    # Files untouched: a rerun keeps the stored rows (it resumes, not redoes).
    again = extract_features(str(root), store, "real", **kw)
    assert again.name == first.name and again.n_resumed == first.n_partitions == 4
    assert again.n_reused == 8 and again.n_reextracted == 0
    np.testing.assert_array_equal(load_features(store, "real").features.compute(), before)
    # Same file names, new content: the stored rows no longer match their files and are
    # re-extracted (issue 9: stale features must never be reused).
    png_dataset(tmp_path / "data", per_class=4, seed=99)
    third = extract_features(str(root), store, "real", **kw)
    assert third.name == first.name and third.n_resumed == 0 and third.n_reextracted == 8
    after = load_features(store, "real")
    np.testing.assert_allclose(after.features.compute(), _direct(after.paths), atol=1e-6)


def test_bad_images_are_skipped_and_listed(tmp_path, extract_client):
    root = png_dataset(tmp_path / "data", per_class=5)
    (root / "a" / "002.png").write_bytes(b"")
    (root / "b" / "zz.jpg").write_bytes(b"\xff\xd8\xff garbage")
    store = str(tmp_path / "f.zarr")
    res = extract_features(
        str(root),
        store,
        "real",
        resolution=RES,
        partition_size=3,
        on_bad_image="skip",
        client=extract_client,
    )
    assert sorted(b.path for b in res.bad_images) == ["a/002.png", "b/zz.jpg"]
    assert all("cannot decode" in b.error for b in res.bad_images)
    loaded = load_features(store, "real")
    assert len(loaded.paths) == 9 and loaded.features.shape == (9, 1024)
    assert not any(p.endswith(("a/002.png", "b/zz.jpg")) for p in loaded.paths)
    assert np.isfinite(loaded.features.compute()).all()
    np.testing.assert_allclose(loaded.features.compute(), _direct(loaded.paths), atol=1e-6)
    everything = load_features(store, "real", include_bad=True)
    assert everything.features.shape == (11, 1024)
    assert np.isnan(everything.features.compute()).any(axis=1).sum() == 2
    assert everything.provenance.n_bad == 2
    assert sorted(b.path for b in loaded.bad_images) == ["a/002.png", "b/zz.jpg"]


def test_volumes_with_a_wrong_dimension_file(tmp_path, extract_client):
    root = volume_dataset(tmp_path / "vols", per_class=4)
    write_nifti(root / "vol" / "v9_4d.nii", np.zeros((5, 5, 5, 2), np.float32))
    store = str(tmp_path / "v.zarr")
    kw = dict(resolution=16, partition_size=2, client=extract_client)
    with pytest.raises(BadImageError, match=r"v9_4d.nii: expected a 3D volume"):
        extract_features(str(root), store, "vols", **kw)
    res = extract_features(str(root), store, "vols", on_bad_image="skip", **kw)
    assert [b.path for b in res.bad_images] == ["vol/v9_4d.nii"]
    loaded = load_features(store, "vols")
    assert loaded.features.shape == (4, 16**3)
    np.testing.assert_allclose(
        loaded.features.compute(),
        _direct(loaded.paths, resolution=16, volume=True),
        atol=1e-6,
    )


def test_vqvae_codes_through_dask_and_provenance(tmp_path, extract_client):
    root = png_dataset(tmp_path / "data", per_class=3)
    torch.manual_seed(0)
    ckpt = tmp_path / "vqvae_256.pt"
    torch.save(VQVAE(size=256).state_dict(), ckpt)
    store = str(tmp_path / "f.zarr")
    res = extract_features(
        str(root),
        store,
        "synthetic",
        "vqvae-bottom",
        weights=str(ckpt),
        resolution=64,
        partition_size=2,
        client=extract_client,
    )
    loaded = load_features(store, "synthetic")
    codes = loaded.features.compute()
    assert res.n_features == 16 * 16 and codes.dtype == np.int16
    np.testing.assert_array_equal(
        codes, _direct(loaded.paths, "vqvae-bottom", str(ckpt), resolution=64)
    )
    assert loaded.provenance.weights_sha256 == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert loaded.provenance.extractor == "vqvae-bottom"


def test_changed_configuration_writes_a_new_feature_set(tmp_path, extract_client):
    root = str(png_dataset(tmp_path / "data", per_class=3))
    store = str(tmp_path / "f.zarr")
    first = extract_features(root, store, "real", resolution=16, client=extract_client)
    before = load_features(store, "real").features.compute()
    second = extract_features(root, store, "real", resolution=32, client=extract_client)
    assert first.name != second.name
    with pytest.raises(ValueError, match="2 completed feature sets"):
        load_features(store, "real")
    np.testing.assert_array_equal(
        load_features(store, "real", resolution=16).features.compute(), before
    )
    assert load_features(store, "real", name=second.name).provenance.resolution == 32
    # a new image changes the image list: another new set, the old ones untouched
    shutil.copy(tmp_path / "data" / "a" / "000.png", tmp_path / "data" / "a" / "new.png")
    third = extract_features(root, store, "real", resolution=16, client=extract_client)
    assert third.name not in (first.name, second.name) and third.n_images == 7
    assert len(list_feature_sets(store, "real")) == 3


def test_s3_images_to_s3_store(tmp_path, extract_client, s3_server, s3_bucket):
    local = mixed_dataset(tmp_path / "data", per_class=4)
    fs = s3_server.filesystem()
    upload(local, fs, f"{s3_bucket}/images")
    opts = s3_server.storage_options
    store = f"{s3_bucket}/features.zarr"
    res = extract_features(
        f"{s3_bucket}/images",
        store,
        "real",
        resolution=RES,
        partition_size=3,
        storage_options=opts,
        client=extract_client,
    )
    assert res.n_images == 8 and res.n_resumed == 0
    again = extract_features(
        f"{s3_bucket}/images",
        store,
        "real",
        resolution=RES,
        partition_size=3,
        storage_options=opts,
        client=extract_client,
    )
    assert again.n_resumed == res.n_partitions == 3
    loaded = load_features(store, "real", storage_options=opts)
    assert loaded.paths[0].startswith(f"{s3_bucket}/images/benign/")
    expected = _direct(list_images(str(local)).paths)
    np.testing.assert_allclose(loaded.features.compute(), expected, atol=1e-6)
    assert fs.exists(f"{store}/real/{res.name}/partitions/2/zarr.json")


def test_volumes_with_a_2d_model_use_central_slices(tmp_path, extract_client):
    root = volume_dataset(tmp_path / "vols", per_class=3, shape=(20, 18, 16))
    torch.manual_seed(1)
    ckpt = tmp_path / "vqvae.pt"
    torch.save(VQVAE(size=256).state_dict(), ckpt)
    store = str(tmp_path / "v.zarr")
    res = extract_features(
        str(root),
        store,
        "vols",
        "vqvae-top",
        weights=str(ckpt),
        resolution=32,
        client=extract_client,
    )
    assert res.n_features == 3 * 4 * 4  # three 32x32 slices, 4x4 top codes each
    loaded = load_features(store, "vols")
    ext = create_extractor("vqvae-top", weights=str(ckpt))
    for path, row in zip(loaded.paths, loaded.features.compute(), strict=True):
        vol = preprocess(read_image(path), 32, volume=True)  # (1, 32, 32, 32)
        slices = [vol[:, 16], vol[:, :, 16], vol[:, :, :, 16]]
        expected = np.concatenate([ext(s[None])[0] for s in slices])
        np.testing.assert_array_equal(row, expected)


def test_gpu_workers_are_asked_for_their_resource(tmp_path, extract_client):
    from distributed import Client, LocalCluster
    from distributed.diagnostics.plugin import SchedulerPlugin

    from medsyn_dask.cluster import GPU_RESOURCE
    from medsyn_dask.features.extract import _resources

    class Restrictions(SchedulerPlugin):
        """Records the resource restrictions of extraction tasks as they start."""

        def __init__(self, scheduler) -> None:
            self.scheduler, self.seen = scheduler, []

        def transition(self, key, start, finish, *args, **kwargs) -> None:
            if finish == "processing" and str(key).startswith("extract-features-"):
                restrictions = self.scheduler.tasks[key].resource_restrictions
                self.seen.append(dict(restrictions or {}))

    # CPU-only workers: no restriction (else the tasks would wait forever)
    assert _resources(extract_client) is None
    root = str(png_dataset(tmp_path / "data", per_class=2))
    with (
        LocalCluster(
            n_workers=1,
            processes=False,
            resources={GPU_RESOURCE: 1},
            dashboard_address="127.0.0.1:0",
        ) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        assert _resources(client) == {GPU_RESOURCE: 1}
        plugin = Restrictions(cluster.scheduler)
        cluster.scheduler.add_plugin(plugin)
        extract_features(root, str(tmp_path / "f.zarr"), "real", resolution=16, client=client)
    assert len(plugin.seen) >= 2  # the probe and the partition
    assert all(r == {GPU_RESOURCE: 1} for r in plugin.seen)


def test_one_probe_per_configuration_and_cluster(tmp_path):
    """A job's sets share their model: the second new set of one configuration asks no
    worker for the feature count again; another resolution does. (``pixels`` at sizes its grid
    does not divide runs on torch and is probed; at the others its size is known.)"""
    from distributed import Client, LocalCluster
    from distributed.diagnostics.plugin import SchedulerPlugin

    class Probes(SchedulerPlugin):
        def __init__(self) -> None:
            self.keys: list[str] = []

        def transition(self, key, start, finish, *args, **kwargs) -> None:
            if finish == "processing" and str(key).startswith("extract-features-probe-"):
                self.keys.append(str(key))

    roots = [str(png_dataset(tmp_path / f"data{i}", per_class=2)) for i in range(2)]
    store = str(tmp_path / "f.zarr")
    with (
        LocalCluster(n_workers=1, processes=False, dashboard_address="127.0.0.1:0") as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        probes = Probes()
        cluster.scheduler.add_plugin(probes)
        for i, root in enumerate(roots):
            done = extract_features(root, store, f"set{i}", resolution=16, client=client)
            assert done.n_features == 1024  # pixels: a 32 x 32 grid
        assert len(probes.keys) == 1
        extract_features(roots[0], store, "other", resolution=24, client=client)
        assert len(probes.keys) == 2
        done = extract_features(roots[0], store, "numpy", resolution=64, client=client)
        assert len(probes.keys) == 2 and done.n_features == 1024


def test_pixels_workers_import_torch_only_for_windows_numpy_cannot_pool(tmp_path):
    """``pixels`` whose grid divides the resolution runs in NumPy: a fresh worker extracts
    without importing torch (a second and a half of CPU per worker); another resolution goes
    through torch's pooling and imports it."""
    from distributed import Client, LocalCluster

    def torch_imported() -> bool:  # pickled by value: a worker need not import this module
        import sys

        return "torch" in sys.modules

    root = str(png_dataset(tmp_path / "data", per_class=3))
    with (
        LocalCluster(
            n_workers=1, threads_per_worker=1, host="127.0.0.1", dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
    ):
        for resolution, imported in [(64, False), (48, True)]:  # 32 divides 64, not 48
            store = str(tmp_path / f"s{resolution}.zarr")
            extract_features(root, store, "real", resolution=resolution, client=client)
            assert list(client.run(torch_imported).values()) == [imported], resolution
            rows = load_features(store, "real").features.compute()
            paths = list_images(root).paths
            np.testing.assert_array_equal(rows, _direct(paths, resolution=resolution))
