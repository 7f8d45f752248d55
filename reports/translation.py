"""results/translation.{md,json,png}: Table 3 on Multi30k (and newstest2014 out of domain)
from the eval files of ``python -m raremem.models.translation.protocol``, beside the paper, with
paired-bootstrap intervals, worked examples and the training curves; and, where they were run,
the paired rare words (memory/oneshot.json, baseline/oneshot-knn.json, memory-2/oneshot.json,
oneshot-mix.json and oneshot-knn.json), the k-shot curve of held-out words (kshot/kshot.json,
kshot-mix.json and kshot-knn.json, kshot-baseline/kshot-knn.json; translation_kshot.png), the kNN-MT rows
(knn-<split>.json, and over the memory model memory-2/knn-mt-<split>.json) and the memory model
read like kNN-MT from its own memory (memory-2/knn-<split>.json). What is not in
this checkout's runs keeps the entry the last results/translation.json gave it (measured
elsewhere, with its own machine and commit).

    python -m reports.translation [--notes NOTES.md]  # -> results/translation.{md,json}
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from raremem.models import runinfo
from raremem.models.paths import results_dir
from raremem.models.translation import data
from raremem.models.translation.evaluate import rare_hits
from raremem.models.translation.protocol import training_counts
from raremem.models.translation.significance import paired_bootstrap
from raremem.models.translation.train import TrainConfig
from reports.plots import finish, plt, smoothed


PAPER = {"GNMT": (23.25, 23.17), "GNMT + memory": (23.29, 23.16),
         "GNMT + memory, even-line context": (None, 23.60), "GNMT + memory, whole-test context": (31.11, None)}


# the short ablations: the memory model's recipe for 1,500 steps (the control, and again from
# another seed: how far two runs of one recipe fall apart) and with one setting changed; each
# scored on test (protocol --no-context --out <run>/eval-<split>-best.json)
SHORT = {"GNMT + memory, 1,500 steps": "memory-1500", "GNMT + memory, 1,500 steps, seed 1": "memory-1500-s1",
         "GNMT + memory, loss weight 0.1": "memory-w0.1", "GNMT + memory, k = 32": "memory-k32"}
# the memory model's recipe trained again (folder memory-2), scored as it is and decoded like
# kNN-MT from its own memory (knn --memory-run; oneshot and kshot --mix)
SECOND, MIXED = "GNMT + memory, second run", "GNMT + memory, kNN read"
# and as kNN-MT: a datastore of its attention vectors beside its memory (knn --baseline memory-2)
MEMORY_KNN = "GNMT + memory, kNN-MT"
CONTROL, SHORT_SPLIT = "GNMT + memory, 1,500 steps", "test_2016_flickr"
SEEDS = {"GNMT, seed 1": "baseline-s1"}   # the baseline again at another seed, scored the same way

# the other training runs, each in the table where it exists (folder under runs/translation)
ABLATIONS = {**SEEDS, **SHORT, SECOND: "memory-2", "GNMT, held-out words": "kshot-baseline",
             "GNMT + memory, held-out words": "kshot", "GNMT + memory, copy term": "memory-copy",
             "GNMT + memory, copy term, held-out words": "kshot-copy"}


ORACLE = "GNMT + memory, whole-test context"


def shown(row: str) -> str:
    """A row's name in the tables; the whole-test row says it is an oracle wherever it appears."""
    return f"{row} (oracle: the test references are written into memory)" if row == ORACLE else row


