"""Paired bootstrap intervals for BLEU on a toy corpus, against what they must say."""

from __future__ import annotations

import numpy as np
import pytest
from sacrebleu.metrics import BLEU

from raremem.models.translation.significance import paired_bootstrap

WORDS = "der die das ein eine hund katze mann frau kind spielt läuft sitzt auf dem im park garten".split()


def corpus(n=120, seed=0):
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, rng.integers(5, 10))) for _ in range(n)]


def damaged(lines, share, seed):
    """Each line with ``share`` of its words replaced by a word of no reference."""
    rng = np.random.default_rng(seed)
    return [" ".join("xx" if rng.random() < share else w for w in line.split()) for line in lines]


def test_intervals_contain_the_score_and_separate_a_clearly_better_system():
    refs = corpus()
    systems = {"base": damaged(refs, 0.5, 1), "better": damaged(refs, 0.2, 2), "same": damaged(refs, 0.5, 1)}
    r = paired_bootstrap(refs, systems, "base", samples=400)
    for name, row in r["systems"].items():
        lo, hi = row["ci95"]
        assert lo <= row["bleu"] <= hi and hi - lo > 0.5                       # a real spread
        assert row["bleu"] == pytest.approx(BLEU().corpus_score(systems[name], [refs]).score)
    better, same = r["systems"]["better"], r["systems"]["same"]
    assert better["diff"] > 0 and better["diff_ci95"][0] > 0 and better["p_not_better"] < 0.01
    assert same["diff"] == 0 and same["diff_ci95"] == [0.0, 0.0] and same["p_not_better"] == 1.0
    assert "nrefs:1" in r["signature"]


def test_a_perfect_system_scores_100_on_every_resample():
    refs = corpus(40, seed=3)
    r = paired_bootstrap(refs, {"ref": list(refs), "half": damaged(refs, 0.5, 4)}, "half", samples=100)
    assert r["systems"]["ref"]["ci95"] == pytest.approx([100.0, 100.0])


def test_bad_input_is_refused():
    refs = corpus(10)
    with pytest.raises(ValueError, match="baseline"):
        paired_bootstrap(refs, {"a": refs}, "b")
    with pytest.raises(ValueError, match="one hypothesis per reference"):
        paired_bootstrap(refs, {"a": refs[:-1]}, "a")
