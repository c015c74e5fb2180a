"""The job on a REAL single-node SLURM (tests/slurm_cluster.py): dask-jobqueue workers with
(fake) GPUs give the LocalCluster run's metrics, and the deploy/ sbatch scripts complete."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from cluster_runs import PROBE, comparable, data_args

from medsyn_dask.cli import main
from medsyn_dask.cluster import GPU_RESOURCE

REPO = Path(__file__).resolve().parents[1]
#: Worker jobs small enough for the test node (4 CPUs, 4 GiB declared), on loopback.
WORKER_OPTIONS = {"cores": 1, "memory": "1GB", "interface": "lo", "walltime": "00:10:00"}


def _flat(value, path: str = "") -> dict[str, object]:
    """``{".groups.poor.fid": 289.9, ...}``: every leaf of a JSON document by its path."""
    if isinstance(value, dict):
        items = [(f"{path}.{key}", item) for key, item in value.items()]
    elif isinstance(value, list):
        items = [(f"{path}[{i}]", item) for i, item in enumerate(value)]
    else:
        return {path: value}
    return {k: v for sub, item in items for k, v in _flat(item, sub).items()}


def test_analyze_on_slurm_gpu_workers_matches_local(
    slurm, cluster_phantoms, local_reference, tmp_path, monkeypatch, capsys
):
    out, logs, tasks = tmp_path / "out", tmp_path / "logs", tmp_path / "tasks.jsonl"
    # the worker jobs inherit this environment through sbatch: each records its tasks
    monkeypatch.setenv("DASK_DISTRIBUTED__WORKER__PRELOAD", json.dumps([str(PROBE)]))
    monkeypatch.setenv("MEDSYN_TASK_LOG", str(tasks))
    options = [f"--cluster-option={k}={v}" for k, v in WORKER_OPTIONS.items()]
    code = main(
        [
            "analyze",
            *data_args(cluster_phantoms, out),
            "--cluster", "slurm",
            "--workers", "2",
            "--gpus-per-worker", "1",
            *options,
            f"--cluster-option=log_directory={logs}",
            "--worker-timeout", "120",
        ]
    )
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert "Dask: slurm cluster asking for 2 jobs, dashboard http://127.0.0.1:" in printed.out
    assert comparable(json.loads((out / "metrics.json").read_text())) == comparable(
        local_reference
    )
    records = [json.loads(line) for line in tasks.read_text().splitlines()]
    assert records, "no extraction task recorded"
    jobs = {}
    for record in records:
        # extraction ran only on workers advertising GPU=1, with the GPU SLURM gave their job
        assert record["resources"] == {GPU_RESOURCE: 1}, record
        assert record["cuda_visible_devices"] in ("0", "1"), record
        jobs[record["slurm_job_id"]] = record["cuda_visible_devices"]
    for job_id in jobs:  # ...and SLURM did allocate that GPU to the job
        job = slurm.job(job_id)
        assert "gres:gpu:1" in job.get("TresPerNode", ""), job
        assert job["JobState"] in ("COMPLETED", "CANCELLED", "COMPLETING"), job
    assert sorted(p.name for p in logs.glob("*.err")), "no worker log written"


def test_deploy_sbatch_driver_job_writes_metrics(
    slurm, cluster_phantoms, local_reference, tmp_path
):
    out = tmp_path / "out"
    config = yaml.safe_load((REPO / "deploy" / "analyze.yaml").read_text())
    config.update(
        real=str(cluster_phantoms.real),
        synthetic={k: str(v) for k, v in cluster_phantoms.synthetic.items()},
        output=str(out),
        resolutions=[16],
        workers=2,
        worker_timeout=120,
    )
    config["cluster_options"] = {
        **WORKER_OPTIONS, "queue": "debug", "log_directory": str(tmp_path / "logs")
    }
    (tmp_path / "analyze.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    env = {
        **os.environ,
        "VENV": str(Path(sys.executable).parent.parent),
        "CONFIG": str(tmp_path / "analyze.yaml"),
    }
    submitted = slurm.run(
        "sbatch", "--parsable", "--mem=1G", "--chdir", str(tmp_path),
        str(REPO / "deploy" / "slurm" / "analyze.sbatch"), env=env,
    )
    job = slurm.wait_job(submitted.strip().split(";")[0], timeout=150)
    log = next(tmp_path.glob("medsyn-driver-*.out")).read_text()
    assert job["JobState"] == "COMPLETED", log
    assert "Dask: slurm cluster asking for 2 jobs" in log
    # FID differs in the 9th digit between a fresh CLI process and the pytest process (also
    # on one machine without SLURM: the client-side eigen step), everything else is identical
    got, want = _flat(comparable(json.loads((out / "metrics.json").read_text()))), _flat(
        comparable(local_reference)
    )
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert got[key] == (pytest.approx(value, rel=1e-7) if key.endswith(".fid") else value), key


def test_slurm_submission_failure_is_exit_2_with_the_reason(
    slurm, cluster_phantoms, tmp_path, capsys
):
    """A partition that does not exist: sbatch refuses the jobs; no hang, no metrics."""
    out = tmp_path / "out"
    options = [f"--cluster-option={k}={v}" for k, v in WORKER_OPTIONS.items()]
    code = main(
        [
            "analyze", *data_args(cluster_phantoms, out), "--cluster", "slurm", *options,
            "--cluster-option", "queue=nosuchpartition", "--worker-timeout", "5",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "slurm refused the worker jobs" in err and "nosuchpartition" in err
    assert not (out / "metrics.json").exists()


def test_slurm_fixture_runs_real_jobs(slurm, tmp_path):
    """The fixture's SLURM is real: a --gres job sees the GPU SLURM allocated to it."""
    out = tmp_path / "gpu.out"
    job_id = slurm.run(
        "sbatch", "--parsable", "--gres=gpu:1", "--mem=10M", "-o", str(out),
        "--wrap", "echo CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES",
    ).strip()
    assert slurm.wait_job(job_id, timeout=30)["JobState"] == "COMPLETED"
    assert out.read_text().strip() in ("CUDA_VISIBLE_DEVICES=0", "CUDA_VISIBLE_DEVICES=1")
    assert slurm.version.startswith("slurm")
    assert subprocess.run(["sinfo", "-h", "-o", "%G"], capture_output=True, text=True,
                          env={**os.environ}).stdout.strip() == "gpu:2"
