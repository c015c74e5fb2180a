"""Shared pytest fixtures."""

# --- extraction tests: a 2-worker LocalCluster (dask_cluster.py) and a loopback S3 API
# (moto's server, s3_server.py) ---
from dask_cluster import extract_client  # noqa: F401
from s3_server import s3_bucket, s3_server  # noqa: F401
