"""Shared pytest fixtures."""

# --- extraction tests: a 2-worker LocalCluster (dask_cluster.py) and a loopback S3 API
# (moto's server, s3_server.py) ---
from dask_cluster import extract_client  # noqa: F401
from s3_server import s3_bucket, s3_server  # noqa: F401

# --- cluster tests: a real single-node SLURM (slurm_cluster.py) ---
from slurm_cluster import slurm  # noqa: F401, E402
