"""The mean image's pixel conversion against the reference's reader, ``cv2.imread``, on files."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from medsyn_dask.metrics.variety import to_uint8_image
from medsyn_dask.sources import read_image


def _files(folder) -> dict[str, str]:
    """Real files of the kinds a synthetic group holds, one each."""
    rng = np.random.default_rng(11)
    i, j = np.mgrid[0:21, 0:34]
    arrays = {
        "gray.png": rng.integers(0, 256, (21, 34), dtype=np.uint8),
        "rgb.png": np.stack([i * 9 % 256, j * 7 % 256, (i * j) % 256], 2).astype(np.uint8),
        "rgba.png": rng.integers(0, 256, (21, 34, 4), dtype=np.uint8),
        "gray16.png": rng.integers(0, 65536, (21, 34), dtype=np.uint16),
        "gray16.tif": rng.integers(0, 65536, (21, 34), dtype=np.uint16),
        "rgb.bmp": rng.integers(0, 256, (21, 34, 3), dtype=np.uint8),
    }
    paths = {}
    for name, array in arrays.items():
        paths[name] = str(folder / name)
        Image.fromarray(array).save(paths[name])
    return paths


@pytest.mark.parametrize(
    "name", ["gray.png", "rgb.png", "rgba.png", "gray16.png", "gray16.tif", "rgb.bmp"]
)
def test_conversion_is_what_cv2_imread_gives(tmp_path, name):
    path = _files(tmp_path)[name]
    reference = cv2.imread(path)[:, :, ::-1]  # the reference's 3-channel 8-bit read, as RGB
    got = to_uint8_image(read_image(path))
    assert got.dtype == np.uint8 and got.shape == reference.shape
    np.testing.assert_array_equal(got, reference)


def test_volume_conversion_is_min_max_per_volume():
    vol = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4) * 7 - 40
    expected = np.rint((vol - vol.min()) / (vol.max() - vol.min()) * 255)
    np.testing.assert_array_equal(to_uint8_image(vol[..., None], volume=True), expected)
