"""A trainer rides out a SIGKILLed and restarted memory server: it waits, reconnects, finishes."""

from __future__ import annotations

import signal
import threading
import time

import pytest

from raremem.models.omniglot.evaluate import DEFAULT_DATA
from raremem.models.omniglot.train import TrainConfig, train
from tests.server.test_wal import free_port, start

pytestmark = pytest.mark.skipif(not (DEFAULT_DATA / "images_background.zip").is_file(),
                                reason="shared Omniglot zips not found")


def test_omniglot_trainer_finishes_across_a_server_restart(tmp_path, caplog):
    port = free_port()
    server = {"proc": start(port, tmp_path / "memories", "--wal-fsync", "always")}
    cfg = TrainConfig(server=f"127.0.0.1:{port}", out=str(tmp_path / "run"), steps=40, batch=4, width=5, shots=3,
                      memory_size=256, choose_k=16, eval_every=0, rep_dim=32, dropout=0.0, threads=1).validate()
    metrics = tmp_path / "run" / "metrics.jsonl"
    at_kill = {}

    def crash_and_restart():
        deadline = time.time() + 120
        while time.time() < deadline and not (metrics.is_file() and len(metrics.read_text().splitlines()) >= 2):
            time.sleep(0.05)                       # mid-run: two steps done
        at_kill["steps"] = len(metrics.read_text().splitlines())
        server["proc"].send_signal(signal.SIGKILL)
        server["proc"].wait()
        time.sleep(1.0)                            # the trainer's calls now fail and retry
        server["proc"] = start(port, tmp_path / "memories", "--wal-fsync", "always")

    killer = threading.Thread(target=crash_and_restart)
    try:
        killer.start()
        summary = train(cfg, cfg.server)           # the main thread: the trainer handles SIGTERM
        killer.join()
        assert summary["steps"] == 40 and not summary["interrupted"]
        assert at_kill["steps"] < 40               # it was still training when the server died
        assert any("retrying" in r.getMessage() for r in caplog.records)       # one clear line
        assert any("answers again" in r.getMessage() for r in caplog.records)
    finally:
        killer.join()
        server["proc"].send_signal(signal.SIGTERM)
        server["proc"].wait(timeout=60)
