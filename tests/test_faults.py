"""Faults (issue 9): a disturbed run ends exactly as an undisturbed one, or stops with one line.

Every run is the real command in its own process group (the test is its terminal), on the
embedded LocalCluster of 2 worker processes, over small phantoms. Faults strike at a set
moment from inside the workers (tests/faults.py: a worker SIGKILLed while it extracts or
computes distances, the driver SIGKILLed, Ctrl-C to the process group, a weights file removed)
or from the test (the S3 server stopped and restarted). The extractor is ``slow-pixels:150``
(``pixels`` sleeping 150 ms per batch) so that a partition task is still running when struck.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from faults import (
    DISTANCES,
    EXTRACTION,
    PROBE,
    Faults,
    OutageServer,
    Strike,
    command,
    fired,
    run,
    start,
    stop_group,
)

from medsyn_dask.features import list_feature_sets, load_features
from medsyn_dask.phantoms import write_demo_dataset

MODEL = "slow-pixels:150"
GROUPS = ("memorizer", "faithful")
#: Partitions of the real set (80 images, 32 per partition) and of each group (32 images).
REAL_PARTITIONS, GROUP_PARTITIONS = 3, 1
MEDSYN = str(Path(sys.executable).with_name("medsyn-dask"))
#: What never belongs on the console of a failed or interrupted run.
NOISE = ("Traceback", "KeyboardInterrupt", "CancelledError", "Compute Failed", "Key: ", "State: ")


def analyze_args(real: str, groups: dict[str, str], out: str, *extra: str) -> list[str]:
    """Every run of these tests: blocks of 16 rows, so that the distances run as tasks on the
    workers (features of a few blocks are compared in the driver, out of a fault's reach)."""
    args = ["analyze", "--real", real, "--output", out, "--resolution", "16", "--workers", "2"]
    args += ["--block-size", "16"]
    for name, root in groups.items():
        args += ["--synthetic", f"{name}={root}"]
    return [*args, *extra]


def job_args(data, out: Path, *extra: str) -> list[str]:
    groups = {g: str(data.synthetic[g]) for g in GROUPS}
    return command(*analyze_args(str(data.real), groups, str(out), "--model", MODEL, *extra))


def outputs(read: Callable[[str], str], root: str) -> dict[str, object]:
    """metrics.json without its settings (they name the folders) and the per-image tables with
    ``root`` replaced by ``ROOT`` (``read(name)`` is the text of the output file ``name``):
    what two runs of the same job must agree on."""
    metrics = json.loads(read("metrics.json"))
    metrics.pop("settings")
    names = [f"per_image/{g}.csv" for g in GROUPS] + ["per_real.csv"]
    return {"metrics": metrics, **{name: read(name).replace(root, "ROOT") for name in names}}


def local(out: Path) -> Callable[[str], str]:
    return lambda name: (out / name).read_text()


def assert_same_run(out: Path, reference: Path, data) -> None:
    assert outputs(local(out), str(data.root)) == outputs(local(reference), str(data.root))
    for group in ("real", *(f"synthetic-{g}" for g in GROUPS)):
        a, b = (load_features(str(o / "features.zarr"), group) for o in (out, reference))
        np.testing.assert_array_equal(a.features.compute(), b.features.compute())
        assert list(a.paths) == list(b.paths)


def markers(out: Path, group: str = "real") -> dict[int, tuple[int, int]]:
    """Finished partitions of ``group``'s feature set: index -> (rows, marker mtime in ns)."""
    found = {}
    for path in (out / "features.zarr" / group).glob("*/partitions/*/zarr.json"):
        attrs = json.loads(path.read_text())["attributes"]
        found[attrs["partition"]] = (attrs["stop"] - attrs["start"], path.stat().st_mtime_ns)
    return found


def complete(store: str, group: str = "real", options: dict | None = None) -> bool:
    """Whether ``group`` of ``store`` holds a feature set marked complete."""
    try:
        sets = list_feature_sets(store, group, options)
    except FileNotFoundError:  # nothing written at all
        return False
    return any(provenance.complete for provenance in sets.values())


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("medsyn-dask analyze: ")]


def assert_quiet(stderr: str) -> None:
    """Only progress lines and the one final line: no traceback, no Dask dump or log noise."""
    for word in NOISE:
        assert word not in stderr, stderr
    assert " - distributed." not in stderr and " WARNING " not in stderr, stderr
    assert len(error_lines(stderr)) == 1, stderr


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_demo_dataset(
        tmp_path_factory.mktemp("fault-data"), n_real=40, n_synthetic=16, size=32
    )


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory) -> Path:
    """The undisturbed run's output folder."""
    out = tmp_path_factory.mktemp("undisturbed") / "out"
    done = run(job_args(data, out), out.parent)
    assert done.returncode == 0, done.stderr
    assert len(done.log) == REAL_PARTITIONS + len(GROUPS) * GROUP_PARTITIONS
    return out


