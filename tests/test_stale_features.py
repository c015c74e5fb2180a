"""Stored features always match their images (issue 9): fingerprints, reuse, refusal, lock."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import zarr
from image_files import png_dataset, upload
from PIL import Image

import medsyn_dask
from medsyn_dask.errors import InputError
from medsyn_dask.features import create_extractor, extract_features, load_features
from medsyn_dask.features.feature_set import ATTRS_KEY
from medsyn_dask.features.lock import FeatureSetBusy, SetLock
from medsyn_dask.phantoms import write_demo_dataset
from medsyn_dask.settings import AnalyzeSettings
from medsyn_dask.sources import preprocess, read_image
from medsyn_dask.sources.readers import BadImageError

RES = 16


def _direct(paths, options=None) -> np.ndarray:
    ext = create_extractor("pixels")
    return np.stack([ext(preprocess(read_image(p, options), RES, 1)[None])[0] for p in paths])


def _overwrite(target: Path, source: Path, seconds_ahead: int = 10) -> None:
    """Replace ``target``'s bytes by ``source``'s in place, its mtime set clearly forward."""
    mtime = target.stat().st_mtime_ns + seconds_ahead * 10**9
    shutil.copyfile(source, target)
    os.utime(target, ns=(mtime, mtime))


def _markers(store: Path, name: str) -> dict[int, int]:
    """Partition -> mtime (ns) of its marker."""
    markers = (store / "real" / name / "partitions").glob("*/zarr.json")
    return {int(p.parent.name): p.stat().st_mtime_ns for p in markers}


def test_group_regenerated_in_place_with_copies_is_caught(tmp_path, extract_client):
    data = write_demo_dataset(tmp_path / "demo", n_real=12, n_synthetic=8, size=32)
    settings = AnalyzeSettings(
        real=str(data.real),
        synthetic={"faithful": str(data.synthetic["faithful"])},
        output=str(tmp_path / "out"),
        resolutions=(RES,),
        nearest_k=3,
    ).validate()
    before = medsyn_dask.analyze(settings, progress=False).scores["faithful"]
    assert before.privacy > 0.2 and before.set_counts["copy"] < 2 * 8
    # The generator is "retrained": same file names, each now an exact copy of a real image.
    for cls in data.classes:
        real = data.files("real", cls)
        for i, path in enumerate(data.files("faithful", cls)):
            _overwrite(path, real[i])
    after = medsyn_dask.analyze(settings, progress=False)
    fresh = medsyn_dask.analyze(replace(settings, output=str(tmp_path / "fresh")), progress=False)
    scores = after.scores["faithful"]
    assert scores.privacy == 0.0 < before.privacy and scores.set_counts["copy"] == 2 * 8
    assert scores.to_dict() == fresh.scores["faithful"].to_dict()
    np.testing.assert_array_equal(
        after.synthetic["faithful"].features.compute(),
        fresh.synthetic["faithful"].features.compute(),
    )
    assert scores.per_synthetic.equals(fresh.scores["faithful"].per_synthetic)


def test_rerun_reuses_unchanged_and_rewrites_only_the_changed_partition(tmp_path, extract_client):
    root = png_dataset(tmp_path / "data", per_class=6)  # 12 images, partitions of 4
    store = tmp_path / "f.zarr"
    kw = dict(resolution=RES, partition_size=4, client=extract_client)
    first = extract_features(str(root), str(store), "real", **kw)
    assert (first.n_reused, first.n_reextracted, first.n_resumed) == (0, 12, 0)
    again = extract_features(str(root), str(store), "real", **kw)
    assert (again.n_reused, again.n_reextracted, again.n_resumed) == (12, 0, 3)
    assert again.partitions_written == ()
    stamps = _markers(store, first.name)
    _overwrite(root / "b" / "003.png", root / "a" / "000.png")  # row 9: partition 2
    third = extract_features(str(root), str(store), "real", **kw)
    assert third.partitions_written == (2,) and third.n_resumed == 2
    assert (third.n_reused, third.n_reextracted) == (11, 1)
    now = _markers(store, first.name)
    assert now[0] == stamps[0] and now[1] == stamps[1] and now[2] != stamps[2]
    loaded = load_features(str(store), "real")
    np.testing.assert_allclose(loaded.features.compute(), _direct(loaded.paths), atol=1e-6)
    rows = loaded.features.compute()
    np.testing.assert_array_equal(rows[9], rows[0])  # the copy's features are the original's


def test_added_and_removed_files_reuse_rows_by_path(tmp_path, extract_client):
    root = png_dataset(tmp_path / "data", per_class=5)
    store = str(tmp_path / "f.zarr")
    kw = dict(resolution=RES, partition_size=3, client=extract_client)
    extract_features(str(root), store, "real", **kw)
    shutil.copyfile(root / "a" / "001.png", root / "a" / "new.png")
    added = extract_features(str(root), store, "real", **kw)
    assert (added.n_images, added.n_reused, added.n_reextracted) == (11, 10, 1)
    (root / "b" / "002.png").unlink()
    removed = extract_features(str(root), store, "real", **kw)
    assert (removed.n_images, removed.n_reused, removed.n_reextracted) == (10, 10, 0)
    fresh = extract_features(str(root), str(tmp_path / "fresh.zarr"), "real", **kw)
    assert fresh.name == removed.name
    a = load_features(store, "real", name=removed.name)
    b = load_features(str(tmp_path / "fresh.zarr"), "real")
    assert list(a.paths) == list(b.paths)
    np.testing.assert_array_equal(a.features.compute(), b.features.compute())


def test_verify_content_looks_past_mtime(tmp_path, extract_client):
    root = png_dataset(tmp_path / "data", per_class=3)
    rng = np.random.default_rng(5)
    bmp = root / "a" / "zz.bmp"  # uncompressed: new pixels keep the file size
    Image.fromarray(rng.integers(0, 256, (24, 24), dtype=np.uint8)).save(bmp)
    store = str(tmp_path / "f.zarr")
    kw = dict(resolution=RES, partition_size=2, client=extract_client)
    extract_features(str(root), store, "real", verify_content=True, **kw)
    target = root / "a" / "001.png"
    t = target.stat().st_mtime_ns + 5 * 10**9
    os.utime(target, ns=(t, t))  # touched, content unchanged
    touched = extract_features(str(root), store, "real", verify_content=True, **kw)
    assert (touched.n_reused, touched.n_reextracted) == (7, 0)
    assert touched.partitions_written == (0,)  # the new fingerprint is recorded
    assert extract_features(str(root), store, "real", **kw).n_reextracted == 0
    # Same size, new pixels, old mtime: only the content digest sees the change.
    stat = bmp.stat()
    Image.fromarray(rng.integers(0, 256, (24, 24), dtype=np.uint8)).save(bmp)
    os.utime(bmp, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert bmp.stat().st_size == stat.st_size
    assert extract_features(str(root), store, "real", **kw).n_reextracted == 0
    caught = extract_features(str(root), store, "real", verify_content=True, **kw)
    assert caught.n_reextracted == 1
    loaded = load_features(store, "real")
    np.testing.assert_allclose(loaded.features.compute(), _direct(loaded.paths), atol=1e-6)


def test_set_whose_provenance_disagrees_with_its_name_is_refused(tmp_path, extract_client):
    root = png_dataset(tmp_path / "data", per_class=2)
    store = str(tmp_path / "f.zarr")
    res = extract_features(str(root), store, "real", resolution=RES, client=extract_client)
    group = zarr.open_group(store, path=f"real/{res.name}", mode="r+")
    group.attrs.update({ATTRS_KEY: {**group.attrs[ATTRS_KEY], "resolution": 64}})
    with pytest.raises(InputError, match=r"another configuration \(resolution: 16 here, 64"):
        extract_features(str(root), store, "real", resolution=RES, client=extract_client)


def test_second_writer_gets_a_clear_error_and_a_dead_ones_lock_is_taken_over(
    tmp_path, extract_client
):
    root = png_dataset(tmp_path / "data", per_class=2)
    store = str(tmp_path / "f.zarr")
    kw = dict(resolution=RES, client=extract_client)
    name = extract_features(str(root), store, "real", **kw).name
    with SetLock(store, None, "real", name, "run-a"):
        with pytest.raises(FeatureSetBusy) as info:
            extract_features(str(root), store, "real", **kw)
    message = str(info.value)
    assert f"feature set real/{name} is being written by run run-a on host " in message
    assert "since " in message and f"remove {tmp_path}/f.zarr/real/lock-{name}" in message
    # A driver killed on this host leaves its lock behind; the next run takes it over.
    code = "import os; print(os.getpid())"
    dead = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    lock = SetLock(store, None, "real", name, "killed")
    lock.holder["pid"] = int(dead.stdout)
    lock.__enter__()
    assert extract_features(str(root), store, "real", **kw).n_reused == 4
    assert not (tmp_path / "f.zarr" / "real" / f"lock-{name}").exists()


def test_object_store_etags_and_lock(tmp_path, extract_client, s3_server, s3_bucket):
    local = png_dataset(tmp_path / "data", per_class=3)
    fs = s3_server.filesystem()
    upload(local, fs, f"{s3_bucket}/images")
    opts = s3_server.storage_options
    root, store = f"{s3_bucket}/images", f"{s3_bucket}/f.zarr"
    kw = dict(resolution=RES, partition_size=2, storage_options=opts, client=extract_client)
    first = extract_features(root, store, "real", **kw)
    assert extract_features(root, store, "real", **kw).n_reextracted == 0
    fs.put_file(str(local / "a" / "000.png"), f"{root}/b/002.png")  # row 5: partition 2
    again = extract_features(root, store, "real", **kw)
    assert again.partitions_written == (2,) and again.n_reextracted == 1
    loaded = load_features(store, "real", storage_options=opts)
    np.testing.assert_allclose(loaded.features.compute(), _direct(loaded.paths, opts), atol=1e-6)
    with SetLock(store, opts, "real", first.name, "run-s3"):
        with pytest.raises(FeatureSetBusy, match="being written by run run-s3") as info:
            extract_features(root, store, "real", **kw)
    # The folder to remove as the store was named (its path alone dropped the s3:// scheme).
    assert f"remove {store}/real/lock-{first.name} if" in str(info.value)


def test_another_root_with_the_same_layout_sizes_and_mtimes_is_not_reused(tmp_path, extract_client):
    """A second folder of the same file names, sizes and modification times (uncompressed
    images, copies made with -p, archives) written to the same group: its images are other
    images. The set was reopened (the root was not part of its configuration): the first
    folder's features were reused and the paths pointed there."""
    rng = np.random.default_rng(9)
    roots = [tmp_path / "first", tmp_path / "second"]
    for cls, i in [(c, i) for c in "ab" for i in range(3)]:
        for root in roots:
            (root / cls).mkdir(parents=True, exist_ok=True)
            pixels = rng.integers(0, 256, (24, 24), dtype=np.uint8)
            Image.fromarray(pixels).save(root / cls / f"{i}.bmp")
            os.utime(root / cls / f"{i}.bmp", ns=(10**18, 10**18))
    store = str(tmp_path / "f.zarr")
    kw = dict(resolution=RES, partition_size=2, client=extract_client)
    extract_features(str(roots[0]), store, "real", **kw)
    second = extract_features(str(roots[1]), store, "real", **kw)
    assert (second.n_reused, second.n_reextracted) == (0, 6)
    loaded = load_features(store, "real", root=str(roots[1]))  # two sets: the root chooses
    assert loaded.name == second.name and load_features(store, "real", root=str(roots[0])).name
    with pytest.raises(ValueError, match="or root= to choose one"):
        load_features(store, "real")
    assert all(p.startswith(str(roots[1])) for p in loaded.paths)
    np.testing.assert_allclose(loaded.features.compute(), _direct(loaded.paths), atol=1e-6)


