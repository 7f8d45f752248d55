"""Snapshots: round trip, SIGKILL after a snapshot, SIGTERM snapshots before exit, checksums,
and the start-up errors that must be one clear line."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
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
        answer = client.lookup("a/b", q, k=8, return_neighbors=True).neighbors.ids
        fill(client, "a/b", 10, seed=1)  # diverge, then go back
        assert client.stats("a/b", with_hash=True).state_hash != before.state_hash
        info = client.restore("a/b", "copies/b-1.npz")
        assert info.filled == before.info.filled
        assert client.stats("a/b", with_hash=True).state_hash == before.state_hash
        np.testing.assert_array_equal(client.lookup("a/b", q, k=8, return_neighbors=True).neighbors.ids, answer)
        client.restore("copy", "copies/b-1.npz")  # a named copy of the same memory
        assert client.stats("copy", with_hash=True).state_hash == before.state_hash


def start_server(data_dir: Path, *extra: str):
    return spawn_server("--metrics-port", "-1", "--data-dir", str(data_dir), *extra)


def stop(proc, sig) -> str:
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=60)
    return out


def test_sigkill_without_a_log_restarts_with_the_snapshot_and_says_what_was_lost(tmp_path):
    proc, address, _ = start_server(tmp_path, "--snapshot-interval", "0", "--wal-fsync", "off")
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
    proc, address, log = start_server(tmp_path, "--snapshot-interval", "0", "--wal-fsync", "off")
    try:
        assert "40 writes since its snapshot were lost" in log
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


def test_restore_refuses_a_damaged_or_unchecked_snapshot(tmp_path):
    """A snapshot carries a checksum of its arrays: a flipped byte (the zip's CRC catches it), a
    file rewritten with one value changed (the checksum catches it) and a file without one are
    each refused with a clear error, and the memory they were to replace is untouched."""
    with running_server(tmp_path / "data") as (address, _), MemoryClient(address) as client:
        client.create_memory("m", 16, 64, choose_k=8)
        fill(client, "m", 10)
        client.snapshot("m", "good.npz")
        before = client.stats("m", with_hash=True).state_hash
        raw = bytearray((tmp_path / "data" / "good.npz").read_bytes())
        raw[len(raw) // 2] ^= 0xFF                                  # inside the keys' bytes
        (tmp_path / "data" / "bad.npz").write_bytes(bytes(raw))
        with np.load(tmp_path / "data" / "good.npz") as z:
            arrays = {k: z[k] for k in z.files}
        np.savez(tmp_path / "data" / "plain.npz", **{k: v for k, v in arrays.items() if k != "sha256"})
        arrays["ages"] = arrays["ages"] + 1                          # a valid file, one array altered
        np.savez(tmp_path / "data" / "altered.npz", **arrays)
        for path, words in (("bad.npz", "snapshot 'bad.npz'"), ("altered.npz", "fails its checksum"),
                            ("plain.npz", "carries no checksum")):
            with pytest.raises(grpc.RpcError) as exc:
                client.restore("m", path)
            assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT and words in exc.value.details()
            assert client.stats("m", with_hash=True).state_hash == before
        client.restore("m", "good.npz")
        assert client.stats("m", with_hash=True).state_hash == before


def test_a_busy_metrics_port_or_an_unusable_data_dir_is_one_clear_line(tmp_path):
    def start(*args):
        proc = subprocess.run([sys.executable, "-m", "raremem.server.main", "--port", "0", *args],
                              capture_output=True, text=True, timeout=60)
        return proc.returncode, [line for line in proc.stderr.splitlines() if "ERROR" in line]

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        code, errors = start("--metrics-port", str(busy.getsockname()[1]))
    assert code == 2 and len(errors) == 1 and "metrics port" in errors[0] and "in use" in errors[0]
    (tmp_path / "file").write_text("not a directory")
    code, errors = start("--metrics-port", "-1", "--data-dir", str(tmp_path / "file" / "data"))
    assert code == 2 and len(errors) == 1 and "data dir" in errors[0]
    code, errors = start("--metrics-port", "-1", "--device", "gpu")
    assert code == 2 and len(errors) == 1 and "--device" in errors[0] and "cuda:N" in errors[0]
    if not cuda_here():
        code, errors = start("--metrics-port", "-1", "--device", "cuda")
        assert code == 2 and len(errors) == 1 and "no such CUDA device" in errors[0]


def cuda_here() -> bool:
    try:
        import torch  # noqa: PLC0415
    except ImportError:
        return False
    return torch.cuda.is_available()


def test_the_servers_device_is_where_memories_without_one_go(tmp_path):
    """A memory created without a device on a server started with one takes the server's (here
    a machine without CUDA says so, naming it); ``cpu`` and IVF memories stay on the CPU."""
    from raremem.server.config import MemoryConfig
    from raremem.server.errors import InvalidArgument
    from raremem.server.service import MemoryService

    service = MemoryService(device="cuda:0")
    try:
        if cuda_here():
            assert service.create("a", MemoryConfig(key_dim=4, size=16)).config["device"] == "cuda:0"
        else:
            with pytest.raises(InvalidArgument, match="'cuda:0'"):
                service.create("a", MemoryConfig(key_dim=4, size=16))
        assert service.create("b", MemoryConfig(key_dim=4, size=16, device="cpu")).config["device"] == "cpu"
        assert service.create("c", MemoryConfig(key_dim=4, size=64, index="ivf")).config["device"] == ""
    finally:
        service.close(snapshot=False)
