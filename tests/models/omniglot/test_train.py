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
from raremem.models.omniglot.evaluate import DEFAULT_DATA, evaluate, model_encoder, pixel_encoder
from raremem.models.omniglot.model import HEADS, OmniglotModel, OmniglotModelConfig, load_model
from raremem.models.omniglot.train import TrainConfig, train, train_episodes
from raremem.models.flags import parse_config

pytestmark = pytest.mark.skipif(not (DEFAULT_DATA / "images_background.zip").is_file(),
                                reason="shared Omniglot zips not found")


def small(tmp_path, **kw) -> TrainConfig:
    base = dict(out=str(tmp_path / "run"), steps=20, batch=8, width=5, shots=4, memory_size=256,
                choose_k=32, eval_every=20, eval_episodes=40, checkpoint_every=1000, rep_dim=128,
                dropout=0.0, lr=3e-4)
    return TrainConfig(**{**base, **kw}).validate()


def rows(cfg):
    return [json.loads(line) for line in open(f"{cfg.out}/metrics.jsonl")]


def held_out_1shot(checkpoint) -> float:
    """Validation 1-shot accuracy of a checkpoint on 100 fixed held-out episodes."""
    model = load_model(checkpoint)
    backend = make_backend("local", "v", model.cfg.rep_dim, 20, choose_k=20, age_noise=0.0)
    data = Omniglot.load(DEFAULT_DATA).val
    return evaluate(model_encoder(model), backend, data, 5, 4, 100, seed=5)["accuracy"][1]


class NoTestClasses(Omniglot):
    """A split whose test classes cannot be read: training and its validation must not."""
    reads: list[str] = []

    @property
    def test(self):
        raise AssertionError("training read the test classes")

    @property
    def val(self):
        NoTestClasses.reads.append("val")
        return super().val


def test_training_never_reads_a_test_class(monkeypatch, tmp_path):
    monkeypatch.setattr("raremem.models.omniglot.train.Omniglot", NoTestClasses)
    NoTestClasses.reads.clear()
    for split in ("vinyals", "lake"):
        train(small(tmp_path, steps=2, eval_every=1, eval_episodes=2, split=split, out=str(tmp_path / split)),
              "local")
    assert NoTestClasses.reads, "validation read no validation classes"


def test_short_run_through_a_server_learns(server, tmp_path):
    before = small(tmp_path, steps=0, out=str(tmp_path / "before"))
    train(before, server[0])
    cfg = small(tmp_path, steps=20)
    summary = train(cfg, server[0])
    assert summary["steps"] == 20
    one_shot_before = held_out_1shot(f"{before.out}/checkpoint.pt")
    one_shot_after = held_out_1shot(f"{cfg.out}/checkpoint.pt")
    assert one_shot_after > one_shot_before + 0.07, (one_shot_before, one_shot_after)  # measured 0.51 -> 0.64
    assert rows(cfg)[-1]["val_1shot"] > 0.5                              # chance is 0.2 (5-way)
    with MemoryClient(server[0]) as c:  # the replica trained on its own memory on the server
        stats = c.stats("omniglot/replica-0")
    assert stats.info.total_writes == 20 * 8 * 5 * 4  # every query of every step updated it
    assert rows(cfg)[-1]["updates"] == 20 * 5 * 4          # one update per episode time step


def test_resume_is_exact(server, tmp_path):
    full = small(tmp_path, steps=6, eval_every=100, checkpoint_every=3, keep_every=3, out=str(tmp_path / "full"))
    train(full, server[0])
    half = dataclasses.replace(full, steps=3, out=str(tmp_path / "half"))
    train(half, server[0])
    train(dataclasses.replace(half, steps=6, resume=True), server[0])
    a = torch.load(f"{full.out}/checkpoint.pt", weights_only=False)["model"]
    b = torch.load(f"{half.out}/checkpoint.pt", weights_only=False)["model"]
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=name)
    assert [r["loss"] for r in rows(full)] == [r["loss"] for r in rows(half)]
    kept = torch.load(f"{full.out}/checkpoint-3.pt", weights_only=False)     # a copy kept at step 3
    assert kept["step"] == 3 and (tmp_path / "full" / "checkpoint-6.pt").is_file()
    legs = json.loads((tmp_path / "half" / "run.json").read_text())["legs"]
    assert len(legs) == 2                                                    # the resumed run has two legs


