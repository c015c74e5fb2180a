"""A real two-worker LocalCluster (processes) shared by the extraction tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def extract_client():
    """A ``distributed.Client`` on a LocalCluster of 2 single-thread worker processes."""
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
            memory_limit="2GiB",
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client
