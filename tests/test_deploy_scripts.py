"""The batch scripts and the container recipe in deploy/: valid shell, real flags, and a shared
config whose cluster section renders to the job scripts a site expects. (The SLURM driver
script is also submitted for real in test_cluster_slurm.py.)"""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from medsyn_dask.cli import build_parser
from medsyn_dask.cli.analyze import settings_from_args
from medsyn_dask.cli.cluster_options import CLUSTER_KEYS, cluster_spec
from medsyn_dask.cluster.jobqueue import job_script

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
SCRIPTS = {
    "slurm": DEPLOY / "slurm" / "analyze.sbatch",
    "pbs": DEPLOY / "pbs" / "analyze.pbs",
    "sge": DEPLOY / "sge" / "analyze.sge",
}
#: The batch directive prefix of each system.
PREFIX = {"slurm": "#SBATCH", "pbs": "#PBS", "sge": "#$"}


def _analyze_line(script: Path) -> list[str]:
    line = next(x for x in script.read_text().splitlines() if "medsyn-dask analyze" in x
                and not x.lstrip().startswith("#"))
    words = shlex.split(line.split("medsyn-dask", 1)[1])
    return [w for w in words if w != '"$@"' and w != "$@"]


@pytest.mark.parametrize("path", [*SCRIPTS.values(), DEPLOY / "slurm" / "allocation.sbatch"],
                         ids=lambda p: p.name)
def test_scripts_are_valid_bash(path):
    done = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert path.read_text().startswith("#!/bin/bash\n")


@pytest.mark.parametrize("system", SCRIPTS)
def test_driver_scripts_run_analyze_with_the_shared_config(system, tmp_path):
    """The script's command line parses, and with deploy/analyze.yaml gives valid settings and
    a cluster whose worker job script asks for what the config says."""
    words = _analyze_line(SCRIPTS[system])
    assert words[:3] == ["analyze", "--config", "$CONFIG"] and words[3:] == ["--cluster", system]
    args = build_parser().parse_args([*words[:2], str(DEPLOY / "analyze.yaml"), *words[3:]])
    settings_from_args(args)  # the shared config is valid settings
    config = yaml.safe_load((DEPLOY / "analyze.yaml").read_text())
    spec = cluster_spec(args, {k: v for k, v in config.items() if k in CLUSTER_KEYS})
    assert (spec.cluster, spec.workers, spec.gpus_per_worker) == (system, 4, 1)
    lines = [x for x in job_script(spec).splitlines() if x.startswith(PREFIX[system])]
    text = "\n".join(lines)
    assert "gpu" in text and "04:00:00" in text and "gpu" in text.split("-q")[-1], text
    assert re.search(r"(cpus-per-task=8|ncpus=8|-pe smp 8)", text), text


def test_driver_scripts_name_their_job_and_output():
    for system, script in SCRIPTS.items():
        directives = [x for x in script.read_text().splitlines() if x.startswith(PREFIX[system])]
        assert any("medsyn-driver" in x for x in directives), (system, directives)
        assert "pip install 'medsyn-dask[hpc]'" in script.read_text()


def test_allocation_script_starts_scheduler_and_workers_and_attaches():
    text = (DEPLOY / "slurm" / "allocation.sbatch").read_text()
    assert "dask scheduler --scheduler-file" in text
    assert re.search(r"srun .*dask worker --scheduler-file", text)
    words = _analyze_line(DEPLOY / "slurm" / "allocation.sbatch")
    parsed = build_parser().parse_args(
        [w.replace("$ADDRESS", "tcp://10.0.0.1:8786").replace("$SLURM_NTASKS", "4")
         .replace("$CONFIG", str(DEPLOY / "analyze.yaml")) for w in words]
    )
    config = yaml.safe_load((DEPLOY / "analyze.yaml").read_text())
    spec = cluster_spec(parsed, {k: v for k, v in config.items() if k in CLUSTER_KEYS})
    assert (spec.address, spec.workers, spec.gpus_per_worker) == ("tcp://10.0.0.1:8786", 4, 0)


def test_containerfile_installs_the_package_with_the_hpc_extra():
    text = (DEPLOY / "container" / "Containerfile").read_text()
    root = DEPLOY.parent
    for source in re.findall(r"^COPY (.+) \S+$", text, flags=re.M):
        for name in source.split():
            assert (root / name).exists(), name
    assert 'pip install ".[hpc]"' in text and "medsyn-dask --help" in text
    assert re.search(r"^FROM python:3\.\d+", text, flags=re.M)
    assert re.search(r"^USER (?!root)", text, flags=re.M)  # not root in the cluster


def test_readme_gives_the_exact_command_of_every_file():
    readme = (DEPLOY / "README.md").read_text()
    for path in [*SCRIPTS.values(), DEPLOY / "slurm" / "allocation.sbatch",
                 DEPLOY / "kubernetes" / "daskjob.yaml", DEPLOY / "container" / "Containerfile"]:
        assert str(path.relative_to(DEPLOY.parent)) in readme, path
    for command in (
        "sbatch deploy/slurm/analyze.sbatch", "qsub deploy/pbs/analyze.pbs",
        "qsub deploy/sge/analyze.sge", "kubectl apply -f deploy/kubernetes/daskjob.yaml",
        "ssh -L 8787:127.0.0.1:8787", "scrape_configs", "/metrics",
    ):
        assert command in readme, command