def worked_examples(part: dict, n: int = 3) -> list[dict]:
    """Lines of an evaluated split where a memory row got a rare reference word (seen <= 2 times
    in training) that the baseline missed: the plain memory model first (every line), then with
    even-line context (odd lines, unseen in the context), then the whole-test oracle."""
    test = data.load(part["split"], Path(TrainConfig().data_dir))
    src, ref, hyps = test.source[:part["lines"]], test.target[:part["lines"]], part["hypotheses"]
    counts = training_counts()
    everything, odd = range(len(src)), range(0, len(src), 2)
    out = []
    for name, lines in (("GNMT + memory", everything), ("GNMT + memory, even-line context", odd),
                        ("GNMT + memory, whole-test context", everything)):
        if name not in hyps:   # a row not decoded on this split yet
            continue
        for i in lines:
            won = rare_hits(hyps[name][i], ref[i], counts) - rare_hits(hyps["GNMT"][i], ref[i], counts)
            if won and len(out) < n and all(e["line"] != i + 1 for e in out):
                out.append({"line": i + 1, "row": name, "rare_words": sorted(won), "source": src[i],
                            "baseline": hyps["GNMT"][i], "memory": hyps[name][i], "reference": ref[i],
                            "training_counts": {w: counts[w] for w in sorted(won)}})
    return out


def _cell(score: dict | None, key: str = "bleu") -> str:
    return "—" if score is None else f"{score[key]:.2f}" if key == "bleu" else f"{score[key]:.3f}"


def _paper(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}"


def tables(parts: list[dict]) -> str:
    md = ["# Translation with memory (paper Table 3 analog)", "",
          "BLEU: sacrebleu on detokenised output, signature `" + parts[0]["rows"]["GNMT"]["odd"]["signature"] + "`. "
          f"Beam width {parts[0]['beam_width']}; context passed {parts[0]['context_passes']} times through memory "
          "updates only (parameter hash checked unchanged); every memory row starts from a fresh copy of the "
          "trained memory.", ""]
    head = "| row | " + " | ".join(f"{p['split']} full | odd" for p in parts) + " | paper WMT14 full / odd |"
    md += [head, "|---|" + "---:|---:|" * len(parts) + "---|"]
    for name, (pf, po) in PAPER.items():
        cells = [f"{_cell(p['rows'][name]['full'])} | {_cell(p['rows'][name]['odd'])}" if name in p["rows"]
                 else "not run | not run" for p in parts]
        md.append(f"| {shown(name)} | " + " | ".join(cells) + f" | {_paper(pf)} / {_paper(po)} |")
    md += ["", "Rare words: recall of reference words seen at most twice in training (clipped counts; "
           "count of such word occurrences in brackets).", "",
           "| row | " + " | ".join(f"{p['split']} full | odd" for p in parts) + " |", "|---|" + "---:|---:|" * len(parts)]
    for name in PAPER:
        cells = []
        for p in parts:
            if name not in p["rows"]:
                cells.append("not run | not run")
                continue
            full, odd = p["rows"][name]["full"], p["rows"][name]["odd"]
            cells.append(f"{_cell(full, 'rare_recall')} | {_cell(odd, 'rare_recall')} ({odd['rare_words']})")
        md.append(f"| {shown(name)} | " + " | ".join(cells) + " |")
    md += ["", "Decoding (each row's own record in the JSON):", ""]
    for p in parts:
        for name, row in p["rows"].items():
            ctx = f", context {row['context_lines']} lines -> {row['context_writes']:,} memory writes" \
                if row.get("context_lines") else ""
            at = f", weights of step {row['weights_step']:,}" if "weights_step" in row else ""
            md.append(f"- {p['split']}, {shown(name)}: {row['decode_seconds']} s{ctx}{at}; `{row['command']}` at "
                      f"`{row['machine'].get('commit', '?')}`, {row['machine'].get('cpu', '?')}")
    first = parts[0]
    md += ["", f"Worked examples ({first['split']}; where a memory row got a rare word the baseline missed):", ""]
    for e in first["examples"]:
        md += [f"- line {e['line']} ({e['row']}; {', '.join(f'`{w}` seen {c}x' for w, c in e['training_counts'].items())})",
               f"  - source: {e['source']}", f"  - baseline: {e['baseline']}", f"  - memory: {e['memory']}",
               f"  - reference: {e['reference']}"]
    return "\n".join(md) + "\n"


