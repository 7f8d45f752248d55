"""The synthetic task's metrics against hand-counted references: fully correct outputs, digit
runs, the split by times seen in training, and function coverage (the share of f the memory
holds), scored through the same ``predict`` a trained model goes through."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch

from raremem.models.neural_gpu.evaluate import coverage_examples, function_coverage, scores
from raremem.models.neural_gpu.task import DIGIT0, DIGITS, HIGH, LOW, VOCAB, Examples, random_function


def examples(numbers, length=12, start=3) -> Examples:
    n = len(numbers)
    inputs = np.full((n, 40), 1, np.int64)
    targets = inputs.copy()
    targets[:, start:start + DIGITS] = DIGIT0 + 1
    return Examples(inputs, targets, np.full(n, length), np.array(numbers, np.int64), np.full(n, start))


def test_scores_count_what_they_say():
    test = examples([10, 11, 12, 13])
    preds = test.targets.copy()
    preds[1, 0] = 2                 # 1: wrong outside the run (run still right)
    preds[2, 4] = DIGIT0           # 2: a digit of the run wrong
    preds[3, 20] = 2                # 3: wrong after its length: does not count
    train = examples([10, 11, 11, 13, 13, 13])    # seen 1, 2, 0 and 3 times
    values = np.full_like(preds, -1)
    values[:, 3:3 + DIGITS] = test.targets[:, 3:3 + DIGITS]
    values[0, 3] = DIGIT0 + 2       # the memory alone gets 1, 2, 3 right, not 0
    out = scores(preds, values, test, train)
    assert (out["examples"], out["fully_correct"], out["run_correct"]) == (4, 0.5, 0.75)
    assert out["memory_run_correct"] == 0.75
    by = out["by_times_seen"]
    assert [by[k]["fully_correct"] for k in ("0", "1", "2", ">=3")] == [0.0, 1.0, 0.0, 1.0]
    assert out["fully_correct_seen"] == 2 / 3
    assert "memory_run_correct" not in scores(preds, np.full_like(preds, -1), test)   # no memory, no column


class Oracle:
    """Answers every example with its target, and puts the target run in the memory's columns
    for numbers it 'holds', a wrong run for the others: what a memory holding part of f does."""

    def __init__(self, holds):
        self.holds = holds

    def eval(self):
        return self

    def __call__(self, inputs, targets, update, numbers, starts):
        values = targets.clone()
        for i, (n, s) in enumerate(zip(numbers.tolist(), starts.tolist())):
            if not self.holds(n):
                values[i, s] = DIGIT0 + (int(values[i, s]) - DIGIT0 + 1) % 4
        logits = torch.nn.functional.one_hot(targets, VOCAB).float()
        return SimpleNamespace(logits=logits, memory_values=values)


def test_function_coverage_is_the_share_of_numbers_the_memory_maps_right():
    f = random_function(0)
    assert function_coverage(Oracle(lambda n: True), f, limit=300) == 1.0
    assert function_coverage(Oracle(lambda n: False), f, limit=300) == 0.0
    assert function_coverage(Oracle(lambda n: n % 3 == 0), f, limit=300) == np.mean(np.arange(LOW, LOW + 300) % 3 == 0)
    ex = coverage_examples(f)
    assert len(ex) == HIGH - LOW + 1 and (ex.numbers == np.arange(LOW, HIGH + 1)).all()


def test_each_memory_row_is_compared_with_its_own_twin_on_the_same_test_examples():
    """reports.synthetic.gaps: the aligned-tower seq2seq rows against the twin that has the same
    tower (not the plain seq2seq), the Neural GPU rows against the plain Neural GPU, one bar for
    all; a pair scored on different test examples is not compared, and a pair whose choices read
    test examples is not held to the bar."""
    from reports.synthetic import gaps

    def row(key, seed, seen, held=True):
        return {"key": key, "seed": seed, "fully_correct_seen": seen, **({"test_examples": "held out"} if held else {})}

    tower = "seq2seq + memory, key tower held 1,500 steps, leave-one-out, uniformity 0.1"
    rows = [row(tower, 0, 0.80), row("seq2seq", 0, 0.00), row("seq2seq, aligned key tower", 0, 0.75),
            row(tower, 1, 0.70), row("seq2seq, aligned key tower", 1, 0.10, held=False),
            row("ngpu + memory", 0, 0.30), row("ngpu", 0, 0.05), row("ngpu + memory, fixed queries", 0, 0.6),
            row("ngpu + memory", 1, 0.50, held=False), row("ngpu", 1, 0.00, held=False)]
    got = {(g["row"], g["seed"]): g for g in gaps(rows)}
    assert set(got) == {(tower, 0), (tower, 1), ("ngpu + memory", 0), ("ngpu + memory", 1)}  # the control: no twin
    assert got[(tower, 0)]["twin"] == "seq2seq, aligned key tower"
    assert abs(got[(tower, 0)]["points"] - 5.0) < 1e-9 and got[(tower, 0)]["met"] is False
    assert got[(tower, 1)]["points"] is None and got[(tower, 1)]["met"] is None   # scored on other examples
    assert abs(got[("ngpu + memory", 0)]["points"] - 25.0) < 1e-9 and got[("ngpu + memory", 0)]["met"]
    # scored alike, but every choice read the first 1,000 test examples: measured, not held to the bar
    assert abs(got[("ngpu + memory", 1)]["points"] - 50.0) < 1e-9 and got[("ngpu + memory", 1)]["met"] is None


def test_a_run_measured_again_replaces_every_kept_row_of_it():
    from reports.synthetic import carried
    old = [{"run": "a", "steps": 7000}, {"run": "a", "steps": 1000, "v": "old"}, {"run": "b", "steps": 5}]
    new = [{"run": "a", "steps": 1000, "v": "new"}]
    step = lambda r: (r["run"], r["steps"])  # noqa: E731
    assert carried(old, new, step) == new + [old[0], old[2]]   # rows of other checkouts are kept
    assert carried(old, new, lambda r: r["run"]) == new + [old[2]]   # keyed by run: not a retrained run's old ones
