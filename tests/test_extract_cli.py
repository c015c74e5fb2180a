"""``medsyn-dask extract``: options, S3 storage options, errors, and a driver killed mid-run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from image_files import png_dataset, upload

from medsyn_dask.cli import main
from medsyn_dask.cli.extract import parse_storage_options
from medsyn_dask.features import extract_features, load_features


def test_storage_options_parsing():
    opts = parse_storage_options(
        [
            "anon=true",
            "endpoint_url=http://127.0.0.1:9000",
            "client_kwargs.region_name=eu",
            "max_concurrency=4",
        ]
    )
    assert opts == {
        "anon": True,
        "endpoint_url": "http://127.0.0.1:9000",
        "client_kwargs": {"region_name": "eu"},
        "max_concurrency": 4,
    }
    assert main(["extract", "--root", "r", "--store", "s", "--storage-option", "novalue"]) == 2


def test_cli_extracts_from_s3_with_class_filter(
    tmp_path, extract_client, s3_server, s3_bucket, capsys
):
    root = png_dataset(tmp_path / "data", classes=("a", "b", "c"), per_class=3)
    upload(root, s3_server.filesystem(), f"{s3_bucket}/ds")
    opts = s3_server.storage_options
    argv = [
        "extract",
        "--root",
        f"{s3_bucket}/ds",
        "--store",
        f"{s3_bucket}/f.zarr",
        "--group",
        "synthetic-a",
        "--model",
        "pixels:8",
        "--resolution",
        "16",
        "--class-names",
        "c,a",
        "--scheduler-address",
        extract_client.scheduler.address,
        "--storage-option",
        f"key={opts['key']}",
        "--storage-option",
        f"secret={opts['secret']}",
        "--storage-option",
        f"endpoint_url={opts['endpoint_url']}",
        "--storage-option",
        "client_kwargs.region_name=us-west-2",
    ]
    assert main(argv) == 0
    out = capsys.readouterr()
    assert "6 images x 64 features" in out.out
    assert opts["secret"] not in out.out + out.err
    loaded = load_features(f"{s3_bucket}/f.zarr", "synthetic-a", storage_options=opts)
    assert list(loaded.classes) == ["c"] * 3 + ["a"] * 3
    assert loaded.provenance.class_names == ("c", "a")


def test_cli_errors_are_one_line_with_exit_code_2(tmp_path, extract_client, capsys):
    addr = extract_client.scheduler.address
    code = main(
        [
            "extract",
            "--root",
            str(tmp_path / "nowhere"),
            "--store",
            str(tmp_path / "f.zarr"),
            "--scheduler-address",
            addr,
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "dataset root not found" in err and "nowhere" in err
    root = png_dataset(tmp_path / "data", per_class=2)
    (root / "b" / "001.png").write_bytes(b"\x89PNG\r\n")
    code = main(
        [
            "extract",
            "--root",
            str(root),
            "--store",
            str(tmp_path / "f.zarr"),
            "--resolution",
            "16",
            "--scheduler-address",
            addr,
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "b/001.png" in err and err.count("\n") == 1
    code = main(
        [
            "extract",
            "--root",
            str(root),
            "--store",
            str(tmp_path / "f.zarr"),
            "--model",
            "timm:inception_v3",
            "--scheduler-address",
            addr,
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "--weights" in err


class Slow(torch.nn.Module):
    """A deliberately slow model (repeated matrix products) so that a run can be cut short."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.eye(256) * 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.reshape(x.shape[0], -1)[:, :256]
        acc = torch.zeros(x.shape[0], 256)
        for _ in range(1500):  # tens of ms per image
            acc = acc + torch.relu(y @ self.w @ self.w.t())
        return acc


def _markers(store: Path) -> int:
    return len(list(store.glob("real/*/partitions/*/zarr.json")))


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")  # exporting is the point
def test_killed_driver_then_rerun_equals_clean_run(tmp_path, extract_client):
    root = png_dataset(tmp_path / "data", per_class=5, size=16)
    model = tmp_path / "slow.pt"
    torch.jit.save(torch.jit.script(Slow()), str(model))
    store = tmp_path / "f.zarr"
    args = [
        "--root",
        str(root),
        "--store",
        str(store),
        "--model",
        f"torchscript:{model}",
        "--resolution",
        "16",
        "--partition-size",
        "1",
        "--batch-size",
        "1",
        "--scheduler-address",
        extract_client.scheduler.address,
    ]
    code = "import sys; from medsyn_dask.cli import main; sys.exit(main(sys.argv[1:]))"
    with (tmp_path / "driver.log").open("w") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-c", code, "extract", *args],
            stdout=subprocess.DEVNULL,
            stderr=log_file,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 120
            while _markers(store) == 0 and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.005)
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)  # the driver dies, as a killed job would
        finally:
            proc.wait()
    at_kill = _markers(store)
    print(f"markers when the driver was killed: {at_kill} of 10")
    log = (tmp_path / "driver.log").read_text()[-2000:]
    assert at_kill >= 1, f"no partition finished before the driver stopped:\n{log}"
    assert at_kill < 10, "the run was not cut short; make Slow slower"
    kw = dict(resolution=16, partition_size=1, batch_size=1, client=extract_client)
    resumed = extract_features(str(root), str(store), "real", f"torchscript:{model}", **kw)
    assert resumed.n_resumed >= at_kill and resumed.n_partitions == 10
    clean = extract_features(
        str(root), str(tmp_path / "c.zarr"), "real", f"torchscript:{model}", **kw
    )
    assert clean.name == resumed.name
    a = load_features(str(store), "real").features.compute()
    b = load_features(str(tmp_path / "c.zarr"), "real").features.compute()
    np.testing.assert_array_equal(a, b)


def test_cli_help_lists_extract(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "extract" in capsys.readouterr().out
