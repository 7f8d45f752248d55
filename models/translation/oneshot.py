"""One-shot protocols for translation with power, beside the paper's even/odd split (which on
Multi30k captions of unrelated images almost never repeats a rare word between the halves).

Paired rare words: every German word seen at most ``at_most`` times in training that occurs in
at least two lines of the held-out pool (val and every Multi30k test set) gives pairs
(context line, evaluation line): the first line it occurs in is passed through memory updates,
the later ones are translated, and whether the word appears in the translation is scored with
and without that context. The with/without hits on the same evaluation lines are paired, so
McNemar's exact test says whether the context raised the hit rate.
"""

from __future__ import annotations

import torch  # noqa: I001 - torch before faiss (design.md §5)

import argparse
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from raremem.models import runinfo
from raremem.models.translation import data
from raremem.models.translation.evaluate import WORD, context_pass, pad_batch, translate
from raremem.models.translation.knn import mixed_memory, tuned_with_context
from raremem.models.translation.protocol import chosen_weights, trained_memory, training_counts
from raremem.models.translation.significance import mcnemar
from raremem.models.translation.subwords import EOS

POOL = ("val", "test_2016_flickr", "test_2017_flickr", "test_2017_mscoco", "test_2018_flickr")


@dataclass(frozen=True)
class RarePair:
    word: str          # the rare German word
    train_count: int   # how often it occurs in the training targets (0 .. at_most)
    context: int       # index into the pool of the line passed through memory first
    evaluation: int    # index into the pool of a later line that holds the word too


def pooled(splits=POOL, folder=data.DEFAULT_DATA) -> data.Parallel:
    """The held-out lines, split after split, in file order."""
    parts = [data.load(s, folder) for s in splits]
    return data.Parallel([s for p in parts for s in p.source], [t for p in parts for t in p.target])


def rare_pairs(targets: list[str], counts: Counter, at_most: int = 2, max_per_word: int = 3) -> list[RarePair]:
    """Pairs for every word seen <= ``at_most`` times in training (``counts``) that occurs in
    two or more of ``targets``: its first line as context, each later one (up to
    ``max_per_word``) as an evaluation line. In word order, then line order."""
    lines: dict[str, list[int]] = {}
    for i, line in enumerate(targets):
        for w in dict.fromkeys(WORD.findall(line)):       # each word once per line
            if counts[w] <= at_most and not w.isdigit():
                lines.setdefault(w, []).append(i)
    return [RarePair(w, counts[w], where[0], later) for w, where in sorted(lines.items()) if len(where) > 1
            for later in where[1:1 + max_per_word]]


def hit(word: str, hypothesis: str) -> bool:
    return word in WORD.findall(hypothesis)


def groups(pairs: list[RarePair], targets: list[str], size: int = 64) -> list[list[RarePair]]:
    """Pairs in groups that can share one memory: within a group no context line holds another
    pair's word (it would be that pair's context too) and no line is both a context and an
    evaluation. Greedy, in order."""
    out: list[list[RarePair]] = []
    for p in pairs:
        ctx_words = set(WORD.findall(targets[p.context]))
        for g in out:
            if len(g) < size and all(q.word == p.word or (q.word not in ctx_words
                                                         and p.word not in WORD.findall(targets[q.context])
                                                         and p.context != q.evaluation and q.context != p.evaluation)
                                     for q in g):
                g.append(p)
                break
        else:
            out.append([p])
    return out


def paired_hits(model, subwords, pool: data.Parallel, pairs: list[RarePair], fresh, width: int = 1,
                passes: int = 3, learn=None) -> dict:
    """Each pair's evaluation line translated from the trained memory (``fresh()`` restores a
    copy) without and with its context line passed through memory updates; McNemar on the
    paired hits. Context lines of a group go in together (``groups``). ``learn(sources,
    targets)``: how the context gets in (default the memory model's ``passes`` context passes;
    kNN-MT's ``ContextStore.learn`` writes it to a datastore)."""

    learn = learn or (lambda s, t: context_pass(model, subwords, s, t, passes))
    fresh()
    ev = sorted({p.evaluation for p in pairs})
    plain = dict(zip(ev, translate(model, subwords, [pool.source[i] for i in ev], width)))
    without, with_context = [], []
    for g in groups(pairs, pool.target):
        fresh()
        ctx = sorted({p.context for p in g})
        learn([pool.source[i] for i in ctx], [pool.target[i] for i in ctx])
        lines = sorted({p.evaluation for p in g})
        after = dict(zip(lines, translate(model, subwords, [pool.source[i] for i in lines], width)))
        for p in g:
            without.append(hit(p.word, plain[p.evaluation]))
            with_context.append(hit(p.word, after[p.evaluation]))
    return {**mcnemar(without, with_context), "groups": len(groups(pairs, pool.target))}


