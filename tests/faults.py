"""Faults for the fault tests: a Dask worker preload that strikes at a set moment of a run.

Loaded into the workers of a run with ``DASK_DISTRIBUTED__WORKER__PRELOAD='["<this file>"]'``
(:func:`fault_env`); a LocalCluster started by the CLI passes that configuration on to its
worker processes, restarted ones included. ``$MEDSYN_FAULTS`` holds a JSON :class:`Faults`:

- every task whose key matches ``Faults.logged`` that finishes on a worker appends a JSON line
  ``{"key", "pid"}`` to ``Faults.log`` (a test counts how often each partition was computed);
- each :class:`Strike` fires once in the whole cluster (its ``flag`` file is created
  exclusively, holding the task's key and the worker's PID): when a worker process starts
  executing its ``nth`` task matching ``task``, then ``after_s`` seconds later (the task
  running), it SIGKILLs itself (``action="kill-worker"``), its parent (the driver of a
  LocalCluster) and then itself (``"kill-driver"``), sends SIGINT to its process group as a
  terminal does on Ctrl-C (``"ctrl-c"``), or removes the file ``path`` (``"remove"``).

Run as a script, this module is the ``medsyn-dask`` command with one more extractor,
``slow-pixels:MS`` (:class:`SlowPixels`), which the workers get from the preload: the pixels
extractor sleeping ``MS`` milliseconds per batch, so that a partition task lasts long enough
to be struck while it runs (sleeping, not computing: the test machine's cores are shared).

For the tests: :func:`start` / :func:`run` run a command in its own process group with the
preload, :func:`stop_group` ends what is left of that group, and :class:`OutageServer` is
moto's S3 server that can be stopped and restarted on its port.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from distributed import WorkerPlugin

from medsyn_dask.features import register
from medsyn_dask.features.pixels import PixelsExtractor

FAULTS_ENV = "MEDSYN_FAULTS"
#: Task-key patterns of the passes a test disturbs (partition tasks, not the probe).
EXTRACTION = r"extract-features-\d+-"
PROBE = r"extract-features-probe-"
DISTANCES = r"(real-radii|compare-real-synthetic)-"
ACTIONS = ("kill-worker", "kill-driver", "ctrl-c", "remove")


@dataclass(frozen=True)
class Strike:
    task: str  # regular expression matched at the start of the task key's name
    flag: str  # file created when the strike fires (once per cluster)
    action: str = "kill-worker"  # one of ACTIONS
    nth: int = 1  # the worker process's nth matching task
    after_s: float = 0.0  # delay after that task starts
    path: str = ""  # the file of "remove"


@dataclass(frozen=True)
class Faults:
    log: str
    logged: str = EXTRACTION
    strikes: list[Strike] = field(default_factory=list)


def fault_env(faults: Faults | None = None, env: Mapping[str, str] | None = None) -> dict:
    """``env`` (default: this process's) with the preload and ``faults`` set for a CLI run."""
    out = dict(os.environ if env is None else env)
    out["DASK_DISTRIBUTED__WORKER__PRELOAD"] = json.dumps([__file__])
    out[FAULTS_ENV] = json.dumps(asdict(faults or Faults(log=os.devnull)))
    return out


def command(*args: str) -> list[str]:
    """The argv of ``medsyn-dask ARGS`` with ``slow-pixels`` registered (this module's main)."""
    return [sys.executable, __file__, *args]


def read_log(path: str | Path) -> list[dict]:
    """The task records of ``Faults.log`` (empty when no task was logged)."""
    path = Path(path)
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def fired(strike: Strike) -> dict | None:
    """``{"key", "pid"}`` of the task whose start fired ``strike``, or None."""
    path = Path(strike.flag)
    return json.loads(path.read_text()) if path.exists() and path.stat().st_size else None


class SlowPixels(PixelsExtractor):
    """``slow-pixels:MS``: ``pixels`` (same features), sleeping ``MS`` ms per batch."""

    def __init__(self, ms: int) -> None:
        super().__init__()
        self.name, self.seconds = f"slow-pixels:{ms}", ms / 1000

    def forward(self, batch: Any) -> Any:
        time.sleep(self.seconds)
        return super().forward(batch)


@register("slow-pixels")
def _slow_pixels(arg: str | None, weights: str | None, options: Any) -> SlowPixels:
    return SlowPixels(int(arg or 100))


class FaultPlugin(WorkerPlugin):
    """The worker plugin carrying out :class:`Faults` in one worker process."""

    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self.counts = [0] * len(faults.strikes)

    def transition(self, key: object, start: str, finish: str, **kwargs: object) -> None:
        name = str(key[0] if isinstance(key, tuple) else key)
        # "executing" -> "memory" only: a result fetched by another worker reaches "memory" too.
        if start == "executing" and finish == "memory" and re.match(self.faults.logged, name):
            with open(self.faults.log, "a") as f:
                f.write(json.dumps({"key": str(key), "pid": os.getpid()}) + "\n")
        if finish != "executing":
            return
        for i, strike in enumerate(self.faults.strikes):
            if re.match(strike.task, name):
                self.counts[i] += 1
                if self.counts[i] == strike.nth and _claim(strike.flag, str(key)):
                    if strike.after_s:  # the task runs meanwhile
                        threading.Timer(strike.after_s, _act, (strike,)).start()
                    else:  # before the task starts (plugins hear of it first)
                        _act(strike)


def _claim(flag: str, key: str) -> bool:
    try:
        fd = os.open(flag, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps({"key": key, "pid": os.getpid()}))
    return True


def _act(strike: Strike) -> None:
    if strike.action == "remove":
        os.remove(strike.path)
    elif strike.action == "ctrl-c":
        os.killpg(os.getpgid(0), signal.SIGINT)
    else:
        if strike.action == "kill-driver":
            os.kill(os.getppid(), signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)


async def dask_setup(worker: Any) -> None:
    spec = json.loads(os.environ[FAULTS_ENV])
    strikes = [Strike(**s) for s in spec.pop("strikes")]
    plugin = FaultPlugin(Faults(**spec, strikes=strikes))
    await worker.plugin_add(plugin=plugin, name="medsyn-faults")


# --- Running the command and an S3 server that goes away ---


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    log: list[dict]  # extraction tasks finished on the workers: {"key", "pid"}


def run(argv: list[str], folder: Path, *strikes: Strike, timeout: float = 240) -> Run:
    """``argv`` in a new process group, with the fault preload; the group is gone on return."""
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / f"tasks-{time.monotonic_ns()}.jsonl"
    proc = start(argv, Faults(log=str(log), strikes=list(strikes)))
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        stop_group(proc.pid, wait_s=0)
    return Run(proc.returncode, out, err, read_log(log))


def start(argv: list[str], faults: Faults | None = None) -> subprocess.Popen:
    """``argv`` started in a new process group (the test is its terminal), with ``faults``;
    stdout and stderr piped, as text."""
    return subprocess.Popen(
        argv,
        env=fault_env(faults),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def stop_group(pgid: int, wait_s: float) -> bool:
    """Whether the process group ``pgid`` ended within ``wait_s``; SIGKILLed if not."""
    end = time.monotonic() + wait_s
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        if time.monotonic() > end:
            break
        time.sleep(0.2)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        return True
    return False


class OutageServer:
    """moto's S3 server on a fixed loopback port, which can be stopped and started again
    (the buckets live in this process and survive a restart)."""

    def __init__(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.server = None
        self.start()

    def start(self) -> None:
        from moto.server import ThreadedMotoServer

        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()

    def stop(self) -> None:
        self.server.stop()

    @property
    def options(self) -> dict:
        return {
            "key": "testing",
            "secret": "testing",
            "endpoint_url": f"http://127.0.0.1:{self.port}",
        }

    def filesystem(self):
        import s3fs

        return s3fs.S3FileSystem(skip_instance_cache=True, **self.options)


if __name__ == "__main__":
    from medsyn_dask.cli import main

    sys.exit(main())
