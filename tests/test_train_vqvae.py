"""train-vqvae: a small VQ-VAE trained on demo phantoms learns, loads strictly into the
extraction path, ranks the demo groups as the known answer says, resumes after a kill, and
refuses bad input before training."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from medsyn_dask.cli import main
from medsyn_dask.errors import InputError, SettingsError
from medsyn_dask.features import create_extractor
from medsyn_dask.features.vqvae import VQVAE, vqvae_from_state_dict
from medsyn_dask.features.vqvae.train import train_vqvae
from medsyn_dask.features.vqvae.train_files import load_training
from medsyn_dask.features.vqvae.train_loop import reconstruct
from medsyn_dask.phantoms import write_demo_dataset
from medsyn_dask.sources import list_images, preprocess, read_image

REFERENCE = Path(__file__).resolve().parent / "data" / "vqvae_state_dict.json"
#: A small architecture, so that a few hundred CPU steps take seconds.
SMALL = {
    "model_size": 256,
    "channels": 32,
    "res_blocks": 1,
    "res_channels": 16,
    "embed_dim": 16,
    "codebook_size": 64,
}
SMALL_FLAGS = [f"--{k.replace('_', '-')}={v}" for k, v in SMALL.items()]
RUN = {"resolution": 32, "batch_size": 16, "lr": 1e-3, "progress": False, **SMALL}


@contextmanager
def one_thread():
    """Torch on one thread: on a shared, busy machine two spinning threads run many times
    slower than one."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return write_demo_dataset(tmp_path_factory.mktemp("demo"), n_real=150, n_synthetic=30, size=64)


@pytest.fixture(scope="module")
def trained(demo, tmp_path_factory):
    out = tmp_path_factory.mktemp("trained")
    with one_thread():
        result = train_vqvae(str(demo.real), str(out / "vqvae.pt"), steps=300, **RUN)
    return result, out


def _preprocessed(root: Path, resolution: int = 32) -> np.ndarray:
    paths = list_images(str(root)).paths
    return np.stack([preprocess(read_image(p), resolution) for p in paths])


def test_loss_falls_usage_is_high_and_record_says_what_it_saw(demo, trained):
    result, out = trained
    assert result.step == result.total_steps == 300 and result.resumed_from == 0
    record = json.loads((out / "vqvae.pt.json").read_text())
    curve = record["curve"]
    assert curve["step"][0] == 10 and curve["step"][-1] == 300
    assert np.mean(curve["loss"][-3:]) < 0.5 * np.mean(curve["loss"][:3])
    assert result.usage_top > 0.5 and result.usage_bottom > 0.5
    assert record["codebook_usage"] == {"top": result.usage_top, "bottom": result.usage_bottom}
    assert record["warnings"] == [] and record["complete"] is True
    assert record["n_files"] == record["n_images"] == 300
    assert record["classes"] == {c: 150 for c in demo.classes}
    listed = sorted(
        f"{cls.name}/{f.name}" for cls in Path(demo.real).iterdir() for f in cls.iterdir()
    )
    assert record["file_list_sha256"] == hashlib.sha256("\n".join(listed).encode()).hexdigest()
    assert record["settings"]["lr"] == 1e-3 and record["architecture"]["n_embed"] == 64
    assert record["package_version"] and record["torch_version"] == torch.__version__
    training, grid = (Image.open(p) for p in result.plots)
    assert Path(result.plots[0]) == out / "training.png" and training.size[0] > 500
    assert grid.size[0] > 3 * grid.size[1]  # 8 pairs side by side in two rows


def test_held_out_reconstruction_beats_an_untrained_model(demo, trained, tmp_path):
    result, out = trained
    held_out = write_demo_dataset(tmp_path, n_real=16, n_synthetic=1, size=64, seed=7)
    images = _preprocessed(Path(held_out.real))
    model = vqvae_from_state_dict(torch.load(out / "vqvae.pt", weights_only=True))
    torch.manual_seed(1)
    untrained = VQVAE(in_channel=1, **_arch(SMALL))
    err = np.mean((reconstruct(model, images) - images) ** 2)
    err_untrained = np.mean((reconstruct(untrained, images) - images) ** 2)
    assert err < 0.2 * err_untrained, (err, err_untrained)
    assert err < 2 * result.reconstruction_mse + 0.01  # held-out close to training error


def _arch(small: dict) -> dict:
    names = {"channels": "channel", "res_blocks": "n_res_block", "res_channels": "n_res_channel"}
    names |= {"codebook_size": "n_embed", "model_size": "size"}
    return {names.get(k, k): v for k, v in small.items()}


