"""Batch-system clusters (SLURM, PBS, SGE, LSF) through dask-jobqueue (the ``hpc`` extra).

The job's settings are dask-jobqueue's own keyword arguments, laid over Dask's
``jobqueue.<system>`` configuration (a site's ``jobqueue.yaml`` or ``DASK_JOBQUEUE__*``
variables), so nothing here replaces dask-jobqueue; it only adds what the audit needs:

- one worker process per job unless ``processes`` says otherwise (a job's GPUs are its worker's);
- GPUs: the batch system's request (SLURM ``--gres=gpu:G``, PBS ``ngpus=G``, SGE ``-l gpu=G``,
  LSF ``-gpu "num=G"``) unless the site's own directives already ask for GPUs, and the worker
  resource ``GPU=G`` that extraction tasks ask for;
- with a walltime, worker ``--lifetime`` ends each worker a margin before the batch system
  would kill it, so that Dask moves its results and re-runs its tasks elsewhere instead of
  losing them;
- SGE: slots (``-pe smp``) and ``h_vmem`` per slot from ``cores`` and ``memory``;
- SLURM ``--mem-per-gpu``/``--mem-per-cpu`` in the directives drops dask-jobqueue's ``--mem``
  line (SLURM refuses both); ``memory`` stays the Dask worker's memory limit.
"""

from __future__ import annotations

import re
from typing import Any

from ..errors import SettingsError
from .spec import BATCH_SYSTEMS, ClusterSpec

#: Options that take a list; a single string is one item.
LIST_OPTIONS = (
    "job_extra_directives",
    "worker_extra_args",
    "job_script_prologue",
    "job_directives_skip",
)
#: dask-jobqueue options that only the cluster (not a job) takes.
_CLUSTER_ONLY = ("scheduler_options", "shared_temp_directory")
#: Deprecated dask-jobqueue names, refused so that a setting is never silently ignored.
_DEPRECATED = {
    "extra": "worker_extra_args",
    "env_extra": "job_script_prologue",
    "job_extra": "job_extra_directives",
}
#: The option naming the account/project a job is charged to, per system.
_ACCOUNT = {"slurm": "account", "pbs": "account", "sge": "project", "lsf": "project"}
#: A margin (seconds) between a worker's end and its walltime: 10 %, within these bounds.
_MARGIN_MIN, _MARGIN_MAX = 60, 600
#: Walltimes shorter than this get no worker lifetime (nothing long enough to save).
_SHORT_WALLTIME = 300


def _jobqueue():
    try:
        import dask_jobqueue
    except ImportError:  # pragma: no cover - depends on the installation
        raise SettingsError(
            "a batch-system cluster needs dask-jobqueue: pip install 'medsyn-dask[hpc]'"
        ) from None
    return dask_jobqueue


def valid_options(system: str) -> list[str]:
    """The option names dask-jobqueue's ``system`` cluster takes (from its configuration)."""
    import dask

    _jobqueue()  # registers the jobqueue.* defaults
    names = {key.replace("-", "_") for key in dask.config.get(f"jobqueue.{system}")}
    # security=true: temporary TLS certificates, shared with the workers through
    # shared_temp_directory; protocol="tls://"
    return sorted(names - set(_DEPRECATED) | {"account", "security", "protocol"})


def job_options(spec: ClusterSpec) -> dict[str, Any]:
    """dask-jobqueue keyword arguments for ``spec``: its options plus GPUs, lifetime, dashboard.

    Keys missing here are read by dask-jobqueue from Dask's configuration as usual.
    """
    import dask

    system = spec.cluster
    valid = valid_options(system)
    config = {k.replace("-", "_"): v for k, v in dask.config.get(f"jobqueue.{system}").items()}
    options: dict[str, Any] = {}
    for key, value in spec.options.items():
        name = key.replace("-", "_")
        if name in _DEPRECATED:
            raise SettingsError(f"cluster option {key!r} is deprecated: use {_DEPRECATED[name]}")
        if name not in valid:
            raise SettingsError(
                f"unknown cluster option {key!r} for {system}; valid: {', '.join(valid)}"
            )
        if name in LIST_OPTIONS:
            value = [value] if isinstance(value, str) else list(value)
        options[name] = value
    if not isinstance(options.get("walltime", ""), str):
        raise SettingsError(
            f"walltime must be text such as '04:00:00' (quote it in YAML, which reads "
            f"04:00:00 as a number), got {options['walltime']!r}"
        )
    if "account" in options and _ACCOUNT[system] != "account":
        options[_ACCOUNT[system]] = options.pop("account")
    if options.get("processes") is None and config.get("processes") is None:
        options["processes"] = 1
    for name in LIST_OPTIONS:  # ours are added to the site's, not in place of them
        options[name] = list(options.get(name, config.get(name) or []))
    _add_worker_environ(options["job_script_prologue"])
    if system == "sge":
        _add_sge_slots(options, config)
    if spec.gpus_per_worker:
        _add_gpus(system, spec.gpus_per_worker, options, config)
    _add_lifetime(system, options, config)
    if system == "slurm" and any(
        d.startswith(("--mem-per-gpu", "--mem-per-cpu")) for d in options["job_extra_directives"]
    ):
        options["job_directives_skip"].append("--mem=")
    scheduler = dict(options.get("scheduler_options") or config.get("scheduler_options") or {})
    options["scheduler_options"] = {**scheduler, "dashboard_address": spec.dashboard_address}
    return options


