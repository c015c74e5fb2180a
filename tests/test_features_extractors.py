"""The extractor registry: pixels, TorchScript, and the optional timm/torchvision errors."""

from __future__ import annotations

import hashlib
import importlib.util

import numpy as np
import pytest
import torch
from torch import nn

from medsyn_dask.features import available_extractors, create_extractor


def test_registry_names():
    names = available_extractors()
    for n in ("pixels", "torchscript", "vqvae-top", "vqvae-bottom", "timm", "torchvision"):
        assert n in names
    with pytest.raises(ValueError, match="unknown feature extractor 'resnet'"):
        create_extractor("resnet")


def test_pixels_are_block_means_2d_and_3d():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (2, 1, 64, 64)).astype(np.float32)
    out = create_extractor("pixels")(x)
    assert out.shape == (2, 32 * 32) and out.dtype == np.float32
    expected = x.reshape(2, 1, 32, 2, 32, 2).mean(axis=(3, 5)).reshape(2, -1)
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6)
    assert create_extractor("pixels:8")(x).shape == (2, 64)
    rgb = rng.uniform(-1, 1, (1, 3, 32, 32)).astype(np.float32)
    np.testing.assert_allclose(create_extractor("pixels")(rgb), rgb.reshape(1, -1))
    vol = rng.uniform(-1, 1, (1, 1, 32, 32, 32)).astype(np.float32)
    vout = create_extractor("pixels")(vol)
    assert vout.shape == (1, 16**3)
    np.testing.assert_allclose(
        vout, vol.reshape(1, 16, 2, 16, 2, 16, 2).mean(axis=(2, 4, 6)).reshape(1, -1), atol=1e-6
    )
    with pytest.raises(ValueError, match="integer grid"):
        create_extractor("pixels:big")


@pytest.mark.parametrize(
    "shape, grid",
    [
        ((3, 1, 256, 256), None),  # 8 x 8 blocks
        ((2, 3, 224, 224), None),  # 7 x 7: dividing by each side differs from dividing by 49
        ((2, 1, 96, 64), 16),  # unequal sides
        ((2, 1, 100, 100), None),  # 32 does not divide 100: overlapping windows, torch's path
        ((1, 1, 48, 48, 48), None),  # volumes: 3 x 3 x 3 blocks
        ((1, 2, 40, 40, 40), 8),
    ],
)
def test_pixels_are_bit_identical_to_torch_adaptive_pooling(shape, grid):
    """The NumPy block means are torch's adaptive average pooling to the last bit, so a
    feature store written by either gives the same rows."""
    import torch.nn.functional as F

    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape).astype(np.float32)
    side = grid or (16 if len(shape) == 5 else 32)
    pool = F.adaptive_avg_pool3d if len(shape) == 5 else F.adaptive_avg_pool2d
    expected = pool(torch.from_numpy(x), side).reshape(shape[0], -1).numpy()
    got = create_extractor("pixels" if grid is None else f"pixels:{grid}").extract(x)
    assert got.shape == expected.shape and got.dtype == np.float32
    np.testing.assert_array_equal(got.view(np.uint32), expected.view(np.uint32))


def test_pixels_runs_without_torch_when_the_grid_divides():
    from medsyn_dask.features.pixels import runs_without_torch

    assert runs_without_torch("pixels", 256, False) and runs_without_torch("pixels", 64, True)
    assert runs_without_torch("pixels:8", 64, False)
    assert not runs_without_torch("pixels", 100, False)  # torch's overlapping windows
    assert not runs_without_torch("pixels:big", 64, False)
    assert not runs_without_torch("vqvae-top", 256, False)


@pytest.mark.parametrize(
    "model, channels, resolution, volumes",
    [("pixels", 1, 64, False), ("pixels", 3, 64, False), ("pixels:8", 1, 32, True)],
)
def test_pixels_output_known_without_running_matches_a_run(model, channels, resolution, volumes):
    """The driver sizes a pixels set without a probe: the size must be what extraction gives."""
    from medsyn_dask.features.pixels import known_output

    shape = (2, channels) + (resolution,) * (3 if volumes else 2)
    out = create_extractor(model).extract(np.zeros(shape, dtype=np.float32))
    assert known_output(model, channels, resolution, volumes) == (out.shape[1], out.dtype.name)
    assert known_output("pixels", 1, 100, False) is None  # runs on torch: probed on a worker
    assert known_output("vqvae-top", 1, 256, False) is None


class SmallCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(torch.relu(self.conv(x)))


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")  # exporting is the point
def test_torchscript_output_is_flattened(tmp_path):
    torch.manual_seed(0)
    model = SmallCNN().eval()
    path = tmp_path / "cnn.pt"
    torch.jit.save(torch.jit.script(model), str(path))
    ext = create_extractor(f"torchscript:{path}")
    x = np.random.default_rng(1).uniform(-1, 1, (3, 1, 20, 20)).astype(np.float32)
    out = ext(x)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).reshape(3, -1).numpy()
    assert out.shape == (3, 16) and out.dtype == np.float32
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    assert ext.weights_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert create_extractor("torchscript", weights=str(path)).weights_sha256 == ext.weights_sha256
    (tmp_path / "plain.pt").write_bytes(b"not torchscript")
    with pytest.raises(ValueError, match="plain.pt"):
        create_extractor(f"torchscript:{tmp_path / 'plain.pt'}")


@pytest.mark.parametrize("library", ["timm", "torchvision"])
def test_named_cnn_without_weights_explains_how_to_provide_them(library, tmp_path):
    with pytest.raises(ValueError, match="--weights") as info:
        create_extractor(f"{library}:inception_v3")
    assert "never downloads" in str(info.value)
    if importlib.util.find_spec(library) is None:
        torch.save({"fc.weight": torch.zeros(1)}, tmp_path / "w.pt")
        with pytest.raises(ValueError, match=r"pip install 'medsyn-dask\[vision\]'"):
            create_extractor(library, weights=str(tmp_path / "w.pt"))


def test_weights_errors_name_the_setting_or_the_file(tmp_path):
    from medsyn_dask.errors import SettingsError
    from medsyn_dask.features.registry import resolve_name

    with pytest.raises(SettingsError, match="--weights") as info:
        create_extractor("torchvision:resnet18")
    assert "timm.create_model" not in str(info.value) and "never downloads" in str(info.value)
    missing = tmp_path / "absent.pt"
    with pytest.raises(FileNotFoundError, match=f"TorchScript file not found: {missing}"):
        create_extractor(f"torchscript:{missing}")
    with pytest.raises(SettingsError, match=f"TorchScript file not found: {missing}"):
        resolve_name("torchscript", str(missing))
    with pytest.raises(SettingsError, match=f"VQ-VAE checkpoint not found: {missing}"):
        resolve_name("vqvae-top", str(missing))
    with pytest.raises(SettingsError, match="needs a TorchScript file: pass --weights"):
        resolve_name("torchscript")
    with pytest.raises(SettingsError, match="give the weights once"):
        resolve_name(f"vqvae-top:{missing}", str(tmp_path / "other.pt"))
    with pytest.raises(SettingsError, match="takes no weights"):
        resolve_name("pixels", str(missing))
    missing.write_bytes(b"x")
    assert resolve_name(f"torchscript:{missing}", str(missing)) == ("torchscript", str(missing))
    assert resolve_name("pixels:8") == ("pixels:8", None)


def test_register_a_new_extractor_with_weights(tmp_path):
    from medsyn_dask.errors import SettingsError
    from medsyn_dask.features import Extractor, register

    class Scaled(Extractor):
        def __init__(self, factor: float) -> None:
            super().__init__()
            self.name, self.factor = "scaled", factor

        def forward(self, batch: torch.Tensor) -> torch.Tensor:
            return batch * self.factor

    @register("scaled-test", takes_weights=True, weights_in_name=True)
    def make(arg, weights, storage_options):
        return Scaled(float(open(weights).read()))

    (tmp_path / "f.txt").write_text("2.5")
    ext = create_extractor(f"scaled-test:{tmp_path / 'f.txt'}")
    np.testing.assert_allclose(ext(np.ones((1, 1, 2, 2), np.float32)), np.full((1, 4), 2.5))
    assert "scaled-test" in available_extractors()
    with pytest.raises(SettingsError, match="--weights"):
        create_extractor("scaled-test")
