"""The one entry point a job uses: a ``Client`` on the cluster a :class:`ClusterSpec` names.

``local`` starts the embedded LocalCluster; ``slurm``/``pbs``/``sge``/``lsf`` start a
dask-jobqueue cluster (scheduler here, workers as batch jobs); an address attaches to a
running scheduler. In every case the dashboard URL is printed first, then the job waits for a
first worker at most ``worker_timeout`` seconds.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from typing import Any

import dask

from .attach import attach, wait_for_workers
from .local import announce, connect
from .spec import ClusterSpec


@contextlib.contextmanager
def start_cluster(spec: ClusterSpec, *, quiet: bool = False) -> Iterator[Any]:
    """Yield a ``distributed.Client`` on the cluster ``spec`` names, with a worker joined.

    A cluster started here is closed on exit (its batch jobs cancelled); an attached one is
    left running. Without an address, Dask's own ``scheduler-address`` setting (or
    ``DASK_SCHEDULER_ADDRESS``) is honoured as before.
    """
    configured = dask.config.get("scheduler-address", None)
    if spec.kind == "local" and configured:
        spec = dataclasses.replace(spec, cluster=configured)
    if spec.kind == "local":
        with connect(
            workers=spec.workers, dashboard_address=spec.dashboard_address, quiet=quiet
        ) as client:
            yield client
    elif spec.kind == "address":
        with attach(spec.address, spec.worker_timeout) as client:
            announce(client, quiet)
            expected = spec.workers or 1
            wait_for_workers(
                client, expected, spec.worker_timeout, lambda: _attached_hint(spec), quiet=quiet
            )
            yield client
    else:
        with _batch_client(spec, quiet) as client:
            yield client


@contextlib.contextmanager
def _batch_client(spec: ClusterSpec, quiet: bool) -> Iterator[Any]:
    from distributed import Client

    from .jobqueue import job_options, log_hint, make_cluster, submit_jobs, workers_per_job

    system, options = spec.cluster, job_options(spec)
    with make_cluster(system, options) as cluster, Client(cluster) as client:
        if spec.adapt:
            low, high = spec.adapt
            cluster.adapt(minimum_jobs=low, maximum_jobs=high)
            jobs = max(low, 1)
        else:
            jobs = spec.workers or 1
            submit_jobs(cluster, system, jobs)
        announce(client, quiet, what=f"{system} cluster asking for {jobs} jobs")
        wait_for_workers(
            client,
            jobs * workers_per_job(system, options),
            spec.worker_timeout,
            lambda: log_hint(cluster, system, options),
            quiet=quiet,
        )
        yield client


def _attached_hint(spec: ClusterSpec) -> str:
    return (
        f"the workers of the scheduler at {spec.address}: none is connected; check that "
        f"`dask worker {spec.address}` processes run, can reach that address, and what their "
        "logs say"
    )
