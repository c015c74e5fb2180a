"""The whole job with patient mode and a held-out fraction: metrics.json, tables, summary."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from medsyn_dask.cli import main
from medsyn_dask.phantoms import write_demo_dataset


@pytest.fixture(scope="module")
def address(extract_client):
    return extract_client.scheduler.address


def test_patients_and_holdout_fraction(tmp_path, address, capsys):
    data = write_demo_dataset(tmp_path / "data", n_real=60, n_synthetic=30, size=64)
    files = sorted(p.relative_to(data.real).as_posix() for p in data.real.rglob("*.png"))
    csv = tmp_path / "patients.csv"
    pd.DataFrame({"path": files, "patient": [f"P{i // 2}" for i in range(len(files))]}).to_csv(
        csv, index=False
    )
    out = tmp_path / "out"
    args = ["analyze", "--real", str(data.real), "--output", str(out), "--resolution", "32"]
    for name, root in data.synthetic.items():
        args += ["--synthetic", f"{name}={root}"]
    args += ["--patients", str(csv), "--holdout-fraction", "0.3", "--holdout-seed", "1"]
    assert main([*args, "--scheduler-address", address]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    reference = metrics["reference"]
    assert reference["name"] == "holdout" and reference["n_images"] > 0
    assert metrics["real"]["n_images"] + reference["n_images"] == len(files)
    memo = metrics["groups"]["memorizer"]
    assert memo["copy_test"] == "one-sided two-proportion z-test (pooled)"
    assert memo["privacy_vs_holdout"] < 0 and memo["copy_test_p_value"] < 0.01
    assert memo["patients_copied"] > 0 and memo["patient_privacy"] < 1
    per_patient = pd.read_csv(out / "per_patient" / "memorizer.csv")
    assert list(per_patient.columns) == [
        "patient",
        "images",
        "copies",
        "nearest_synthetic",
        "distance",
        "copy_ratio",
    ]
    held = pd.read_csv(out / "per_image" / "holdout.csv")
    assert len(held) == reference["n_images"]
    # No patient on both sides: held-out images' patients are not among the remaining ones.
    patient_of = dict(zip(files, (f"P{i // 2}" for i in range(len(files))), strict=True))
    root = f"{data.real}/"
    held_patients = {patient_of[p.removeprefix(root)] for p in held["path"]}
    assert held_patients.isdisjoint(set(per_patient["patient"]))
    summary = (out / "summary.txt").read_text()
    assert "holdout (ref)" in summary and "patient mode" in summary
    assert "one-sided two-proportion z-test (pooled)" in summary
    report = (out / "report.html").read_text()
    assert 'id="reference-row"' in report and "holdout (reference)" in report
    assert 'id="patient-scores"' in report and 'id="holdout-comparison"' in report
    assert 'id="no-baseline"' not in report


def test_holdout_root_through_the_compat_cli(tmp_path, address, capsys):
    """A given held-out root (real images the generator never saw) is the reference row, and
    the original's command line prints it with each group's differences to it."""
    import shutil

    import dask

    from medsyn_dask.cli.compat import main as compat_main

    data = write_demo_dataset(tmp_path / "data", n_real=40, n_synthetic=20, size=64)
    unseen = write_demo_dataset(tmp_path / "unseen", n_real=20, n_synthetic=2, size=64, seed=7)
    groups = tmp_path / "groups"
    for name in ("memorizer", "faithful"):
        shutil.copytree(data.synthetic[name], groups / name)
    out = tmp_path / "out"
    with dask.config.set({"scheduler-address": address}):
        code = compat_main(
            ["-d", str(groups), "-r", str(data.real), "-o", str(out), "--select_model",
             "pixels", "--resolution", "32", "--holdout", str(unseen.real)]
        )
    assert code == 0
    printed = capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    reference = metrics["reference"]
    assert reference["source"] == str(unseen.real) and reference["n_images"] == 40
    assert metrics["real"]["n_images"] == 80  # the whole real root: nothing split off
    assert "[holdout] (reference: held-out real images)" in printed
    memo, faithful = metrics["groups"]["memorizer"], metrics["groups"]["faithful"]
    assert f"privacy_vs_holdout: {memo['privacy_vs_holdout']}" in printed
    assert memo["copy_test_p_value"] < 1e-4 < faithful["copy_test_p_value"]
