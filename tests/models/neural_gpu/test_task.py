"""The synthetic task generator against its written specification."""

from __future__ import annotations

import json

import numpy as np
from hypothesis import given, strategies as st

from raremem.models.neural_gpu import evaluate
from raremem.models.neural_gpu.hamming import hamming_nn
from raremem.models.neural_gpu.task import (A, B, DIGIT0, DIGITS, HIGH, LOW, MAX_LENGTH, PAD, PRESETS, TOUCHED_TEST,
                                            decode, from_base4, fully_correct, generate, make_splits,
                                            random_function, to_base4, validation_set)


@given(st.lists(st.integers(0, 4 ** DIGITS - 1), min_size=1, max_size=50))
def test_base4_round_trip(numbers):
    n = np.array(numbers)
    digits = to_base4(n)
    assert digits.shape == (len(n), DIGITS) and digits.min() >= 0 and digits.max() <= 3
    assert np.array_equal(from_base4(digits), n)
    assert all(int("".join(map(str, d)), 4) == v for d, v in zip(digits, numbers))   # independent check


def test_function_is_fixed_by_seed_and_maps_s_into_s():
    f0, f0_again, f1 = random_function(0), random_function(0), random_function(1)
    assert np.array_equal(f0, f0_again) and not np.array_equal(f0, f1)
    assert f0[LOW:].min() >= LOW and f0[LOW:].max() <= HIGH and (f0[:LOW] == -1).all()
    assert 4 ** DIGITS > HIGH   # every n in S fits in 7 base-4 digits


def test_examples_follow_the_specification():
    f = random_function(3)
    ex = generate(2000, f, np.random.default_rng(0))
    assert ex.lengths.min() >= DIGITS and ex.lengths.max() <= MAX_LENGTH
    assert ((ex.numbers >= LOW) & (ex.numbers <= HIGH)).all()
    for i in range(len(ex)):
        src, tgt, length, s = decode(ex.inputs[i]), decode(ex.targets[i]), ex.lengths[i], ex.starts[i]
        assert len(src) == len(tgt) == length and (ex.inputs[i, length:] == PAD).all()
        run = src[s:s + DIGITS]
        assert int(run, 4) == ex.numbers[i]                                  # the run reads as n
        assert set(src[:s] + src[s + DIGITS:]) <= {"A", "B"}                 # one run, the rest A/B
        assert tgt[:s] == src[:s] and tgt[s + DIGITS:] == src[s + DIGITS:]   # A and B copied
        assert int(tgt[s:s + DIGITS], 4) == f[ex.numbers[i]]                 # f(n) in place of the run
    assert set(np.unique(ex.inputs)) <= {PAD, A, B, *range(DIGIT0, DIGIT0 + 4)}


def test_splits_sizes_determinism_and_disjointness():
    train, test, f = make_splits(seed=5)
    again, _, _ = make_splits(seed=5)
    assert len(train) == 40_000 and len(test) == 10_000
    assert np.array_equal(train.inputs, again.inputs)
    assert not {r.tobytes() for r in train.inputs} & {r.tobytes() for r in test.inputs}
    # the outputs are consistent with f everywhere
    assert np.array_equal(from_base4(np.take_along_axis(test.targets, test.starts[:, None] + np.arange(7), 1) - DIGIT0),
                          f[test.numbers])


def test_the_validation_set_is_drawn_like_the_test_set_and_shares_no_input():
    train, test, f = make_splits(seed=5, preset="short")
    val = validation_set(train, test, f, seed=5, n=3_000, preset="short")
    assert len(val) == 3_000
    rows = [r.tobytes() for r in val.inputs]
    assert len(set(rows)) == 3_000                                          # no input twice
    assert not set(rows) & {r.tobytes() for part in (train, test) for r in part.inputs}
    assert val.lengths.min() >= DIGITS and val.lengths.max() <= PRESETS["short"]
    assert np.array_equal(from_base4(np.take_along_axis(val.targets, val.starts[:, None] + np.arange(7), 1) - DIGIT0),
                          f[val.numbers])
    again = validation_set(train, test, f, seed=5, n=3_000, preset="short")
    assert np.array_equal(val.inputs, again.inputs)
    assert np.array_equal(make_splits(seed=5, preset="short")[1].inputs, test.inputs)   # the test set unchanged


def test_fully_correct_ignores_padding_and_hamming_nn_finds_exact_copies():
    train, test, _ = make_splits(seed=1, n_train=500, n_test=50)
    preds = test.targets.copy()
    preds[np.arange(MAX_LENGTH) >= test.lengths[:, None]] = A          # junk past the end is ignored
    assert fully_correct(preds, test).all()
    preds[0, 0] = B if test.targets[0, 0] != B else A
    assert not fully_correct(preds, test)[0]
    assert fully_correct(hamming_nn(train, train.take(np.arange(20))), train.take(np.arange(20))).all()


def test_the_hamming_row_is_scored_on_the_test_examples_the_trained_rows_are(tmp_path, monkeypatch):
    # the sets of the preset, smaller (a 40K x 10K search is not a unit test)
    monkeypatch.setattr(evaluate, "make_splits", lambda seed, preset: make_splits(
        seed, n_train=500, n_test=TOUCHED_TEST + 50, preset=preset))
    out = tmp_path / "hamming.json"
    evaluate.main(["--hamming", "--preset", "short", "--out", str(out)])
    row = json.loads(out.read_text())
    assert row["test_examples"] == "held out" and row["examples"] == 50
