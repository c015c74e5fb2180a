"""How Dask is started: an embedded LocalCluster, a batch system, or an existing scheduler.

- :mod:`.spec`: :class:`ClusterSpec`, what a job runs on, validated where it is made;
- :mod:`.start`: :func:`start_cluster`, the client a job runs on (prints the dashboard, waits
  for a first worker, stops with :class:`ClusterError` when none comes);
- :mod:`.local`: :func:`connect`, the embedded LocalCluster (loopback only) or an address;
- :mod:`.jobqueue`: SLURM, PBS, SGE, LSF through dask-jobqueue (GPUs, walltime, job scripts);
- :mod:`.attach`: attaching to a scheduler and waiting for its workers;
- :mod:`.process`: tuning of a worker process (malloc, imports ahead) and the current-or-new
  client.

GPU workers advertise the Dask resource :data:`GPU_RESOURCE` (``dask worker ... --resources
GPU=1``); extraction tasks ask for it.
"""

from .attach import ClusterError
from .local import GPU_RESOURCE, connect, default_worker_count
from .process import ImportAhead, current_client, relax_malloc_trim
from .spec import BATCH_SYSTEMS, KINDS, ClusterSpec
from .start import start_cluster

__all__ = [
    "BATCH_SYSTEMS",
    "GPU_RESOURCE",
    "ImportAhead",
    "KINDS",
    "ClusterError",
    "ClusterSpec",
    "connect",
    "current_client",
    "default_worker_count",
    "relax_malloc_trim",
    "start_cluster",
]
