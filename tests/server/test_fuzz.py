"""Fuzzing the servicer: hypothesis-made messages for every rpc, random bytes as requests, and
broken HTTP/2 at the port. Every answer is a clear status (never INTERNAL or UNKNOWN), the
server stays healthy, and a memory no request names keeps its exact state."""

from __future__ import annotations

import socket

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raremem.client import MemoryClient
from raremem.proto import memory_pb2 as pb
from tests.conftest import running_server
from tests.workloads import clustered_batches

SERVICE = pb.DESCRIPTOR.services_by_name["Memory"]
UNARY = [m for m in SERVICE.methods if not m.client_streaming]
NAMES = st.sampled_from(["fuzz/m", "fuzz/other", "", "../x", "a" * 300, "fuzz/m\x00", "ok-1"])
CLEAR = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
         grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.FAILED_PRECONDITION,
         grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.ABORTED}


def tensors() -> st.SearchStrategy:
    """Tensors that mostly fit (so requests get past decoding) and sometimes do not."""
    shapes = st.lists(st.integers(-2, 9), min_size=0, max_size=3)
    dtypes = st.sampled_from([pb.FLOAT32, pb.INT64, pb.BOOL, pb.DTYPE_UNSPECIFIED, 99])

    @st.composite
    def build(draw):
        shape, dtype = draw(shapes), draw(dtypes)
        size = int(np.prod([max(s, 0) for s in shape])) if shape else 1
        width = {pb.FLOAT32: 4, pb.INT64: 8, pb.BOOL: 1}.get(dtype, 4)
        fit = draw(st.booleans())
        n = size * width if fit else draw(st.integers(0, 64))
        data = draw(st.binary(min_size=n, max_size=n)) if n < 4096 else bytes(n)
        if fit and dtype == pb.FLOAT32 and draw(st.booleans()):    # finite floats, often valid queries
            data = np.random.default_rng(draw(st.integers(0, 99))).standard_normal(size).astype("<f4").tobytes()
        return pb.Tensor(dtype=dtype, shape=shape, data=data)
    return build()


def message(descriptor, depth: int = 0) -> st.SearchStrategy:
    """Any message of ``descriptor``: a random subset of its fields, each of a fitting value."""
    cls = getattr(pb, descriptor.name)
    fields = {}
    for f in descriptor.fields:
        if f.message_type is not None:
            if f.message_type.name == "Tensor":
                value = tensors()
            elif depth < 2:
                value = message(f.message_type, depth + 1)
            else:
                continue
        elif f.type == f.TYPE_STRING:
            value = NAMES if f.name in ("name",) else st.text(max_size=12)
        elif f.type == f.TYPE_BOOL:
            value = st.booleans()
        elif f.type in (f.TYPE_FLOAT, f.TYPE_DOUBLE):
            value = st.floats(allow_nan=True, allow_infinity=True, width=32)
        elif f.type == f.TYPE_ENUM:
            value = st.integers(0, 5)
        elif f.type in (f.TYPE_UINT64, f.TYPE_UINT32):
            value = st.integers(0, 2 ** 31)
        else:
            value = st.integers(-2 ** 31, 2 ** 31 - 1)
        if f.is_repeated:
            value = st.lists(value, max_size=3)
        fields[f.name] = st.one_of(st.none(), value)

    @st.composite
    def build(draw):
        out = cls()
        for name, strategy in fields.items():
            v = draw(strategy)
            if v is None:
                continue
            target = getattr(out, name) if isinstance(v, (list, pb.Tensor)) or hasattr(v, "DESCRIPTOR") else None
            if isinstance(v, list):
                target.extend(v)
            elif hasattr(v, "DESCRIPTOR"):
                target.CopyFrom(v)
            else:
                try:
                    setattr(out, name, v)
                except (ValueError, TypeError):
                    pass
        return out
    return build()


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
