"""Phantom demo data: real files, determinism, and the truth each group is built to carry."""

from __future__ import annotations

import re

import dask
import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from scipy.spatial.distance import cdist

from medsyn_dask import phantoms
from medsyn_dask.metrics.variety import group_variety
from medsyn_dask.phantoms import GROUPS, write_demo_dataset


def _read(path) -> np.ndarray:
    path = str(path)
    if path.endswith(".nii.gz"):
        return np.asarray(nib.load(path).dataobj)
    with Image.open(path) as im:
        return np.asarray(im)


def _pixels(demo, group: str, cls: str) -> np.ndarray:
    """All images of a group and class as float64 rows (one flattened image per row)."""
    return np.stack([_read(p).astype(np.float64).ravel() for p in demo.files(group, cls)])


@pytest.fixture(scope="module")
def demo2d(tmp_path_factory):
    return write_demo_dataset(
        tmp_path_factory.mktemp("demo2d"), n_real=30, n_synthetic=40, size=64, seed=7
    )


@pytest.fixture(scope="module")
def demo3d(tmp_path_factory):
    return write_demo_dataset(
        tmp_path_factory.mktemp("demo3d"), n_real=20, n_synthetic=20, size=32, dims=3, seed=7
    )


def test_layout_and_formats_2d(demo2d):
    assert demo2d.classes == ("normal", "lesion") and set(demo2d.synthetic) == set(GROUPS)
    for group in ("real", *GROUPS):
        for cls in demo2d.classes:
            files = demo2d.files(group, cls)
            assert len(files) == (30 if group == "real" else 40)
            with Image.open(files[0]) as im:
                assert (im.format, im.mode, im.size) == ("PNG", "L", (64, 64))
    names = {p.name for p in demo2d.root.rglob("*.png")}
    assert all(re.fullmatch(r"phantom_\d{5}\.png", n) for n in names)
    assert demo2d.truth == {"privacy": "memorizer", "fidelity": "poor", "variety": "collapsed"}


def test_layout_and_formats_3d(demo3d):
    files = demo3d.files("poor", "lesion") + demo3d.files("real", "normal")
    assert len(files) == 40 and all(p.name.endswith(".nii.gz") for p in files)
    img = nib.load(files[0])
    assert img.shape == (32, 32, 32) and img.get_data_dtype() == np.int16
    np.testing.assert_allclose(img.header.get_zooms(), phantoms.VOXEL_MM)


def test_deterministic_given_the_seed(tmp_path):
    kwargs = {"n_real": 3, "n_synthetic": 3, "size": 32}
    a = write_demo_dataset(tmp_path / "a", seed=1, **kwargs)
    b = write_demo_dataset(tmp_path / "b", seed=1, **kwargs)
    c = write_demo_dataset(tmp_path / "c", seed=2, **kwargs)
    for group in ("real", *GROUPS):
        pa, pb, pc = (d.files(group) for d in (a, b, c))
        assert [p.read_bytes() for p in pa] == [p.read_bytes() for p in pb]
    assert [p.read_bytes() for p in a.files("real")] != [p.read_bytes() for p in c.files("real")]
    # A smaller rerun into the same folder leaves exactly its own files.
    again = write_demo_dataset(tmp_path / "a", seed=1, n_real=2, n_synthetic=1, size=32)
    assert len(again.files("real")) == 4 and len(again.files("poor")) == 2
    assert len(list((tmp_path / "a").rglob("*.png"))) == 4 + 4 * 2


def test_memorizer_copies_its_source(demo2d):
    for cls in demo2d.classes:
        real = _pixels(demo2d, "real", cls)
        copies = _pixels(demo2d, "memorizer", cls)
        d = cdist(copies, real)
        sources = [
            demo2d.files("real", cls).index(
                demo2d.root / demo2d.memorized_from[str(p.relative_to(demo2d.root))]
            )
            for p in demo2d.files("memorizer", cls)
        ]
        np.testing.assert_array_equal(d.argmin(axis=1), sources)
        # A copy is closer to its source than that source is to any other real image.
        rr = cdist(real, real)
        np.fill_diagonal(rr, np.inf)
        assert (d.min(axis=1) < rr.min(axis=1)[sources]).all()
        # Fresh samples are not copies.
        faithful = cdist(_pixels(demo2d, "faithful", cls), real).min(axis=1)
        assert faithful.min() > 3 * d.min(axis=1).max()


def test_collapsed_has_far_less_spread(demo2d):
    for cls in demo2d.classes:
        collapsed = _pixels(demo2d, "collapsed", cls).std(axis=0).mean()
        faithful = _pixels(demo2d, "faithful", cls).std(axis=0).mean()
        real = _pixels(demo2d, "real", cls).std(axis=0).mean()
        assert collapsed < 0.25 * faithful
        assert faithful == pytest.approx(real, rel=0.25)


def test_poor_structure_differs(demo2d):
    for cls in demo2d.classes:
        real_mean = _pixels(demo2d, "real", cls).mean(axis=0)
        distance = {
            g: np.linalg.norm(_pixels(demo2d, g, cls).mean(axis=0) - real_mean) for g in GROUPS
        }
        assert distance["poor"] > 3 * max(distance[g] for g in ("memorizer", "faithful"))
        assert distance["poor"] > distance["collapsed"]


def test_classes_differ(demo2d):
    # The lesion class has bright blobs inside the brain; the skull ring lies outside this disc.
    axis = (np.arange(64) + 0.5) / 32 - 1
    disc = (axis[:, None] ** 2 + axis[None, :] ** 2 < 0.5**2).ravel()
    bright = {
        cls: (_pixels(demo2d, "real", cls)[:, disc] > 0.7 * 255).mean() for cls in demo2d.classes
    }
    assert bright["lesion"] > 3 * bright["normal"]


@pytest.mark.parametrize("codec", ["png", "png-opencv"])
@pytest.mark.parametrize("demo", ["demo2d", "demo3d"])
def test_variety_truth_holds(demo, codec, request):
    # A mean image is blurry only over enough images: with a handful per class, the smeared
    # edges of a few anatomies cost as many bytes as the collapsed group's grain. These sets
    # have 20+ per class; the demo default is 100.
    demo = request.getfixturevalue(demo)
    paths = {group: demo.paths_by_class(group) for group in GROUPS}
    # In-process threads: a distributed Client left by another test module must not receive
    # this module's reader.
    with dask.config.set(scheduler="threads"):
        result = group_variety(paths, _read, codec=codec, partition_size=16)
    scores = result.scores
    assert min(scores, key=scores.get) == demo.truth["variety"]


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="dims"):
        write_demo_dataset(tmp_path, dims=4)
    with pytest.raises(ValueError, match="size"):
        write_demo_dataset(tmp_path, size=8)
    with pytest.raises(ValueError, match="n_real"):
        write_demo_dataset(tmp_path, n_real=1)
    with pytest.raises(ValueError, match="plain folder"):
        write_demo_dataset(tmp_path, classes=("a/b",))


def test_main_writes_a_dataset(tmp_path, capsys):
    out = tmp_path / "demo"
    assert (
        phantoms.main(
            [str(out), "--dims", "3", "--n-real", "2", "--n-synthetic", "1", "--size", "16"]
        )
        == 0
    )
    assert len(list(out.rglob("*.nii.gz"))) == 2 * 2 + 4 * 2
    assert "variety = collapsed" in capsys.readouterr().out
