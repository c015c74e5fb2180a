"""The compat command line (``synthetic_image_analyzer``): the original's flags, defaults, printed
options, errors and files (``Features/``, ``Avgs/``), on phantoms and a VQ-VAE checkpoint."""

from __future__ import annotations

import json
import os
import shutil

import dask
import numpy as np
import pandas as pd
import pytest
import torch

from medsyn_dask.cli.compat import build_parser, model_and_weights
from medsyn_dask.cli.compat import main as compat_main
from medsyn_dask.errors import SettingsError
from medsyn_dask.features import create_extractor, load_features
from medsyn_dask.features.vqvae import VQVAE
from medsyn_dask.phantoms import write_demo_dataset
from medsyn_dask.sources.preprocess import preprocess
from medsyn_dask.sources.readers import read_image

cv2 = pytest.importorskip("cv2")  # the test extra installs it: png-opencv is the default codec


@pytest.fixture(scope="module")
def address(extract_client):
    return extract_client.scheduler.address


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    return write_demo_dataset(tmp_path_factory.mktemp("compat"), n_real=24, n_synthetic=12, size=64)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "vqvae.pt"
    torch.save(VQVAE(in_channel=1, size=256).state_dict(), path)
    return path


def _run(address, argv):
    with dask.config.set({"scheduler-address": address}):
        return compat_main([str(a) for a in argv])


def _original_mean_image(folder) -> np.ndarray:
    """The original's compute_avg_images for one class folder: cv2.imread, float32 sum, /n."""
    files = os.listdir(folder)
    total = None
    for name in files:
        img = cv2.imread(os.path.join(folder, name))
        total = np.zeros(img.shape, np.float32) if total is None else total
        total += img
    return (total / len(files)).astype(np.uint8)


def test_vqvae_bottom_default_short_flags_and_the_original_files(
    phantoms, checkpoint, tmp_path, address, capsys
):
    data_dir = str(phantoms.synthetic["faithful"])
    out = tmp_path / "results"
    argv = ["-d", data_dir, "-r", phantoms.real, "-o", out, "--resolution", 64]
    assert _run(address, [*argv, "--pretrained_model_path", checkpoint]) == 0
    printed = capsys.readouterr().out
    dump = printed.split("------------ Options -------------\n", 1)[1].split("\n-----", 1)[0]
    keys = [line.split(":", 1)[0] for line in dump.splitlines()]
    assert keys == sorted(keys) and "select_model: vqvae_bottom" in dump
    assert f"data_dir: {data_dir}" in dump and "resolution: 64" in dump
    assert "precision: " in printed and "filesize: " in printed

    metrics = json.loads((out / "metrics.json").read_text())
    group = metrics["groups"]["faithful"]
    assert group["fid"] is None and metrics["settings"]["models"] == ["vqvae-bottom"]
    assert metrics["settings"]["codec"] == "png-opencv"

    # Features/<dir>_<model>.csv: index, codes 0..D-1, filename joined to the folder as given.
    ext = create_extractor("vqvae-bottom", weights=str(checkpoint))
    for folder, label in ((data_dir, "faithful"), (str(phantoms.real), "real")):
        table = pd.read_csv(out / "Features" / f"{label}_vqvae_bottom.csv", index_col=0)
        assert list(table.columns) == [*map(str, range(16 * 16)), "filename"]
        assert len(table) == 2 * (12 if label == "faithful" else 24)  # every image, none dropped
        names = table.pop("filename").tolist()
        assert all(n.startswith(os.path.join(folder, "")) for n in names)
        batch = np.stack([preprocess(read_image(n), 64) for n in names])
        np.testing.assert_array_equal(table.to_numpy(), ext(batch))
    stored = load_features(str(out / "features.zarr"), "synthetic-faithful").features.compute()
    assert stored.shape == (24, 16 * 16)

    # Avgs/<dir>_<class>.png: the original's mean images, written as its cv2.imwrite wrote them.
    means = []
    for cls in phantoms.classes:
        mean = _original_mean_image(os.path.join(data_dir, cls))
        means.append(mean)
        _, expected = cv2.imencode(".png", mean)
        assert (out / "Avgs" / f"faithful_{cls}.png").read_bytes() == expected.tobytes()
    _, all_classes = cv2.imencode(".png", np.mean(means, axis=0).astype(np.uint8))
    assert (out / "Avgs" / "faithful_all_classes.png").read_bytes() == all_classes.tobytes()
    # filesize as the original measured it: the bytes of that file (here before the kB floor).
    assert group["mean_image_bytes"] == len(all_classes.tobytes())


