"""A short training run through a real server on port 0, and exact resume."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from models.omniglot.evaluate import DEFAULT_DATA, evaluate, pixel_encoder
from models.omniglot.data import Omniglot
from models.memory_layer import make_backend
from models.omniglot.train import TrainConfig, load_model, parse_args, train

pytestmark = pytest.mark.skipif(not (DEFAULT_DATA / "images_background.zip").is_file(),
                                reason="shared Omniglot zips not found")


def small(tmp_path, **kw) -> TrainConfig:
    base = dict(out=str(tmp_path / "run"), steps=40, batch=4, width=5, shots=4, memory_size=256,
                choose_k=32, eval_every=40, eval_episodes=40, checkpoint_every=1000, rep_dim=64,
                dropout=0.0, lr=1e-3)
    return TrainConfig(**{**base, **kw}).validate()


def rows(cfg):
    return [json.loads(line) for line in open(f"{cfg.out}/metrics.jsonl")]


def test_short_run_through_a_server_learns(server, tmp_path):
    cfg = small(tmp_path)
    summary = train(cfg, server[0])
    assert summary["steps"] == 40
    log = rows(cfg)
    first = sum(r["loss"] for r in log[:8]) / 8
    last = sum(r["loss"] for r in log[-8:]) / 8
    assert last < 0.8 * first, (first, last)               # the memory loss falls
    assert log[-1]["val_1shot"] > 0.5                       # chance is 0.2 (5-way)
    trained = load_model(f"{cfg.out}/checkpoint.pt")
    assert trained.cfg.rep_dim == 64
    # the memory the replica trained on lives on the server, named for its replica
    from client import MemoryClient
    with MemoryClient(server[0]) as c:
        assert "omniglot/replica-0" in [m["name"] for m in c.list_memories()]


def test_resume_is_exact(server, tmp_path):
    full = small(tmp_path, steps=6, eval_every=100, checkpoint_every=3, out=str(tmp_path / "full"))
    train(full, server[0])
    half = dataclasses.replace(full, steps=3, out=str(tmp_path / "half"))
    train(half, server[0])
    train(dataclasses.replace(half, steps=6, resume=True), server[0])
    a = torch.load(f"{full.out}/checkpoint.pt", weights_only=False)["model"]
    b = torch.load(f"{half.out}/checkpoint.pt", weights_only=False)["model"]
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=name)
    assert [r["loss"] for r in rows(full)] == [r["loss"] for r in rows(half)]


def test_config_rejects_unknown_flags_and_bad_values():
    with pytest.raises(SystemExit):
        parse_args(["--no-such-flag", "1"])
    with pytest.raises(ValueError):
        parse_args(["--memory-size", "10"])


def test_pixel_nn_is_a_sane_anchor():
    """The harness on raw pixels, in-process: well above chance, far below a trained model."""
    data = Omniglot.load(DEFAULT_DATA).test
    backend = make_backend("local", "px", 28 * 28, 30, choose_k=30, age_noise=0.0)
    r = evaluate(pixel_encoder, backend, data, 5, 6, episodes=60, seed=0)
    assert r["accuracy"][0] == 0.0                    # never seen: never right
    assert 0.3 < r["accuracy"][1] < 0.75              # paper: 41.7% 1-shot
    assert r["accuracy"][5] > r["accuracy"][1]        # more shots help
