"""Decoding and scoring: beam (or greedy) translation in length-sorted batches, sacrebleu BLEU
on detokenised text, rare-word recall, and the one-shot context pass.

The context pass is the paper's one-shot protocol: teacher-forced lookups with memory updates
over (source, reference) pairs, ``passes`` times, with no gradient and no weight change — the
caller checks the latter by hashing the parameters before and after.
"""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import sacrebleu
import torch

from raremem.models.devices import device_of
from raremem.models.translation.beam import beam_search
from raremem.models.translation.subwords import EOS, PAD, Subwords

WORD = re.compile(r"\w+", re.UNICODE)


def pad_batch(rows: list[list[int]]) -> torch.Tensor:
    out = np.full((len(rows), max(1, max(map(len, rows)))), PAD, dtype=np.int64)
    for i, r in enumerate(rows):
        out[i, :len(r)] = r
    return torch.from_numpy(out)


def _batches(lengths: list[int], batch: int):
    """Indices in batches of similar length (longest first: the slowest batch shows up early)."""
    order = np.argsort(lengths, kind="stable")[::-1].copy()
    for i in range(0, len(order), batch):
        yield order[i:i + batch]


@torch.no_grad()
def translate(model, subwords: Subwords, lines: list[str], width: int = 4, batch: int = 64,
              max_tokens: int = 200) -> list[str]:
    """Source lines -> detokenised hypotheses (width 1 = greedy), in the input order."""
    model.eval()
    ids = [s[:max_tokens] + [EOS] for s in subwords.encode(lines)]
    out: list[str] = [""] * len(lines)
    for idx in _batches([len(s) for s in ids], batch):
        src = pad_batch([ids[i] for i in idx]).to(device_of(model))
        limit = min(max_tokens, 2 * src.shape[1] + 10)
        if width > 1:
            hyps = beam_search(model, src, width, limit)
        else:
            hyps = model(src, max_len=limit).logits.argmax(-1).tolist()
        for i, text in zip(idx, subwords.decode(hyps), strict=True):
            out[i] = text
    return out


def bleu(hypotheses: list[str], references: list[str]) -> dict:
    """Corpus BLEU (sacrebleu defaults: 13a tokenisation, cased) and its signature."""
    metric = sacrebleu.BLEU()
    score = metric.corpus_score(hypotheses, [references])
    return {"bleu": round(score.score, 2), "signature": str(metric.get_signature())}


def word_counts(lines: list[str]) -> Counter:
    return Counter(w for line in lines for w in WORD.findall(line))


def rare_recall(hypotheses: list[str], references: list[str], counts: Counter, at_most: int = 2) -> dict:
    """Of the reference words seen at most ``at_most`` times in training (``counts``), the share
    the hypothesis also has (each occurrence at most once: clipped counts)."""
    hit = total = 0
    for hyp, ref in zip(hypotheses, references, strict=True):
        want = Counter(w for w in WORD.findall(ref) if counts[w] <= at_most)
        have = Counter(WORD.findall(hyp))
        total += sum(want.values())
        hit += sum(min(n, have[w]) for w, n in want.items())
    return {"rare_words": total, "rare_recalled": hit, "rare_recall": round(hit / max(total, 1), 4)}


def rare_hits(hyp: str, ref: str, counts: Counter, at_most: int = 2) -> set[str]:
    """The rare reference words this hypothesis got."""
    return {w for w in WORD.findall(ref) if counts[w] <= at_most} & set(WORD.findall(hyp))


@torch.no_grad()
def context_pass(model, subwords: Subwords, sources: list[str], targets: list[str], passes: int = 3,
                 batch: int = 64, max_tokens: int = 200) -> int:
    """Write (source, reference) pairs into the model's memory ``passes`` times: teacher-forced
    lookups with update, dropout off, no gradient. Returns the number of memory writes."""
    model.eval()
    src = [s[:max_tokens] + [EOS] for s in subwords.encode(sources)]
    tgt = [t[:max_tokens] + [EOS] for t in subwords.encode(targets)]
    writes = 0
    for _ in range(passes):
        for idx in _batches([len(t) for t in tgt], batch):
            device = device_of(model)
            tgt_batch = pad_batch([tgt[i] for i in idx]).to(device)
            model(pad_batch([src[i] for i in idx]).to(device), tgt_batch, update=True,
                  sources=torch.from_numpy(np.asarray(idx, dtype=np.int64)).to(device))
            writes += int((tgt_batch != PAD).sum())
    return writes
