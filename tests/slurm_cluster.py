"""A real single-node SLURM (Debian's 22.05 packages) in a temporary folder, for the tests.

The fixture starts ``munged``, ``slurmctld`` and ``slurmd`` without systemd, every file
(key, socket, state, logs, PID files) in a temporary folder and on free ports, with two fake
GPUs (``gres.conf`` pointing at character devices made with ``mknod``) so that ``--gres`` jobs
get ``CUDA_VISIBLE_DEVICES``. It exports ``SLURM_CONF`` so that ``sbatch`` (and
dask-jobqueue's calls to it) use this cluster, and stops the daemons by their PIDs afterwards.

Where the SLURM packages are missing the tests are skipped with the reason, except under
``CI=true``, where a missing SLURM fails them (a green CI never hides a skip). Install with
``apt-get install -y slurm-wlm slurmctld slurmd slurm-client munge`` (``.ci/run`` does).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

#: Programs the fixture needs (Debian packages slurm-wlm, slurmctld, slurmd, slurm-client, munge).
PROGRAMS = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "sinfo")
#: CPUs and memory (MiB) the node declares: more CPUs than a 2-core CI runner has (allowed by
#: ``config_overrides``) so a driver job and two worker jobs run side by side.
NODE_CPUS, NODE_MEMORY = 4, 4096
#: Fake GPUs on the node.
NODE_GPUS = 2

SLURM_CONF = """\
ClusterName=medsyn-test
SlurmctldHost={host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={dir}/munge.sock
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
StateSaveLocation={dir}/state
SlurmdSpoolDir={dir}/spool
SlurmctldPidFile={dir}/slurmctld.pid
SlurmdPidFile={dir}/slurmd.pid
SlurmctldLogFile={dir}/slurmctld.log
SlurmdLogFile={dir}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc={dir}/jobcomp.txt
MailProg=/bin/true
ReturnToService=2
KillWait=5
GresTypes=gpu
NodeName=localhost NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory} Gres=gpu:{gpus} State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""
GRES_CONF = """\
AutoDetect=off
NodeName=localhost Name=gpu File={dir}/gpu[0-{last}]
"""


@dataclass
class Slurm:
    """A running test SLURM: its folder, config file and daemons."""

    dir: Path
    conf: Path
    version: str
    processes: list[subprocess.Popen]

    def run(self, *args: str, env: dict | None = None, **kwargs) -> str:
        """Run a SLURM client command against this cluster; return its stdout."""
        env = {**(os.environ if env is None else env), "SLURM_CONF": str(self.conf)}
        done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=30, **kwargs)
        if done.returncode:
            raise RuntimeError(f"{' '.join(args)}: {done.stderr.strip() or done.stdout}")
        return done.stdout

    def job(self, job_id: str) -> dict[str, str]:
        """``scontrol show job`` as KEY: VALUE (``sacct`` would need slurmdbd)."""
        text = self.run("scontrol", "show", "job", "-o", str(job_id))
        return dict(item.split("=", 1) for item in text.split() if "=" in item)

    def wait_job(self, job_id: str, timeout: float) -> dict[str, str]:
        """Wait until the job leaves PENDING/RUNNING/COMPLETING; return its record."""
        end = time.monotonic() + timeout
        while True:
            record = self.job(job_id)
            if record["JobState"] not in ("PENDING", "RUNNING", "COMPLETING", "CONFIGURING"):
                return record
            if time.monotonic() > end:
                raise TimeoutError(f"job {job_id} still {record['JobState']} after {timeout} s")
            time.sleep(0.5)

    def jobs(self) -> list[str]:
        """Ids of the jobs still queued or running."""
        return self.run("squeue", "-h", "-o", "%i").split()


def missing_reason() -> str | None:
    """Why SLURM cannot run here, or None."""
    missing = [p for p in PROGRAMS if shutil.which(p) is None]
    if missing:
        return (
            f"SLURM not installed (missing {', '.join(missing)}); "
            "apt-get install -y slurm-wlm slurmctld slurmd slurm-client munge"
        )
    if os.geteuid() != 0:
        return "slurmd must run as root (user namespaces for jobs); run the tests as root"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(args: list[str], log: Path, env: dict) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)


