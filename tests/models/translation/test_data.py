"""Translation data and subwords on the real Multi30k and newstest2014 lines."""

from __future__ import annotations

import pytest

from raremem.models.translation.data import DEFAULT_DATA, load
from raremem.models.translation.subwords import EOS, Subwords, train

pytestmark = pytest.mark.skipif(not (DEFAULT_DATA / "multi30k").is_dir(), reason="no ../shared/data/translation")


def test_splits_are_parallel_and_the_sizes_of_the_release():
    assert len(load("train")) == 29_000 and len(load("val")) == 1_014
    test = load("test_2016_flickr")
    assert len(test) == 1_000 and test.source[0] and test.target[0]
    assert len(load("newstest2014")) == 3_003
    odd, even = test.lines("odd"), test.lines("even")
    assert len(odd) == len(even) == 500 and odd.source[0] == test.source[0] and even.source[0] == test.source[1]


@pytest.fixture(scope="module")
def subwords(tmp_path_factory):
    train_set = load("train")
    return train(train_set.source[:5000] + train_set.target[:5000], tmp_path_factory.mktemp("sp") / "sp.model",
                 vocab_size=2000)


def test_sentencepiece_round_trip_on_real_lines(subwords: Subwords):
    lines = load("test_2016_flickr").target[:200] + load("newstest2014").target[:50]   # unseen lines, umlauts
    ids = subwords.encode(lines)
    assert all(ids) and max(max(s) for s in ids) < len(subwords) == 2000
    assert subwords.decode(ids) == lines
    assert subwords.decode([ids[0] + [EOS, 5, 6]]) == lines[:1]      # stops at the end of sentence
