"""The embedded LocalCluster (loopback only), or a plain attach to a scheduler address.

:func:`connect` is the small form used by library calls; jobs go through
:func:`~medsyn_dask.cluster.start.start_cluster`, which adds batch systems and the wait for
workers. GPU workers advertise the Dask resource :data:`GPU_RESOURCE`
(``dask worker ... --resources GPU=1``); extraction tasks ask for it.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

import dask
from distributed import Client, LocalCluster

log = logging.getLogger(__name__)

#: The name of the Dask worker resource that marks a worker with one GPU.
GPU_RESOURCE = "GPU"


def default_worker_count() -> int:
    """Workers for the embedded cluster: one per core, at most 8 (one process each)."""
    return max(1, min(os.cpu_count() or 1, 8))


@contextlib.contextmanager
def connect(
    scheduler_address: str | None = None,
    *,
    workers: int | None = None,
    threads_per_worker: int = 1,
    memory_limit: str | int | None = "auto",
    dashboard_address: str = "127.0.0.1:0",
    quiet: bool = False,
) -> Iterator[Client]:
    """Yield a distributed ``Client``: attached to ``scheduler_address`` or to a new LocalCluster.

    Without ``scheduler_address``, Dask's own setting (``DASK_SCHEDULER_ADDRESS`` or the
    ``scheduler-address`` config key) is used when present. The embedded cluster listens on
    loopback only, with its dashboard on 127.0.0.1 (a free port unless ``dashboard_address``
    names one); its URL is printed so the run can be watched. The cluster is closed on exit;
    an attached cluster is left running.
    """
    scheduler_address = scheduler_address or dask.config.get("scheduler-address", None)
    if scheduler_address:
        with Client(scheduler_address) as client:
            announce(client, quiet)
            yield client
        return
    n = workers or default_worker_count()
    if n < 1:
        raise ValueError(f"workers must be at least 1, got {n}")
    with (
        LocalCluster(
            n_workers=n,
            threads_per_worker=threads_per_worker,
            processes=True,
            host="127.0.0.1",
            dashboard_address=dashboard_address,
            memory_limit=memory_limit,
        ) as cluster,
        Client(cluster) as client,
    ):
        announce(client, quiet)
        yield client


def announce(client: Client, quiet: bool, what: str | None = None) -> None:
    """Print the cluster (``what``, else its worker count) and its dashboard URL.

    The dashboard also serves Prometheus metrics under ``/metrics`` (prometheus_client).
    """
    if what is None:
        what = f"{len(client.scheduler_info(n_workers=-1)['workers'])} workers"
    msg = f"Dask: {what}, dashboard {client.dashboard_link}"
    log.info(msg)
    if not quiet:
        print(msg, flush=True)