def test_class_names_list_native_codec_and_a_folder_of_groups(phantoms, tmp_path, address):
    data_dir = tmp_path / "synthetic_images"
    for name in ("memorizer", "poor"):
        shutil.copytree(phantoms.synthetic[name], data_dir / name)
    out = tmp_path / "results"
    argv = ["--data_dir", data_dir, "--ref_dir", phantoms.real, "--output_dir", out]
    argv += ["--resolution", 32, "--select_model", "pixels", "--codec", "png"]
    assert _run(address, [*argv, "--class_names", "lesion"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["groups"]) == {"memorizer", "poor"}
    assert metrics["groups"]["memorizer"]["privacy"] == 0.0
    assert np.isclose(metrics["groups"]["poor"]["fidelity"], 0.0)
    assert (
        metrics["settings"]["class_names"] == ["lesion"] and metrics["settings"]["codec"] == "png"
    )
    assert sorted(p.name for p in (out / "Avgs").iterdir()) == [
        "memorizer_all_classes.png", "memorizer_lesion.png",
        "poor_all_classes.png", "poor_lesion.png",
    ]  # fmt: skip
    real = pd.read_csv(out / "Features" / "real_pixels.csv", index_col=0)
    assert len(real) == 24 and all("/lesion/" in n for n in real["filename"])


def test_vqvae_without_checkpoint_is_one_line_error(phantoms, tmp_path, address, capsys):
    out = tmp_path / "results"
    code = _run(address, ["-d", phantoms.synthetic["poor"], "-r", phantoms.real, "-o", out])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--pretrained_model_path" in err
    assert err.startswith("synthetic_image_analyzer: error: --select_model vqvae_bottom")
    assert not (out / "metrics.json").exists()


def test_model_names_map_as_the_original_meant(monkeypatch):
    assert model_and_weights("vqvae_top", "v.pt") == ("vqvae-top", "v.pt")
    assert model_and_weights("pixels", None) == ("pixels", None)
    assert model_and_weights("inception_v3", "w.pt") == ("timm:inception_v3", "w.pt")
    assert model_and_weights("timm:resnet50", "w.pt") == ("timm:resnet50", "w.pt")
    # No weights and none in the cache (or no timm): the error says what to pass.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("torch.hub.get_dir", lambda: "/nonexistent")
    with pytest.raises(SettingsError, match="inception_v3.*(timm|--pretrained_model_path)"):
        model_and_weights("inception_v3", None)


def test_timm_weights_come_from_the_hugging_face_cache(tmp_path, monkeypatch):
    timm = pytest.importorskip("timm")
    pytest.importorskip("safetensors")
    from safetensors.torch import save_file

    from medsyn_dask.cli.timm_cache import cached_timm_weights

    name = "resnet10t"
    cfg = timm.models.get_pretrained_cfg(name)
    repo = tmp_path / f"models--{cfg.hf_hub_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    snapshot = repo / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    state = timm.create_model(name, pretrained=False).state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, snapshot / "model.safetensors")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path))
    path = cached_timm_weights(name)
    loaded = torch.load(path, weights_only=True)
    assert all(torch.equal(loaded[k], v) for k, v in state.items())


def test_help_names_the_original_defaults():
    text = build_parser().format_help()
    assert "default 512" in text and "vqvae_bottom (default)" in text
    for flag in ("-d DATA_DIR", "-r REF_DIR", "-o OUTPUT_DIR", "--codec"):
        assert flag in text


def test_group_folders_with_any_name_as_the_original_took_them(phantoms, tmp_path, address):
    """Sub-folders named 'my synth' or 'poor+v2' were refused ("synthetic group name must
    be letters..."): they became group names, which are plain names. Now made plain."""
    data_dir = tmp_path / "synthetic images"
    for name, folder in (("memorizer", "my synth"), ("poor", "poor+v2")):
        shutil.copytree(phantoms.synthetic[name], data_dir / folder)
    out = tmp_path / "results"
    argv = ["--data_dir", data_dir, "--ref_dir", phantoms.real, "--output_dir", out]
    assert _run(address, [*argv, "--resolution", 32, "--select_model", "pixels"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["groups"]) == {"my_synth", "poor_v2"}
    assert metrics["groups"]["my_synth"]["privacy"] == 0.0
    assert {p.name for p in (out / "Features").iterdir()} == {
        "real_pixels.csv", "my synth_pixels.csv", "poor+v2_pixels.csv",
    }  # fmt: skip


def test_ctrl_c_while_the_report_renders_says_rerun(
    phantoms, tmp_path, address, capsys, monkeypatch
):
    """The original's command line writes its Features/ and Avgs/ after the report: Ctrl-C
    while the report renders says to rerun the command, not `medsyn-dask report OUT` (which
    would not write them)."""
    import medsyn_dask.report as report

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(report, "write_report", interrupted)
    data_dir = tmp_path / "synthetic_images"
    shutil.copytree(phantoms.synthetic["poor"], data_dir / "poor")
    out = tmp_path / "results"
    argv = ["--data_dir", data_dir, "--ref_dir", phantoms.real, "--output_dir", out]
    assert _run(address, [*argv, "--resolution", 32, "--select_model", "pixels"]) == 130
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "interrupted" in err and "resumes" in err and "medsyn-dask report" not in err, err
    assert not (out / "Features").exists()
