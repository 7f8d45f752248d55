"""LookupStream and Unix-domain sockets: the same semantics as unary Lookup over TCP (the
reference memory is the oracle), and a stream that outlives a bad message."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from raremem.client import MemoryClient
from raremem.client.memory_client import StreamError
from raremem.proto import memory_pb2 as pb
from raremem.proto import memory_pb2_grpc as pb_grpc
from raremem.proto.tensors import to_tensor
from tests.conftest import running_server
from tests.server.test_remote import check_against_reference


def test_stream_matches_reference(client):
    stream = client.stream()
    try:
        check_against_reference(client, stream)
    finally:
        stream.close()


@pytest.mark.parametrize("over", ["unary", "stream"])
def test_unix_socket_matches_reference(tmp_path, over):
    path = tmp_path / "raremem.sock"
    with running_server(tmp_path / "data", unix=str(path)), MemoryClient(f"unix://{path}") as client:
        calls = client.stream() if over == "stream" else client
        check_against_reference(client, calls, size=64, d=16, k=8, b=8, noise=0.0, steps=100)


def test_stream_survives_a_bad_message(client):
    """Bad messages (wrong dimension, NaN, unknown memory, undecodable bytes) each get their own
    error on the stream; the stream keeps answering and the memory is exactly as before."""
    client.create_memory("s", 8, 32, choose_k=4, age_noise=0.0)
    q, labels = np.eye(8, dtype=np.float32)[:4], np.arange(4, dtype=np.int64)
    stream = client.stream()
    stream.lookup("s", q, labels, update=True)
    before = client.stats("s", with_hash=True).state_hash
    bad = [("s", np.ones((2, 5), np.float32), None, "dimension"),
           ("s", np.full((1, 8), np.nan, np.float32), None, "NaN"),
           ("nope", q, None, "nope")]
    for name, queries, lab, words in bad:
        with pytest.raises(StreamError) as exc:
            stream.lookup(name, queries, lab)
        assert exc.value.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND)
        assert words in exc.value.details()
        assert list(stream.lookup("s", q).result) == [0, 1, 2, 3]      # the stream goes on
    assert client.stats("s", with_hash=True).state_hash == before        # nothing was written
    stream.close()

    # Undecodable bytes inside a stream: that message gets INVALID_ARGUMENT, the next is answered.
    raw = client.channel.stream_stream("/raremem.v1.Memory/LookupStream", request_serializer=lambda b: b,
                                       response_deserializer=pb.LookupResponse.FromString)
    good = pb.LookupRequest(name="s", queries=to_tensor(q)).SerializeToString()
    answers = list(raw(iter([b"\xff\xff\xff", good]), timeout=10))
    assert answers[0].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "malformed" in answers[0].error.message
    assert not answers[1].HasField("error") and answers[1].HasField("result")
    assert client.stats("s", with_hash=True).state_hash == before


def test_stream_needs_the_token(tmp_path):
    with running_server(tmp_path / "d", token="secret") as (address, _):
        with MemoryClient(address, token="secret") as ok:
            ok.create_memory("t", 4, 8)
            assert ok.stream().lookup("t", np.eye(4, dtype=np.float32)).result.tolist() == [-1] * 4
        with grpc.insecure_channel(address) as channel:
            responses = pb_grpc.MemoryStub(channel).LookupStream(iter([pb.LookupRequest(name="t")]), timeout=10)
            with pytest.raises(grpc.RpcError) as exc:
                next(responses)
            assert exc.value.code() == grpc.StatusCode.UNAUTHENTICATED