def test_a_bad_image_a_skipping_run_recorded_raises_under_the_error_policy(
    tmp_path, extract_client
):
    """A run with on_bad_image="skip" records a bad image; a later run with the default
    "error" on the same store reused that record and left the image out without a word."""
    root = png_dataset(tmp_path / "data", per_class=3)
    (root / "a" / "broken.png").write_bytes(b"not a png")
    store = str(tmp_path / "f.zarr")
    kw = dict(resolution=RES, partition_size=2, client=extract_client)
    skipped = extract_features(str(root), store, "real", on_bad_image="skip", **kw)
    assert skipped.n_bad == 1
    with pytest.raises(BadImageError, match=r"broken\.png"):
        extract_features(str(root), store, "real", **kw)
    assert extract_features(str(root), store, "real", on_bad_image="skip", **kw).n_bad == 1


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")  # exporting is the point
def test_a_model_file_replaced_between_runs_on_one_cluster(tmp_path, extract_client):
    """The workers kept the model they loaded by path: after the file was replaced, every run
    on that cluster failed ("changed during the run") until the workers restarted. Now they
    load it again, and the features are the new model's."""
    import torch

    root = png_dataset(tmp_path / "data", per_class=3)
    model = tmp_path / "cnn.pt"
    kw = dict(resolution=RES, partition_size=3, client=extract_client)
    for seed in (0, 1):
        torch.manual_seed(seed)
        net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.AdaptiveAvgPool2d(2))
        torch.jit.save(torch.jit.script(net.eval()), str(model))
        store = str(tmp_path / f"f{seed}.zarr")
        done = extract_features(str(root), store, "real", f"torchscript:{model}", **kw)
        loaded = load_features(store, "real", name=done.name)
        ext = create_extractor(f"torchscript:{model}")
        want = np.stack([ext(preprocess(read_image(p), RES, 1)[None])[0] for p in loaded.paths])
        np.testing.assert_allclose(loaded.features.compute(), want, atol=1e-6)


