"""The service through gRPC: agreement with the reference, and the bad-input matrix."""

from __future__ import annotations

import os
import shutil
import subprocess

import grpc
import numpy as np
import pytest

from raremem.client import MemoryClient
from raremem.proto import memory_pb2 as pb
from raremem.proto.tensors import to_tensor
from tests.conftest import running_server
from tests.reference_memory import ReferenceMemory
from tests.server.test_store_reference import assert_same_answers, assert_same_state
from tests.workloads import clustered_batches


def read_state(client, name, size):
    slots = client.read_slots(name, start=0, stop=size)
    return slots["keys"], slots["values"], slots["ages"], slots["sources"]


def check_against_reference(client, calls, size=128, d=32, k=16, b=16, noise=8.0, steps=200):
    """Seeded lookups with updates through ``calls`` (the client, a stream, ...) answer as the
    reference memory does, and leave the same state."""
    client.create_memory("ref", d, size, choose_k=k, age_noise=noise, seed=11)
    ref = ReferenceMemory(size, d, k, age_noise=noise, seed=11)
    for step, req in enumerate(clustered_batches(21, d, 3 * size, b, steps)):
        res = calls.lookup("ref", req["queries"], req["labels"], update=True, use_recent=True,
                           sources=req["sources"], return_neighbors=True)
        assert_same_answers(res, ref.call([dict(req)])[0], k, step)
    # recent is not readable over the wire; every step's positives (use_recent) exercise it
    assert_same_state(*read_state(client, "ref", size), None, ref)
    stats = client.stats("ref")
    assert stats.evictions > 0 and stats.info.filled == size


@pytest.mark.parametrize("size, d, k, b, noise", [(128, 32, 16, 16, 8.0), (300, 16, 64, 8, 0.0)])
def test_remote_matches_reference(client, size, d, k, b, noise):
    check_against_reference(client, client, size, d, k, b, noise)


def test_write_applies_the_update_rule(client):
    client.create_memory("w", 8, 16, choose_k=4, age_noise=0.0)
    ref = ReferenceMemory(16, 8, 4, age_noise=0.0)
    for req in clustered_batches(2, 8, 40, 4, 30):
        slots, correct = client.write("w", req["queries"], req["labels"], sources=req["sources"])
        out = ref.call([dict(req, use_recent=False)])[0]
        assert slots.tolist() == [o["written"] for o in out]
        assert correct.tolist() == [o["correct"] for o in out]


# ---------------------------------------------------------------------- bad input


def raw_lookup(stub, **fields):
    return stub.Lookup(pb.LookupRequest(**fields), timeout=10)


Q = np.ones((2, 8), np.float32)
L = np.array([1, 2], np.int64)


def bad_inputs():
    nan, inf, zero = Q.copy(), Q.copy(), Q.copy()
    nan[1, 3], inf[0, 0], zero[1] = np.nan, np.inf, 0
    ragged = to_tensor(Q)
    ragged.data = ragged.data[:-3]
    return {
        "wrong dim": (dict(queries=to_tensor(np.ones((2, 7), np.float32))), "INVALID_ARGUMENT", "dimension 7"),
        "1-d queries": (dict(queries=to_tensor(np.ones(8, np.float32))), "INVALID_ARGUMENT", "2-d"),
        "int64 queries": (dict(queries=to_tensor(np.ones((2, 8), np.int64))), "INVALID_ARGUMENT", "float32"),
        "float32 labels": (dict(queries=to_tensor(Q), labels=to_tensor(np.ones(2, np.float32)), update=True),
                           "INVALID_ARGUMENT", "labels must be int64"),
        "NaN row": (dict(queries=to_tensor(nan)), "INVALID_ARGUMENT", "NaN"),
        "inf row": (dict(queries=to_tensor(inf)), "INVALID_ARGUMENT", "inf"),
        "zero row": (dict(queries=to_tensor(zero)), "INVALID_ARGUMENT", "zero row"),
        "ragged bytes": (dict(queries=ragged), "INVALID_ARGUMENT", "do not fit shape"),
        "unknown dtype": (dict(queries=pb.Tensor(dtype=7, shape=[2, 8], data=b"\0" * 64)),
                          "INVALID_ARGUMENT", "dtype code"),
        "labels wrong length": (dict(queries=to_tensor(Q), labels=to_tensor(np.array([1, 2, 3])), update=True),
                                "INVALID_ARGUMENT", "shape (2,)"),
        "negative label": (dict(queries=to_tensor(Q), labels=to_tensor(np.array([1, -1])), update=True),
                           "INVALID_ARGUMENT", ">= 0"),
        "sources wrong length": (dict(queries=to_tensor(Q), labels=to_tensor(L), update=True,
                                      sources=to_tensor(np.array([1]))), "INVALID_ARGUMENT", "sources"),
        "update without labels": (dict(queries=to_tensor(Q), update=True), "INVALID_ARGUMENT", "needs labels"),
        "k < 0": (dict(queries=to_tensor(Q), k=-1), "INVALID_ARGUMENT", "k must be in 1..32"),
        "k > size": (dict(queries=to_tensor(Q), k=33), "INVALID_ARGUMENT", "k must be in 1..32"),
        "update batch > size": (dict(queries=to_tensor(np.ones((33, 8), np.float32)),
                                     labels=to_tensor(np.arange(33)), update=True),
                                "INVALID_ARGUMENT", "exceed the memory size"),
        "oversize batch": (dict(queries=to_tensor(np.ones((4097, 8), np.float32))),
                           "RESOURCE_EXHAUSTED", "server limit of 4096"),
    }


