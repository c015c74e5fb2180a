"""Mean-image variety: the distributed reduction against a NumPy brute force on real files."""

from __future__ import annotations

import sys
from pathlib import Path

import cloudpickle
import dask
import nibabel as nib
import numpy as np
import pytest
from distributed import Client, LocalCluster, get_task_stream
from PIL import Image

from medsyn_dask.metrics import variety
from medsyn_dask.metrics.variety import (
    all_classes_mean,
    encode_lossless,
    group_variety,
    lossless_size,
    mean_images,
    mean_images_delayed,
    to_uint8_image,
    variety_scores,
    variety_undefined_reason,
)
from medsyn_dask.metrics.variety import graph as variety_graph

# The workers are other processes: send this module's reader by value, not by import.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def read(path: str) -> np.ndarray:
    """A plain reader: Pillow for 2D images (as stored), nibabel for NIfTI volumes."""
    if path.endswith((".nii", ".nii.gz")):
        return np.asarray(nib.load(path).dataobj)
    with Image.open(path) as im:
        return np.asarray(im)


@pytest.fixture(scope="module")
def client():
    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address="127.0.0.1:0",
            host="127.0.0.1",
        ) as cluster,
        Client(cluster) as c,
    ):
        yield c


# --------------------------------------------------------------------------------------------
# Files and the brute force
# --------------------------------------------------------------------------------------------


def _write_pngs(folder: Path, rng, n: int, shape=(24, 40), dtype=np.uint8) -> list[str]:
    folder.mkdir(parents=True)
    hi = np.iinfo(dtype).max
    paths = []
    for i in range(n):
        # Structure plus noise, so that truncation of the mean is exercised at many values.
        base = np.linspace(0, hi, shape[1])[None, :] * rng.uniform(0.2, 1.0)
        image = np.clip(base + rng.normal(0, hi / 10, shape), 0, hi).astype(dtype)
        path = folder / f"img_{i:03d}.png"
        Image.fromarray(image).save(path)
        paths.append(str(path))
    return paths