@pytest.mark.parametrize("column", ["valid", "errors", "paths", "classes"])
def test_a_damaged_column_is_named_not_read_as_data(tmp_path, extract_client, column):
    """A column's chunk removed (a damaged copy, a partial sync): its fill values were read as
    data, dropping images (valid) or blanking paths and classes in every table."""
    root = png_dataset(tmp_path / "data", per_class=3)
    (root / "a" / "broken.png").write_bytes(b"not a png")  # so that errors has one entry
    store = tmp_path / "f.zarr"
    kw = dict(resolution=RES, on_bad_image="skip", client=extract_client)
    done = extract_features(str(root), str(store), "real", **kw)
    chunks = [p for p in (store / "real" / done.name / column).rglob("*") if p.is_file()]
    for chunk in [p for p in chunks if p.name != "zarr.json"]:
        chunk.unlink()
    with pytest.raises(InputError, match=rf"real/{done.name} is damaged"):
        load_features(str(store), "real")


def test_object_store_root_with_a_trailing_slash_is_the_same_set(
    tmp_path, extract_client, s3_server, s3_bucket
):
    """``s3://b/images/`` entered the set's configuration as typed: a new set and every image
    extracted again (local roots were made absolute, URLs kept as given)."""
    fs, opts = s3_server.filesystem(), s3_server.storage_options
    upload(png_dataset(tmp_path / "data", per_class=2), fs, f"{s3_bucket}/images")
    store = f"{s3_bucket}/f.zarr"
    kw = dict(resolution=RES, storage_options=opts, client=extract_client)
    first = extract_features(f"{s3_bucket}/images", store, "real", **kw)
    again = extract_features(f"{s3_bucket}/images/", store, "real", **kw)
    assert again.name == first.name and again.n_reextracted == 0