def test_checkpoint_is_a_plain_state_dict_the_extractor_loads_strictly(demo, trained):
    _, out = trained
    ckpt = out / "vqvae.pt"
    state = torch.load(ckpt, weights_only=True)  # the original's torch.load + load_state_dict
    model = VQVAE(in_channel=1, **_arch(SMALL))
    model.load_state_dict(state, strict=True)
    assert list(state) == list(model.state_dict())
    images = _preprocessed(Path(demo.real))[:8]
    with torch.no_grad():
        top, bottom = model.eval().encode(torch.from_numpy(images))
    codes_b = create_extractor("vqvae-bottom", weights=str(ckpt))(images)
    codes_t = create_extractor("vqvae-top", weights=str(ckpt))(images)
    np.testing.assert_array_equal(codes_b, bottom.reshape(8, -1).numpy())
    np.testing.assert_array_equal(codes_t, top.reshape(8, -1).numpy())
    assert len(np.unique(codes_b)) > 10  # different images, different codes


def test_default_architecture_has_the_reference_names_and_shapes(demo, tmp_path):
    with one_thread():
        train_vqvae(
            str(demo.real),
            str(tmp_path / "ref.pt"),
            steps=1,
            resolution=32,
            batch_size=2,
            progress=False,
            class_names=[demo.classes[0]],
        )
    state = torch.load(tmp_path / "ref.pt", weights_only=True)
    expected = json.loads(REFERENCE.read_text())["state_dict"]["512"]  # the original builds 512
    assert {k: list(v.shape) for k, v in state.items()} == expected
    assert list(state) == list(expected)


def test_analyze_with_the_trained_codes_ranks_the_demo_groups(
    demo, trained, tmp_path, extract_client
):
    _, out = trained
    args = ["analyze", "--real", str(demo.real), "--output", str(tmp_path / "res")]
    for name, root in demo.synthetic.items():
        args += ["--synthetic", f"{name}={root}"]
    args += ["--resolution", "32", "--model", "vqvae-bottom", "--weights", str(out / "vqvae.pt")]
    assert main([*args, "--scheduler-address", extract_client.scheduler.address]) == 0
    groups = json.loads((tmp_path / "res" / "metrics.json").read_text())["groups"]
    for score in ("privacy", "fidelity"):
        values = {g: v[score] for g, v in groups.items()}
        assert min(values, key=values.get) == demo.truth[score], (score, values)


def test_training_as_a_task_on_the_cluster(demo, tmp_path, extract_client, capsys):
    result = train_vqvae(
        str(demo.real),
        str(tmp_path / "c.pt"),
        client=extract_client,
        steps=20,
        class_names=[demo.classes[0]],
        **{**RUN, "progress": True},
    )
    assert result.step == 20 and (tmp_path / "c.pt").exists()
    err = capsys.readouterr().err
    assert "one task on a CPU worker" in err and "step 20/20" in err  # the worker's progress


def test_collapsed_codebook_warns_with_remedies(demo, tmp_path):
    # the reference's codebook (no restarts, random start) collapses on these images
    with one_thread():
        result = train_vqvae(
            str(demo.real),
            str(tmp_path / "w.pt"),
            steps=40,
            restart_below=0,
            class_names=[demo.classes[0]],
            **RUN,
        )
    assert result.warnings and "collapsed" in result.warnings[0]
    assert "--lr" in result.warnings[0] and "re-initialising unused codes" in result.warnings[0]
    record = json.loads((tmp_path / "w.pt.json").read_text())
    assert record["warnings"] == list(result.warnings)


def _cli(demo, ckpt: Path, steps: int) -> list[str]:
    """``train-vqvae`` arguments: one class, the small model, a save every 5 steps."""
    args = ["train-vqvae", "--real", str(demo.real), "--output", str(ckpt), "--steps", str(steps)]
    args += ["--class-names", demo.classes[0], "--resolution", "32", "--batch-size", "16"]
    return [*args, "--lr", "1e-3", "--save-every", "5", *SMALL_FLAGS]


