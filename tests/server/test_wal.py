"""The write-ahead log and exactly-once updates: nothing acknowledged is lost to a SIGKILL,
a retried update is applied once, a torn tail is cut."""

from __future__ import annotations

import random
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from raremem.client import MemoryClient
from raremem.client.memory_client import lookup_request
from raremem.proto import memory_pb2_grpc as pb_grpc
from raremem.server import wal
from raremem.server.config import MemoryConfig
from raremem.server.service import MemoryService
from raremem.server.store import LookupSpec
from tests.reference_memory import ReferenceMemory
from tests.server.test_remote import read_state
from tests.server.test_store_reference import assert_same_state
from tests.workloads import clustered_batches


def test_records_round_trip_and_a_torn_tail_is_cut(tmp_path):
    log = wal.WriteAheadLog(tmp_path / "m.wal", "always")
    q = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    spec = LookupSpec(q, np.array([1, 2, 3]), update=True, use_recent=True, sources=np.array([7, 8, 9]),
                      k=2, leave_one_out=True, request_id="abc")
    assert log.append(*wal.batch_record([spec])) == 1 and log.append({"kind": "reset"}, []) == 2
    log.close()
    whole = (tmp_path / "m.wal").read_bytes()
    (tmp_path / "m.wal").write_bytes(whole + whole[:20])                 # a crash mid-append
    records, dropped = wal.read(tmp_path / "m.wal")
    assert dropped == 20 and (tmp_path / "m.wal").read_bytes() == whole  # cut back to the whole records
    (header, arrays), (reset, _) = records
    back = wal.batch_specs(header, arrays)[0]
    assert header["seq"] == 1 and reset == {"seq": 2, "kind": "reset"}
    np.testing.assert_array_equal(back.queries, q)
    assert (back.request_id, back.k, back.leave_one_out, back.sources.tolist()) == ("abc", 2, True, [7, 8, 9])
    damaged = bytearray(whole)
    damaged[-1] ^= 1                                                     # the last record fails its crc
    (tmp_path / "m.wal").write_bytes(bytes(damaged))
    assert len(wal.read(tmp_path / "m.wal")[0]) == 1


@pytest.mark.parametrize("fsync", ["always", "interval", "none"])
def test_a_restart_replays_the_log_over_the_snapshot(tmp_path, fsync):
    """A service that stops without a snapshot (as a crash would) comes back equal: the
    snapshot at creation, then the logged batches and a reset replayed, eviction noise included."""
    service = MemoryService(tmp_path, wal_fsync=fsync)
    service.create("m", MemoryConfig(key_dim=16, size=48, choose_k=8, age_noise=8.0, seed=3))
    for i, req in enumerate(clustered_batches(5, 16, 60, 6, 40)):
        service.lookup("m", LookupSpec(req["queries"], req["labels"], update=True, use_recent=True,
                                       sources=req["sources"], request_id=f"r{i}"))
        if i == 19:
            service.reset("m")                                           # logged too
    before = service.stats("m", with_hash=True)
    service.close(snapshot=False)                                        # no snapshot at the end
    again = MemoryService(tmp_path, wal_fsync=fsync)
    after = again.stats("m", with_hash=True)
    assert after.state_hash == before.state_hash and after.evictions == before.evictions > 0
    assert after.info.total_writes == 240
    assert "r39" in again._get("m").answered                             # retries still answered once
    again.close(snapshot=True)
    assert not (tmp_path / "m.wal.old").exists() and (tmp_path / "m.wal").stat().st_size == 0


