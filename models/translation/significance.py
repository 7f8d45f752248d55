"""The statistics of the translation results: paired bootstrap for corpus BLEU (Koehn 2004):
95% intervals for every system's score and for every system's difference from a baseline, on
the same resampled sentence sets; McNemar's exact test for paired hits (a rare word translated
with and without its context line).

sacrebleu computes each sentence's sufficient statistics once (n-gram matches and totals,
lengths); a resample's corpus BLEU is then the score of the summed statistics, exactly what
``BLEU.corpus_score`` would give on the resampled corpus, so a thousand resamples cost seconds.
"""

from __future__ import annotations

import math

import numpy as np
from sacrebleu.metrics import BLEU


def paired_bootstrap(references: list[str], systems: dict[str, list[str]], baseline: str,
                     samples: int = 1000, seed: int = 12345) -> dict:
    """``systems`` name -> hypotheses (line-aligned with ``references``); ``baseline`` one of
    them. Returns, per system, its BLEU with a 95% interval, and its difference from the
    baseline with a 95% interval and the one-sided p-value of "not better than the baseline"
    (the share of resamples where the difference is <= 0)."""
    if baseline not in systems:
        raise ValueError(f"baseline {baseline!r} is not among the systems")
    if any(len(h) != len(references) for h in systems.values()):
        raise ValueError("every system needs one hypothesis per reference line")
    bleu = BLEU()
    stats = {name: np.asarray(bleu._extract_corpus_statistics(hyps, [references]), dtype=np.int64)
             for name, hyps in systems.items()}                          # (N, 2 + 2 * max_ngram)
    n = len(references)
    picks = np.random.default_rng(seed).integers(0, n, size=(samples, n))     # the same resamples for all
    scores = {name: np.array([bleu._compute_score_from_stats(s[p].sum(0).tolist()).score for p in picks])
              for name, s in stats.items()}                              # (samples,)
    corpus = {name: bleu.corpus_score(hyps, [references]).score for name, hyps in systems.items()}
    out = {}
    for name in systems:
        out[name] = {"bleu": corpus[name], "ci95": np.percentile(scores[name], [2.5, 97.5]).tolist()}
        if name != baseline:
            diff = scores[name] - scores[baseline]
            out[name] |= {"diff": corpus[name] - corpus[baseline], "diff_ci95": np.percentile(diff, [2.5, 97.5]).tolist(),
                          "p_not_better": float((diff <= 0).mean())}
    return {"samples": samples, "seed": seed, "baseline": baseline, "signature": str(bleu.get_signature()),
            "systems": out}


def mcnemar(without: list[bool], with_context: list[bool]) -> dict:
    """McNemar's exact test on paired outcomes: b = pairs the context turned into a hit, c =
    pairs it turned into a miss; one-sided p of b >= observed under Binomial(b + c, 1/2)."""
    if len(without) != len(with_context):
        raise ValueError("paired outcomes need equal lengths")
    b = sum(1 for x, y in zip(without, with_context) if y and not x)
    c = sum(1 for x, y in zip(without, with_context) if x and not y)
    n = b + c
    p = sum(math.comb(n, i) for i in range(b, n + 1)) / 2 ** n if n else 1.0
    return {"pairs": len(without), "hits_without": sum(without), "hits_with": sum(with_context),
            "gained": b, "lost": c, "p_one_sided": p}
