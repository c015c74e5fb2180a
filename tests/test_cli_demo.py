"""The README's main command on a small size: a real LocalCluster, the known ranking."""

from __future__ import annotations

import json

from medsyn_dask.cli import main


def test_demo_ranks_the_generators(tmp_path, capsys):
    out = tmp_path / "metrics.json"
    code = main(
        [
            "demo",
            "--n-real",
            "600",
            "--n-synthetic",
            "300",
            "--dim",
            "32",
            "--workers",
            "2",
            "--block-size",
            "256",
            "--output",
            str(out),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "dashboard http://127.0.0.1:" in printed and "memorizer" in printed
    metrics = json.loads(out.read_text())
    assert min(metrics, key=lambda g: metrics[g]["privacy"]) in ("memorizer", "collapsed")
    assert metrics["memorizer"]["privacy"] == 0.0
    assert min(metrics, key=lambda g: metrics[g]["fidelity"]) == "poor"
    assert min(metrics, key=lambda g: metrics[g]["std"]) == "collapsed"
    assert metrics["faithful"]["privacy"] > 0.2


def test_demo_rejects_bad_option(capsys):
    assert main(["demo", "--n-real", "3", "--nearest-k", "5", "--workers", "1"]) == 2
    assert "nearest_k=5" in capsys.readouterr().err
