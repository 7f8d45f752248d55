"""Fuzzing the servicer: hypothesis-made messages for every rpc, random bytes as requests, and
broken HTTP/2 at the port. Every answer is a clear status (never INTERNAL or UNKNOWN), the
server stays healthy, and a memory no request names keeps its exact state."""

from __future__ import annotations

import socket

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from raremem.client import MemoryClient
from tests.conftest import running_server
from tests.fuzzing import CLEAR, SERVICE, UNARY, message
from tests.workloads import clustered_batches

@pytest.fixture(scope="module")
def served(tmp_path_factory):
    with running_server(tmp_path_factory.mktemp("fuzz")) as (address, _):
        with MemoryClient(address, retry_seconds=0) as client:
            client.create_memory("sentinel", 8, 32, choose_k=4)
            client.create_memory("fuzz/m", 8, 32, choose_k=4)
            for req in clustered_batches(0, 8, 10, 4, 6):
                client.lookup("sentinel", req["queries"], req["labels"], update=True)
            yield address, client, client.stats("sentinel", with_hash=True).state_hash


def check_healthy(served):
    address, client, sentinel = served
    assert client.health() == "SERVING"
    assert client.stats("sentinel", with_hash=True).state_hash == sentinel


@pytest.mark.parametrize("method", UNARY, ids=lambda m: m.name)
def test_every_rpc_answers_any_message_with_a_clear_status(served, method):
    address, client, _ = served
    call = client.channel.unary_unary(f"/{SERVICE.full_name}/{method.name}",
                                      request_serializer=lambda m: m.SerializeToString(),
                                      response_deserializer=lambda b: b)
    codes = set()

    @settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(message(method.input_type))
    def one(request):
        if getattr(request, "name", None) == "sentinel":
            request.name = "fuzz/m"   # the sentinel is the memory no request may touch
        try:
            call(request, timeout=10)
            codes.add(grpc.StatusCode.OK)
        except grpc.RpcError as exc:
            assert exc.code() in CLEAR, (method.name, exc.code(), exc.details())
            codes.add(exc.code())

    one()
    check_healthy(served)
    if method.input_type.fields:   # a request with fields can be wrong, and some of ours were
        assert codes - {grpc.StatusCode.OK}, f"{method.name}: no request was refused: the fuzzer misses"


def test_random_bytes_and_broken_http2_leave_the_server_serving(served):
    address, client, _ = served
    rng = np.random.default_rng(1)
    for method in UNARY:
        call = client.channel.unary_unary(f"/{SERVICE.full_name}/{method.name}")
        for _ in range(20):
            try:
                call(rng.bytes(int(rng.integers(1, 200))), timeout=10)
            except grpc.RpcError as exc:
                assert exc.code() in CLEAR, (method.name, exc.code(), exc.details())
    host, port = address.rsplit(":", 1)
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    for payload in (preface[:10], preface + b"\x00\x00\x12\x04", preface + rng.bytes(300), rng.bytes(500),
                    preface + b"\x00\x00\x05\x01\x04\x00\x00\x00\x01\x82"):
        with socket.create_connection((host, int(port)), timeout=5) as s:
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
            try:
                s.recv(1024)
            except OSError:
                pass
    check_healthy(served)
