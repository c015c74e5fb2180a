"""The torch paths that run on a GPU: the same answers as the NumPy/CPU paths.

``backend="torch"`` runs the block maths on CUDA when torch sees a GPU and on torch's CPU kernels
otherwise, so the engine's tests here run everywhere (on a GPU machine they test the GPU).
The extractor tests need a CUDA device and say so when they skip.
"""

from __future__ import annotations

import numpy as np
import pytest
import scenarios
from brute_force import assert_matches, brute_force

from medsyn_dask import evaluate_features
from medsyn_dask.features import create_extractor
from medsyn_dask.features.registry import cached_extractor
from medsyn_dask.neighbours.backend import torch_device

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

needs_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="no CUDA device here (the engine's torch path is tested above on torch's CPU)",
)


@pytest.mark.parametrize("name", sorted(scenarios.EUCLIDEAN))
def test_euclidean_on_torch_equals_brute_force(name):
    """Float32 scores from torch (cuBLAS on a GPU, TF32 off) still give the exact answer: the
    bounds hold for them and the candidates are rechecked in float64."""
    real, synth = scenarios.EUCLIDEAN[name](np.random.default_rng(20))
    result = evaluate_features(real, synth, block_size=50, backend="torch")
    assert_matches(result, brute_force(real, synth))


@pytest.mark.parametrize("name", sorted(scenarios.HAMMING))
def test_hamming_on_torch_equals_brute_force(name):
    real, synth = scenarios.HAMMING[name](np.random.default_rng(21))
    result = evaluate_features(real, synth, metric="hamming", block_size=64, backend="torch")
    assert_matches(result, brute_force(real, synth, metric="hamming"))


def test_torch_backend_device_follows_cuda():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert torch_device("torch").type == expected
    assert torch_device("numpy") is None


@pytest.fixture
def cnn_file(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(2))
    path = tmp_path / "cnn.pt"
    torch.jit.save(torch.jit.script(model.eval()), str(path))
    return str(path)


@needs_cuda
def test_extractor_on_the_gpu_gives_the_cpu_features(cnn_file):
    """Full float32 convolutions on both (cuDNN's TF32 off for the comparison): the features
    agree to float32 rounding."""
    batch = np.random.default_rng(3).uniform(-1, 1, (4, 1, 32, 32)).astype(np.float32)
    cpu = create_extractor(f"torchscript:{cnn_file}").to("cpu").extract(batch)
    saved = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        gpu = create_extractor(f"torchscript:{cnn_file}").to("cuda").extract(batch)
    finally:
        torch.backends.cudnn.allow_tf32 = saved
    assert gpu.dtype == cpu.dtype and gpu.shape == cpu.shape
    np.testing.assert_allclose(gpu, cpu, rtol=1e-4, atol=1e-6)


@needs_cuda
def test_auto_device_is_the_gpu_for_torch_models_only(cnn_file):
    """What a worker task asks for (``"auto"``): a torch model goes to the GPU, ``pixels``
    (NumPy block means) stays on the CPU."""
    model = cached_extractor(f"torchscript:{cnn_file}", None, {}, "auto")
    assert torch.device(model.device).type == "cuda"
    assert cached_extractor("pixels", None, {}, "auto").device == "cpu"