def _add_worker_environ(prologue: list[str]) -> None:
    """The embedded workers' environment (:data:`.local.WORKER_ENVIRON`) and Dask settings
    (:func:`.local.tuned_settings`, as ``DASK_...`` variables) in the job script, unless the
    site's prologue names a variable already; a value in the submitting environment wins
    (``${VAR:-default}``)."""
    from .local import WORKER_ENVIRON, tuned_settings

    settings = {_dask_variable(k): v for k, v in tuned_settings().items()}
    for name, value in {**WORKER_ENVIRON, **settings}.items():
        if not any(name in line for line in prologue):
            prologue.append(f"export {name}=${{{name}:-{value}}}")


def _dask_variable(key: str) -> str:
    """The environment variable of Dask setting ``key`` (``a.b-c`` -> ``DASK_A__B_C``)."""
    return "DASK_" + key.upper().replace(".", "__").replace("-", "_")


def _add_gpus(system: str, gpus: int, options: dict, config: dict) -> None:
    """Ask the batch system for ``gpus`` per job and make the worker advertise them."""
    from .local import GPU_RESOURCE

    args = options["worker_extra_args"]
    if any(a.startswith("--resources") for a in args):
        raise SettingsError(
            "worker_extra_args already set --resources; give the GPU resource there "
            f"({GPU_RESOURCE}=G) or use --gpus-per-worker, not both"
        )
    args += ["--resources", f"{GPU_RESOURCE}={gpus}"]
    directives = options["job_extra_directives"]
    resource_spec = options.get("resource_spec") or config.get("resource_spec")
    if any("gpu" in d.lower() for d in [*directives, resource_spec or ""]):
        return  # the site's own GPU request wins
    if system == "slurm":
        directives.append(f"--gres=gpu:{gpus}")
    elif system == "sge":
        directives.append(f"-l gpu={gpus}")
    elif system == "lsf":
        directives.append(f'-gpu "num={gpus}"')
    else:  # pbs: GPUs are a chunk resource of the select statement
        options["resource_spec"] = f"{resource_spec or _pbs_select(options, config)}:ngpus={gpus}"


