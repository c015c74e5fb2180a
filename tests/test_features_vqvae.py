"""The VQ-VAE-2 rebuild: parameter names/shapes equal the reference, checkpoints load by name."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from medsyn_dask.features import create_extractor
from medsyn_dask.features.vqvae import VQVAE

# A copy of shared/reference/vqvae_state_dict.json: the original checkpoints' names and shapes.
REFERENCE = Path(__file__).resolve().parent / "data" / "vqvae_state_dict.json"


def _reference() -> dict:
    if not REFERENCE.exists():
        raise FileNotFoundError(f"reference state-dict listing not found at {REFERENCE}")
    return json.loads(REFERENCE.read_text())


@pytest.mark.parametrize("size", [256, 512, 1024])
def test_state_dict_names_and_shapes_equal_reference(size):
    ref = _reference()
    expected = ref["state_dict"][str(size)]
    got = {k: list(v.shape) for k, v in VQVAE(in_channel=1, size=size).state_dict().items()}
    assert list(got) == list(expected)  # same names, same order
    assert got == expected
    model = VQVAE(size=size).eval()
    with torch.no_grad():
        top, bottom = model.encode(torch.zeros(1, 1, size, size))
    shapes = ref["code_map_shapes_when_input_equals_size"][str(size)]
    assert list(top.shape[1:]) == shapes["top"] and list(bottom.shape[1:]) == shapes["bottom"]


def _save_checkpoint(path: Path, size: int = 256, wrap=None, prefix: str = "") -> VQVAE:
    torch.manual_seed(0)
    model = VQVAE(size=size).eval()
    state = {prefix + k: v for k, v in model.state_dict().items()}
    torch.save(state if wrap is None else {wrap: state}, path)
    return model


@pytest.mark.parametrize(("wrap", "prefix"), [(None, ""), ("model", ""), ("state_dict", "module.")])
def test_extractor_loads_saved_checkpoint_by_name(tmp_path, wrap, prefix):
    ckpt = tmp_path / "vqvae.pt"
    model = _save_checkpoint(ckpt, wrap=wrap, prefix=prefix)
    x = torch.rand(3, 1, 64, 64) * 2 - 1
    with torch.no_grad():
        top, bottom = model.encode(x)
    ext_top = create_extractor("vqvae-top", weights=str(ckpt))
    ext_bottom = create_extractor(f"vqvae-bottom:{ckpt}")
    codes_t, codes_b = ext_top(x.numpy()), ext_bottom(x.numpy())
    assert codes_t.dtype == np.int16 and codes_t.shape == (3, 8 * 8)
    assert codes_b.shape == (3, 16 * 16)
    np.testing.assert_array_equal(codes_t, top.reshape(3, -1).numpy())
    np.testing.assert_array_equal(codes_b, bottom.reshape(3, -1).numpy())
    assert ext_top.weights_sha256 == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert codes_b.min() >= 0 and codes_b.max() < 512


def test_size_512_checkpoint_is_recognised_from_its_shapes(tmp_path):
    ckpt = tmp_path / "v512.pt"
    _save_checkpoint(ckpt, size=512)
    ext = create_extractor("vqvae-bottom", weights=str(ckpt))
    assert ext(np.zeros((1, 1, 128, 128), np.float32)).shape == (1, 16 * 16)  # stride 8


def test_bad_checkpoints_and_inputs_are_reported(tmp_path):
    with pytest.raises(ValueError, match="--weights"):
        create_extractor("vqvae-top")
    with pytest.raises(FileNotFoundError, match="absent.pt"):
        create_extractor("vqvae-top", weights=str(tmp_path / "absent.pt"))
    state = VQVAE(size=256).state_dict()
    state["quantize_t.embed"] = torch.zeros(64, 100)
    torch.save(state, tmp_path / "wrong.pt")
    with pytest.raises(ValueError, match="quantize_t.embed_avg|quantize_t"):
        create_extractor("vqvae-top", weights=str(tmp_path / "wrong.pt"))
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(ValueError, match="junk.pt"):
        create_extractor("vqvae-top", weights=str(tmp_path / "junk.pt"))
    _save_checkpoint(tmp_path / "ok.pt")
    ext = create_extractor("vqvae-top", weights=str(tmp_path / "ok.pt"))
    with pytest.raises(ValueError, match="1-channel input"):
        ext(np.zeros((1, 3, 64, 64), np.float32))