def word_positions(subwords, line: str, word: str) -> tuple[list[int], list[int]]:
    """(token ids of ``line``, the positions of the pieces that spell the first whole-word
    occurrence of ``word`` in it); no positions if it has none."""
    ids = subwords.encode([line])[0]
    m = next((m for m in WORD.finditer(line) if m.group() == word), None)
    if m is None:
        return ids, []
    ends = [len(subwords.decode([ids[:j + 1]])[0]) for j in range(len(ids))]   # decoding is exact (identity)
    starts = [0] + ends[:-1]
    return ids, [j for j in range(len(ids)) if starts[j] < m.end() and ends[j] > m.start()]


def lookup_ranks(model, subwords, pool: data.Parallel, pairs: list[RarePair], fresh, k: int = 256,
                 passes: int = 3) -> dict:
    """Where a context line's word is lost, lookup or read-out: for each pair the evaluation
    line is teacher-forced (its reference as the decoder's input) and each piece of the word is
    looked up in memory; the word's rank is the worst of its pieces' (the place among the k
    nearest slots of the first one holding that piece, None if none does), without and with the
    context line passed through memory ``passes`` times (as ``paired_hits`` does). Rank 0: the
    memory's top value, what the read-out gets, is the right piece at every position of the word."""


    backend = model.memory.backend

    def ranks(group: list[RarePair]) -> list[int | None]:
        out = []
        for p in group:
            ids, where = word_positions(subwords, pool.target[p.evaluation], p.word)
            if not where:   # the word only inside a longer token of the line
                out.append(None)
                continue
            src = pad_batch([subwords.encode([pool.source[p.evaluation]])[0] + [EOS]])
            with torch.no_grad():
                att = model.states(src, torch.tensor([ids + [EOS]]))[0, where]          # (pieces, U)
                q = model.memory.query(att).numpy()
            nb = backend.lookup(np.ascontiguousarray(q), k=k, return_neighbors=True).neighbors
            found = [np.flatnonzero(nb.values[i] == ids[j]) for i, j in enumerate(where)]
            out.append(max(int(f[0]) for f in found) if all(len(f) for f in found) else None)
        return out

    model.eval()
    without, with_context = [], []
    for g in groups(pairs, pool.target):
        fresh()
        without += ranks(g)
        ctx = sorted({p.context for p in g})
        context_pass(model, subwords, [pool.source[i] for i in ctx], [pool.target[i] for i in ctx], passes)
        with_context += ranks(g)

    def share(rs, below):
        return round(sum(1 for r in rs if r is not None and r < below) / len(rs), 4)

    return {"k": k, "pairs": len(pairs), **{f"{name}_top{n}": share(rs, n) for name, rs in
                                            (("without", without), ("with", with_context)) for n in (1, 8, k)},
            "ranks_without": without, "ranks_with": with_context}


def main(argv=None) -> int:
    """The paired-rare-word protocol on a trained memory run (oneshot.json beside it), or with
    ``--knn``: kNN-MT over the model and the settings tuned in a knn-<split>.json, the context
    lines added to the training datastore (oneshot-knn.json beside the model's run)."""



    p = argparse.ArgumentParser(description="paired rare words: hit rates with and without context, McNemar")
    p.add_argument("--run", type=Path, default=Path("runs/translation/memory"))
    p.add_argument("--width", type=int, default=1)
    p.add_argument("--limit", type=int, default=0, help="first pairs only (0 = all)")
    p.add_argument("--knn", type=Path, default=None,
                   help="a knn-<split>.json: score kNN-MT over its run's model with its tuned k, temperature, lambda")
    p.add_argument("--mix", type=Path, default=None,
                   help="a knn-<split>.json of `knn --memory-run`: decode --run read like kNN-MT from its own memory")
    p.add_argument("--ranks", action="store_true",
                   help="also the memory's rank of each word's pieces in its evaluation line (lookup_ranks)")
    p.add_argument("--best", action="store_true", help="the best validation's weights and memory, where kept")
    p.add_argument("--threads", type=int, default=0)
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    pool = pooled()
    pairs = rare_pairs(pool.target, training_counts())[:a.limit or None]
    if a.knn:

        with tuned_with_context(a.knn) as (decoder, sw, summary, store, record):
            result = paired_hits(decoder, sw, pool, pairs, store.fresh, a.width, learn=store.learn) | record
        run = Path(json.loads(a.knn.read_text())["run"])
        out = run / "oneshot-knn.json"
    else:
        with trained_memory(a.run, *chosen_weights(a.run, a.best)) as (model, sw, summary, fresh):
            decoder, learn, record = mixed_memory(model, sw, a.mix) if a.mix else (model, None, {})
            result = paired_hits(decoder, sw, pool, pairs, fresh, a.width, learn=learn) | record
            if a.ranks:
                result["lookup_ranks"] = lookup_ranks(model, sw, pool, pairs, fresh)
        run, out = a.run, a.run / ("oneshot-mix.json" if a.mix else "oneshot.json")
    result |= {"run": str(run), "words": len({p.word for p in pairs}), "train_steps": summary["steps"],
               "machine": runinfo.machine(), "command": runinfo.command()}
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
