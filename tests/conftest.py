"""Shared fixtures: in-process servers on port 0."""

from __future__ import annotations

import contextlib

import pytest

from raremem.client import MemoryClient
from raremem.server.service import MemoryService
from raremem.server.servicer import create_server


@contextlib.contextmanager
def running_server(data_dir=None, **kwargs):
    """Yield (address, service) of a started server; ``kwargs`` go to create_server/MemoryService."""
    service_kwargs = {k: kwargs.pop(k) for k in ("max_batch", "snapshot_interval") if k in kwargs}
    service = MemoryService(data_dir, **service_kwargs)
    server, port, _ = create_server(service, "127.0.0.1:0", **kwargs)
    server.start()
    try:
        yield f"127.0.0.1:{port}", service
    finally:
        server.stop(0).wait()
        service.close(snapshot=False)


@pytest.fixture
def server(tmp_path):
    with running_server(tmp_path / "data") as (address, service):
        yield address, service


@pytest.fixture
def client(server):
    with MemoryClient(server[0], timeout=20) as c:
        yield c
