"""The paired-rare-word protocol's pairs and its significance test."""

from __future__ import annotations

from collections import Counter

import math

import pytest

from raremem.models.translation import data
from raremem.models.translation.data import DEFAULT_DATA
from raremem.models.translation.evaluate import word_counts
from raremem.models.translation.oneshot import RarePair, hit, pooled, rare_pairs
from raremem.models.translation.significance import mcnemar

needs_data = pytest.mark.skipif(not (DEFAULT_DATA / "multi30k").is_dir(), reason="no ../shared/data/translation")


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


@needs_data
def test_the_held_out_pool_has_many_repeated_rare_words():
    pool = pooled()
    counts = word_counts(data.load("train").target)
    pairs = rare_pairs(pool.target, counts)
    assert len(pool) == 1014 + 1000 + 1000 + 461 + 1071
    assert len({p.word for p in pairs}) > 50 and all(p.context < p.evaluation for p in pairs)
    assert all(p.word in pool.target[p.context] and p.word in pool.target[p.evaluation] for p in pairs)


@needs_data
def test_held_out_words_and_their_episodes():
    from raremem.models.translation.data import load
    from raremem.models.translation.evaluate import WORD, word_counts
    from raremem.models.translation.holdout import held_out_words, lines_with
    from raremem.models.translation.kshot import episodes

    targets = load("train").target
    words = held_out_words(targets, 200, seed=0)
    counts = word_counts(targets)
    assert len(words) == 200 and all(8 <= counts[w] <= 30 and w.isalpha() for w in words)
    assert held_out_words(targets, 200, seed=0) == words != held_out_words(targets, 200, seed=1)
    where = lines_with(targets, words)
    assert all(len(v) >= 1 and all(w in WORD.findall(targets[i]) for i in v) for w, v in where.items())
    eps = episodes(targets, words, evaluations=2, max_shots=5)
    assert len(eps) > 100
    lines = [i for e in eps for i in e["evaluation"] + e["context"]]
    assert len(lines) == len(set(lines))                                  # a line serves one episode
    others = {e["word"] for e in eps}
    for e in eps:
        assert all(e["word"] in WORD.findall(targets[i]) for i in e["evaluation"] + e["context"])
        assert not any((set(WORD.findall(targets[i])) & others) - {e["word"]} for i in e["context"])


@needs_data
def test_training_with_held_out_words_never_sees_them(tmp_path):
    from raremem.models.translation import subwords
    from raremem.models.translation.data import load
    from raremem.models.translation.evaluate import WORD
    from raremem.models.translation.holdout import held_out_lines, held_out_words
    from raremem.models.translation.train import Corpus

    pairs = load("train")
    out = held_out_lines(pairs.target, 50, 3)
    words = set(held_out_words(pairs.target, 50, 3))
    assert out and all(words & set(WORD.findall(pairs.target[i])) for i in out)
    sw = subwords.train(pairs.source[:2000] + pairs.target[:2000], tmp_path / "sp.model", vocab_size=800)
    small = type(pairs)(pairs.source[:3000], pairs.target[:3000])
    corpus = Corpus(sw, small, 64, 8, frozenset(i for i in out if i < 3000))
    assert not any(words & set(WORD.findall(pairs.target[i])) for i in corpus.index)
    assert held_out_lines(pairs.target, 0) == frozenset()


@needs_data
def test_word_positions_spell_the_word(tmp_path):
    from raremem.models.translation.oneshot import word_positions
    from raremem.models.translation.subwords import train as train_subwords

    pairs = data.load("test_2016_flickr")
    sw = train_subwords(pairs.source + pairs.target, tmp_path / "sp.model", vocab_size=500)
    line = "Ein kleiner Junge spielt mit Plastikklötzen, Autos und Tieren."
    for word in ("Ein", "Plastikklötzen", "Tieren"):
        ids, where = word_positions(sw, line, word)
        assert where == list(range(where[0], where[-1] + 1))          # one run of pieces
        spelled = sw.decode([ids[where[0]:where[-1] + 1]])[0].strip()
        assert word in spelled and len(spelled) < len(word) + 4        # at most a piece's edge more
    assert word_positions(sw, line, "Junge,")[1] == [] and word_positions(sw, line, "Auto")[1] == []
