"""Replicated training end to end: torchrun + DDP (gloo) and Hogwild, against a real server."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from raremem.client import MemoryClient
from raremem.models.distributed import bind_shared, share
from raremem.models.launch import trainer_command
from raremem.models.omniglot.evaluate import DEFAULT_DATA

pytestmark = pytest.mark.skipif(not (DEFAULT_DATA / "images_background.zip").is_file(),
                                reason="Omniglot zips not in ../shared/data/omniglot")

SMALL = ["--batch", "2", "--memory-size", "256", "--choose-k", "16", "--rep-dim", "32", "--eval-every", "1000",
         "--eval-episodes", "4", "--threads", "1"]


def run(mode: str, replicas: int, address: str, out, *args: str) -> list[dict]:
    cmd = trainer_command("omniglot", mode, replicas, address, [*SMALL, "--out", str(out), *args])
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return [json.loads((out / f"replica-{r}.json").read_text()) for r in range(replicas)]


def test_ddp_replicas_stay_equal_and_resume_exactly(server, tmp_path):
    address = server[0]
    full = run("ddp", 2, address, tmp_path / "full", "--steps", "4", "--checkpoint-every", "2")
    assert [s["mode"] for s in full] == ["ddp", "ddp"] and all(s["steps"] == 4 for s in full)
    assert full[0]["parameters_sha256"] == full[1]["parameters_sha256"]   # gradients were all-reduced
    run("ddp", 2, address, tmp_path / "half", "--steps", "2", "--checkpoint-every", "2")
    resumed = run("ddp", 2, address, tmp_path / "half", "--steps", "4", "--checkpoint-every", "2", "--resume")
    assert resumed[0]["parameters_sha256"] == full[0]["parameters_sha256"]
    with MemoryClient(address) as c:  # each replica had its own episode memory
        names = {m.name for m in c.list_memories()}
    assert {"omniglot/replica-0", "omniglot/replica-1"} <= names


def test_hogwild_replicas_share_parameters_and_one_lifelong_memory(server, tmp_path):
    address = server[0]
    out = tmp_path / "hog"
    summaries = run("hogwild", 2, address, out, "--steps", "3", "--shared-memory")
    assert [s["rank"] for s in summaries] == [0, 1] and all(s["steps"] == 3 for s in summaries)
    # Both replicas' final parameters are the one shared set (the last to finish saw both).
    ckpt = torch.load(out / "checkpoint.pt", weights_only=False)
    assert ckpt["mode"] == "hogwild" and ckpt["replicas"] == 2
    with MemoryClient(address) as c:
        s = c.stats("omniglot/shared")
        slots = c.read_slots("omniglot/shared", start=0, stop=s.info.filled)
    # 2 replicas x 3 episode batches x 2 episodes x 30 draws, never cleared
    assert s.lookups == 2 * 3 * 2 * 30
    # never cleared: more classes than one episode batch holds; labels kept apart per replica
    # and episode batch, so 2 x 3 batches of (2 episodes x 5 classes) use labels 0..59
    values = set(slots["values"].tolist())
    assert 10 < len(values) == s.distinct_values and max(values) < 60
    resumed = run("hogwild", 2, address, out, "--steps", "5", "--shared-memory", "--resume")
    assert all(r["steps"] == 5 for r in resumed)


def test_bind_shared_makes_workers_write_one_storage():
    a, b = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    shared = share(a)
    bind_shared(b, shared)
    with torch.no_grad():
        b.weight.add_(1.0)
    assert torch.equal(a.weight, b.weight)
    with pytest.raises(ValueError, match="does not fit"):
        bind_shared(torch.nn.Linear(4, 2), shared)


def test_launcher_starts_a_server_and_replicas_and_shows_memory(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "raremem.models.launch", "--replicas", "2", "--mode", "hogwild", "--every", "2",
         "--data-dir", str(tmp_path / "mem"), "--log", str(tmp_path / "log.txt"), "--",
         *SMALL, "--steps", "6", "--out", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "200"})
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "raremem-server on 127.0.0.1:" in out.stdout and "omniglot/replica-1" in out.stdout
    assert "trainer exited with 0" in out.stdout
    # SIGTERM made the server snapshot both replicas' memories into its data directory
    assert sorted(p.name for p in (tmp_path / "mem" / "omniglot").glob("replica-?.npz")) == ["replica-0.npz",
                                                                                             "replica-1.npz"]