def test_bad_input_gets_the_right_status_and_changes_nothing(tmp_path):
    with running_server(tmp_path, max_batch=4096) as (address, _), MemoryClient(address) as client:
        client.create_memory("m", 8, 32, choose_k=4)
        for req in clustered_batches(1, 8, 50, 8, 10):
            client.lookup("m", req["queries"], req["labels"], update=True, sources=req["sources"])
        before = client.stats("m", with_hash=True).state_hash
        for what, (fields, code, words) in bad_inputs().items():
            with pytest.raises(grpc.RpcError) as exc:
                raw_lookup(client.stub, name="m", **fields)
            assert exc.value.code().name == code, what
            assert words in exc.value.details(), (what, exc.value.details())
            assert client.stats("m", with_hash=True).state_hash == before, what
        assert client.stats("m").info.total_writes == 80


def test_unknown_memory_and_names(client):
    with pytest.raises(grpc.RpcError) as exc:
        client.lookup("nope", Q)
    assert exc.value.code() == grpc.StatusCode.NOT_FOUND and "nope" in exc.value.details()
    for name in ("", "../x", "a//b", ".hidden", "a/../b", "x" * 201, "sp ace"):
        with pytest.raises(grpc.RpcError) as exc:
            client.create_memory(name, 8, 8)
        assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT, name
    client.create_memory("ok/name-1", 8, 8)
    with pytest.raises(grpc.RpcError) as exc:
        client.create_memory("ok/name-1", 8, 8)
    assert exc.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert client.create_memory("ok/name-1", 8, 8, exist_ok=True).name == "ok/name-1"
    with pytest.raises(grpc.RpcError) as exc:
        client.create_memory("ok/name-1", 8, 16, exist_ok=True)
    assert exc.value.code() == grpc.StatusCode.ALREADY_EXISTS and "another config" in exc.value.details()


@pytest.mark.parametrize("config, words", [
    (dict(key_dim=0, size=8), "key_dim"), (dict(key_dim=8, size=0), "size"),
    (dict(key_dim=8, size=8, choose_k=9), "choose_k"), (dict(key_dim=8, size=8, alpha=float("nan")), "alpha"),
    (dict(key_dim=8, size=8, index=9), "index"), (dict(key_dim=8, size=8, device="tpu"), "device"),
    (dict(key_dim=8, size=8, index=pb.IVF, ivf_rebalance=0.5), "ivf_rebalance"),
])
def test_bad_configs(client, config, words):
    with pytest.raises(grpc.RpcError) as exc:
        client.stub.CreateMemory(pb.CreateMemoryRequest(name="c", config=pb.MemoryConfig(**config)))
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT and words in exc.value.details()


def test_read_slots_bounds(client):
    client.create_memory("r", 4, 10)
    for kwargs in (dict(start=5, stop=11), dict(start=-1, stop=2), dict(ids=[10]), dict(ids=[-1])):
        with pytest.raises(grpc.RpcError) as exc:
            client.read_slots("r", **kwargs)
        assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT, kwargs