def _add_sge_slots(options: dict, config: dict) -> None:
    """SGE: ask for ``cores`` slots (``-pe smp``) and memory per slot (``h_vmem``).

    dask-jobqueue's SGE job asks for neither; parallel environment and memory resource names
    are site choices, so a site's own ``-pe`` directive or ``resource_spec`` replaces these.
    """
    from dask.utils import parse_bytes

    cores = options.get("cores") or config.get("cores")
    memory = options.get("memory") or config.get("memory")
    directives = options["job_extra_directives"]
    if cores and not any(d.startswith("-pe ") for d in directives):
        directives.append(f"-pe smp {int(cores)}")
    if memory and not (options.get("resource_spec") or config.get("resource_spec")):
        per_slot = -(-parse_bytes(memory) // (int(cores or 1) * 2**20))  # MiB, rounded up
        options["resource_spec"] = f"h_vmem={per_slot}M"


def _pbs_select(options: dict, config: dict) -> str:
    """dask-jobqueue's default PBS select statement (``select=1:ncpus=C:mem=M``)."""
    from dask.utils import parse_bytes
    from dask_jobqueue.pbs import pbs_format_bytes_ceil

    cores = options.get("cores") or config.get("cores")
    memory = options.get("memory") or config.get("memory")
    if not cores or not memory:
        raise SettingsError("pbs needs the cluster options cores and memory (or jobqueue.yaml)")
    return f"select=1:ncpus={int(cores)}:mem={pbs_format_bytes_ceil(parse_bytes(memory))}"


def _add_lifetime(system: str, options: dict, config: dict) -> None:
    """End each worker a margin before its walltime (unless ``--lifetime`` is already set)."""
    walltime = options.get("walltime") or config.get("walltime")
    args = options["worker_extra_args"]
    if not walltime or any(a.startswith("--lifetime") for a in args):
        return
    seconds = walltime_seconds(str(walltime), system)
    if seconds < _SHORT_WALLTIME:
        return
    margin = int(min(_MARGIN_MAX, max(_MARGIN_MIN, seconds // 10)))
    args += ["--lifetime", f"{seconds - margin}s", "--lifetime-stagger", f"{margin // 2}s"]


_WALLTIME = re.compile(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?")


def walltime_seconds(walltime: str, system: str) -> int:
    """Seconds in a batch walltime: ``[D-]HH:MM:SS``; ``A:B`` is MM:SS on SLURM, HH:MM on
    PBS/SGE/LSF; a bare number is minutes on SLURM and LSF, seconds on PBS and SGE."""
    match = _WALLTIME.fullmatch(walltime.strip())
    if not match:
        raise SettingsError(f"walltime must look like [D-]HH:MM:SS, got {walltime!r}")
    days, a, b, c = (int(g) if g else None for g in match.groups())
    if c is not None:
        seconds = a * 3600 + b * 60 + c
    elif b is not None:
        seconds = a * 60 + b if system == "slurm" else a * 3600 + b * 60
    else:
        seconds = a * 60 if system in ("slurm", "lsf") else a
    return seconds + (days or 0) * 86400


def make_cluster(system: str, options: dict[str, Any]) -> Any:
    """A started dask-jobqueue cluster of ``system`` from :func:`job_options` (its scheduler
    runs in this process; no job is submitted yet)."""
    cls = getattr(_jobqueue(), BATCH_SYSTEMS[system])
    try:
        return cls(**options)
    except (TypeError, ValueError) as exc:  # dask-jobqueue's messages name the option
        raise SettingsError(f"{system} cluster: {exc}") from None


def submit_jobs(cluster: Any, system: str, jobs: int) -> None:
    """Scale ``cluster`` to ``jobs`` and submit them now, so that a refusal stops the job.

    Raises:
        ClusterError: the batch system refused a job; with its own message (e.g. sbatch's
            ``invalid partition specified``).
    """
    from distributed.core import Status

    from .attach import ClusterError

    async def submit() -> None:
        cluster.scale(jobs=jobs)
        await cluster  # runs the submissions; raises what the submit command said

    try:
        cluster.sync(submit)
    except RuntimeError as exc:
        for job in cluster.workers.values():
            # a job whose submission failed stays "created", which SpecCluster.close() asserts
            # against; it has failed
            if job.status == Status.created:
                job.status = Status.failed
        raise ClusterError(f"{system} refused the worker jobs: {exc}") from None


def workers_per_job(system: str, options: dict[str, Any]) -> int:
    """Dask worker processes each job of ``system`` runs."""
    import dask

    return int(options.get("processes") or dask.config.get(f"jobqueue.{system}.processes"))


def job_script(spec: ClusterSpec) -> str:
    """The job script dask-jobqueue would submit for ``spec`` (no scheduler is started)."""
    cls = getattr(_jobqueue(), BATCH_SYSTEMS[spec.cluster])
    options = {k: v for k, v in job_options(spec).items() if k not in _CLUSTER_ONLY}
    try:
        job = cls.job_cls("tcp://<scheduler>:8786", name="worker", **options)
    except (TypeError, ValueError) as exc:
        raise SettingsError(f"{spec.cluster} cluster: {exc}") from None
    return job.job_script()


def log_hint(cluster: Any, system: str, options: dict[str, Any]) -> str:
    """Where a batch system's worker jobs can be inspected: their ids, state command, logs."""
    import os

    import dask

    ids = [str(j.job_id) for j in list(cluster.workers.values()) if getattr(j, "job_id", None)]
    if not ids:
        return f"no {system} job has an id yet: the submission is slow or failed (errors above)"
    state = {
        "slurm": "squeue -j {ids}; scontrol show job {first}",
        "pbs": "qstat -f {first}",
        "sge": "qstat -j {first}",
        "lsf": "bjobs -l {first}",
    }[system].format(ids=",".join(ids), first=ids[0])
    logs = options.get("log_directory") or dask.config.get(f"jobqueue.{system}.log-directory")
    logs = logs or f"the batch system's default output files in {os.getcwd()}"
    return f"{system} jobs {', '.join(ids)}: their state with `{state}`; worker logs: {logs}"
