"""The Omniglot protocol for translation: held-out words, k-shot.

A fixed set of German words seen 8-30 times in the training targets is chosen (seeded); every
training pair whose target holds one of them is held out of training (the trainer's
``--hold-out N``). After training, each word's held-out pairs are its episodes: some are
context sentences passed through memory updates, the others evaluation sentences whose
translation should contain the word. The hit rate after 0, 1, 3 and 5 context sentences is
the k-shot curve. All words share one pass per shot count (one restore of the trained memory,
every word's first ``shots`` context pairs written, then every evaluation line translated):
a context line of one word never holds another word's evaluation line, so they do not leak.
"""

from __future__ import annotations

import torch  # noqa: I001 - torch before faiss (design.md §5)

import argparse
import json
from pathlib import Path

import numpy as np

from raremem.models import runinfo
from raremem.models.translation import data
from raremem.models.translation.evaluate import WORD, context_pass, translate
from raremem.models.translation.holdout import held_out_words, lines_with
from raremem.models.translation.knn import mixed_memory, tuned_with_context
from raremem.models.translation.protocol import chosen_weights, trained_memory
from raremem.models.translation.significance import mcnemar

SHOTS = (0, 1, 3, 5)


def episodes(targets: list[str], words: list[str], evaluations: int = 2, max_shots: int = 5,
             seed: int = 0) -> list[dict]:
    """Per word: ``evaluations`` lines to translate and ``max_shots`` context lines, drawn from
    its held-out lines; a line serves one episode at most, and an episode whose context holds
    another episode's word is dropped (it would be that word's context too). Words with too
    few lines are skipped."""
    rng = np.random.default_rng([seed, 0xE915])
    used: set[int] = set()
    out = []
    for w, where in lines_with(targets, words).items():
        free = [i for i in rng.permutation(where).tolist() if i not in used]
        if len(free) < evaluations + max_shots:
            continue
        ev, ctx = free[:evaluations], free[evaluations:evaluations + max_shots]
        used.update(ev + ctx)
        out.append({"word": w, "evaluation": ev, "context": ctx})
    # a context line must not hold another episode's word whose evaluation it would give away
    words_of = {i: set(WORD.findall(targets[i])) for e in out for i in e["context"]}
    evaluated = {e["word"] for e in out}
    return [e for e in out if not any((words_of[i] & evaluated) - {e["word"]} for i in e["context"])]


def kshot_curve(model, subwords, sources: list[str], targets: list[str], eps: list[dict], fresh,
                shots=SHOTS, width: int = 1, passes: int = 3, learn=None) -> dict:
    """Hit rate of each episode's word in its evaluation lines after ``shots`` context lines.
    ``fresh()`` restores the trained memory (a copy) before each shot count; ``learn`` as in
    ``oneshot.paired_hits``."""

    learn = learn or (lambda s, t: context_pass(model, subwords, s, t, passes))
    rows = {}
    for k in shots:
        fresh()
        ctx = [i for e in eps for i in e["context"][:k]]
        if ctx:
            learn([sources[i] for i in ctx], [targets[i] for i in ctx])
        ev = [(e["word"], i) for e in eps for i in e["evaluation"]]
        hyps = translate(model, subwords, [sources[i] for _, i in ev], width)
        hits = [w in WORD.findall(h) for (w, _), h in zip(ev, hyps)]
        rows[k] = {"evaluations": len(hits), "hits": int(sum(hits)), "hit_rate": float(np.mean(hits)) if hits else 0.0,
                   "context_lines": len(ctx), "outcomes": [bool(h) for h in hits]}
    return rows


def rise(curve: dict) -> dict:
    """McNemar's exact test of the most context against none, on the same evaluation lines."""

    shots = sorted(curve, key=int)
    return {"from": int(shots[0]), "to": int(shots[-1]),
            **mcnemar(curve[shots[0]]["outcomes"], curve[shots[-1]]["outcomes"])}


def main(argv=None) -> int:
    """Score a run trained with --hold-out: its k-shot curve, written beside the run."""



    p = argparse.ArgumentParser(description="k-shot curve of held-out words for a translation run")
    p.add_argument("--run", type=Path, default=Path("runs/translation/kshot"))
    p.add_argument("--evaluations", type=int, default=2, help="evaluation lines per word")
    p.add_argument("--width", type=int, default=1)
    p.add_argument("--knn", type=Path, default=None,
                   help="a knn-<split>.json: --run (a baseline or a memory model trained with --hold-out) scored as "
                        "kNN-MT with the k, temperature and lambda tuned there, the context lines added to its "
                        "training datastore")
    p.add_argument("--mix", type=Path, default=None,
                   help="a knn-<split>.json of `knn --memory-run`: decode --run read like kNN-MT from its own memory, "
                        "with the k, temperature and lambda tuned there")
    p.add_argument("--best", action="store_true", help="the best validation's weights and memory, where kept")
    p.add_argument("--threads", type=int, default=0)
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    config = json.loads((a.run / "run.json").read_text())["config"]
    if not config.get("hold_out"):
        p.error(f"{a.run} was trained on every pair (no --hold-out): its words are not new to it")
    train = data.load("train", Path(config["data_dir"]))
    words = held_out_words(train.target, config["hold_out"], config["hold_out_seed"])
    eps = episodes(train.target, words, a.evaluations, max(SHOTS))
    if a.knn:
        with tuned_with_context(a.knn, a.run) as (decoder, sw, summary, store, extra):
            curve = kshot_curve(decoder, sw, train.source, train.target, eps, store.fresh, width=a.width,
                                learn=store.learn)
    else:
        with trained_memory(a.run, *chosen_weights(a.run, a.best)) as (model, sw, summary, fresh):
            decoder, learn, extra = mixed_memory(model, sw, a.mix) if a.mix else (model, None, {})
            curve = kshot_curve(decoder, sw, train.source, train.target, eps, fresh, width=a.width, learn=learn)
    result = {**extra, "run": str(a.run), "words": len(words), "episodes": len(eps), "evaluations_per_word": a.evaluations,
              "curve": curve, "rise": rise(curve), "train_steps": summary["steps"], "machine": runinfo.machine(),
              "command": runinfo.command(), "episodes_detail": eps}
    name = "kshot-knn.json" if a.knn else "kshot-mix.json" if a.mix else "kshot.json"
    (a.run / name).write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "episodes_detail"}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
