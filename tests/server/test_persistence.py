"""Snapshots: round trip, SIGKILL after a snapshot, SIGTERM snapshots before exit."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import numpy as np
import pytest

from raremem.client import MemoryClient
from raremem.server.spawn import spawn_server
from tests.conftest import running_server
from tests.workloads import clustered_batches


def fill(client, name, steps, seed=0):
    for req in clustered_batches(seed, 16, 200, 8, steps):
        client.lookup(name, req["queries"], req["labels"], update=True, use_recent=True,
                      sources=req["sources"])


@pytest.mark.parametrize("index", ["exact", "ivf", "lsh"])
def test_snapshot_restore_round_trip(tmp_path, index):
    with running_server(tmp_path) as (address, _), MemoryClient(address) as client:
        client.create_memory("a/b", 16, 128, choose_k=8, index=index, ivf_nlist=2, seed=5)
        fill(client, "a/b", 30)
        before = client.stats("a/b", with_hash=True)
        paths, nbytes = client.snapshot("a/b")
        assert paths == ["a/b.npz"] and nbytes > 128 * 16 * 4
        assert client.snapshot("a/b", "copies/b-1.npz")[0] == ["copies/b-1.npz"]
        q = np.random.default_rng(1).standard_normal((4, 16)).astype(np.float32)
        answer = client.lookup("a/b", q, k=8, neighbors=True).neighbors.ids
        fill(client, "a/b", 10, seed=1)  # diverge, then go back
        assert client.stats("a/b", with_hash=True).state_hash != before.state_hash
        info = client.restore("a/b", "copies/b-1.npz")
        assert info.filled == before.info.filled
        assert client.stats("a/b", with_hash=True).state_hash == before.state_hash
        np.testing.assert_array_equal(client.lookup("a/b", q, k=8, neighbors=True).neighbors.ids, answer)
        client.restore("copy", "copies/b-1.npz")  # a named copy of the same memory
        assert client.stats("copy", with_hash=True).state_hash == before.state_hash


def start_server(data_dir: Path, *extra: str):
    return spawn_server("--metrics-port", "-1", "--data-dir", str(data_dir), *extra)


def stop(proc, sig) -> str:
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=60)
    return out


def test_sigkill_after_snapshot_restarts_with_that_memory(tmp_path):
    proc, address, _ = start_server(tmp_path, "--snapshot-interval", "0")
    try:
        with MemoryClient(address) as client:
            client.create_memory("m", 16, 64, choose_k=8)
            fill(client, "m", 20)
            client.snapshot("m")
            saved = client.stats("m", with_hash=True)
            fill(client, "m", 5, seed=2)  # lost with the crash
            unsaved = client.stats("m").writes_since_snapshot
            time.sleep(1.5)  # let the write counter tick
    finally:
        stop(proc, signal.SIGKILL)
    assert unsaved == 40
    proc, address, log = start_server(tmp_path, "--snapshot-interval", "0")
    assert "40 writes since its snapshot were lost" in log
    try:
        with MemoryClient(address) as client:
            stats = client.stats("m", with_hash=True)
            assert stats.state_hash == saved.state_hash
            assert stats.info.total_writes == saved.info.total_writes
            assert stats.writes_lost_at_restore == 40
    finally:
        stop(proc, signal.SIGTERM)


def test_sigterm_snapshots_before_exit(tmp_path):
    proc, address, _ = start_server(tmp_path, "--snapshot-interval", "0")
    with MemoryClient(address) as client:
        client.create_memory("n/one", 16, 64, choose_k=8)
        fill(client, "n/one", 12)
        saved = client.stats("n/one", with_hash=True).state_hash
    out = stop(proc, signal.SIGTERM)
    assert proc.returncode == 0, out
    assert (tmp_path / "n" / "one.npz").is_file() and "snapshots written: n/one.npz" in out
    proc, address, _ = start_server(tmp_path)
    try:
        with MemoryClient(address) as client:
            assert client.stats("n/one", with_hash=True).state_hash == saved
            assert client.stats("n/one").writes_lost_at_restore == 0
    finally:
        stop(proc, signal.SIGTERM)


def test_timed_snapshots(tmp_path):
    with running_server(tmp_path, snapshot_interval=0.2) as (address, _), MemoryClient(address) as client:
        client.create_memory("t", 16, 64, choose_k=8)
        fill(client, "t", 3)
        deadline = time.time() + 10
        while client.stats("t").writes_since_snapshot and time.time() < deadline:
            time.sleep(0.1)
        assert client.stats("t").writes_since_snapshot == 0
        assert (tmp_path / "t.npz").is_file()


def test_without_data_dir_snapshots_fail_cleanly():
    import grpc

    with running_server(None) as (address, _), MemoryClient(address) as client:
        client.create_memory("x", 4, 4)
        with pytest.raises(grpc.RpcError) as exc:
            client.snapshot("x")
        assert exc.value.code() == grpc.StatusCode.FAILED_PRECONDITION
