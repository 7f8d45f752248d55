"""A short training run through a real server on port 0, and exact resume."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from raremem.client import MemoryClient
from raremem.models.memory_layer import make_backend
from raremem.models.omniglot.data import Omniglot
from raremem.models.omniglot.episodes import sample_episodes
from raremem.models.omniglot.evaluate import DEFAULT_DATA, evaluate, pixel_encoder
from raremem.models.omniglot.train import TrainConfig, load_model, parse_args, train

pytestmark = pytest.mark.skipif(not (DEFAULT_DATA / "images_background.zip").is_file(),
                                reason="shared Omniglot zips not found")


def small(tmp_path, **kw) -> TrainConfig:
    base = dict(out=str(tmp_path / "run"), steps=40, batch=8, width=5, shots=4, memory_size=256,
                choose_k=32, eval_every=40, eval_episodes=40, checkpoint_every=1000, rep_dim=128,
                dropout=0.0, lr=3e-4)
    return TrainConfig(**{**base, **kw}).validate()


def rows(cfg):
    return [json.loads(line) for line in open(f"{cfg.out}/metrics.jsonl")]


def held_out_loss(checkpoint, seed=123) -> float:
    """Memory loss of a trained model on a fixed batch of training episodes, dropout off."""
    model = load_model(checkpoint)
    model.eval()
    data = Omniglot.load(DEFAULT_DATA).train
    ep = sample_episodes(data, 8, 5, 4, np.random.default_rng(seed))
    with torch.no_grad():
        model.memory.backend.reset()
        loss, _ = model.episode_loss(torch.from_numpy(ep.images), torch.from_numpy(ep.labels))
    return float(loss)


def test_short_run_through_a_server_learns(server, tmp_path):
    before = small(tmp_path, steps=0, out=str(tmp_path / "before"))
    train(before, server[0])
    cfg = small(tmp_path)
    summary = train(cfg, server[0])
    assert summary["steps"] == 40
    loss_before = held_out_loss(f"{before.out}/checkpoint.pt")
    loss_after = held_out_loss(f"{cfg.out}/checkpoint.pt")
    assert loss_after < 0.9 * loss_before, (loss_before, loss_after)  # the memory loss falls
    assert rows(cfg)[-1]["val_1shot"] > 0.5                              # chance is 0.2 (5-way)
    with MemoryClient(server[0]) as c:  # the replica trained on its own memory on the server
        stats = c.stats("omniglot/replica-0")
    assert stats["info"]["total_writes"] == 40 * 8 * 5 * 4  # every query of every step updated it


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
