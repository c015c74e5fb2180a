"""How Dask is started: an embedded LocalCluster, an existing scheduler, or a batch system.

- :mod:`.local`: :func:`connect`, the embedded LocalCluster (loopback only) or an address;
- :mod:`.process`: tuning of a worker process (malloc) and the current-or-new client.

GPU workers advertise the Dask resource :data:`GPU_RESOURCE` (``dask worker ... --resources
GPU=1``); extraction tasks ask for it.
"""

from .local import GPU_RESOURCE, connect, default_worker_count
from .process import current_client, relax_malloc_trim

__all__ = [
    "GPU_RESOURCE",
    "connect",
    "current_client",
    "default_worker_count",
    "relax_malloc_trim",
]