def test_workers_killed_during_extraction_and_distances_change_nothing(data, reference, tmp_path):
    out = tmp_path / "out"
    extraction = Strike(EXTRACTION, str(tmp_path / "k1"), nth=2, after_s=0.05)
    distances = Strike(DISTANCES, str(tmp_path / "k2"), nth=2)
    done = run(job_args(data, out), tmp_path, extraction, distances)
    assert done.returncode == 0, done.stderr
    killed = fired(extraction)
    assert killed and fired(distances), "a worker should have been killed in each pass"
    assert_same_run(out, reference, data)
    # Each partition was written once: the killed one by another worker, and none of those
    # the killed worker had finished earlier (the driver had released their results).
    counts = Counter(r["key"] for r in done.log)
    assert set(counts.values()) == {1}, counts
    assert len(counts) == REAL_PARTITIONS + len(GROUPS) * GROUP_PARTITIONS
    assert [r["pid"] for r in done.log if r["key"] == killed["key"]] != [killed["pid"]]


def test_driver_killed_during_extraction_resumes_without_recomputing(data, reference, tmp_path):
    out = tmp_path / "out"
    strike = Strike(EXTRACTION, str(tmp_path / "k"), "kill-driver", nth=2, after_s=0.05)
    proc = start(job_args(data, out), Faults(log=os.devnull, strikes=[strike]))
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == -signal.SIGKILL and fired(strike), err
    # The orphaned workers lose their scheduler (it lived in the driver) and stop.
    assert stop_group(proc.pid, wait_s=30), "worker processes outlived their driver by 30 s"
    finished = markers(out)
    assert 1 <= len(finished) < REAL_PARTITIONS, finished
    assert not complete(str(out / "features.zarr")) and not (out / "metrics.json").exists()

    rerun = run(job_args(data, out), tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    reused = sum(rows for rows, _ in finished.values())
    assert f"features real: {reused} of 80 images reused" in rerun.stderr, rerun.stderr
    after = markers(out)
    assert {k: after[k] for k in finished} == finished  # markers untouched: not recomputed
    counts = Counter(r["key"] for r in rerun.log)
    assert set(counts.values()) == {1}
    assert len(counts) == REAL_PARTITIONS - len(finished) + len(GROUPS) * GROUP_PARTITIONS
    assert_same_run(out, reference, data)


def test_ctrl_c_is_one_line_and_leaves_nothing_complete(data, tmp_path):
    out = tmp_path / "out"
    strike = Strike(EXTRACTION, str(tmp_path / "k"), "ctrl-c", nth=2, after_s=0.05)
    done = run(job_args(data, out), tmp_path, strike)
    assert fired(strike)
    assert done.returncode == 130, done.stderr
    assert_quiet(done.stderr)
    (line,) = error_lines(done.stderr)
    assert "interrupted" in line and "resumes" in line
    assert not complete(str(out / "features.zarr")) and not (out / "metrics.json").exists()


# --- errors inside a worker ---


def _models(path: Path) -> Path:
    """TorchScript files in ``path``: ``flat.pt`` (the pixels, flattened) and ``failing.pt``,
    which fails on any image with a bright pixel (not on the blank probe batch)."""
    import torch

    class Failing(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if bool((x > 0).any()):
                raise RuntimeError("this model fails on purpose")
            return x.flatten(1)

    class Flat(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.flatten(1)

    torch.jit.save(torch.jit.script(Failing()), str(path / "failing.pt"))
    torch.jit.save(torch.jit.script(Flat()), str(path / "flat.pt"))
    return path


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")  # exporting is the point
@pytest.mark.parametrize("case", ["bad-image", "weights-removed", "model-fails", "debug"])
def test_worker_errors_reach_the_user_as_one_line(case, data, tmp_path):
    real, group = str(data.real), tmp_path / "poor"
    shutil.copytree(data.synthetic["poor"], group)
    out, models = tmp_path / "out", _models(tmp_path)
    strikes, extra, store_group = [], [], "real"
    if case == "bad-image":
        bad = sorted((group / data.classes[0]).iterdir())[3]
        bad.write_bytes(bad.read_bytes()[:40])  # truncated
        expected, store_group = [str(bad), "cannot decode"], "synthetic-poor"
    elif case == "weights-removed":  # there when the driver checks, gone when a worker loads
        weights = models / "flat.pt"
        extra = ["--model", "torchscript", "--weights", str(weights)]
        strikes = [Strike(PROBE, str(tmp_path / "k"), "remove", path=str(weights))]
        expected = [f"TorchScript file not found: {weights}"]
    else:
        weights = models / "failing.pt"
        extra = ["--model", "torchscript", "--weights", str(weights)]
        expected = [f"model 'torchscript' (weights {weights}) failed", "fails on purpose"]
    argv = [MEDSYN, *(["--debug"] if case == "debug" else [])]
    args = analyze_args(real, {"poor": str(group)}, str(out), *extra)
    done = run([*argv, *args], tmp_path, *strikes)
    assert not (out / "metrics.json").exists()
    assert all(fired(s) for s in strikes)
    if case == "debug":  # the whole story, for a bug report
        assert done.returncode == 1 and "Traceback" in done.stderr, done.stderr
        assert "Compute Failed" in done.stderr  # the worker's own report is not filtered
        assert "Traceback of TorchScript" in done.stderr and "fails on purpose" in done.stderr
        return
    assert done.returncode == 2, done.stderr
    assert_quiet(done.stderr)
    (line,) = error_lines(done.stderr)
    assert line.startswith("medsyn-dask analyze: error: ")
    assert all(text in line for text in expected), line
    assert not complete(str(out / "features.zarr"), store_group)


# --- the object store going away ---


@pytest.fixture
def outage_server():
    pytest.importorskip("moto.server", reason="moto[server] is needed for the S3 tests")
    server = OutageServer()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize("retries", ["standard", "none"])
def test_s3_server_restarted_during_extraction(retries, data, reference, outage_server, tmp_path):
    fs, bucket = outage_server.filesystem(), f"faults-{uuid.uuid4().hex[:12]}"  # moto's state
    # is this process's: buckets outlive a server
    fs.mkdir(bucket)
    fs.put(f"{data.root}/", f"{bucket}/", recursive=True)
    root, out = f"s3://{bucket}", f"s3://{bucket}/out"
    groups = {g: f"{root}/synthetic/{g}" for g in GROUPS}
    options = [f"{k}={v}" for k, v in outage_server.options.items()]
    if retries == "none":  # botocore gives up at once: the run must stop cleanly
        options.append("config_kwargs.retries.max_attempts=1")
    else:  # as the README advises for a flaky store: botocore's default (legacy mode, 5
        # attempts, random backoff) gave up within a 2 s outage in about 1 run in 4 on a busy
        # machine ("storage unreachable"); standard mode with 10 attempts waits long enough
        options += ["config_kwargs.retries.mode=standard", "config_kwargs.retries.max_attempts=10"]
    extra = [arg for option in options for arg in ("--storage-option", option)]
    argv = command(*analyze_args(f"{root}/real", groups, out, "--model", MODEL, *extra))
    proc = start(argv)
    try:
        pattern = f"{bucket}/out/features.zarr/real/*/partitions/*/zarr.json"
        while proc.poll() is None and not fs.glob(pattern):  # the first real partition
            fs.invalidate_cache()
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before the outage"
        outage_server.stop()
        end = time.monotonic() + (2 if retries == "standard" else 60)
        while time.monotonic() < end and proc.poll() is None:
            time.sleep(0.1)
        outage_server.start()
        _, err = proc.communicate(timeout=240)
    finally:
        stop_group(proc.pid, wait_s=0)
    fs.invalidate_cache()
    store_options = dict(outage_server.options)
    if retries == "standard":  # s3fs/botocore retries carry the run through
        assert proc.returncode == 0, err
        s3 = outputs(lambda name: fs.cat(f"{out}/{name}").decode(), root)
        assert s3 == outputs(local(reference), str(data.root))
        assert complete(f"{out}/features.zarr", "real", store_options)
        return
    assert proc.returncode == 1, err
    assert_quiet(err)
    (line,) = error_lines(err)
    assert "storage unreachable" in line and outage_server.options["endpoint_url"] in line
    assert not fs.exists(f"{bucket}/out/metrics.json")
    assert not complete(f"{out}/features.zarr", "real", store_options)


#: A task that fails unawaited and is then collected, as aiohttp's write on a connection the
#: outage closed: asyncio reports it ("Task exception was never retrieved", a traceback).
ABANDON_TASK = """
import asyncio, gc

async def write_bytes():
    raise ConnectionResetError("Cannot write to closing transport")

def abandon():
    loop = asyncio.new_event_loop()
    task = loop.create_task(write_bytes())
    loop.run_until_complete(asyncio.sleep(0.01))
    loop.close()
    del task
    gc.collect()
"""


@pytest.mark.parametrize("side", ["driver", "worker", "driver --debug"])
def test_abandoned_async_tasks_stay_off_the_console(side):
    """A storage outage abandons the async libraries' pending writes: their unretrieved task
    exceptions stay off the console, in the driver during a command (its error is the one
    line) and in a quiet worker for its life; ``--debug`` shows them."""
    steps = {
        "driver": "with console.quiet_console():\n    abandon()",
        "worker": "dask.config.set({console.QUIET_KEY: True})\nconsole.quiet_worker()\nabandon()",
        "driver --debug": "with console.quiet_console(debug=True):\n    abandon()",
    }
    script = f"{ABANDON_TASK}\nimport dask\nfrom medsyn_dask.cli import console\n{steps[side]}\n"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    shown = "Task exception was never retrieved" in done.stderr
    assert shown == (side == "driver --debug"), done.stderr
