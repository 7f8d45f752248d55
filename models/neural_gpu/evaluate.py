"""Table 2's metric and the memory inspection for the synthetic task.

- ``evaluate``: greedy decoding of the test set; the share of fully correct output sequences
  (the metric), of correct digit runs, and of runs the memory alone answered right.
- ``function_coverage``: for every n in S, one input holding n (a fixed context); the share of
  n whose 7 output digits the memory returns correctly, queried with teacher forcing and no
  update: how much of f the trained memory holds.
- ``python -m raremem.models.neural_gpu.evaluate --hamming`` scores the Hamming nearest neighbour on
  the held-out test examples (``task.held_out``), as the trained rows are.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch

from raremem.models.devices import device_of
from raremem.models.neural_gpu.hamming import hamming_nn
from raremem.models.neural_gpu.task import (A, B, DIGIT0, DIGITS, HIGH, LOW, MAX_LENGTH, PAD, PRESETS, Examples,
                                            fully_correct, held_out, make_splits, to_base4)


def _batches(ex: Examples, size: int):
    """Index batches of similar length (sorted), each cut to its longest example."""
    order = np.argsort(ex.lengths, kind="stable")
    for i in range(0, len(order), size):
        idx = order[i:i + size]
        yield idx, int(ex.lengths[idx].max())


@torch.no_grad()
def predict(model, ex: Examples, batch: int = 256, teacher_forcing: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(predictions (N, 40), memory values (N, 40), -1 where none) for every example."""
    model.eval()
    device = device_of(model)
    preds = np.full((len(ex), MAX_LENGTH), PAD, dtype=np.int64)
    values = np.full((len(ex), MAX_LENGTH), -1, dtype=np.int64)
    for idx, length in _batches(ex, batch):
        inputs = torch.from_numpy(ex.inputs[idx, :length]).to(device)
        targets = torch.from_numpy(ex.targets[idx, :length]).to(device) if teacher_forcing else None
        out = model(inputs, targets, update=False, numbers=torch.from_numpy(ex.numbers[idx]).to(device),
                    starts=torch.from_numpy(ex.starts[idx]).to(device))
        preds[idx, :length] = out.logits.argmax(-1).cpu().numpy()
        if out.memory_values is not None:
            values[idx, :length] = out.memory_values.cpu().numpy()
    inside = np.arange(MAX_LENGTH) < ex.lengths[:, None]
    preds[~inside] = PAD
    return preds, values


def _runs(a: np.ndarray, ex: Examples) -> np.ndarray:
    """(N, 7): the columns of each example's digit run."""
    return np.take_along_axis(a, ex.starts[:, None] + np.arange(DIGITS), 1)


SEEN_BUCKETS = ("0", "1", "2", ">=3")   # how often a test example's number occurs in training


def scores(preds: np.ndarray, values: np.ndarray, test: Examples, train: Examples | None = None) -> dict:
    """Fully correct outputs, correct digit runs and (with memory) runs the memory alone got
    right; with ``train``, the same split by how often each test number was seen in training,
    and ``fully_correct_seen``: over test numbers seen at least once (the rare events)."""
    full = fully_correct(preds, test)
    run = (_runs(preds, test) == _runs(test.targets, test)).all(1)
    memory = (_runs(values, test) == _runs(test.targets, test)).all(1) if (values >= 0).any() else None

    def summary(mask):
        out = {"examples": int(mask.sum()), "fully_correct": float(full[mask].mean()) if mask.any() else None,
               "run_correct": float(run[mask].mean()) if mask.any() else None}
        if memory is not None:
            out["memory_run_correct"] = float(memory[mask].mean()) if mask.any() else None
        return out

    out = summary(np.ones(len(test), bool))
    if train is not None:
        seen = np.bincount(train.numbers, minlength=HIGH + 1)[test.numbers]
        masks = dict(zip(SEEN_BUCKETS, (seen == 0, seen == 1, seen == 2, seen >= 3)))
        out["by_times_seen"] = {name: summary(mask) for name, mask in masks.items()}
        out["fully_correct_seen"] = summary(seen >= 1)["fully_correct"]
    return out


def evaluate(model, test: Examples, batch: int = 256, train: Examples | None = None) -> dict:
    return scores(*predict(model, test, batch), test, train)


def coverage_examples(f: np.ndarray, length: int = 16, start: int = 4, seed: int = 0) -> Examples:
    """One example per n in S, all in the same A/B context."""
    numbers = np.arange(LOW, HIGH + 1)
    context = np.random.default_rng([seed, 2]).integers(A, B + 1, size=MAX_LENGTH)
    context[length:] = PAD
    inputs = np.repeat(context[None], len(numbers), 0)
    targets = inputs.copy()
    inputs[:, start:start + DIGITS] = DIGIT0 + to_base4(numbers)
    targets[:, start:start + DIGITS] = DIGIT0 + to_base4(f[numbers])
    n = len(numbers)
    return Examples(inputs, targets, np.full(n, length), numbers, np.full(n, start))


def function_coverage(model, f: np.ndarray, batch: int = 512, limit: int | None = None) -> float:
    """``limit``: only the first numbers of S (quick checks)."""
    ex = coverage_examples(f)
    if limit:
        ex = ex.take(np.arange(min(limit, len(ex))))
    _, values = predict(model, ex, batch, teacher_forcing=True)
    return float((_runs(values, ex) == _runs(ex.targets, ex)).all(1).mean())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Hamming nearest-neighbour baseline of Table 2")
    p.add_argument("--hamming", action="store_true", required=True)
    p.add_argument("--task-seed", type=int, default=0)
    p.add_argument("--preset", choices=sorted(PRESETS), default="full")
    p.add_argument("--out", default="runs/synthetic-hamming.json")
    a = p.parse_args(argv)
    train, test, _ = make_splits(a.task_seed, preset=a.preset)
    test = held_out(test)   # the examples the trained rows are scored on
    score = float(fully_correct(hamming_nn(train, test), test).mean())
    from raremem.models import runinfo  # noqa: PLC0415

    result = {"row": "hamming", "preset": a.preset, "test_examples": "held out", "fully_correct": score,
              "examples": len(test), "command": runinfo.command(), "machine": runinfo.machine()}
    with open(a.out, "w") as fh:
        json.dump(result, fh, indent=2)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
