"""Cluster flags and config keys -> ClusterSpec -> dask-jobqueue job scripts (no batch system
needed: the scripts are the ones dask-jobqueue would submit, rendered by its own Job classes)."""

from __future__ import annotations

import argparse
import re

import dask
import pytest

from medsyn_dask.cli.cluster_options import (
    CLUSTER_KEYS,
    add_cluster_arguments,
    cluster_spec,
    parse_cluster_options,
)
from medsyn_dask.cluster import ClusterSpec
from medsyn_dask.cluster.jobqueue import job_options, job_script, walltime_seconds
from medsyn_dask.errors import SettingsError


def spec_of(*flags: str, config: dict | None = None) -> ClusterSpec:
    parser = argparse.ArgumentParser()
    add_cluster_arguments(parser)
    return cluster_spec(parser.parse_args(list(flags)), config or {})


REQUEST = (
    "--workers", "3", "--gpus-per-worker", "2",
    "--cluster-option", "cores=6", "--cluster-option", "memory=24GB",
    "--cluster-option", "queue=gpuq", "--cluster-option", "account=proj42",
)


def header(script: str, prefix: str) -> list[str]:
    return [line[len(prefix):].strip() for line in script.splitlines() if line.startswith(prefix)]


def worker_command(script: str) -> str:
    return next(line for line in script.splitlines() if "distributed.cli.dask_worker" in line)


def test_slurm_job_script_carries_the_request():
    script = job_script(spec_of("--cluster", "slurm", *REQUEST, "--cluster-option",
                                "walltime=02:00:00"))
    lines = header(script, "#SBATCH")
    for expected in ("-p gpuq", "-A proj42", "--cpus-per-task=6", "--mem=23G", "-t 02:00:00",
                     "--gres=gpu:2"):
        assert expected in lines, (expected, lines)
    command = worker_command(script)
    assert "--resources GPU=2" in command and "--nthreads 6" in command
    # the worker leaves 10 min before the walltime (7200 s), staggered by up to 5 min
    assert "--lifetime 6600s --lifetime-stagger 300s" in command


def test_pbs_job_script_carries_the_request():
    script = job_script(spec_of("--cluster", "pbs", *REQUEST, "--cluster-option",
                                "walltime=02:00:00"))
    lines = header(script, "#PBS")
    for expected in ("-q gpuq", "-A proj42", "-l select=1:ncpus=6:mem=23GB:ngpus=2",
                     "-l walltime=02:00:00"):
        assert expected in lines, (expected, lines)
    assert "--resources GPU=2" in worker_command(script)


def test_sge_job_script_carries_the_request():
    script = job_script(spec_of("--cluster", "sge", *REQUEST, "--cluster-option",
                                "walltime=02:00:00"))
    lines = header(script, "#$")
    # 24 GB over 6 slots: h_vmem is per slot on Grid Engine
    for expected in ("-q gpuq", "-P proj42", "-pe smp 6", "-l h_vmem=3815M", "-l h_rt=02:00:00",
                     "-l gpu=2"):
        assert expected in lines, (expected, lines)
    assert "--resources GPU=2" in worker_command(script)


def test_lsf_job_script_carries_the_request():
    script = job_script(spec_of("--cluster", "lsf", *REQUEST, "--cluster-option",
                                "walltime=02:00", "--cluster-option", "lsf_units=mb"))
    lines = header(script, "#BSUB")
    for expected in ("-q gpuq", '-P "proj42"', "-n 6", "-M 24000", "-W 02:00",
                     '-gpu "num=2"'):
        assert expected in lines, (expected, lines)
    assert "--lifetime 6600s" in worker_command(script)  # LSF's HH:MM