def test_a_retried_update_is_applied_once(client):
    """The same request id twice (its first response lost): one application, the same answer."""
    client.create_memory("once", 8, 32, choose_k=4, age_noise=0.0)
    ref = ReferenceMemory(32, 8, 4, age_noise=0.0)
    stub = pb_grpc.MemoryStub(client.channel)
    for req in clustered_batches(2, 8, 20, 4, 12):
        msg = lookup_request("once", req["queries"], req["labels"], update=True, use_recent=True,
                             sources=req["sources"])
        first, second = stub.Lookup(msg, timeout=10), stub.Lookup(msg, timeout=10)
        assert first.SerializeToString() == second.SerializeToString()
        ref.call([dict(req)])
    assert_same_state(*read_state(client, "once", 32), None, ref)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(port: int, data_dir, *extra) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "raremem.server.main", "--port", str(port), "--metrics-port",
                             "-1", "--snapshot-interval", "0", "--data-dir", str(data_dir), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:
        if "listening on" in line:
            return proc
    raise RuntimeError("raremem-server did not start")


def test_twenty_sigkills_lose_no_acknowledged_update(tmp_path):
    """A seeded update stream through a client that retries; the server is SIGKILLed at random
    moments 20 times and restarted on the same port. Every update is applied exactly once: the
    memory equals the reference memory that applied the whole stream (eviction noise included)."""
    port, size, d, k = free_port(), 96, 16, 8
    proc = start(port, tmp_path, "--wal-fsync", "always")
    requests = list(clustered_batches(13, d, 300, 8, 400))
    done = threading.Event()
    errors, acknowledged = [], [0]

    def stream():
        try:
            with MemoryClient(f"127.0.0.1:{port}", retry_seconds=60, timeout=10) as client:
                client.create_memory("kill", d, size, choose_k=k, age_noise=8.0, seed=21, exist_ok=True)
                calls = client.stream()
                for req in requests:
                    calls.lookup("kill", req["queries"], req["labels"], update=True, use_recent=True,
                                 sources=req["sources"])
                    acknowledged[0] += 1
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            done.set()

    worker = threading.Thread(target=stream)
    worker.start()
    rng, kills = random.Random(7), 0
    try:
        while kills < 20 and not done.is_set():
            # after a random 1-15 more acknowledged updates (20 kills fit in the 400), plus a
            # random few milliseconds, so kills land inside a call as well as between calls
            target = acknowledged[0] + rng.randint(1, 15)
            while acknowledged[0] < target and not done.is_set():
                time.sleep(0.001)
            time.sleep(rng.uniform(0, 0.005))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
            proc = start(port, tmp_path, "--wal-fsync", "always")
        worker.join(timeout=300)
        assert not errors, errors
        assert kills == 20, f"the stream ended after {kills} kills: make it longer"
        ref = ReferenceMemory(size, d, k, age_noise=8.0, seed=21)
        for req in requests:
            ref.call([dict(req)])
        with MemoryClient(f"127.0.0.1:{port}") as client:
            assert_same_state(*read_state(client, "kill", size), None, ref)
            assert client.stats("kill").info.total_writes == 400 * 8
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


def test_with_interval_the_unsynced_tail_is_bounded_and_reported(tmp_path):
    """``interval``: at any moment only records of the last interval are not yet fsynced, and
    stats say how many. A power cut at such a moment (the log cut at its fsynced length, the
    worst the OS may leave) restores the memory as the reference replayed over exactly the
    fsynced requests."""
    interval, slack = 0.2, 0.4
    service = MemoryService(tmp_path / "live", wal_fsync="interval", wal_interval=interval)
    service.create("m", MemoryConfig(key_dim=8, size=64, choose_k=4, age_noise=0.0))
    log = service._get("m").wal
    reqs = list(clustered_batches(7, 8, 40, 4, 5000))
    acked, size_at = [], {0: log.path.stat().st_size}   # ack times; log length after record seq
    cut = None
    t_end = time.monotonic() + 1.5
    for req in reqs:
        if time.monotonic() > t_end:
            break
        service.lookup("m", LookupSpec(req["queries"], req["labels"], update=True, use_recent=req["use_recent"],
                                       sources=req["sources"]))
        now = time.monotonic()
        acked.append(now)
        with log._lock:
            synced, seq = log.synced_seq, log.seq
        size_at[seq] = log.path.stat().st_size
        assert service.stats("m").wal_unsynced == seq - synced
        # every record older than the interval (plus scheduling slack) is on disk
        assert all(now - t <= interval + slack for t in acked[synced:]), (synced, seq)
        if cut is None and now > t_end - 0.75 and 0 < synced < seq:
            cut = synced   # a power cut now loses records synced+1..seq
    assert cut is not None and len(acked) > 20
    time.sleep(interval + slack)
    assert service.stats("m").wal_unsynced == 0
    crashed = tmp_path / "crashed"
    crashed.mkdir()
    (crashed / "m.npz").write_bytes((tmp_path / "live" / "m.npz").read_bytes())   # the creation snapshot
    (crashed / "m.wal").write_bytes((tmp_path / "live" / "m.wal").read_bytes()[:size_at[cut]])
    service.close(snapshot=False)
    again = MemoryService(crashed, wal_fsync="interval")
    ref = ReferenceMemory(64, 8, 4, age_noise=0.0)
    for req in reqs[:cut]:
        ref.call([dict(req)])
    st = again._get("m").store
    assert_same_state(st.keys, st.values, st.ages, st.sources, None, ref)
    assert again.stats("m").info.total_writes == 4 * cut
    again.close(snapshot=False)