def intervals(part: dict) -> dict:
    """Paired-bootstrap 95% intervals: the full-test rows against GNMT, and the odd-line rows
    (where the even-line context is scored) against GNMT on the same odd lines."""
    test = data.load(part["split"], Path(TrainConfig().data_dir))
    ref, hyps = test.target[:part["lines"]], part["hypotheses"]
    odd = range(0, len(ref), 2)
    rows = [n for n in PAPER if n in part["rows"]]
    full_rows = [n for n in rows if part["rows"][n]["full"] is not None]
    return {"full": paired_bootstrap(ref, {n: hyps[n] for n in full_rows}, "GNMT"),
            "odd": paired_bootstrap([ref[i] for i in odd], {n: [hyps[n][i] for i in odd] for n in rows}, "GNMT")}


def interval_table(parts: list[dict]) -> list[str]:
    md = ["", "## Intervals", "", "Paired bootstrap (1,000 resamples of the test lines, the same for every row): "
          "BLEU with its 95% interval, and each row's difference from GNMT on the same lines with its interval "
          "and the one-sided p of \"not better\".", "",
          "| split | lines | row | BLEU [95%] | − GNMT [95%] | p(not better) |", "|---|---|---|---|---|---:|"]
    for p in parts:
        for which, ci in p["intervals"].items():
            for name, r in ci["systems"].items():
                lo, hi = r["ci95"]
                diff = (f"{r['diff']:+.2f} [{r['diff_ci95'][0]:+.2f}, {r['diff_ci95'][1]:+.2f}] | {r['p_not_better']:.3f}"
                        if "diff" in r else "— | —")
                md.append(f"| {p['split']} | {which} | {shown(name)} | {r['bleu']:.2f} [{lo:.2f}, {hi:.2f}] | {diff} |")
    return md


def protocol_results(folder: Path, splits: list[str], last: dict) -> dict:
    """The paired rare words, the k-shot curves and kNN-MT: each from its file where it exists,
    else as the last results file recorded it (a run measured in another checkout)."""
    def read(files: dict[str, Path]) -> dict:
        return {label: json.loads(path.read_text()) for label, path in files.items() if path.is_file()}

    found = {"paired_rare_words": last.get("paired_rare_words", {}) | read(
                 {"GNMT + memory": folder / "memory" / "oneshot.json",
                  "GNMT + memory, copy term": folder / "memory-copy" / "oneshot.json",
                  "GNMT + kNN-MT": folder / "baseline" / "oneshot-knn.json",
                  SECOND: folder / "memory-2" / "oneshot.json",
                  MIXED: folder / "memory-2" / "oneshot-mix.json",
                  MEMORY_KNN: folder / "memory-2" / "oneshot-knn.json"}),
             "kshot": last.get("kshot", {}) | read(
                 {"GNMT + memory": folder / "kshot" / "kshot.json",
                  "GNMT + memory, copy term": folder / "kshot-copy" / "kshot.json",
                  "GNMT + kNN-MT": folder / "kshot-baseline" / "kshot-knn.json",
                  MIXED: folder / "kshot" / "kshot-mix.json",
                  MEMORY_KNN: folder / "kshot" / "kshot-knn.json"})}
    for split in splits:
        for key, path in ((f"knn_{split}", folder / f"knn-{split}.json"),
                          (f"memory_knn_{split}", folder / "memory-2" / f"knn-{split}.json"),
                          (f"memory_knnmt_{split}", folder / "memory-2" / f"knn-mt-{split}.json")):
            knn = json.loads(path.read_text()) if path.is_file() else last.get(key)
            if knn is not None:
                found[key] = knn
    alone = second_run_alone(folder / ABLATIONS[SECOND], splits)
    found["second_run"] = alone or last.get("second_run", {})
    return {k: v for k, v in found.items() if v}