def test_site_jobqueue_config_is_used_and_extended():
    """A site's jobqueue.yaml (here through dask.config) keeps working: its values are used
    and its directives kept, ours added after them."""
    site = {
        "jobqueue.slurm.cores": 4,
        "jobqueue.slurm.memory": "8GB",
        "jobqueue.slurm.queue": "sitequeue",
        "jobqueue.slurm.job-extra-directives": ["--qos=normal"],
        "jobqueue.slurm.walltime": "00:30:00",
    }
    with dask.config.set(site):
        script = job_script(spec_of("--cluster", "slurm", "--gpus-per-worker", "1"))
    lines = header(script, "#SBATCH")
    for expected in ("-p sitequeue", "--cpus-per-task=4", "--qos=normal", "--gres=gpu:1",
                     "-t 00:30:00"):
        assert expected in lines, (expected, lines)


def test_site_gpu_request_and_mem_per_gpu_win():
    spec = spec_of(
        "--cluster", "slurm", "--gpus-per-worker", "1", "--cluster-option", "cores=2",
        "--cluster-option", "memory=8GB",
        "--cluster-option", "job_extra_directives=--gpus-per-node=a100:1",
        "--cluster-option", "job_extra_directives=--mem-per-gpu=16G",
    )
    lines = header(job_script(spec), "#SBATCH")
    assert "--gpus-per-node=a100:1" in lines and "--mem-per-gpu=16G" in lines
    assert not any(line.startswith("--gres") for line in lines)  # not asked twice
    assert not any(line.startswith("--mem=") for line in lines)  # SLURM refuses both


def test_flags_win_over_config_keys():
    config = {
        "cluster": "pbs",
        "workers": 8,
        "gpus_per_worker": 1,
        "worker_timeout": 60,
        "cluster_options": {"cores": 4, "memory": "16GB", "queue": "from-config"},
    }
    spec = spec_of("--cluster", "slurm", "--workers", "2", "--cluster-option", "queue=flag",
                   config=config)
    assert (spec.cluster, spec.workers, spec.gpus_per_worker, spec.worker_timeout) == (
        "slurm", 2, 1, 60.0)
    assert dict(spec.options) == {"cores": 4, "memory": "16GB", "queue": "flag"}
    assert set(config) <= set(CLUSTER_KEYS)


def test_batch_keys_of_a_shared_config_do_not_apply_to_an_attached_run():
    config = {"cluster": "slurm", "gpus_per_worker": 1, "cluster_options": {"cores": 8}}
    spec = spec_of("--cluster", "tcp://10.0.0.5:8786", "--workers", "4", config=config)
    assert (spec.address, spec.workers, spec.gpus_per_worker, dict(spec.options)) == (
        "tcp://10.0.0.5:8786", 4, 0, {})


def test_scheduler_address_is_an_alias_and_defaults():
    assert spec_of("--scheduler-address", "tcp://127.0.0.1:8786").address == (
        "tcp://127.0.0.1:8786")
    spec = spec_of()
    assert (spec.kind, spec.worker_timeout, spec.dashboard_address) == (
        "local", 300.0, "127.0.0.1:8787")
    assert spec_of("--adapt", "1:5", "--cluster", "sge", "--cluster-option", "cores=1",
                   "--cluster-option", "memory=1GB").adapt == (1, 5)


def test_cluster_option_values():
    options = parse_cluster_options([
        "cores=8", "walltime=90", "interface=ib0", "scheduler_options.interface=eth0",
        "job_extra_directives=[--qos=high, --exclusive]", "job_script_prologue=module load cuda",
        "death_timeout=true",
    ])
    assert options == {
        "cores": 8,
        "walltime": "90",  # minutes on SLURM: stays text
        "interface": "ib0",
        "scheduler_options": {"interface": "eth0"},
        "job_extra_directives": ["--qos=high", "--exclusive"],
        "job_script_prologue": ["module load cuda"],
        "death_timeout": True,
    }


