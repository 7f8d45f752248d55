"""Which training lines the k-shot protocol keeps out of training (kshot.py): a seeded set of
German words seen 8-30 times in the training targets, and every line that holds one of them.
The trainer (``--hold-out N``) and the evaluations that rebuild its data read it from here.
"""

from __future__ import annotations

import numpy as np

from raremem.models.translation.evaluate import WORD, word_counts


def held_out_words(targets: list[str], n: int, seed: int = 0, low: int = 8, high: int = 30) -> list[str]:
    """``n`` words, each seen ``low``..``high`` times in ``targets``: alphabetic, 4+ letters,
    lower-case-initial or not (German nouns are capitalised); seeded, sorted."""
    counts = word_counts(targets)
    pool = sorted(w for w, c in counts.items() if low <= c <= high and w.isalpha() and len(w) >= 4)
    if n > len(pool):
        raise ValueError(f"only {len(pool)} words are seen {low}-{high} times; asked for {n}")
    return sorted(np.random.default_rng([seed, 0x5407]).choice(pool, size=n, replace=False).tolist())


def lines_with(targets: list[str], words: list[str]) -> dict[str, list[int]]:
    """Each word's lines (indices into ``targets``) that hold it."""
    wanted = set(words)
    out: dict[str, list[int]] = {w: [] for w in words}
    for i, line in enumerate(targets):
        for w in wanted.intersection(WORD.findall(line)):
            out[w].append(i)
    return out


def held_out_lines(targets: list[str], n: int, seed: int = 0) -> frozenset[int]:
    """The lines of ``targets`` holding one of the ``n`` held-out words (none when ``n`` is 0)."""
    if not n:
        return frozenset()
    words = held_out_words(targets, n, seed)
    return frozenset(i for where in lines_with(targets, words).values() for i in where)