def second_run_alone(run: Path, splits: list[str]) -> dict:
    """The second memory run decoded on its own where it was (no baseline decoded beside it:
    protocol --models memory --no-context --out <run>/eval-<split>-best.json): BLEU with its
    bootstrap interval, rare-word recall."""
    out = {}
    for split in splits:
        path = run / f"eval-{split}-best.json"
        if not path.is_file():
            continue
        e = json.loads(path.read_text())
        ref = data.load(split, Path(TrainConfig().data_dir)).target[:e["lines"]]
        row = e["rows"]["GNMT + memory"]
        ci = paired_bootstrap(ref, {SECOND: e["hypotheses"]["GNMT + memory"]}, SECOND)["systems"][SECOND]
        out[split] = {"bleu": ci["bleu"], "ci95": ci["ci95"], "rare_recall": row["full"]["rare_recall"],
                      "rare_words": row["full"]["rare_words"], "weights_step": row.get("weights_step"),
                      "decode_seconds": row["decode_seconds"], "command": row["command"], "machine": row["machine"]}
    return out


def budget(run: str, trained: dict[str, dict]) -> str:
    """What a protocol row's model trained for: steps, minutes and best validation BLEU of its run."""
    t = trained.get(Path(run).name)
    return (f"{t['steps']:,} steps, {t['train_minutes']:g} min, best val {t['best_val_bleu']}" if t
            else f"{Path(run).name}")


def equal_budgets(rows: dict[str, dict], trained: dict[str, dict]) -> str:
    """The sentence under a protocol table: which rows share a training budget (the only rows
    compared with each other); every row's own change is its measurement."""
    groups: dict[str, list[str]] = {}
    for label, r in rows.items():
        groups.setdefault(budget(r["run"], trained), []).append(label)
    return ("Each row's own change (without → with context) is its measurement. The rows trained for different "
            "budgets, so across rows compare only those of one budget: "
            + "; ".join(f"{', '.join(labels)} ({b})" for b, labels in groups.items()) + ".")