def test_a_missing_bucket_is_an_error_not_a_new_bucket(tmp_path, s3_server, s3_bucket):
    """s3fs creates a bucket to make a folder in it: a typo in --output or --features-store
    wrote into a new bucket (or someone else's) and the run succeeded."""
    from medsyn_dask.report.tables import prepare_output

    fs, opts = s3_server.filesystem(), s3_server.storage_options
    before = set(fs.ls(""))
    with pytest.raises(InputError, match="bucket 'no-such-bucket-x' does not exist"):
        prepare_output("s3://no-such-bucket-x/out", opts)
    with pytest.raises(InputError, match="features store s3://no-such-bucket-y/f.zarr: bucket"):
        SetLock("s3://no-such-bucket-y/f.zarr", opts, "real", "set", "run")
    prepare_output(f"{s3_bucket}/out", opts)  # an existing bucket: fine
    assert set(fs.ls("", refresh=True)) == before


def test_an_unreachable_output_or_store_names_its_option():
    """An endpoint that refuses connections for --output or --features-store: the error said
    the bucket does not exist (s3fs's exists() answers False for a bucket it cannot reach), a
    wrong diagnosis; it is now a connection error naming the option and its URL."""
    from medsyn_dask.report.tables import prepare_output

    with socket.socket() as probe:  # a loopback port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    opts = {
        "endpoint_url": f"http://127.0.0.1:{port}",
        "key": "k",
        "secret": "s",
        "config_kwargs": {"retries": {"max_attempts": 1}, "connect_timeout": 1},
    }
    with pytest.raises(ConnectionError, match="^output s3://b/out: "):
        prepare_output("s3://b/out", opts)
    with pytest.raises(ConnectionError, match="^features store s3://b/f.zarr: "):
        SetLock("s3://b/f.zarr", opts, "real", "set", "run")