def test_malformed_bytes_on_the_wire(server):
    """A request whose bytes are not a LookupRequest at all."""
    address, _ = server
    with grpc.insecure_channel(address) as channel:
        call = channel.unary_unary("/raremem.v1.Memory/Lookup")  # raw bytes in, raw bytes out
        with pytest.raises(grpc.RpcError) as exc:
            call(b"\xff\xff\xff garbage", timeout=5)
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "malformed request bytes" in exc.value.details()


# ---------------------------------------------------------------------- tokens and paths


def test_tokens(tmp_path):
    with running_server(tmp_path, token="user-t", admin_token="admin-t") as (address, _):
        with MemoryClient(address, retry_seconds=0) as anon, MemoryClient(address, token="wrong") as wrong, \
                MemoryClient(address, token="user-t") as user, MemoryClient(address, token="admin-t") as admin:
            for c in (anon, wrong):
                with pytest.raises(grpc.RpcError) as exc:
                    c.list_memories()
                assert exc.value.code() == grpc.StatusCode.UNAUTHENTICATED
            admin.create_memory("t", 4, 8)
            user.lookup("t", np.eye(4, dtype=np.float32), np.arange(4), update=True)
            before = admin.stats("t", with_hash=True).state_hash
            for call in (lambda c: c.reset("t"), lambda c: c.delete_memory("t"), lambda c: c.restore("t")):
                with pytest.raises(grpc.RpcError) as exc:
                    call(user)
                assert exc.value.code() == grpc.StatusCode.PERMISSION_DENIED
                with pytest.raises(grpc.RpcError) as exc:
                    call(anon)
                assert exc.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert admin.stats("t", with_hash=True).state_hash == before
            assert admin.reset("t").filled == 0


def test_an_owner_clears_its_memory_and_nobody_elses(tmp_path):
    """Trainers hold user tokens: each may clear the memory it created between episodes, and
    cannot clear, delete or restore another's; the admin token can do all of it. Ownership
    survives a restart (it travels in the snapshot)."""
    keys = np.eye(4, dtype=np.float32)
    for restart in (False, True):
        data = tmp_path / "data"
        with running_server(data, token="trainer-a,trainer-b", admin_token="admin-t") as (address, service), \
                MemoryClient(address, token="trainer-a") as a, MemoryClient(address, token="trainer-b") as b, \
                MemoryClient(address, token="admin-t") as admin:
            if not restart:
                a.create_memory("a/replica-0", 4, 8)
                b.create_memory("b/replica-0", 4, 8)
                a.create_memory("b/replica-0", 4, 8, exist_ok=True)   # exist_ok does not take it over
                admin.snapshot()
            for c, own in ((a, "a/replica-0"), (b, "b/replica-0")):
                c.lookup(own, keys, np.arange(4), update=True)
                assert c.reset(own).filled == 0
            a.lookup("b/replica-0", keys, np.arange(4), update=True)   # ordinary rpcs stay open to both
            before = admin.stats("b/replica-0", with_hash=True).state_hash
            for call in (lambda c: c.reset("b/replica-0"), lambda c: c.delete_memory("b/replica-0"),
                         lambda c: c.restore("b/replica-0"), lambda c: c.delete_memory("a/replica-0"),
                         lambda c: c.restore("a/replica-0")):
                with pytest.raises(grpc.RpcError) as exc:
                    call(a)
                assert exc.value.code() == grpc.StatusCode.PERMISSION_DENIED, exc.value.details()
            assert admin.stats("b/replica-0", with_hash=True).state_hash == before
            assert admin.reset("b/replica-0").filled == 0
            admin.snapshot()
            service.close(snapshot=False)


def test_snapshot_paths_stay_in_the_data_dir(tmp_path):
    data = tmp_path / "data"
    outside = tmp_path / "outside"
    outside.mkdir()
    with running_server(data) as (address, _), MemoryClient(address) as client:
        client.create_memory("p", 4, 8)
        client.lookup("p", np.eye(4, dtype=np.float32), np.arange(4), update=True)
        before = client.stats("p", with_hash=True).state_hash
        os.symlink(outside, data / "link")
        for path in ("../escape.npz", str(outside / "abs.npz"), "link/x.npz", "a/../../x.npz"):
            for call in (lambda: client.snapshot("p", path), lambda: client.restore("p", path)):
                with pytest.raises(grpc.RpcError) as exc:
                    call()
                assert exc.value.code() == grpc.StatusCode.PERMISSION_DENIED, path
        assert not list(outside.iterdir()) and not (tmp_path / "escape.npz").exists()
        with pytest.raises(grpc.RpcError) as exc:
            client.restore("p", "missing.npz")
        assert exc.value.code() == grpc.StatusCode.NOT_FOUND
        (data / "junk.npz").write_bytes(b"not a zip")
        np.savez(data / "foreign.npz", keys=np.zeros(3))
        for junk in ("junk.npz", "foreign.npz"):
            with pytest.raises(grpc.RpcError) as exc:
                client.restore("p", junk)
            assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT, junk
        assert client.stats("p", with_hash=True).state_hash == before