def protocol_sections(found: dict, splits: list[str], trained: dict[str, dict]) -> list[str]:
    """The sections of ``protocol_results``, each where it was run; ``trained``: the training
    record of each run folder, printed beside every row."""
    md = []
    ones = found.get("paired_rare_words", {})
    if ones:
        r = next(iter(ones.values()))
        md += ["", "## One-shot: paired rare words", "",
               f"{r['pairs']:,} (context line, evaluation line) pairs over {r['words']:,} German words seen at most "
               "twice in training, from val and every Multi30k test set; the word's hit rate in the evaluation "
               "line's translation without and with the context line (the memory model: passed through memory "
               "updates, weights unchanged; kNN-MT: its decoder states added to the training datastore), McNemar's "
               "exact test on the paired outcomes.", "",
               "| row | hits without | hits with | gained | lost | p (one-sided) | run | its training | command |",
               "|---|---:|---:|---:|---:|---:|---|---|---|"]
        md += [f"| {label} | {r['hits_without']} | {r['hits_with']} | {r['gained']} | {r['lost']} | {r['p_one_sided']:.2g} | "
               f"{r['run']} | {budget(r['run'], trained)} | `{r['command']}` at `{r['machine']['commit']}` |"
               for label, r in ones.items()]
        md += ["", equal_budgets(ones, trained)]
        ranked = {label: r["lookup_ranks"] for label, r in ones.items() if "lookup_ranks" in r}
        if ranked:
            k = next(iter(ranked.values()))["k"]
            md += ["", "Where the word is lost (`oneshot --ranks`): each evaluation line teacher-forced, each piece "
                   f"of the word looked up in memory (k = {k}); the share of pairs where every piece of the word is "
                   "the memory's top value (what the read-out gets), or among the 8 or k nearest slots, without → "
                   "with the context line.", "",
                   f"| row | top 1 | top 8 | top {k} |", "|---|---:|---:|---:|"]
            md += [f"| {label} | " + " | ".join(f"{100 * r[f'without_top{n}']:.1f}% → {100 * r[f'with_top{n}']:.1f}%"
                                                for n in (1, 8, k)) + " |" for label, r in ranked.items()]
    curves = found.get("kshot", {})
    if curves:
        r = next(iter(curves.values()))
        shots = sorted(r["curve"], key=int)
        md += ["", "## k-shot: held-out words", "",
               f"{r['words']} words seen 8-30 times held out of training altogether; {r['episodes']} usable episodes, "
               f"{r['evaluations_per_word']} evaluation lines each; hit rate of the word after k context sentences.", "",
               "| row | " + " | ".join(f"{k} context" for k in shots) + f" | {shots[0]} → {shots[-1]}: gained / lost, "
               "p (McNemar, one-sided) | its training | command |", "|---|" + "---:|" * len(shots) + "---|---|---|"]
        for label, c in curves.items():
            up = c.get("rise")   # files from before the test was kept have none
            test = f"{up['gained']} / {up['lost']}, {up['p_one_sided']:.2g}" if up else "—"
            md.append(f"| {label} | " + " | ".join(f"{100 * c['curve'][k]['hit_rate']:.1f}%" for k in shots)
                      + f" | {test} | {budget(c['run'], trained)} | `{c['command']}` at `{c['machine']['commit']}` |")
        md += ["", equal_budgets(curves, trained), "", "![k-shot](translation_kshot.png)"]
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for label, c in curves.items():
            ax.plot([int(k) for k in shots], [100 * c["curve"][k]["hit_rate"] for k in shots], marker="o", label=label)
        ax.set(xlabel="context sentences", ylabel="hit rate of the held-out word, %", title="held-out words, k-shot")
        finish(fig, results_dir() / "translation_kshot.png", ax)
    alone = found.get("second_run", {})
    if alone:
        md += ["", f"## {SECOND}, decoded alone", "",
               "The memory model's recipe trained again in this checkout (beside the held-out run); no baseline was "
               "decoded beside it here, so its scores stand alone: beam 4, no context, best validation's weights "
               "and memory.", "", "| split | BLEU [95%] | rare-word recall (words) | weights of step | decode | command |",
               "|---|---|---:|---:|---:|---|"]
        md += [f"| {split} | {_bleu_ci(r)} | {r['rare_recall']:.3f} ({r['rare_words']:,}) | {r['weights_step']:,} | "
               f"{r['decode_seconds']:.0f} s | `{r['command']}` at `{r['machine'].get('commit', '?')}` |"
               for split, r in alone.items()]
    for split in splits:
        for key, (base, row) in ((f"knn_{split}", ("GNMT", "GNMT + kNN-MT")),
                                 (f"memory_knn_{split}", ("GNMT + memory", MIXED)),
                                 (f"memory_knnmt_{split}", ("GNMT + memory", MEMORY_KNN))):
            r = found.get(key)
            if r is None:
                continue
            c, sy = r["chosen"], r["test"]["systems"]
            k = sy[row]
            if "memory_run" in r:
                md += ["", f"## The memory model read like kNN-MT from its own memory ({split})", "",
                       f"The memory model ({r['memory_run']}, {r['memory_steps']:,} steps, weights `{r['memory_weights']}`) "
                       "decoding with p = (1 − λ) p_model + λ p_kNN, p_kNN from the k nearest slots of its own trained "
                       "memory (its unit queries, the slots' values); p_model is its read-out, which already holds "
                       "the top neighbour. "]
            elif r.get("memory_model"):
                md += ["", f"## kNN-MT over the memory model ({split})", "",
                       f"The memory model ({r['run']}, {r['steps']:,} steps, weights `{r['weights']}`) with a second, "
                       f"unprojected key: a datastore of {r['datastore_entries']:,} of its attention vectors over the "
                       f"training targets in an append-only IVF memory ({r['datastore_seconds']} s to build) beside its "
                       "own memory, which its read-out p_model keeps reading. "]
            else:
                md += ["", f"## kNN-MT from the same service ({split})", "",
                       f"Datastore: {r['datastore_entries']:,} decoder states of the baseline over the training targets "
                       f"in an append-only IVF memory ({r['datastore_seconds']} s to build). "]
            md[-1] += (f"k = {c['k']}, temperature {c['temperature']}, λ = {c['lam']} chosen on val (greedy, "
                       f"{len(r['tuning'])} settings, {r['tuning_seconds']:.0f} s); beam {r['width']} "
                       f"({r['decode_seconds']:.0f} s for both rows).")
            md += ["", f"| row | BLEU [95%] | − {base} [95%] | p(not better) |", "|---|---|---|---:|",
                   f"| {base} | {_bleu_ci(sy[base])} | — | — |",
                   f"| {row} | {_bleu_ci(k)} | {k['diff']:+.2f} [{k['diff_ci95'][0]:+.2f}, {k['diff_ci95'][1]:+.2f}] | "
                   f"{k['p_not_better']:.3f} |",
                   "", f"`{r['command']}` at `{r['machine']['commit']}`, {r['machine'].get('cpu', '?')}."]
    return md


