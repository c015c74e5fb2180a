"""Mean images summed by the extraction tasks (one read per image) equal the reading pass's.

The reading pass (:func:`group_variety` on the paths alone, as before the sums existed) is the
reference: the sums must give the very same uint8 means and lossless sizes, for 2D images and
3D volumes, on a fresh run, on a rerun that re-extracts only a changed file (sums for that
partition, reading for the rest) and with a bad file skipped.
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from PIL import Image

from medsyn_dask.features import extract_features
from medsyn_dask.job import analyze, mean_image_target
from medsyn_dask.metrics.variety import accumulate, group_variety, to_uint8_image
from medsyn_dask.metrics.variety.sums import MeanImageSums, combine_class_sums
from medsyn_dask.phantoms import write_demo_dataset
from medsyn_dask.settings import settings_from_mapping
from medsyn_dask.sources import list_images, read_image


def _paths(root) -> dict[str, list[str]]:
    listed = list_images(str(root))
    out: dict[str, list[str]] = {c: [] for c in listed.class_names}
    for path, cls in zip(listed.paths, listed.classes, strict=True):
        out[cls].append(path)
    return out


def _read_pass(data, target=None, volumes=None):
    """The variety of the demo groups and the real means by reading every image."""
    groups = {g: _paths(root) for g, root in data.synthetic.items()}
    kwargs = {} if target is None else {"target_size": target, "volumes": volumes}
    return group_variety(groups, read_image, reference=_paths(data.real), **kwargs)


def _assert_same(result, expected) -> None:
    assert result.shape == expected.shape
    assert result.sizes == expected.sizes and result.scores == expected.scores
    for group, means in expected.class_means.items():
        for cls, mean in means.items():
            np.testing.assert_array_equal(result.class_means[group][cls], mean, err_msg=group)
    for cls, mean in expected.reference_means.items():
        np.testing.assert_array_equal(result.reference_means[cls], mean, err_msg=cls)


@pytest.mark.parametrize("dims", [2, 3])
def test_analyze_sums_equal_the_reading_pass(tmp_path, extract_client, dims):
    size = 40 if dims == 2 else 16
    data = write_demo_dataset(tmp_path / "data", n_real=24, n_synthetic=12, dims=dims, size=size)
    settings = settings_from_mapping(
        {
            "real": str(data.real),
            "synthetic": {g: str(p) for g, p in data.synthetic.items()},
            "output": str(tmp_path / "out"),
            "resolutions": [16],
        }
    )
    result = analyze(settings, progress=False)
    _assert_same(result.variety, _read_pass(data))


def test_rerun_mixes_sums_and_reads(tmp_path, extract_client):
    """A changed file is re-extracted (and summed); the unchanged rows are read again."""
    data = write_demo_dataset(tmp_path / "data", n_real=8, n_synthetic=40, size=32)
    group, root = next(iter(data.synthetic.items()))
    store = str(tmp_path / "features.zarr")
    listed = list_images(str(root))
    target = MeanImageSums((32, 32), volume=False)
    first = extract_features(
        str(root),
        store,
        "g",
        "pixels",
        resolution=16,
        partition_size=8,
        mean_image=target,
        client=extract_client,
    )
    assert first.summed_rows == tuple(range(len(listed)))
    # Another image in place of one file (same name, new content and mtime).
    changed = listed.paths[len(listed) // 2]
    other = listed.paths[0]
    shutil.copyfile(other, changed)
    os.utime(changed, ns=(1, 2_000_000_000_000_000_000))
    again = extract_features(
        str(root), store, "g", "pixels", resolution=16, mean_image=target, client=extract_client
    )
    assert again.n_reextracted == 1 and again.summed_rows == (len(listed) // 2,)
    left = [p for i, p in enumerate(listed.paths) if i not in again.summed_rows]
    by_class = {c: [p for p in left if f"/{c}/" in p] for c in listed.class_names}
    mixed = group_variety(
        {group: by_class},
        read_image,
        target_size=(32, 32),
        volumes=False,
        sums={group: again.image_sums},
    )
    expected = group_variety({group: _paths(root)}, read_image, target_size=(32, 32))
    for cls, mean in expected.class_means[group].items():
        np.testing.assert_array_equal(mixed.class_means[group][cls], mean)


def test_bad_file_skipped_by_both(tmp_path, extract_client):
    data = write_demo_dataset(tmp_path / "data", n_real=24, n_synthetic=12, size=32)
    group = next(iter(data.synthetic))
    bad = data.synthetic[group] / data.classes[0] / "zz_broken.png"
    bad.write_bytes(b"not a png")
    settings = settings_from_mapping(
        {
            "real": str(data.real),
            "synthetic": {g: str(p) for g, p in data.synthetic.items()},
            "output": str(tmp_path / "out"),
            "resolutions": [16],
            "on_bad_image": "skip",
        }
    )
    result = analyze(settings, progress=False)
    assert [b["path"] for b in result.bad_images[group]] == [f"{data.classes[0]}/zz_broken.png"]
    bad.unlink()
    _assert_same(result.variety, _read_pass(data))


def test_target_is_the_first_readable_image_of_the_first_group(tmp_path, extract_client):
    data = write_demo_dataset(tmp_path / "data", n_real=8, n_synthetic=6, size=32)
    group = next(iter(data.synthetic))
    first_class = list_images(str(data.synthetic[group])).class_names[0]
    first = data.synthetic[group] / first_class / "a_first.png"
    first.write_bytes(b"broken")  # sorts first, reads as nothing: passed over
    second = data.synthetic[group] / first_class / "b_second.png"
    Image.fromarray(np.zeros((20, 28), np.uint8)).save(second)
    settings = settings_from_mapping(
        {
            "real": str(data.real),
            "synthetic": {group: str(data.synthetic[group])},
            "output": str(tmp_path / "out"),
        }
    )
    synthetic = {group: list_images(str(data.synthetic[group]))}
    assert mean_image_target(settings, synthetic) == MeanImageSums((20, 28), volume=False)


@pytest.mark.parametrize("shape", [(6, 5), (9, 7), (31, 40)])
def test_task_sums_equal_accumulate(shape):
    """Gray as one plane (resized by Pillow as one band) sums as the reading pass's RGB."""
    rng = np.random.default_rng(0)
    images = [
        rng.integers(0, 256, (9, 7), dtype=np.uint8),  # gray
        rng.integers(0, 256, (9, 7, 3), dtype=np.uint8),  # colour
        rng.integers(0, 256, (12, 8, 2), dtype=np.uint8),  # gray + alpha
        rng.integers(0, 65536, (10, 9), dtype=np.uint16),  # 16-bit gray
        rng.random((9, 7)),  # float gray in [0, 1]
    ]
    target = MeanImageSums(shape, volume=False)
    parts = [{}, {}]
    for i, image in enumerate(images):
        target.add(parts[i % 2], "c", target.convert(image))
    # all gray: one plane; gray then colour: widened to three channels
    assert parts[0]["c"][0].shape == shape and parts[1]["c"][0].shape == shape + (3,)
    expected, n = accumulate((to_uint8_image(im) for im in images), shape)
    for order in (parts, parts[::-1]):
        total, count = combine_class_sums(order)["c"]
        assert count == n == 5 and parts[0]["c"][0].dtype == np.uint32
        np.testing.assert_array_equal(total, expected)


def test_first_readable_shape_passes_bad_files_and_names_the_first(tmp_path):
    from medsyn_dask.errors import InputError
    from medsyn_dask.metrics.variety.graph import first_readable_shape

    bad = []
    for i in range(5):
        path = tmp_path / f"bad{i}.png"
        path.write_bytes(b"not a png")
        bad.append(str(path))
    good = tmp_path / "good.png"
    Image.fromarray(np.zeros((11, 13), np.uint8)).save(good)
    assert first_readable_shape([*bad, str(good)], read_image, False) == (11, 13)
    with pytest.raises(InputError, match="bad0.png"):
        first_readable_shape(bad, read_image, False)
