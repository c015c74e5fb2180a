"""Attaching to a running scheduler: `dask scheduler` + `dask worker` processes on loopback give
the embedded run's metrics, the dashboard serves /status and Prometheus /metrics meanwhile,
and a scheduler without workers stops the job with exit status 2 instead of a hang."""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.request

from cluster_runs import PROBE, comparable, data_args
from distributed import Client

from medsyn_dask.cli import main
from medsyn_dask.cluster import GPU_RESOURCE


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.read().decode(errors="replace")


def test_attached_run_matches_local_and_dashboard_serves_metrics(
    dask_processes, cluster_phantoms, local_reference, tmp_path
):
    address = dask_processes.start_scheduler()
    # one GPU worker and one without: extraction asks for the GPU resource, so all of its
    # tasks must land on the first (each worker records its tasks through the probe)
    tasks = tmp_path / "tasks.jsonl"
    env = {
        **os.environ,
        "DASK_DISTRIBUTED__WORKER__PRELOAD": json.dumps([str(PROBE)]),
        "MEDSYN_TASK_LOG": str(tasks),
        "CUDA_VISIBLE_DEVICES": "",  # no real GPU is used: torch would otherwise look
    }
    dask_processes.start_workers(1, "--resources", f"{GPU_RESOURCE}=1", env=env)
    dask_processes.start_workers(1, env=env)
    # Both joined before the job starts (it starts with the first worker): else the job may
    # see no GPU worker yet and rightly let its first tasks run anywhere.
    with Client(address) as client:
        client.wait_for_workers(2, timeout=60)
    out = tmp_path / "out"
    args = ["analyze", *data_args(cluster_phantoms, out), "--cluster", address, "--workers", "2"]
    result: dict[str, int] = {}
    job = threading.Thread(target=lambda: result.setdefault("code", main(args)))
    job.start()
    pages: dict[str, tuple[int, str]] = {}
    while job.is_alive():  # ask the dashboard while the job runs
        for page in ("/status", "/metrics"):
            pages[page] = _get(dask_processes.dashboard + page)
        time.sleep(0.5)
    job.join()
    assert result["code"] == 0
    assert comparable(json.loads((out / "metrics.json").read_text())) == comparable(
        local_reference
    )
    records = [json.loads(line) for line in tasks.read_text().splitlines()]
    assert records and all(r["resources"] == {GPU_RESOURCE: 1} for r in records), records
    assert pages["/status"][0] == 200 and "<html" in pages["/status"][1].lower()
    status, text = pages["/metrics"]
    assert status == 200
    assert any(line.startswith("dask_scheduler_workers") for line in text.splitlines()), text


def test_no_workers_is_exit_2_with_the_reason_not_a_hang(
    dask_processes, cluster_phantoms, tmp_path, capsys
):
    address = dask_processes.start_scheduler()  # and no worker
    out = tmp_path / "out"
    args = [
        "analyze", *data_args(cluster_phantoms, out),
        "--scheduler-address", address, "--worker-timeout", "5",
    ]
    start = time.monotonic()
    code = main(args)
    elapsed = time.monotonic() - start
    err = capsys.readouterr().err
    assert code == 2
    assert f"waiting for Dask workers: 0/1 joined (the workers of the scheduler at {address}" in err
    assert "no Dask worker joined within 5 s: 1 asked for, none arrived" in err
    assert f"`dask worker {address}`" in err
    assert not (out / "metrics.json").exists()
    # a functional bound, not a speed test: the wait ends after the timeout, it does not hang
    assert elapsed < 20, elapsed


def test_unreachable_scheduler_is_exit_2(cluster_phantoms, tmp_path, capsys):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = [
        "analyze", *data_args(cluster_phantoms, tmp_path / "out"),
        "--cluster", f"tcp://127.0.0.1:{port}", "--worker-timeout", "2",
    ]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"cannot reach the Dask scheduler at tcp://127.0.0.1:{port} within 2 s" in err