@pytest.mark.parametrize(
    "flags, config, message",
    [
        (("--cluster", "slrum"), {}, "cluster must be one of local, slurm, pbs, sge, lsf"),
        (("--cluster", "slurm", "--cluster-option", "coers=4"), {}, "option 'coers' for slurm"),
        (("--cluster", "slurm", "--cluster-option", "extra=--x"), {}, "use worker_extra_args"),
        (("--cluster", "slurm", "--cluster-option", "cores"), {}, "wants KEY=VALUE"),
        (("--workers", "0"), {}, "workers must be >= 1"),
        (("--adapt", "5:1", "--cluster", "slurm"), {}, "adapt minimum 5 is above its maximum 1"),
        (("--adapt", "x"), {}, "--adapt wants MIN:MAX"),
        (("--adapt", "0:2"), {}, "adapt applies to a batch system"),
        (("--gpus-per-worker", "1"), {}, "start GPU workers with `dask worker"),
        (("--cluster-option", "cores=2"), {}, "cluster_options apply to a batch system"),
        (("--worker-timeout", "0"), {}, "--worker-timeout must be finite and >= 0.1"),
        (("--dashboard-address", "everywhere"), {}, "dashboard_address must be HOST:PORT"),
        (("--cluster", "local", "--scheduler-address", "tcp://a:1"), {}, "disagree"),
        ((), {"cluster": "slurm", "cluster_options": {"walltime": 14400}}, "quote it in YAML"),
        ((), {"clustre": "slurm"}, "not a cluster key: 'clustre'"),
        ((), {"cluster": "pbs", "gpus_per_worker": 1}, "pbs needs the cluster options cores"),
    ],
)
def test_bad_values_are_settings_errors_naming_them(flags, config, message):
    with pytest.raises(SettingsError, match=re.escape(message)):
        spec_of(*flags, config=config)


@pytest.mark.parametrize(
    "walltime, system, seconds",
    [
        ("02:00:00", "slurm", 7200), ("1-00:00:00", "slurm", 86400), ("30", "slurm", 1800),
        ("10:30", "slurm", 630), ("10:30", "lsf", 37800), ("90", "pbs", 90),
        ("00:30:00", "sge", 1800),
    ],
)
def test_walltime_seconds(walltime, system, seconds):
    assert walltime_seconds(walltime, system) == seconds


def test_short_walltime_or_own_lifetime_adds_no_lifetime():
    short = job_options(spec_of("--cluster", "slurm", "--cluster-option", "walltime=00:04:00",
                                "--cluster-option", "cores=1", "--cluster-option", "memory=1GB"))
    assert "--lifetime" not in short["worker_extra_args"]
    own = job_options(spec_of("--cluster", "slurm", "--cluster-option", "cores=1",
                              "--cluster-option", "memory=1GB",
                              "--cluster-option", "worker_extra_args=[--lifetime, 50m]"))
    assert own["worker_extra_args"] == ["--lifetime", "50m"]
    assert own["scheduler_options"]["dashboard_address"] == "127.0.0.1:8787"  # loopback
    assert own["processes"] == 1  # one worker per job: the job's GPUs are its worker's


@pytest.mark.parametrize("system", ["slurm", "pbs", "sge", "lsf"])
def test_job_scripts_give_workers_the_embedded_workers_environment(system):
    sized = ("--cluster-option", "cores=2", "--cluster-option", "memory=4GB")
    script = job_script(spec_of("--cluster", system, *sized))
    assert "export THP_MEM_ALLOC_ENABLE=${THP_MEM_ALLOC_ENABLE:-1}" in script.splitlines()
    profile = "DASK_DISTRIBUTED__WORKER__PROFILE__INTERVAL"
    assert f"export {profile}=${{{profile}:-100ms}}" in script.splitlines()
    site = {f"jobqueue.{system}.job-script-prologue": ["export THP_MEM_ALLOC_ENABLE=0"]}
    with dask.config.set(site):
        script = job_script(spec_of("--cluster", system, *sized))
    assert [line for line in script.splitlines() if "THP_MEM_ALLOC_ENABLE" in line] == [
        "export THP_MEM_ALLOC_ENABLE=0"
    ]
