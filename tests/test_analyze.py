"""The whole job: phantoms with a known answer (2D and 3D), outputs, errors, compat CLI."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
from PIL import Image

from medsyn_dask.cli import main
from medsyn_dask.phantoms import write_demo_dataset


@pytest.fixture(scope="module")
def address(extract_client):
    return extract_client.scheduler.address


@pytest.fixture(scope="module")
def phantoms_2d(tmp_path_factory):
    return write_demo_dataset(tmp_path_factory.mktemp("p2d"), n_real=60, n_synthetic=30, size=64)


def _analyze_args(data, out, *extra, groups=None):
    args = ["analyze", "--real", str(data.real), "--output", str(out), "--resolution", "32"]
    for name in groups or data.synthetic:
        args += ["--synthetic", f"{name}={data.synthetic[name]}"]
    return [*args, *extra]


def _lowest(metrics: dict, score: str) -> str:
    values = {g: v[score] for g, v in metrics["groups"].items()}
    return min(values, key=values.get)


def test_2d_known_order_and_outputs(phantoms_2d, tmp_path, address, capsys):
    out = tmp_path / "out"
    assert main(_analyze_args(phantoms_2d, out, "--scheduler-address", address)) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["complete"] is True
    for score, group in phantoms_2d.truth.items():
        assert _lowest(metrics, score) == group, score
    memorizer = pd.read_csv(out / "per_image" / "memorizer.csv")
    assert list(memorizer.columns) == [
        "path",
        "class",
        "set",
        "nearest_real",
        "distance",
        "copy_ratio",
        "privacy_score",
    ]
    assert (memorizer["set"] == "copy").all() and (memorizer["copy_ratio"] < 1).all()
    # every copy points at the real image it was made from
    root = f"{phantoms_2d.root}/"
    for path, nearest in zip(memorizer["path"], memorizer["nearest_real"], strict=True):
        assert phantoms_2d.memorized_from[path.removeprefix(root)] == nearest.removeprefix(root)
    per_real = pd.read_csv(out / "per_real.csv")
    assert per_real["copies_memorizer"].sum() >= len(memorizer)
    mean = Image.open(out / "mean_images" / "collapsed" / "all_classes.png")
    assert mean.mode == "RGB"
    assert "known" not in capsys.readouterr().err


def test_3d_known_order(tmp_path, address):
    data = write_demo_dataset(tmp_path / "p3d", n_real=40, n_synthetic=24, dims=3, size=24)
    out = tmp_path / "out"
    assert main(_analyze_args(data, out, "--scheduler-address", address)) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for score, group in data.truth.items():
        assert _lowest(metrics, score) == group, score
    assert (out / "mean_images" / "poor" / "all_classes.nii.gz").exists()


def test_single_group_variety_is_null_with_reason(phantoms_2d, tmp_path, address, capsys):
    out = tmp_path / "out"
    args = _analyze_args(phantoms_2d, out, "--scheduler-address", address, groups=["faithful"])
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["groups"]["faithful"]["variety"] is None
    assert "only one group" in metrics["variety"]["variety_undefined_reason"]


def test_config_file_and_multiscale(phantoms_2d, tmp_path, address):
    config = tmp_path / "run.yaml"
    config.write_text(
        f"real: {phantoms_2d.real}\n"
        f"synthetic:\n  faithful: {phantoms_2d.synthetic['faithful']}\n"
        f"  poor: {phantoms_2d.synthetic['poor']}\n"
        "models: [pixels, 'pixels:8']\nresolutions: [32, 64]\nnearest_k: 3\n"
    )
    out = tmp_path / "out"
    assert (
        main(
            [
                "analyze",
                "--config",
                str(config),
                "--output",
                str(out),
                "--scheduler-address",
                address,
            ]
        )
        == 0
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["settings"]["nearest_k"] == 3
    assert len(metrics["per_model_resolution"]) == 4
    mm_fid = metrics["multiscale"]["mm_fid"]
    assert mm_fid["poor"]["mean"] > mm_fid["faithful"]["mean"]


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing_root", "not found"),
        ("empty_class", "no image"),
        ("classes_differ", "classes differ"),
        ("unknown_model", "unknown feature extractor"),
        ("unwritable", "not writable"),
    ],
)
def test_errors_exit_2_and_leave_nothing_complete(
    case, message, phantoms_2d, tmp_path, address, capsys
):
    real, synth = tmp_path / "real", tmp_path / "synth"
    shutil.copytree(phantoms_2d.real, real)
    shutil.copytree(phantoms_2d.synthetic["poor"], synth)
    out = tmp_path / "out"
    extra = []
    if case == "missing_root":
        shutil.rmtree(synth)
    elif case == "empty_class":
        for f in (synth / phantoms_2d.classes[0]).iterdir():
            f.unlink()
    elif case == "classes_differ":
        (synth / phantoms_2d.classes[0]).rename(synth / "other")
    elif case == "unknown_model":
        extra = ["--model", "no-such-model"]
    elif case == "unwritable":
        out.write_text("a file where the output folder should be")
    args = [
        "analyze",
        "--real",
        str(real),
        "--synthetic",
        f"a={synth}",
        "--synthetic",
        f"b={synth}",
        "--output",
        str(out),
        "--scheduler-address",
        address,
        *extra,
    ]
    assert main(args) == 2
    assert message in capsys.readouterr().err.lower()
    assert not (out / "metrics.json").exists() if out.is_dir() else True


def test_interrupted_run_removes_stale_metrics(phantoms_2d, tmp_path, address):
    synth = tmp_path / "synth"
    shutil.copytree(phantoms_2d.synthetic["poor"], synth)
    next((synth / phantoms_2d.classes[0]).iterdir()).write_bytes(b"not a png")  # truncated file
    out = tmp_path / "out"
    out.mkdir()
    (out / "metrics.json").write_text('{"complete": true}')  # from an earlier run
    args = [
        "analyze",
        "--real",
        str(phantoms_2d.real),
        "--synthetic",
        f"a={synth}",
        "--output",
        str(out),
        "--resolution",
        "32",
        "--scheduler-address",
        address,
    ]
    assert main(args) == 2
    assert not (out / "metrics.json").exists()


def test_ctrl_c_after_the_results_says_they_are_complete(
    phantoms_2d, tmp_path, address, capsys, monkeypatch
):
    """Ctrl-C while the report is rendered: metrics.json and the tables are written and
    complete, and the one line says so and how to render the report (not "rerun")."""
    import medsyn_dask.report as report

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(report, "write_report", interrupted)
    out = tmp_path / "out"
    assert main(_analyze_args(phantoms_2d, out, "--scheduler-address", address)) == 130
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "interrupted" in err and f"medsyn-dask report {out}` writes the report" in err, err
    assert "resumes" not in err
    assert json.loads((out / "metrics.json").read_text())["complete"] is True
    assert not (out / "report.html").exists()
    monkeypatch.undo()
    assert main(["report", str(out)]) == 0
    assert (out / "report.html").exists() and (out / "summary.txt").exists()