def test_kill_and_resume_continues_from_the_last_saved_step(demo, tmp_path, capsys):
    ckpt = tmp_path / "k" / "vqvae.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-c", "import sys; from medsyn_dask.cli import main; main()"]
    proc = subprocess.Popen([*command, *_cli(demo, ckpt, 100_000)], env=env, stderr=subprocess.PIPE)
    record = Path(f"{ckpt}.json")
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if record.exists():
                # every file under its final name is whole whenever it is looked at
                step = json.loads(record.read_text())["step"]
                torch.load(ckpt, weights_only=True)
                if step >= 10:
                    break
            time.sleep(0.02)
        assert proc.poll() is None, proc.stderr.read().decode()
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    saved = load_training(str(ckpt))["record"]["step"]
    assert saved >= 10 and saved % 5 == 0
    torch.load(ckpt, weights_only=True)
    json.loads(record.read_text())
    (ckpt.parent / ".vqvae.pt.json.0123abcd.tmp").write_text("{")  # as a kill leaves one
    with one_thread():
        assert main(_cli(demo, ckpt, saved + 10)) == 0  # the same command, resumed
    assert not list(ckpt.parent.glob(".*.tmp"))
    assert f"resuming from step {saved}" in capsys.readouterr().err
    assert json.loads(record.read_text())["step"] == saved + 10
    # the same weights as an uninterrupted run: step, batches, optimizer and RNG restored
    with one_thread():
        train_vqvae(
            str(demo.real),
            str(tmp_path / "u.pt"),
            steps=saved + 10,
            class_names=[demo.classes[0]],
            **RUN,
        )
    resumed = torch.load(ckpt, weights_only=True)
    straight = torch.load(tmp_path / "u.pt", weights_only=True)
    for key, value in straight.items():
        torch.testing.assert_close(resumed[key], value, rtol=1e-4, atol=1e-5, msg=key)


def test_bad_inputs_fail_before_training(demo, trained, tmp_path, capsys):
    empty = tmp_path / "empty" / "normal"
    empty.mkdir(parents=True)
    with pytest.raises(InputError, match="no images"):
        train_vqvae(str(empty.parent), str(tmp_path / "a.pt"), **RUN)
    mixed = tmp_path / "mixed" / "c"
    mixed.mkdir(parents=True)
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(mixed / "gray.png")
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(mixed / "rgb.png")
    with pytest.raises(InputError, match=r"gray\.png.*rgb\.png"):
        train_vqvae(str(mixed.parent), str(tmp_path / "b.pt"), **RUN)
    with pytest.raises(SettingsError, match="multiple of 8.*got 36"):
        train_vqvae(str(demo.real), str(tmp_path / "c.pt"), **{**RUN, "resolution": 36})
    code = main(
        [
            "train-vqvae",
            "--real",
            str(demo.real),
            "--output",
            str(tmp_path / "d.pt"),
            "--resolution",
            "40",
        ]
    )  # the default model (size 512) needs multiples of 16
    assert code == 2 and "multiple of 16" in capsys.readouterr().err
    foreign = tmp_path / "foreign.pt"
    torch.save(VQVAE(size=256).state_dict(), foreign)
    with pytest.raises(SettingsError, match="no training state.*--overwrite"):
        train_vqvae(str(demo.real), str(foreign), **RUN)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "foreign.pt", "mixed"]
    ckpt = str(trained[1] / "vqvae.pt")
    with pytest.raises(SettingsError, match="cannot resume.*resolution was 32, now 64"):
        train_vqvae(str(demo.real), ckpt, steps=400, **{**RUN, "resolution": 64})
    with pytest.raises(SettingsError, match="cannot resume.*file list"):
        train_vqvae(str(demo.real), ckpt, steps=400, class_names=[demo.classes[0]], **RUN)
    with pytest.raises(SettingsError, match="100 steps asked, but .* is at step 300"):
        train_vqvae(str(demo.real), ckpt, steps=100, **RUN)


def test_volumes_train_on_their_central_slices_and_divergence_stops(tmp_path):
    data = write_demo_dataset(tmp_path / "v", n_real=3, n_synthetic=1, dims=3, size=24)
    with one_thread():
        result = train_vqvae(
            str(data.real), str(tmp_path / "v.pt"), steps=3, **{**RUN, "resolution": 16}
        )
        assert result.n_images == 3 * 3 * len(data.classes)  # three slices per volume
        with pytest.raises(SettingsError, match="diverged.*lower --lr"):
            train_vqvae(
                str(data.real),
                str(tmp_path / "nan.pt"),
                steps=50,
                **{**RUN, "resolution": 16, "lr": 1e12},
            )


def test_a_checkpoint_path_under_a_file_is_refused_before_training(tmp_path):
    """It was found when the first checkpoint was saved, after the training (a traceback)."""
    from medsyn_dask.features.vqvae.train import TrainSettings

    (tmp_path / "afile").write_text("x")
    for output, message in [
        (tmp_path / "afile" / "v.pt", "afile is a file, not a folder"),
        (tmp_path, "is a folder: give the checkpoint's file name"),
    ]:
        with pytest.raises(SettingsError, match=message):
            TrainSettings(real=str(tmp_path), output=str(output))