def _stop(processes: list[subprocess.Popen]) -> None:
    for proc in reversed(processes):
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in reversed(processes):
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def start_slurm(folder: Path) -> Slurm:
    """Start munged, slurmctld and slurmd with everything under ``folder``; wait for ``idle``."""
    folder.mkdir(parents=True, exist_ok=True)
    for sub in ("state", "spool"):
        (folder / sub).mkdir(exist_ok=True)
    for i in range(NODE_GPUS):  # character devices: gres.conf refuses regular files
        dev = folder / f"gpu{i}"
        if not dev.exists():
            os.mknod(dev, 0o666 | 0o020000, os.makedev(1, 3))
    conf = folder / "slurm.conf"
    conf.write_text(
        SLURM_CONF.format(
            host=socket.gethostname().split(".")[0],
            dir=folder,
            ctld_port=_free_port(),
            slurmd_port=_free_port(),
            cpus=NODE_CPUS,
            memory=NODE_MEMORY,
            gpus=NODE_GPUS,
        )
    )
    (folder / "gres.conf").write_text(GRES_CONF.format(dir=folder, last=NODE_GPUS - 1))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    key = folder / "munge.key"
    if not key.exists():
        subprocess.run(["mungekey", "-c", "-k", str(key)], check=True, capture_output=True)
    processes: list[subprocess.Popen] = []
    try:
        processes.append(
            _start(
                [
                    "munged", "-F", f"--key-file={key}", f"--socket={folder}/munge.sock",
                    f"--pid-file={folder}/munged.pid", f"--seed-file={folder}/munged.seed",
                    f"--log-file={folder}/munged.log",
                ],
                folder / "munged.out",
                env,
            )
        )
        _wait_for(lambda: (folder / "munge.sock").exists(), 10, "munged socket", folder)
        processes.append(_start(["slurmctld", "-D", "-f", str(conf)], folder / "ctld.out", env))
        processes.append(
            _start(["slurmd", "-D", "-N", "localhost", "-f", str(conf)], folder / "d.out", env)
        )
        slurm = Slurm(folder, conf, "", processes)

        def idle() -> bool:
            try:
                return slurm.run("sinfo", "-h", "-o", "%T").strip() == "idle"
            except RuntimeError:
                return False

        _wait_for(idle, 30, "node idle in sinfo", folder)
        slurm.version = slurm.run("sinfo", "--version").strip()
        return slurm
    except BaseException:
        _stop(processes)
        raise


def stop_slurm(slurm: Slurm) -> None:
    """Cancel what is left of the jobs, then stop the daemons by their PIDs."""
    try:
        left = slurm.jobs()
        if left:
            slurm.run("scancel", *left)
            _wait_for(lambda: not slurm.jobs(), 20, "jobs to end", slurm.dir)
    finally:
        _stop(slurm.processes)


def _wait_for(condition, timeout: float, what: str, folder: Path) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            logs = "\n".join(
                f"--- {p.name}\n{p.read_text(errors='replace')[-2000:]}"
                for p in sorted(folder.glob("*.log")) + sorted(folder.glob("*.out"))
            )
            raise TimeoutError(f"SLURM test cluster: no {what} after {timeout} s\n{logs}")
        time.sleep(0.2)


@pytest.fixture(scope="session")
def slurm():
    """A running single-node SLURM with 2 fake GPUs; ``SLURM_CONF`` set for the session."""
    reason = missing_reason()
    if reason:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but {reason}")
        pytest.skip(reason)
    # not under pytest's 0700 folders: munged wants its socket's folders open to all
    folder = Path(tempfile.mkdtemp(prefix="medsyn-slurm-"))
    folder.chmod(0o755)
    cluster = start_slurm(folder)
    before = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(cluster.conf)
    try:
        yield cluster
    finally:
        if before is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = before
        stop_slurm(cluster)
        shutil.rmtree(folder, ignore_errors=True)
