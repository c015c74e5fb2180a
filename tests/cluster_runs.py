"""Shared inputs of the cluster tests: small phantoms, their LocalCluster metrics, and
``dask scheduler``/``dask worker`` processes on loopback (stopped by their PIDs)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from medsyn_dask.cli import main
from medsyn_dask.phantoms import write_demo_dataset

DASK = str(Path(sys.executable).with_name("dask"))
#: The worker preload that records where extraction tasks ran (tests/task_probe.py).
PROBE = Path(__file__).with_name("task_probe.py")


def data_args(data, out: Path) -> list[str]:
    """``analyze`` flags for the phantoms ``data``, writing to ``out`` (16 px features)."""
    args = ["--real", str(data.real), "--output", str(out), "--resolution", "16"]
    for name, root in data.synthetic.items():
        args += ["--synthetic", f"{name}={root}"]
    return args


def comparable(metrics: dict) -> dict:
    """metrics.json without the two settings that name the output folder."""
    settings = {
        k: v for k, v in metrics["settings"].items() if k not in ("output", "features_store")
    }
    return {**metrics, "settings": settings}


@pytest.fixture(scope="session")
def cluster_phantoms(tmp_path_factory):
    """The demo's phantoms, small: 40 real, 4 groups of 16, 32 px."""
    return write_demo_dataset(
        tmp_path_factory.mktemp("cluster-data"), n_real=40, n_synthetic=16, size=32
    )


@pytest.fixture(scope="session")
def local_reference(cluster_phantoms, tmp_path_factory):
    """metrics.json of the embedded LocalCluster run (2 workers) on ``cluster_phantoms``."""
    out = tmp_path_factory.mktemp("local-run") / "out"
    args = ["analyze", *data_args(cluster_phantoms, out), "--cluster", "local", "--workers", "2"]
    assert main(args) == 0
    return json.loads((out / "metrics.json").read_text())


class DaskProcesses:
    """``dask scheduler`` and ``dask worker`` processes on 127.0.0.1, stopped by their PIDs."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.processes = folder, []
        self.address = self.dashboard = ""

    def start_scheduler(self) -> str:
        file = self.folder / "scheduler.json"
        self._spawn(
            DASK, "scheduler", "--host", "127.0.0.1", "--port", "0",
            "--dashboard-address", "127.0.0.1:0", "--scheduler-file", str(file),
        )
        end = time.monotonic() + 60
        while not (file.exists() and file.stat().st_size):
            if time.monotonic() > end:
                raise TimeoutError("dask scheduler wrote no scheduler file in 60 s")
            time.sleep(0.1)
        info = json.loads(file.read_text())
        self.address = info["address"]
        self.dashboard = f"http://127.0.0.1:{info['services']['dashboard']}"
        return self.address

    def start_workers(self, n: int, *extra: str, env: dict | None = None) -> None:
        """``n`` single-thread workers; ``extra`` flags (e.g. ``--resources GPU=1``)."""
        for _ in range(n):
            self._spawn(
                DASK, "worker", self.address, "--host", "127.0.0.1", "--nthreads", "1",
                "--no-dashboard", "--no-nanny", "--memory-limit", "1GiB", *extra, env=env,
            )

    def _spawn(self, *args: str, env: dict | None = None) -> None:
        log = open(self.folder / f"process-{len(self.processes)}.log", "wb")
        self.processes.append(
            subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
        )
        log.close()

    def stop(self) -> None:
        for proc in reversed(self.processes):
            proc.terminate()
        for proc in reversed(self.processes):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def dask_processes(tmp_path):
    """Start ``dask scheduler``/``dask worker`` processes; all stopped after the test."""
    if shutil.which(DASK) is None:
        pytest.fail(f"no dask command beside {sys.executable}")
    procs = DaskProcesses(tmp_path)
    try:
        yield procs
    finally:
        procs.stop()
