"""The embedded LocalCluster (loopback only), or a plain attach to a scheduler address.

:func:`connect` is the small form used by library calls; jobs go through
:func:`~medsyn_dask.cluster.start.start_cluster`, which adds batch systems and the wait for
workers. GPU workers advertise the Dask resource :data:`GPU_RESOURCE`
(``dask worker ... --resources GPU=1``); extraction tasks ask for it.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import logging
import os
from collections.abc import Iterator

import dask
from distributed import Client, LocalCluster, WorkerPlugin

log = logging.getLogger(__name__)

#: The name of the Dask worker resource that marks a worker with one GPU.
GPU_RESOURCE = "GPU"


#: Environment of the embedded workers, set before each process starts (torch reads it once,
#: at its first allocation). ``THP_MEM_ALLOC_ENABLE``: torch aligns its CPU buffers of 2 MiB
#: and more (a batch, a model's activations) to huge pages and asks the kernel for
#: transparent huge pages there. Such buffers are mmapped afresh for every batch (glibc maps
#: anything over 32 MiB itself), so each batch page-faulted its whole working set again, 4 KiB
#: at a time: measured, a small CNN's forward pass on a batch of 32 256 x 256 images went from
#: 1.4 ms user + 1.4 ms system time per image to 1.4 + 0.4 (system time: the faults). Without
#: huge pages in the kernel (``transparent_hugepage`` "never") it changes nothing.
WORKER_ENVIRON = {"THP_MEM_ALLOC_ENABLE": "1"}

#: Dask settings of the workers medsyn-dask starts, as (Dask's default, ours): ours is used
#: where the configuration keeps Dask's default. The statistical profiler behind the
#: dashboard's Profile page samples a worker's task thread every 10 ms by default: measured
#: 3-4 % of the time to extract 2 000 PNGs on 2 cores (1 and 2 workers,
#: ``benchmarks/bench_extract.py``); every 100 ms it costs nothing measurable, and the page
#: still fills.
WORKER_CONFIG = {"distributed.worker.profile.interval": ("10ms", "100ms")}


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
    with dask.config.set(_worker_config()):  # read by each nanny as it is made
        cluster = LocalCluster(
            n_workers=n,
            threads_per_worker=threads_per_worker,
            processes=True,
            host="127.0.0.1",
            dashboard_address=dashboard_address,
            memory_limit=memory_limit,
        )
    with cluster, Client(cluster) as client:
        client.register_plugin(QuickExit())
        announce(client, quiet)
        yield client


def _worker_config() -> dict[str, object]:
    """The Dask settings a nanny gives its worker: the environment before it starts
    (``distributed.nanny.pre-spawn-environ``, the configured one with :data:`WORKER_ENVIRON`
    added where it does not set those variables itself) and :func:`tuned_settings`."""
    key = "distributed.nanny.pre-spawn-environ"
    return {key: {**WORKER_ENVIRON, **dict(dask.config.get(key, {}) or {})}, **tuned_settings()}


def tuned_settings() -> dict[str, str]:
    """The :data:`WORKER_CONFIG` settings whose configured value is Dask's default."""
    config = dask.config.get
    return {key: ours for key, (default, ours) in WORKER_CONFIG.items() if config(key) == default}


class QuickExit(WorkerPlugin):
    """The embedded cluster's worker processes skip the garbage collection of their
    interpreter's teardown (``gc.freeze`` at exit): with torch loaded it made each close of
    the cluster wait 1-3 s, and a worker has closed its files and connections by then.

    Their heartbeat failing because the scheduler (which lives in the driver) has closed is not
    printed either: the run is ending (Ctrl-C, a stop on error), and a traceback on the
    console would bury the one line that says why.
    """

    name = "medsyn-quick-exit"

    def setup(self, worker: object) -> None:
        atexit.register(gc.freeze)
        logging.getLogger("distributed.worker").addFilter(_not_a_heartbeat_failure)


def _not_a_heartbeat_failure(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("Failed to communicate with scheduler during heartbeat")


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
