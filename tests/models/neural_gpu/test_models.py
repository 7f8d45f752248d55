"""Table 2's models: shapes, finite gradients, memory use, and a short run through a server."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from raremem.models.memory_layer import make_backend
from raremem.models.neural_gpu.model import ModelConfig, build_model
from raremem.models.neural_gpu.task import TOUCHED_TEST, VOCAB, make_splits
from raremem.models.neural_gpu.train import TrainConfig, train

SMALL = {"ngpu": dict(channels=8, height=2, nconv=1), "seq2seq": dict(units=32)}


@pytest.mark.parametrize("arch", ["ngpu", "seq2seq"])
@pytest.mark.parametrize("memory", [False, True])
def test_shapes_and_finite_gradients(arch, memory):
    torch.manual_seed(0)
    cfg = ModelConfig(arch=arch, memory_layer=memory, **SMALL[arch])
    backend = make_backend("local", "t", cfg.key_dim, 2048, choose_k=16) if memory else None
    model = build_model(cfg, backend)
    train_set, _, _ = make_splits(0, n_train=64, n_test=8)
    idx = np.argsort(train_set.lengths)[:6]             # short examples, cut to the longest
    length = int(train_set.lengths[idx].max())
    inputs, targets = (torch.from_numpy(a[idx, :length]) for a in (train_set.inputs, train_set.targets))
    if memory:  # a first pass fills the memory (from an empty one the memory loss is constant)
        model(inputs, targets, update=True)
    out = model(inputs, targets, update=True, gold_weight=0.5)
    assert out.logits.shape == (6, length, VOCAB)
    loss = torch.nn.functional.cross_entropy(out.logits.reshape(-1, VOCAB), targets.reshape(-1)) + out.memory_loss
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    if memory:
        assert out.memory_values.shape == (6, length)
        assert model.memory.query_proj.weight.grad.abs().sum() > 0      # the memory loss reaches the query
        assert backend.store.filled > 0                                  # the update wrote
    greedy = model(inputs)                                               # inference: no labels, no update
    assert greedy.logits.shape == (6, length, VOCAB)


@pytest.mark.parametrize("arch", ["seq2seq", "ngpu"])
def test_short_run_through_a_server_lowers_the_loss(server, tmp_path, arch):
    cfg = TrainConfig(arch=arch, server=server[0], out=str(tmp_path / arch), steps=30 if arch == "seq2seq" else 12,
                      batch=16, channels=8, units=32, memory_size=4096, choose_k=16, eval_every=0,
                      checkpoint_every=1000, threads=2, lr=3e-3, gold_decay_steps=0, final_examples=200)
    summary = train(cfg, server[0])
    rows = [json.loads(line) for line in open(tmp_path / arch / "metrics.jsonl")]
    first, last = np.mean([r["loss"] for r in rows[:3]]), np.mean([r["loss"] for r in rows[-3:]])
    assert summary["steps"] == cfg.steps and last < first
    result = json.loads((tmp_path / arch / "eval.json").read_text())
    buckets = [b for b in result["by_times_seen"].values() if b["examples"]]
    assert result["examples"] == sum(b["examples"] for b in buckets) == 200
    assert result["fully_correct"] == pytest.approx(sum(b["fully_correct"] * b["examples"] for b in buckets) / 200)
    assert result["memory"]["filled"] > 0 and result["memory"]["lookups"] > 0     # the life-long memory filled
    assert "function_coverage" in result   # its arithmetic: test_scores.py


def test_quick_evaluations_never_read_a_test_example(tmp_path, monkeypatch):
    """Every evaluation during training (what stopping and the learning-rate decay read) gets
    validation examples; the test set is decoded once, at the end."""
    from raremem.models.neural_gpu import train as trainer

    read = []
    real = trainer.evaluate
    monkeypatch.setattr(trainer, "evaluate", lambda model, ex, **kw: read.append(ex) or real(model, ex, **kw))
    cfg = TrainConfig(arch="seq2seq", memory_layer=False, preset="short", out=str(tmp_path / "r"), steps=4,
                      eval_every=2, val_examples=50, final_examples=30, batch=8, units=16, threads=1,
                      checkpoint_every=1000)
    train(cfg, "local")
    _, test, _ = make_splits(cfg.task_seed, preset="short")
    test_rows = {r.tobytes() for r in test.inputs}
    quick, final = read[:-1], read[-1]
    assert len(quick) == 2 and all(len(ex) == 50 for ex in quick)
    assert not any(r.tobytes() in test_rows for ex in quick for r in ex.inputs)
    assert len(final) == 30 and all(r.tobytes() in test_rows for r in final.inputs)
    touched = {r.tobytes() for r in test.inputs[:TOUCHED_TEST]}   # what earlier rows' choices read
    assert not any(r.tobytes() in touched for r in final.inputs)
