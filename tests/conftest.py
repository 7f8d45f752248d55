"""Shared fixtures: in-process servers on port 0; with RAREMEM_NO_SKIP=1 a skipped test fails
(``make docker-test`` and ``make browser-test`` set it: there a skip means the deployment or
the page went untested)."""

from __future__ import annotations

import contextlib
import os

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


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("RAREMEM_NO_SKIP") == "1" and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped where it must run (RAREMEM_NO_SKIP=1): {report.longrepr}"