def _brute_mean_2d(paths: list[str], shape: tuple[int, int] | None = None) -> np.ndarray:
    """The reference loop: 8-bit 3-channel images, float sum, divide, ``astype(np.uint8)``."""
    images = []
    for p in paths:
        a = np.asarray(Image.open(p))
        if a.dtype == np.uint16:
            a = (a // 256).astype(np.uint8)
        rgb = np.stack([a] * 3, axis=-1)
        if shape is not None and rgb.shape[:2] != shape:
            rgb = np.asarray(Image.fromarray(rgb).resize(shape[::-1], Image.Resampling.BILINEAR))
        images.append(rgb.astype(np.float64))
    return (np.sum(images, axis=0) / len(images)).astype(np.uint8)


@pytest.fixture(scope="module")
def pngs(tmp_path_factory) -> dict[str, list[str]]:
    root = tmp_path_factory.mktemp("pngs")
    rng = np.random.default_rng(0)
    return {
        "NORMAL": _write_pngs(root / "NORMAL", rng, 23),
        "PNEUMONIA": _write_pngs(root / "PNEUMONIA", rng, 17),
    }


# --------------------------------------------------------------------------------------------
# The distributed reduction
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("partition_size", [1, 4, 5, 23, 100])
def test_mean_images_equal_brute_force_on_cluster(client, pngs, partition_size):
    means = mean_images(pngs, read, partition_size=partition_size, split_every=3)
    assert list(means) == ["NORMAL", "PNEUMONIA"]
    for cls, paths in pngs.items():
        expected = _brute_mean_2d(paths)
        assert means[cls].dtype == np.uint8 and means[cls].shape == (24, 40, 3)
        np.testing.assert_array_equal(means[cls], expected)
    expected_all = np.mean([_brute_mean_2d(p) for p in pngs.values()], axis=0).astype(np.uint8)
    np.testing.assert_array_equal(all_classes_mean(means), expected_all)


def test_graph_is_a_tree_of_partitions(client, pngs):
    graph = mean_images_delayed(pngs, read, partition_size=2, split_every=3)
    keys = {k for d in graph.values() for k in dict(d.__dask_graph__())}
    prefixes = [k[0] if isinstance(k, tuple) else k for k in keys]
    partials = [k for k in keys if isinstance(k, tuple) and "-partial-" in k[0]]
    # ceil(23 / 2) + ceil(17 / 2) partitions; the tree has more than one level at fan-in 3.
    assert len(partials) == 12 + 9
    combines = [k for k in keys if isinstance(k, tuple) and "-combine-" in k[0]]
    assert max(k[2] for k in combines) >= 1
    assert any(p.startswith("mean-image-shape-") for p in prefixes)
    with get_task_stream(client) as stream:
        dask.compute(graph)
    ran = {t["key"][0] if isinstance(t["key"], tuple) else t["key"] for t in stream.data}
    assert any(k.startswith("mean-image-partial-") for k in ran)
    assert any(k.startswith("mean-image-combine-") for k in ran)


def test_each_task_reads_one_partition(pngs, monkeypatch):
    # Record the paths each partial task is given (synchronous scheduler, same process).
    seen: list[int] = []
    real_task = variety_graph._partial_task

    def spy(paths, *args):
        seen.append(len(paths))
        return real_task(paths, *args)

    monkeypatch.setattr(variety_graph, "_partial_task", spy)
    graph = mean_images_delayed(pngs, read, partition_size=5, target_size=(24, 40))
    dask.compute(graph, scheduler="sync")
    assert sorted(seen) == sorted([5] * 4 + [3] + [5] * 3 + [2])


def test_different_sizes_are_resized_to_the_first(client, tmp_path):
    rng = np.random.default_rng(1)
    paths = _write_pngs(tmp_path / "a", rng, 5, shape=(24, 40))
    paths += _write_pngs(tmp_path / "b", rng, 6, shape=(37, 19))
    means = mean_images({"x": paths}, read, partition_size=4)
    np.testing.assert_array_equal(means["x"], _brute_mean_2d(paths, shape=(24, 40)))
    target = mean_images({"x": paths}, read, partition_size=3, target_size=(30, 30))
    np.testing.assert_array_equal(target["x"], _brute_mean_2d(paths, shape=(30, 30)))


def test_project_reader_gives_the_same_means(client, pngs, tmp_path):
    # The package's reader (fsspec + Pillow/nibabel) against this module's plain one.
    sources = pytest.importorskip("medsyn_dask.sources.readers")
    sixteen = _write_pngs(tmp_path / "d", np.random.default_rng(6), 5, dtype=np.uint16)
    volumes, _ = _write_volumes(tmp_path / "v", np.random.default_rng(7), 4)
    for paths in (pngs, {"d": sixteen}, {"v": volumes}):
        np.testing.assert_equal(
            mean_images(paths, sources.read_image, partition_size=4),
            mean_images(paths, read, partition_size=4),
        )


def test_group_variety_composes_the_parts(client, tmp_path):
    rng = np.random.default_rng(10)
    groups = {
        "first": {"a": _write_pngs(tmp_path / "s", rng, 4)},
        "resized": {"a": _write_pngs(tmp_path / "b", rng, 9, shape=(30, 50))},
        "two_classes": {
            "a": _write_pngs(tmp_path / "o", rng, 6),
            "b": _write_pngs(tmp_path / "p", rng, 5),
        },
    }
    result = group_variety(groups, read, codec="png-opencv", partition_size=4)
    assert result.shape == (24, 40)  # the first image of the first group: one size for all
    sizes = {}
    for g, classes in groups.items():
        means = [_brute_mean_2d(paths, shape=(24, 40)) for paths in classes.values()]
        expected = np.mean(means, axis=0).astype(np.uint8)
        np.testing.assert_array_equal(result.all_classes[g], expected)
        sizes[g] = lossless_size(expected, "png-opencv")
    assert result.sizes == sizes
    lo, hi = min(sizes.values()), max(sizes.values())
    assert result.scores == {g: pytest.approx(1 - (v - lo) / (hi - lo)) for g, v in sizes.items()}
    assert result.reason is None and result.to_dict()["codec"] == "png-opencv"
    single = group_variety({"first": groups["first"]}, read)
    assert single.scores == {"first": None} and "only one group" in single.reason


def test_sixteen_bit_images(client, tmp_path):
    paths = _write_pngs(tmp_path / "c", np.random.default_rng(2), 9, dtype=np.uint16)
    assert np.asarray(Image.open(paths[0])).dtype == np.uint16
    means = mean_images({"c": paths}, read, partition_size=4)
    np.testing.assert_array_equal(means["c"], _brute_mean_2d(paths))


def _write_volumes(folder: Path, rng, n: int) -> tuple[list[str], list[np.ndarray]]:
    """HU-like int16 NIfTI volumes, each with its own range; also their [0, 255] scaling."""
    folder.mkdir(parents=True)
    paths, scaled = [], []
    for i in range(n):
        v = (rng.normal(0, 300, (10, 12, 6)) - rng.integers(0, 500)).astype(np.int16)
        path = folder / f"vol_{i}.nii.gz"
        nib.save(nib.Nifti1Image(v, np.eye(4)), path)
        paths.append(str(path))
        f = v.astype(np.float64)
        scaled.append(np.rint((f - f.min()) / (f.max() - f.min()) * 255))
    return paths, scaled


def test_volumes(client, tmp_path):
    paths, scaled = _write_volumes(tmp_path / "v", np.random.default_rng(4), 7)
    expected = (np.sum(scaled, axis=0) / len(scaled)).astype(np.uint8)
    means = mean_images({"v": paths}, read, partition_size=3)
    assert means["v"].shape == (10, 12, 6)
    np.testing.assert_array_equal(means["v"], expected)
    size = lossless_size(means["v"], volume=True)
    assert size == sum(len(encode_lossless(means["v"][:, :, z])) for z in range(6))


def test_resized_volume_keeps_target_shape(tmp_path):
    vol = np.arange(8 * 6 * 4, dtype=np.uint8).reshape(8, 6, 4)
    out = variety.resize_image(vol, (5, 9, 7))
    assert out.shape == (5, 9, 7) and out.dtype == np.uint8
    # A constant volume stays constant through interpolation.
    np.testing.assert_array_equal(
        variety.resize_image(np.full((4, 4, 4), 77, np.uint8), (6, 3, 5)), 77
    )


def test_volume_resize_is_trilinear():
    # Upsampling: Pillow's bilinear filter is linear interpolation between pixel centres,
    # clamped at the edges; done separably it is trilinear interpolation.
    vol = np.random.default_rng(8).integers(0, 256, (5, 4, 3)).astype(np.uint8)
    target = (9, 7, 8)

    def interp(a, n, axis):
        x = (np.arange(n) + 0.5) * a.shape[axis] / n - 0.5
        return np.apply_along_axis(lambda r: np.interp(x, np.arange(len(r)), r), axis, a)

    expected = vol.astype(np.float64)
    for axis, n in enumerate(target):
        expected = interp(expected, n, axis)
    got = variety.resize_image(vol, target).astype(np.float64)
    assert np.abs(got - np.rint(expected)).max() <= 1  # float32 rounding at .5 only


def test_bad_image_is_named(client, tmp_path):
    paths = _write_pngs(tmp_path / "e", np.random.default_rng(9), 3)
    bad = tmp_path / "e" / "bad.tif"
    Image.fromarray(np.full((24, 40), np.nan, dtype=np.float32)).save(bad)
    with pytest.raises(ValueError, match=r"bad\.tif: image has non-finite values"):
        mean_images({"e": paths + [str(bad)]}, read, partition_size=2)


def test_bad_inputs_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="non-empty list"):
        mean_images({"a": []}, read)
    with pytest.raises(ValueError, match="partition_size"):
        mean_images({"a": ["x.png"]}, read, partition_size=0)
    with pytest.raises(ValueError, match="mix"):
        mean_images({"a": ["x.png", "y.nii.gz"]}, read)
    with pytest.raises(ValueError, match=r"target_size must be \(H, W\)"):
        mean_images({"a": ["x.png"]}, read, target_size=(3, 4, 5))


