"""The paired-rare-word protocol's pairs and its significance test."""

from __future__ import annotations

from collections import Counter

import math

import pytest

from raremem.models.translation import data
from raremem.models.translation.data import DEFAULT_DATA
from raremem.models.translation.evaluate import word_counts
from raremem.models.translation.oneshot import RarePair, hit, mcnemar, pooled, rare_pairs


def test_pairs_follow_the_rules():
    targets = ["ein Zebra läuft", "ein Hund", "das Zebra schläft", "Zebra und Zebra 1999", "1999 Hund"]
    counts = Counter({"ein": 50, "Hund": 40, "Zebra": 2, "läuft": 9, "das": 80, "schläft": 1, "und": 99})
    pairs = rare_pairs(targets, counts, at_most=2)
    # Zebra (2 in training) in lines 0, 2, 3; 'schläft' once only; numbers are not words to learn
    assert pairs == [RarePair("Zebra", 2, 0, 2), RarePair("Zebra", 2, 0, 3)]
    assert rare_pairs(targets, counts, at_most=1) == []
    assert len(rare_pairs(targets, counts, max_per_word=1)) == 1
    assert hit("Zebra", "das Zebra.") and not hit("Zebra", "Zebras")


def test_mcnemar_exact():
    r = mcnemar([False] * 10, [True] * 8 + [False] * 2)      # 8 gained, none lost: p = 1/256
    assert (r["gained"], r["lost"], r["hits_with"]) == (8, 0, 8) and r["p_one_sided"] == pytest.approx(1 / 256)
    even = mcnemar([True, False] * 5, [False, True] * 5)       # 5 gained, 5 lost
    assert even["p_one_sided"] == pytest.approx(sum(math.comb(10, i) for i in range(5, 11)) / 1024)
    assert mcnemar([True], [True])["p_one_sided"] == 1.0       # no discordant pair
    with pytest.raises(ValueError):
        mcnemar([True], [])


@pytest.mark.skipif(not (DEFAULT_DATA / "multi30k").is_dir(), reason="no ../shared/data/translation")
def test_the_held_out_pool_has_many_repeated_rare_words():
    pool = pooled()
    counts = word_counts(data.load("train").target)
    pairs = rare_pairs(pool.target, counts)
    assert len(pool) == 1014 + 1000 + 1000 + 461 + 1071
    assert len({p.word for p in pairs}) > 50 and all(p.context < p.evaluation for p in pairs)
    assert all(p.word in pool.target[p.context] and p.word in pool.target[p.evaluation] for p in pairs)
