"""The cluster flags shared by the sub-commands, and their merge with the ``--config`` keys.

``--cluster local|slurm|pbs|sge|lsf|ADDRESS`` picks where the workers come from;
``--scheduler-address`` is the older spelling of an address. The YAML keys are the flag names
with ``_`` (``cluster``, ``workers``, ``adapt``, ``cluster_options``: a mapping,
``gpus_per_worker``, ``worker_timeout``, ``dashboard_address``, ``scheduler_address``); a flag
wins over its key.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

import yaml

from ..checks import check_int, check_number
from ..cluster.jobqueue import LIST_OPTIONS
from ..cluster.spec import (
    BATCH_SYSTEMS,
    DEFAULT_DASHBOARD,
    DEFAULT_WORKER_TIMEOUT,
    KINDS,
    ClusterSpec,
)
from ..errors import SettingsError

#: The ``--config`` keys read here; the caller removes them before reading the job's settings.
CLUSTER_KEYS = (
    "cluster",
    "scheduler_address",
    "workers",
    "adapt",
    "cluster_options",
    "gpus_per_worker",
    "worker_timeout",
    "dashboard_address",
)

#: Keys that only a batch system uses (dropped from the config when the run is local/attached).
_BATCH_KEYS = ("cluster_options", "gpus_per_worker", "adapt")


def add_cluster_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the cluster flags on ``parser`` (all default to None: the config may set them)."""
    g = parser.add_argument_group("cluster (where the Dask workers come from)")
    g.add_argument(
        "--cluster",
        metavar="KIND|ADDRESS",
        help=f"{'|'.join(KINDS)} (dask-jobqueue), or a scheduler address tcp://HOST:PORT "
        "(default local: a LocalCluster on this machine)",
    )
    g.add_argument("--scheduler-address", metavar="ADDRESS", help="same as --cluster ADDRESS")
    g.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="local: worker processes (default one per core); batch: jobs to submit "
        "(default 1); address: workers to expect",
    )
    g.add_argument("--adapt", metavar="MIN:MAX", help="batch: adaptive number of jobs")
    g.add_argument(
        "--cluster-option",
        action="append",
        default=None,
        metavar="KEY=VALUE",
        help="batch: a dask-jobqueue setting, e.g. cores=8, memory=32GB, walltime=04:00:00, "
        "queue=gpu, account=proj, interface=ib0, job_extra_directives=--qos=high "
        "(repeatable; lists accumulate); others come from Dask's jobqueue.yaml",
    )
    g.add_argument(
        "--gpus-per-worker",
        type=int,
        metavar="G",
        help="batch: GPUs per job (SLURM --gres=gpu:G); its worker advertises GPU=G",
    )
    g.add_argument(
        "--worker-timeout",
        type=float,
        metavar="SECONDS",
        help=f"stop (exit 2) if no worker joined by then (default {DEFAULT_WORKER_TIMEOUT:g})",
    )
    g.add_argument(
        "--dashboard-address",
        metavar="HOST:PORT",
        help=f"where the dashboard listens (default {DEFAULT_DASHBOARD}: it has no "
        "authentication; reach it through an SSH tunnel)",
    )


def cluster_spec(args: argparse.Namespace, config: Mapping[str, Any]) -> ClusterSpec:
    """The :class:`ClusterSpec` of the flags in ``args`` over the ``config`` keys, validated.

    Batch options are checked against dask-jobqueue's option names here, before any cluster
    starts. Raises :class:`~medsyn_dask.errors.SettingsError` naming the flag or key.
    """
    unknown = sorted(k for k in config if k not in CLUSTER_KEYS)
    if unknown:
        raise SettingsError(f"not a cluster key: {unknown[0]!r}; cluster keys: {CLUSTER_KEYS}")
    cluster = _cluster(args.cluster, args.scheduler_address, "--cluster/--scheduler-address")
    if cluster is None:
        cluster = _cluster(config.get("cluster"), config.get("scheduler_address"), "config")
    if (cluster or "local") not in BATCH_SYSTEMS:
        # a batch section of a shared config file does not apply to a local or attached run
        config = {k: v for k, v in config.items() if k not in _BATCH_KEYS}
    options = dict(_config_options(config.get("cluster_options")))
    options.update(parse_cluster_options(args.cluster_option or []))
    adapt = args.adapt if args.adapt is not None else config.get("adapt")
    workers = _first(args.workers, config.get("workers"))
    timeout = _first(args.worker_timeout, config.get("worker_timeout"), DEFAULT_WORKER_TIMEOUT)
    spec = ClusterSpec(
        cluster=cluster or "local",
        workers=None if workers is None else check_int(workers, "--workers"),
        adapt=None if adapt is None else parse_adapt(adapt),
        options=options,
        gpus_per_worker=check_int(
            _first(args.gpus_per_worker, config.get("gpus_per_worker"), 0),
            "--gpus-per-worker",
            minimum=0,
        ),
        worker_timeout=check_number(timeout, "--worker-timeout", minimum=0.1),
        dashboard_address=_first(
            args.dashboard_address, config.get("dashboard_address"), DEFAULT_DASHBOARD
        ),
    )
    if spec.kind == "batch":
        from ..cluster.jobqueue import job_options

        job_options(spec)  # unknown or deprecated option names fail now, not at submission
    return spec


def parse_cluster_options(items: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings -> dask-jobqueue options.

    Values: ``true``/``false``, integers, a YAML list or mapping (``[a, b]``), else the text
    (``walltime=01:00:00`` stays a string). A dotted key sets a nested mapping
    (``scheduler_options.interface=ib0``); list options accumulate when repeated.
    """
    options: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise SettingsError(f"--cluster-option wants KEY=VALUE, got {item!r}")
        value = raw if key == "walltime" else _value(raw, item)  # "90" is 90 minutes on SLURM
        if key in LIST_OPTIONS:
            options.setdefault(key, []).extend(value if isinstance(value, list) else [value])
            continue
        *parents, leaf = key.split(".")
        target = options
        for part in parents:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise SettingsError(f"--cluster-option {item!r}: {part} is not a mapping")
        if leaf in target:
            raise SettingsError(f"--cluster-option {key} given twice")
        target[leaf] = value
    return options


def parse_adapt(value: Any) -> tuple[int, int]:
    """``"MIN:MAX"`` or ``[MIN, MAX]`` -> ``(MIN, MAX)`` jobs."""
    parts = value.split(":") if isinstance(value, str) else value
    if not isinstance(parts, (list, tuple)) or len(parts) != 2:
        raise SettingsError(f"--adapt wants MIN:MAX (e.g. 0:10), got {value!r}")
    try:
        low, high = (int(p) for p in parts)
    except (TypeError, ValueError):
        raise SettingsError(f"--adapt wants two integers MIN:MAX, got {value!r}") from None
    return low, high


def _cluster(cluster: Any, address: Any, source: str) -> str | None:
    if cluster is not None and address is not None and cluster != address:
        raise SettingsError(
            f"{source}: cluster {cluster!r} and scheduler address {address!r} disagree; give one"
        )
    return cluster if cluster is not None else address


def _config_options(value: Any) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SettingsError(f"config key cluster_options must be a mapping, got {value!r}")
    return {str(k).replace("-", "_"): v for k, v in value.items()}


def _first(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


def _value(raw: str, item: str) -> Any:
    low = raw.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if raw.strip().isdigit():
        return int(raw)
    if raw.lstrip().startswith(("[", "{")):
        try:
            return yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise SettingsError(f"--cluster-option {item!r}: bad YAML: {exc}") from None
    return raw
