"""A real S3 API on loopback for the tests: moto's server in a thread, as s3fs's tests do.

Fixtures: ``s3_server`` (session: the endpoint and fsspec storage options) and ``s3_bucket``
(a fresh, empty bucket per test, as ``s3://NAME``). The credentials are moto's dummies; they
are passed explicitly so that no AWS configuration of the machine is read.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import pytest


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str

    @property
    def storage_options(self) -> dict[str, Any]:
        """fsspec/s3fs options reaching this server (worker processes included)."""
        return {
            "key": "testing",
            "secret": "testing",
            "endpoint_url": self.endpoint_url,
            "client_kwargs": {"region_name": "us-west-2"},
        }

    def filesystem(self):
        import s3fs

        return s3fs.S3FileSystem(skip_instance_cache=True, **self.storage_options)


@pytest.fixture(scope="session")
def s3_server():
    pytest.importorskip("moto.server", reason="moto[server] is needed for the S3 tests")
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield S3Server(endpoint_url=f"http://{host}:{port}")
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> str:
    """``s3://BUCKET`` of a new empty bucket on the loopback server."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    s3_server.filesystem().mkdir(name)
    return f"s3://{name}"