def curves_png(curves: dict[str, dict], name: str) -> None:
    """Training cross-entropy and validation BLEU of runs (name -> {"ce", "val"}) side by side."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for run, c in curves.items():
        a.plot(*c["ce"], label=run)
        b.plot(*c["val"], marker="o", label=run)
    a.set(xlabel="step", ylabel="cross-entropy (50-step mean)", title="training")
    b.set(xlabel="step", ylabel="BLEU", title="validation (greedy, first 256 lines)")
    finish(fig, results_dir() / name, a, b)


def training(runs: dict[str, Path], last: dict) -> tuple[list[str], dict]:
    """A table of what each model's training got (steps, time, last validation BLEU) and the
    curves (cross-entropy, validation BLEU) in results/translation_curves.png. A run not in this
    checkout keeps the row the last results file gave it; the curves are drawn again only when
    every row's curve is known (earlier files did not keep them), else the png stays as drawn."""
    md = ["", "## Training", "",
          "| model | steps | train time | sentences seen | val BLEU (greedy, 256 lines): last | best (step) "
          "| memory share of a step | machine, commit |", "|---|---:|---:|---:|---:|---:|---:|---|"]
    info = {}
    for name, run in runs.items():
        if not (run / "replica-0.json").is_file():
            if name in last:
                info[name] = last[name]
            continue
        rows = [json.loads(line) for line in open(run / "metrics.jsonl")]
        record = json.loads((run / "run.json").read_text())
        summary = json.loads((run / "replica-0.json").read_text())
        val = [r for r in rows if "val_bleu" in r]
        best = max(val, key=lambda r: r["val_bleu"]) if val else None
        share = [r["memory_share"] for r in rows if "memory_share" in r]
        info[name] = {"steps": summary["steps"], "train_minutes": round(summary["wall_seconds"] / 60, 1),
                      "sentences": summary["steps"] * record["config"]["batch"],
                      "val_bleu": val[-1]["val_bleu"] if val else None,
                      "best_val_bleu": best and best["val_bleu"], "best_step": best and best["step"],
                      # the mean share after the first tenth of the steps (the memory still filling)
                      "memory_share": round(sum(share[len(share) // 10:]) / len(share[len(share) // 10:]), 3)
                      if share else None,
                      "command": record["command"], "machine": record["machine"],
                      "curve": {"ce": [np.asarray(xs)[::10].tolist() for xs in smoothed(rows, "ce", 50)],
                                "val": [[r["step"] for r in val], [r["val_bleu"] for r in val]]}}
    for name, i in info.items():
        m, shown = i["machine"], "—" if i["memory_share"] is None else f"{i['memory_share']:.0%}"
        md.append(f"| {name} | {i['steps']:,} | {i['train_minutes']} min | {i['sentences']:,} | {i['val_bleu']} | "
                  f"{i['best_val_bleu']} ({i['best_step']}) | {shown} | "
                  f"{m.get('cpu', '?')}, `{m.get('commit', '?')}` |")
    if info and all("curve" in i for i in info.values()):
        curves_png({name: i["curve"] for name, i in info.items()}, "translation_curves.png")
    md += ["", "Commands: " + "; ".join(f"{n}: `{i['command']}`" for n, i in info.items()), ""]
    return md, info


def _bleu_ci(r: dict) -> str:
    return f"{r['bleu']:.2f} [{r['ci95'][0]:.2f}, {r['ci95'][1]:.2f}]"


SCORES = ("bleu", "ci95", "diff", "diff_ci95", "p_not_better")   # what paired_bootstrap gives a system


def ablation_results(folder: Path, last: dict) -> dict:
    """Test BLEU of the short ablations with paired-bootstrap intervals against the control, and
    of the baseline's other seeds: from each run's eval file where it exists, else as the last
    results file recorded it. Each system keeps its hypotheses, so a run whose folder is gone is
    still paired with the others; one recorded before that (no hypotheses) keeps its score but no
    difference. Same resamples as the main table's."""
    ref = data.load(SHORT_SPLIT, Path(TrainConfig().data_dir)).target
    out = {}
    for group, runs, row, against in (("short", SHORT, "GNMT + memory", CONTROL), ("seeds", SEEDS, "GNMT", None)):
        kept = last.get("ablations", {}).get(group, {}).get("systems", {})
        systems = {}
        for name, d in runs.items():
            path = folder / d / f"eval-{SHORT_SPLIT}-best.json"
            if path.is_file():
                e = json.loads(path.read_text())
                r = e["rows"][row]
                systems[name] = {"weights_step": r.get("weights_step"), "command": r["command"],
                                 "machine": r["machine"], "hypotheses": e["hypotheses"][row]}
            elif name in kept:
                systems[name] = kept[name]
        hyps = {name: r["hypotheses"] for name, r in systems.items() if "hypotheses" in r}
        if not hyps:   # nothing to pair again: as recorded
            if group in last.get("ablations", {}):
                out[group] = last["ablations"][group]
            continue
        base = against if against in hyps else next(iter(hyps))
        ci = paired_bootstrap(ref[:len(next(iter(hyps.values())))], hyps, base)["systems"]
        for name, r in systems.items():   # scores paired again where it can be, else as kept
            facts = {k: v for k, v in r.items() if k not in SCORES}
            systems[name] = facts | (ci[name] if name in ci else {k: r[k] for k in ("bleu", "ci95")})
        out[group] = {"split": SHORT_SPLIT, "against": base, "systems": systems}
    return out


def ablation_section(found: dict, train: dict, evaluations: list[dict]) -> list[str]:
    """The short ablations beside their control (validation curve, test BLEU and difference,
    memory share, time a step) and the baseline's seeds."""
    md = []
    short = found.get("short")
    if short:
        against = short["against"]
        md += ["", f"## Ablations ({short['split']}, 1,500 steps each)", "",
               "The memory model's recipe (loss weight 0.5, k = 256) for 1,500 steps and the same with one setting "
               "changed, each from seed 0 (the control also from seed 1) against a server it spawned, two at a "
               "time; test BLEU with the best "
               f"validation's weights (beam 4, no context) and its paired-bootstrap difference from {against}"
               + ("" if against == CONTROL else f" (the control, {CONTROL}, is not run yet)") + ".", "",
               f"| run | val BLEU at 500 / 1,000 / 1,500 | test BLEU [95%] (weights of step) | − {against} [95%] | "
               "p(not better) | memory share | s a step | commit |", "|---|---|---|---|---:|---:|---:|---|"]
        for name, r in short["systems"].items():
            t = train.get(name, {})
            val = dict(zip(*t["curve"]["val"])) if "curve" in t else {}
            curve = " / ".join(f"{val[s]:.2f}" if s in val else "—" for s in (500, 1000, 1500))
            diff = (f"{r['diff']:+.2f} [{r['diff_ci95'][0]:+.2f}, {r['diff_ci95'][1]:+.2f}] | {r['p_not_better']:.3f}"
                    if "diff" in r else "— | —")
            share = f"{t['memory_share']:.0%}" if t.get("memory_share") is not None else "—"
            pace = f"{60 * t['train_minutes'] / t['steps']:.2f}" if t.get("steps") else "—"
            md.append(f"| {name} | {curve} | {_bleu_ci(r)} ({r['weights_step']:,}) | {diff} | {share} | {pace} | "
                      f"`{r['machine'].get('commit', '?')}` |")
        unpaired = [n for n, r in short["systems"].items() if n != against and "diff" not in r]
        if unpaired:
            md += ["", f"No difference for {', '.join(unpaired)}: scored before the report kept hypotheses, and its "
                   "run folder is not in this checkout, so it cannot be paired with the others."]
        md += ["", "Scored with: " + "; ".join(f"{n}: `{r['command']}`" for n, r in short["systems"].items())]
        curves = {n: train[n]["curve"] for n in short["systems"] if "curve" in train.get(n, {})}
        if curves:   # drawn where this checkout holds the runs, else the png stays as drawn
            curves_png(curves, "translation_ablations.png")
        md += ["", "![ablations](translation_ablations.png)"]
    seeds = found.get("seeds")
    if seeds:
        first = next((e["intervals"]["full"]["systems"]["GNMT"] for e in evaluations
                      if e["split"] == seeds["split"] and "GNMT" in e.get("intervals", {}).get("full", {}).get("systems", {})),
                     None)
        md += ["", f"## The baseline's seeds ({seeds['split']})", "",
               "| run | test BLEU [95%] (weights of step) | − seed 0 | command |", "|---|---|---:|---|"]
        if first:
            md.append(f"| GNMT, seed 0 | {_bleu_ci(first)} | — | the main table's |")
        for name, r in seeds["systems"].items():
            gap = f"{r['bleu'] - first['bleu']:+.2f}" if first else "—"
            md.append(f"| {name} | {_bleu_ci(r)} ({r['weights_step']:,}) | {gap} | `{r['command']}` at "
                      f"`{r['machine'].get('commit', '?')}` |")
    return md


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--baseline", type=Path, default=Path("runs/translation/baseline"))
    p.add_argument("--memory-run", "--memory", dest="memory_run", type=Path, default=Path("runs/translation/memory"),
                   help="the memory model's run folder (--memory: its old name)")
    p.add_argument("--splits", nargs="+", default=["test_2016_flickr", "newstest2014"])
    p.add_argument("--notes", default="", help="markdown appended to the tables (conditions, reading); "
                   "without it, the notes the last results file kept")
    a = p.parse_args(argv)
    last = results_dir() / "translation.json"
    last = json.loads(last.read_text()) if last.is_file() else {}
    folder = a.memory_run.parent
    notes = Path(a.notes).read_text() if a.notes else last.get("notes", "")
    parts = []
    for split in a.splits:   # the evaluation with the best-validation weights (--best) where it exists
        path = next((p for p in (folder / f"eval-{split}-best.json", folder / f"eval-{split}.json") if p.is_file()), None)
        if path is None:     # evaluated in another checkout: as the last results file has it
            parts += [e for e in last.get("evaluations", []) if e["split"] == split]
            continue
        part = json.loads(path.read_text())
        part["examples"], part["intervals"] = worked_examples(part), intervals(part)
        parts.append(part)
    runs = {"GNMT": a.baseline, "GNMT + memory": a.memory_run, **{name: folder / d for name, d in ABLATIONS.items()}}
    train_md, train_info = training(runs, last.get("training", {}))
    trained = {run.name: train_info[name] for name, run in runs.items() if name in train_info}
    extra = protocol_results(folder, a.splits, last)
    ablations = ablation_results(folder, last)
    md = (tables(parts).splitlines() + interval_table(parts) + protocol_sections(extra, a.splits, trained)
          + ablation_section(ablations, train_info, parts) + train_md
          + notes.splitlines())
    runinfo.write_results("translation", {"training": train_info, "evaluations": [
        {k: v for k, v in p.items() if k != "hypotheses"} for p in parts], **extra, "ablations": ablations,
        "notes": notes}, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