def test_health_and_reflection(server):
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    with grpc.insecure_channel(server[0]) as channel:
        status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service="raremem.v1.Memory"))
        assert status.status == health_pb2.HealthCheckResponse.SERVING
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        answer = next(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")])))
        names = {s.name for s in answer.list_services_response.service}
        assert "raremem.v1.Memory" in names


@pytest.mark.skipif(not shutil.which("openssl"), reason="openssl not installed")
def test_tls(tmp_path):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"], check=True, capture_output=True)
    with running_server(tmp_path / "d", tls=(key.read_bytes(), cert.read_bytes())) as (address, _):
        with MemoryClient(address, root_certificates=cert.read_bytes()) as client:
            client.create_memory("tls", 4, 8)
            assert client.list_memories()[0].name == "tls"
        with MemoryClient(address, retry_seconds=0, timeout=3) as plain:  # no TLS: refused
            with pytest.raises(grpc.RpcError):
                plain.list_memories()


def test_prometheus_metrics(client):
    import urllib.request

    from raremem.server.metrics import serve_metrics

    port = serve_metrics(0)
    client.create_memory("metered", 4, 8)
    client.lookup("metered", np.eye(4, dtype=np.float32), np.arange(4), update=True)
    with pytest.raises(grpc.RpcError):
        client.lookup("metered", np.ones((1, 3), np.float32))
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert 'raremem_requests_total{code="OK",method="Lookup"}' in text
    assert 'raremem_requests_total{code="INVALID_ARGUMENT",method="Lookup"}' in text
    assert 'raremem_filled_slots{memory="metered"} 4.0' in text
    assert 'raremem_writes_total{kind="fresh",memory="metered"} 4.0' in text


def test_leave_one_out_and_append_only_over_the_wire(client):
    """Both options travel through the proto, the servicer and the client as the store has them."""
    client.create_memory("loo", 16, 64, choose_k=8, age_noise=0.0, seed=5)
    info = client.create_memory("knn", 8, 16, choose_k=4, age_noise=0.0, append_only=True)
    assert info.config["append_only"] is True and client.stats("loo").info.config["append_only"] is False
    ivf = client.create_memory("ivf", 8, 64, index="ivf", ivf_retrain=100, ivf_rebalance=2.5)
    assert (ivf.config["ivf_retrain"], ivf.config["ivf_rebalance"]) == (100, 2.5)
    ref = ReferenceMemory(64, 16, 8, age_noise=0.0, seed=5)
    for step, req in enumerate(clustered_batches(9, 16, 90, 6, 60)):
        req = dict(req, sources=((np.arange(6) + step) % 11).astype(np.int64))
        res = client.lookup("loo", req["queries"], req["labels"], update=True, use_recent=True,
                            sources=req["sources"], return_neighbors=True, leave_one_out=True)
        assert_same_answers(res, ref.call([dict(req, leave_one_out=True)])[0], 8, step)
    ref = ReferenceMemory(16, 8, 4, age_noise=0.0, append_only=True)
    for step, req in enumerate(clustered_batches(4, 8, 3, 4, 10)):
        res = client.lookup("knn", req["queries"], req["labels"], update=True, use_recent=True,
                            sources=req["sources"], return_neighbors=True)
        assert_same_answers(res, ref.call([dict(req)])[0], 4, step)
    assert client.stats("knn").correct_writes == 0


def test_a_memory_too_large_for_the_server_is_refused_clearly(client):
    with pytest.raises(grpc.RpcError) as exc:
        client.create_memory("huge", 2 ** 20, 2 ** 20)           # 4 TiB of keys
    assert exc.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "GiB" in exc.value.details()
    assert [m.name for m in client.list_memories()] == []
