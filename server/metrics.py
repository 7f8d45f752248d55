"""Prometheus metrics, defined once per process and labelled by memory or method."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

REQUESTS = Counter("raremem_requests_total", "gRPC requests by method and status code",
                   ["method", "code"])
LATENCY = Histogram("raremem_request_seconds", "gRPC request latency", ["method"],
                    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5))
BATCH_ROWS = Histogram("raremem_batch_queries", "queries per merged search", ["memory"],
                       buckets=(1, 4, 16, 64, 256, 1024, 4096, 16384))
BATCH_REQUESTS = Histogram("raremem_batch_requests", "requests merged into one search", ["memory"],
                           buckets=(1, 2, 4, 8, 16, 32, 64))
FILL = Gauge("raremem_filled_slots", "filled slots", ["memory"])
WRITES = Counter("raremem_writes_total", "slots written, by kind (correct = averaged, fresh)",
                 ["memory", "kind"])
EVICTIONS = Counter("raremem_evictions_total", "fresh writes over a filled slot", ["memory"])


def serve_metrics(port: int, host: str = "127.0.0.1") -> int:
    """Start the /metrics HTTP endpoint; returns the bound port (port 0 picks a free one)."""
    server, _thread = start_http_server(port, addr=host)
    return server.server_port


def forget_memory(name: str) -> None:
    for metric in (BATCH_ROWS, BATCH_REQUESTS, FILL, EVICTIONS):
        try:
            metric.remove(name)
        except KeyError:
            pass
    for kind in ("correct", "fresh"):
        try:
            WRITES.remove(name, kind)
        except KeyError:
            pass
