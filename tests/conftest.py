"""Shared pytest fixtures."""

# --- extraction tests: a 2-worker LocalCluster (dask_cluster.py) and a loopback S3 API
# (moto's server, s3_server.py) ---
# --- cluster tests: a real single-node SLURM (slurm_cluster.py), dask scheduler/worker
# processes and a LocalCluster reference run (cluster_runs.py) ---
from cluster_runs import cluster_phantoms, dask_processes, local_reference  # noqa: F401, E402
from dask_cluster import extract_client  # noqa: F401
from s3_server import s3_bucket, s3_server  # noqa: F401
from slurm_cluster import slurm  # noqa: F401, E402