def test_a_full_disk_while_snapshotting_loses_nothing(tmp_path, monkeypatch):
    """Snapshots that fail midway (no space left), twice in a row: each call gets one clear
    RESOURCE_EXHAUSTED-class error, no temporary file stays, the last good snapshot is intact,
    and a restart (as after a crash) brings back every acknowledged update."""
    import errno

    from raremem.server import persistence
    from raremem.server.errors import ResourceExhausted

    service = MemoryService(tmp_path, wal_fsync="always")
    service.create("m", MemoryConfig(key_dim=8, size=48, choose_k=4, age_noise=4.0, seed=1))
    reqs = list(clustered_batches(3, 8, 60, 4, 60))
    for req in reqs[:20]:
        service.lookup("m", LookupSpec(req["queries"], req["labels"], update=True, sources=req["sources"]))
    service.snapshot("m")
    good = (tmp_path / "m.npz").read_bytes()
    real_write = persistence._write

    def disk_full(f, arrays):
        f.write(b"\0" * 1000)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(persistence, "_write", disk_full)
    for part in (reqs[20:40], reqs[40:60]):
        for req in part:
            service.lookup("m", LookupSpec(req["queries"], req["labels"], update=True, sources=req["sources"]))
        with pytest.raises(ResourceExhausted, match="No space left on device.*still hold every acknowledged"):
            service.snapshot("m")
    assert (tmp_path / "m.npz").read_bytes() == good
    assert not list(tmp_path.glob(".m.npz.*"))          # no half-written temporary file left
    before = service.stats("m", with_hash=True)
    assert service.close(snapshot=True) == []            # shutdown's snapshot fails too: logged, not raised
    monkeypatch.setattr(persistence, "_write", real_write)
    again = MemoryService(tmp_path, wal_fsync="always")
    after = again.stats("m", with_hash=True)
    assert after.state_hash == before.state_hash and after.info.total_writes == 60 * 4
    again.snapshot("m")                                   # space again: the log folds into a snapshot
    assert not (tmp_path / "m.wal.old").exists()
    again.close(snapshot=False)


def test_a_full_disk_is_a_clear_status_over_grpc(tmp_path, monkeypatch):
    import errno

    import grpc

    from raremem.server import persistence
    from tests.conftest import running_server

    def disk_full(f, arrays):
        raise OSError(errno.ENOSPC, "No space left on device")

    with running_server(tmp_path) as (address, _), MemoryClient(address) as c:
        c.create_memory("m", 8, 16)
        monkeypatch.setattr(persistence, "_write", disk_full)
        with pytest.raises(grpc.RpcError) as err:
            c.snapshot("m")
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "snapshot of m to m.npz failed: No space left on device" in err.value.details()
        assert c.health() == "SERVING"