# --------------------------------------------------------------------------------------------
# One image
# --------------------------------------------------------------------------------------------


def test_to_uint8_image_rules():
    gray = np.array([[0, 128], [255, 7]], dtype=np.uint8)
    np.testing.assert_array_equal(to_uint8_image(gray), np.stack([gray] * 3, axis=-1))
    rgba = np.dstack([gray, gray // 2, gray // 3, np.full_like(gray, 9)])
    np.testing.assert_array_equal(to_uint8_image(rgba), rgba[..., :3])
    sixteen = np.array([[0, 255, 256, 65535]], dtype=np.uint16)
    np.testing.assert_array_equal(to_uint8_image(sixteen)[..., 0], [[0, 0, 1, 255]])
    unit = np.array([[0.0, 0.5, 1.0]])
    np.testing.assert_array_equal(to_uint8_image(unit)[..., 0], [[0, 128, 255]])
    wide = np.array([[-1000, 0, 1000]], dtype=np.int16)
    np.testing.assert_array_equal(to_uint8_image(wide)[..., 0], [[0, 128, 255]])
    np.testing.assert_array_equal(to_uint8_image(np.full((2, 2), 5.0)), 0)
    vol = np.array([[[10.0, 20.0], [30.0, 50.0]]])
    np.testing.assert_array_equal(to_uint8_image(vol, volume=True), [[[0, 64], [128, 255]]])


@pytest.mark.parametrize(
    ("array", "volume", "match"),
    [
        (np.zeros((2, 2, 5)), False, "2D image"),
        (np.zeros((2, 2)), True, "3D volume"),
        (np.array([[0.0, np.nan]]), False, "non-finite"),
        (np.array([[[0.0, np.inf]]]), True, "non-finite"),
    ],
)
def test_to_uint8_image_errors(array, volume, match):
    with pytest.raises(ValueError, match=match):
        to_uint8_image(array, volume=volume)


def test_truncation_not_rounding():
    ones = np.ones((2, 2, 3), dtype=np.uint8)
    partial = variety.accumulate([ones, ones * 2], (2, 2))  # mean 1.5 -> 1
    np.testing.assert_array_equal(variety.finalize_mean(partial), 1)
    np.testing.assert_array_equal(all_classes_mean([ones, ones * 2, ones * 2]), 1)  # 5/3 -> 1
    combined = variety.combine_partials([partial, variety.accumulate([ones * 3], (2, 2))])
    assert combined[1] == 3
    np.testing.assert_array_equal(variety.finalize_mean(combined), 2)


# --------------------------------------------------------------------------------------------
# Lossless size and the score
# --------------------------------------------------------------------------------------------


def test_variety_scores_normalisation():
    scores = variety_scores({"a": 1000, "b": 3000, "c": 1500})
    assert scores == {"a": 1.0, "b": 0.0, "c": pytest.approx(0.75)}
    assert variety_undefined_reason({"a": 1000, "b": 3000}) is None


def test_variety_scores_undefined():
    assert variety_scores({"only": 1234}) == {"only": None}
    assert "only one group" in variety_undefined_reason({"only": 1234})
    assert variety_scores({"a": 7, "b": 7}) == {"a": None, "b": None}
    assert "same mean-image size (7 bytes)" in variety_undefined_reason({"a": 7, "b": 7})
    for bad in ({}, {"a": -1}, {"a": 1.5}, {"a": True}):
        with pytest.raises(ValueError):
            variety_scores(bad)


def test_reference_means_come_at_the_groups_size_and_leave_scores_alone(client, tmp_path):
    rng = np.random.default_rng(11)
    groups = {
        g: {c: _write_pngs(tmp_path / f"{g}{c}", rng, n) for c, n in (("a", na), ("b", 2))}
        for g, na in (("g1", 4), ("g2", 5))
    }
    real = {
        "a": _write_pngs(tmp_path / "ra", rng, 6, shape=(30, 50)),
        "b": _write_pngs(tmp_path / "rb", rng, 3),
    }
    plain = group_variety(groups, read, partition_size=2)
    with_ref = group_variety(groups, read, partition_size=2, reference=real)
    assert with_ref.scores == plain.scores and with_ref.sizes == plain.sizes
    assert plain.reference_means is None and "real" not in plain.image_sets()
    for cls, paths in real.items():
        expected = _brute_mean_2d(paths, shape=plain.shape)
        np.testing.assert_array_equal(with_ref.reference_means[cls], expected)
    sets = with_ref.image_sets()
    assert list(sets) == ["real", "g1", "g2"]
    expected_all = np.mean([sets["real"]["a"], sets["real"]["b"]], axis=0).astype(np.uint8)
    np.testing.assert_array_equal(sets["real"]["all_classes"], expected_all)
    assert with_ref.reference_size == lossless_size(expected_all, "png")