def test_the_learning_rate_drops_at_its_step_and_a_resumed_leg_keeps_it(tmp_path):
    """From --lr-drop-step on the optimiser steps at lr * lr_drop; a leg resumed past the drop
    trains at the dropped rate (the optimiser's saved state holds the rate of its last step)."""
    whole = small(tmp_path, steps=4, eval_every=0, lr_drop_step=2, lr_drop=0.1, out=str(tmp_path / "whole"))
    train(whole, "local")
    assert [r["lr"] for r in rows(whole)] == pytest.approx([3e-4, 3e-4, 3e-5, 3e-5])
    legs = dataclasses.replace(whole, steps=3, checkpoint_every=1, out=str(tmp_path / "legs"))
    train(legs, "local")
    train(dataclasses.replace(legs, steps=4, resume=True), "local")
    assert rows(legs)[-1]["loss"] == rows(whole)[-1]["loss"]
    a = torch.load(f"{whole.out}/checkpoint.pt", weights_only=False)["model"]
    b = torch.load(f"{legs.out}/checkpoint.pt", weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    plain = small(tmp_path, steps=4, eval_every=0, out=str(tmp_path / "plain"))
    train(plain, "local")
    assert rows(plain)[-1]["loss"] != rows(whole)[-1]["loss"]   # the drop changed the training
    with pytest.raises(ValueError, match="--lr-drop"):
        small(tmp_path, lr_drop=0.0)


def test_config_rejects_unknown_flags_and_bad_values(capsys):
    for argv, said in ((["--no-such-flag", "1"], "unrecognized arguments"),
                       (["--memory-size", "10"], "memory_size must hold a whole episode batch")):
        with pytest.raises(SystemExit) as exit_:
            parse_config(TrainConfig, argv)
        assert exit_.value.code == 2 and said in capsys.readouterr().err.strip().splitlines()[-1]


def test_pixel_nn_is_a_sane_anchor():
    """The harness on raw pixels, in-process: well above chance, far below a trained model."""
    data = Omniglot.load(DEFAULT_DATA).val
    backend = make_backend("local", "px", 28 * 28, 30, choose_k=30, age_noise=0.0)
    r = evaluate(pixel_encoder, backend, data, 5, 6, episodes=60, seed=0)
    assert r["accuracy"][0] == 0.0                    # never seen: never right
    assert 0.3 < r["accuracy"][1] < 0.75              # paper: 41.7% 1-shot
    assert r["accuracy"][5] > r["accuracy"][1]        # more shots help


class Recorder:
    """A memory backend and an optimiser that log, in one list, the order they are called in."""

    def __init__(self, backend, log):
        self.backend, self.log = backend, log
        self.alpha, self.inverse_temperature = backend.alpha, backend.inverse_temperature

    def lookup(self, queries, labels=None, **kwargs):
        self.log.append(("lookup", tuple(labels)))
        return self.backend.lookup(queries, labels, **kwargs)

    def reset(self):
        self.log.append(("reset",))
        self.backend.reset()


def test_one_update_per_time_step_after_that_steps_memory_update():
    """T = width * shots updates per episode batch; each step's B queries reach the memory (and
    are written) before the update that learns from them, and the next step's after it."""
    log = []
    model = OmniglotModel(OmniglotModelConfig(rep_dim=32, dropout=0.0, channels_last=False),
                          Recorder(make_backend("local", "m", 32, 64, choose_k=8), log))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    opt.register_step_post_hook(lambda *_: log.append(("update",)))
    data = np.random.default_rng(0).random((12, 20, 28, 28), dtype=np.float32)
    ep = sample_episodes(data, 3, 4, 2, np.random.default_rng(1))        # T = 8, B = 3
    _, correct = train_episodes(model, opt, ep, clip=5.0)
    assert correct.shape == (8, 3)
    assert log[0] == ("reset",) and len(log) == 1 + 2 * 8
    for t in range(8):
        assert log[1 + 2 * t] == ("lookup", tuple(ep.labels[t])) and log[2 + 2 * t] == ("update",)
    assert model.memory.backend.backend.store.counters.lookups == 8 * 3


@pytest.mark.parametrize("head", HEADS)
def test_heads_have_the_stated_shapes_and_dropout_placement(head):
    cfg = OmniglotModelConfig(rep_dim=64, head=head, dropout=0.7, channels_last=False)
    model = OmniglotModel(cfg, backend=None)
    fc = list(model.embedder.fc)
    kinds = [type(m).__name__ for m in fc]
    if head == "paper":   # FC(256)-ReLU-dropout-FC(256)
        assert kinds == ["Flatten", "Linear", "ReLU", "Dropout", "Linear"]
        assert (fc[1].in_features, fc[1].out_features, fc[4].out_features) == (128 * 7 * 7, 64, 64)
    else:                 # one FC, then dropout straight into the query projection
        assert kinds == ["Flatten", "Linear", "Dropout"]
        assert (fc[1].in_features, fc[1].out_features) == (128 * 7 * 7, 64)
    dropout = next(m for m in fc if isinstance(m, torch.nn.Dropout))
    assert dropout.p == 0.7  # PyTorch's drop probability: the authors' keep_prob 0.3
    x = torch.rand(5, 28, 28)
    model.train()
    h = model.embedder(x)
    assert h.shape == (5, 64)
    if head == "authors":  # about 70% of the embedding is zeroed in training, none in eval
        assert 0.55 < float((h == 0).float().mean()) < 0.85
    model.eval()
    assert float((model.embedder(x) == 0).float().mean()) < 0.2
    assert model.queries(x).shape == (5, 64)
