"""results/synthetic.{md,json} and synthetic_curves.png: Table 2 on the ``short`` preset (the
CPU-scale task, lengths 7-16) from the runs' eval.json files, split by how often each test
number was seen in training, with the controls and the query probe at kept checkpoints; and
the earlier full-task rows (results/synthetic_full.json, measured before the preset existed)
beside the paper.

    python -m reports.synthetic --runs runs/synthetic [--notes results/synthetic_notes.md]

A short-preset run lives in ``<runs>/short-<row>-s<seed>`` (rows: the keys of ``SHORT``); the
Hamming row in ``<runs>/hamming-short.json``. Each row carries its compute (steps, wall time,
legs, machine) and command from the run's own record. Rows and probes in the last
results/synthetic.json whose runs are not in ``--runs`` are kept as they were measured.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np

from raremem.models.neural_gpu.probe import load_model, probe
from raremem.models.neural_gpu.task import random_function
from raremem.models.paths import results_dir
from reports.plots import finish, plt, smoothed

# Table 2 of the paper: fully correct sequences on the 10K test examples, in %.
PAPER = {"hamming": 0.1, "seq2seq": 0.9, "ngpu": 12.2, "seq2seq + memory": 35.2, "ngpu + memory": 71.3}
NAMES = {"hamming": "Hamming nearest neighbour", "seq2seq": "seq2seq + attention (2x256 LSTM)",
         "ngpu": "Extended Neural GPU (32 channels)", "seq2seq + memory": "seq2seq + attention + memory",
         "ngpu + memory": "Extended Neural GPU + memory",
         "ngpu + memory, fixed queries": "control: Neural GPU + memory, fixed (number, digit) queries",
         "ngpu + memory, w_1 without decoder gradient": "Neural GPU + memory, w_1 without decoder gradient",
         "ngpu + memory, queries without gradient into the network":
             "Neural GPU + memory, queries without gradient into the network",
         "ngpu + memory, queries from a key tower": "Neural GPU + memory, queries from a key tower",
         "ngpu + memory, queries from the encoder": "Neural GPU + memory, queries from the encoder",
         "ngpu + memory, key tower held 1,500 steps, leave-one-out":
             "Neural GPU + memory, queries from a key tower held still for 1,500 steps, leave-one-out",
         "ngpu + memory, key tower held 1,500 steps, leave-one-out, uniformity 0.1":
             "Neural GPU + memory, key tower held 1,500 steps, leave-one-out, uniformity term 0.1",
         "seq2seq + memory, uniformity 0.1, leave-one-out":
             "seq2seq + attention + memory (1M-slot IVF), leave-one-out, uniformity term 0.1",
         "seq2seq + memory, key tower held 1,500 steps, leave-one-out, uniformity 0.1":
             "seq2seq + attention + memory (1M-slot IVF), queries from a key tower aligned to the output (the task's "
             "alignment: a prior the paper's model lacks), held 1,500 steps, leave-one-out, uniformity term 0.1",
         "seq2seq, aligned key tower":
             "seq2seq + attention, the key tower aligned to the output feeding its attention vector (no memory: the "
             "fair twin of the row above)"}
SHORT = {"ngpu-mem": "ngpu + memory", "ngpu": "ngpu", "seq2seq-mem": "seq2seq + memory", "seq2seq": "seq2seq",
         "ngpu-mem-fixed": "ngpu + memory, fixed queries",
         "ngpu-mem-nowg": "ngpu + memory, w_1 without decoder gradient",
         "ngpu-mem-noqg": "ngpu + memory, queries without gradient into the network",
         "ngpu-mem-tower": "ngpu + memory, queries from a key tower",
         "ngpu-mem-enc": "ngpu + memory, queries from the encoder",
         "ngpu-mem-tower-held": "ngpu + memory, key tower held 1,500 steps, leave-one-out",
         "ngpu-mem-tower-unif": "ngpu + memory, key tower held 1,500 steps, leave-one-out, uniformity 0.1",
         "seq2seq-mem-unif": "seq2seq + memory, uniformity 0.1, leave-one-out",
         "seq2seq-mem-tower-unif": "seq2seq + memory, key tower held 1,500 steps, leave-one-out, uniformity 0.1",
         "seq2seq-tower": "seq2seq, aligned key tower"}
SEEN = ("0", "1", "2", ">=3")


def pct(x) -> str:
    return "—" if x is None else f"{100 * x:.2f}"


def where(m: dict) -> str:
    """A run's machine and commit, as the tables show them."""
    return f"{m['cores']}-core {m['cpu'].split('(')[0].strip()}, `{m['commit']}`"


def short_runs(runs: Path) -> list[dict]:
    """Every finished short-preset run: eval.json + its record (command, machine, legs); main
    sorts them with the carried ones."""
    out = []
    for d in sorted(runs.glob("short-*-s*")):
        m = re.fullmatch(r"short-(.+)-s(\d+)", d.name)
        if not (m and m.group(1) in SHORT and (d / "eval.json").is_file()):
            continue
        run = json.loads((d / "run.json").read_text())
        # every leg's commit, in order (a resumed run may have trained at several)
        commits = list(dict.fromkeys(leg["machine"]["commit"] for leg in run.get("legs", []))) or [run["machine"]["commit"]]
        out.append({**json.loads((d / "eval.json").read_text()), "key": SHORT[m.group(1)], "seed": int(m.group(2)),
                    "dir": d.name, "command": run["command"],
                    "machine": {**run["machine"], "commit": "` → `".join(commits)},
                    "legs": len(run.get("legs", [])) or 1})
    return out


def carried(old: list[dict], new: list[dict], key) -> list[dict]:
    """``new`` and then the rows of ``old`` (the last results file) whose key ``new`` lacks: a run
    measured in another checkout, whose directory is not here, keeps its row, its machine and
    its commit."""
    have = {key(r) for r in new}
    return new + [r for r in old if key(r) not in have]


BAR = 10.0   # points on seen numbers a memory row must gain over its twin, every row alike
CONTROL = "ngpu + memory, fixed queries"   # a ceiling with the right queries handed in: no twin, no probe


def twin(key: str) -> str | None:
    """A memory row's twin: the same model without memory, with whatever else the row's queries
    get (the aligned key tower of the seq2seq tower rows); the fixed-query control has none (it
    is a ceiling, not a row of the table)."""
    if key == CONTROL:
        return None
    if key.startswith("ngpu + memory"):
        return "ngpu"
    if key.startswith("seq2seq + memory"):
        return "seq2seq, aligned key tower" if "key tower" in key else "seq2seq"
    return None


def scored_on(row: dict) -> str:
    """Which test examples a row was scored on: the held-out ones (rows trained with the
    validation set) or all of them (earlier rows, whose quick evaluations read the first 1,000)."""
    return row.get("test_examples", "all")


def scored_cell(row: dict) -> str:
    if scored_on(row) == "held out":
        return f"{row['examples']:,} held out"
    return f"all {row['examples']:,}, the first 1,000 quick-evaluated"


def gaps(rows: list[dict]) -> list[dict]:
    """Each memory row minus its twin, on test numbers seen in training, seed by seed; a pair
    scored on different test examples is not compared (``points`` None: train the twin again),
    and a pair whose choices read test examples is not held to the bar (``met`` None)."""
    by = {(r["key"], r["seed"]): r for r in rows}
    out = []
    for (key, seed), r in by.items():
        if not (other := twin(key)):
            continue
        t = by.get((other, seed))
        if t is None or scored_on(t) != scored_on(r):
            out.append({"row": key, "twin": other, "seed": seed, "points": None, "bar": BAR, "met": None,
                        "scored": None})
            continue
        gap = 100 * (r["fully_correct_seen"] - t["fully_correct_seen"])
        met = gap >= BAR if scored_on(r) == "held out" else None
        out.append({"row": key, "twin": other, "seed": seed, "points": gap, "bar": BAR, "met": met,
                    "scored": scored_on(r)})
    return out


def probes(runs: Path, rows: list[dict]) -> list[dict]:
    """The query probe of the Neural GPU at initialisation (cached as probe-fresh-ngpu.json), at
    every kept checkpoint (checkpoint-<step>.pt) and the last one of each finished memory run, and
    any probe-<step>.json left in a memory run still going (``probe --out``); cached beside the
    checkpoint as probe-<step>.json."""
    f = random_function(0)
    fresh = runs / "probe-fresh-ngpu.json"
    if not fresh.is_file():
        fresh.write_text(json.dumps(probe(load_model("", "ngpu"), f), indent=2))
    out = [{"run": "Extended Neural GPU + memory, at initialisation", "steps": 0, **json.loads(fresh.read_text())}]
    for name, run in (("ngpu-tower", "Neural GPU + memory, the key tower"),   # probe --fresh [--arch] [--query-from]
                      ("seq2seq", "seq2seq + memory, the attention vector a_t"),
                      ("seq2seq-tower", "seq2seq + memory, the key tower at the output's position")):
        cached = runs / f"probe-fresh-{name}.json"
        if cached.is_file():
            out.append({"run": f"{run} at initialisation", "steps": 0, **json.loads(cached.read_text())})
    finished = {r["dir"]: r for r in rows}
    for d in sorted(runs.glob("short-*-s*")):
        m = re.fullmatch(r"short-(.+)-s(\d+)", d.name)
        # (the control's queries are not the state's: nothing to probe)
        if not (m and m.group(1) in SHORT and "memory" in SHORT[m.group(1)] and SHORT[m.group(1)] != CONTROL):
            continue
        if not (d / "eval.json").is_file():   # still training: probed once it is scored (its folder may
            continue                           # carry the name of an earlier run's row)
        steps = {int(p.stem.split("-")[1]): p for p in d.glob("checkpoint-*.pt")}
        if d.name in finished:
            steps[finished[d.name]["train_steps"]] = d / "checkpoint.pt"
        steps |= {int(p.stem.split("-")[1]): None for p in d.glob("probe-*.json") if int(p.stem.split("-")[1]) not in steps}
        for step, ck in sorted(steps.items()):
            cache = d / f"probe-{step}.json"
            if cache.is_file():
                res = json.loads(cache.read_text())
            else:
                res = probe(load_model(str(ck), ""), f)
                cache.write_text(json.dumps(res, indent=2))
            out.append({"run": f"{NAMES[SHORT[m.group(1)]]}, seed {m.group(2)}", "steps": step, **res})
        for path in sorted(d.glob("state-probe-*.json"), key=lambda p: int(p.stem.split("-")[2])):   # probe --state
            out.append({"run": f"{NAMES[SHORT[m.group(1)]]}, seed {m.group(2)}: the state (no projection)",
                        "steps": int(path.stem.split("-")[2]), **json.loads(path.read_text())})
    return out


def curves(runs: Path, rows: list[dict], out: Path) -> None:
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for r in rows:
        data = [json.loads(line) for line in (runs / r["dir"] / "metrics.jsonl").read_text().splitlines()]
        label = f"{r['key']}, seed {r['seed']}"
        a.plot(*smoothed(data, "ce", 100), label=label)
        quick = "val_fully_correct" if any("val_fully_correct" in x for x in data) else "test_fully_correct"
        ev = [x for x in data if quick in x]
        b.plot([x["step"] for x in ev], [100 * x[quick] for x in ev], marker=".",
               label=label + ("" if quick.startswith("val") else " (test)"))
    a.set(xlabel="step", ylabel="cross-entropy, mean of 100 batches", title="training loss (short preset)")
    b.set(xlabel="step", ylabel="% fully correct", title="quick evaluations (1,000 validation examples;\n"
          "rows marked (test): the first 1,000 test examples)")
    for ax in (a, b):
        ax.grid(alpha=0.3)
    # one legend for both panels, below them: the rows' names are long
    fig.legend(*b.get_legend_handles_labels(), loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=2, fontsize=8)
    finish(fig, out)


def met_cell(g: dict) -> str:
    """The gap table's last cell: whether the bar is met, or why the pair is not held to it."""
    if g["met"] is not None:
        return "yes" if g["met"] else "no"
    if g["scored"] == "all":
        return "— (its choices read the first 1,000 test examples: to be retrained with the validation set)"
    return "—"


def short_tables(rows: list[dict], ham: dict | None, gap_rows: list[dict]) -> list[str]:
    md = ["| model | seed | test examples | fully correct % | on seen numbers % | seen 0 / 1 / 2 / >=3 times: fully "
          "correct % | digit runs % | memory alone: runs % | function coverage % | steps | train time | legs | "
          "machine, commit |",
          "|---|---:|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---|"]
    if ham:
        md.append(f"| {NAMES['hamming']} | — | {scored_cell(ham)} | {pct(ham['fully_correct'])} | — | — | — | — | — | "
                  f"0 | 0 min | — | {where(ham['machine'])} |")
    for r in rows:
        split = " / ".join(pct(r["by_times_seen"][s]["fully_correct"]) for s in SEEN)
        md.append(f"| {NAMES[r['key']]} | {r['seed']} | {scored_cell(r)} | {pct(r['fully_correct'])} | "
                  f"{pct(r['fully_correct_seen'])} | "
                  f"{split} | {pct(r['run_correct'])} | {pct(r.get('memory_run_correct'))} | "
                  f"{pct(r.get('function_coverage'))} | {r['train_steps']:,} | {r['train_seconds'] / 60:.0f} min | "
                  f"{r['legs']} | {where(r['machine'])} |")
    if rows:
        r0 = rows[0]
        counts = " / ".join(f"{r0['by_times_seen'][s]['examples']:,}" for s in SEEN)
        md += ["", f"Test examples whose number was seen 0 / 1 / 2 / >=3 times in training: {counts} "
               f"({100 * r0['test_numbers_seen_in_training']:.1f}% seen at least once)."]
    if gap_rows:
        md += ["", "| memory row − its twin, fully correct on seen numbers | seed | points | bar | met |",
               "|---|---:|---:|---:|---|"]
        md += [f"| {g['row']} − {g['twin']} | {g['seed']} | "
               + ("not yet: the pair is not scored on the same test examples | " if g["points"] is None
                  else f"{g['points']:+.2f} | ")
               + f">= {g['bar']:.0f} | {met_cell(g)} |"
               for g in gap_rows]
    return md


def probe_table(rows: list[dict]) -> list[str]:
    def p(xs):
        return " ".join(f"{100 * x:.0f}" for x in xs)

    md = ["| queries of | step | spread (mean cosine) | recall %, other context, digits 0-6 | "
          "recall %, other context and start, digits 0-6 |", "|---|---:|---:|---|---|"]
    md += [f"| {r['run']} | {r['steps']:,} | {np.mean(r['spread']):.3f} | {p(r['recall_other_context'])} | "
           f"{p(r['recall_other_start'])} |" for r in rows]
    return md


def full_table(full: dict) -> list[str]:
    return (["| model | ours % | paper % | steps | train time | machine, commit |", "|---|---:|---:|---:|---:|---|"]
            + [f"| {NAMES[r['row']]} | {pct(r['fully_correct'])} | {PAPER[r['row']]} | {r['train_steps']:,} | "
               f"{r['train_seconds'] / 60:.0f} min | {where(r['machine'])} |" for r in full["rows"]])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=Path, default=Path("runs/synthetic"))
    p.add_argument("--notes", type=Path, default=results_dir() / "synthetic_notes.md",
                   help="markdown about the runs' conditions and their reading, included as written")
    a = p.parse_args(argv)
    results = results_dir()
    last = results / "synthetic.json"
    last = json.loads(last.read_text()) if last.is_file() else {}
    order = list(SHORT.values())
    rows = sorted(carried(last.get("short", []), short_runs(a.runs), lambda r: r["dir"]),
                  key=lambda r: (order.index(r["key"]), r["seed"]))
    ham_path = a.runs / "hamming-short.json"
    ham = json.loads(ham_path.read_text()) if ham_path.is_file() else last.get("hamming_short")
    gap_rows = gaps(rows)
    # keyed by run: a run probed here again replaces all its old rows (steps it did not reach too)
    probe_rows = sorted(carried(last.get("probe", []), probes(a.runs, rows), lambda r: r["run"]),
                        key=lambda r: (r["steps"] > 0, r["run"], r["steps"]))
    full_path = results / "synthetic_full.json"
    full = json.loads(full_path.read_text()) if full_path.is_file() else None
    (results / "synthetic.json").write_text(json.dumps({"short": rows, "hamming_short": ham, "gaps": gap_rows,
                                                        "probe": probe_rows, "paper": PAPER}, indent=2))
    here = [r for r in rows if (a.runs / r["dir"] / "eval.json").is_file()]   # finished here (not a namesake in training)
    if here:   # the curves of the runs whose logs are in this checkout
        curves(a.runs, here, results / "synthetic_curves.png")
    md = ["# Synthetic rare-function task (paper Table 2)", "",
          "## The `short` preset (lengths 7-16), at most 2 hours of CPU a row", "",
          "The task of Table 2 with inputs of 7-16 symbols instead of 7-40 (the same S, the same f, 40K training "
          "and 10K distinct test examples; models/neural_gpu/task.py), about 4x cheaper. Greedy decoding; "
          "\"seen\" = the test example's number occurs in some training example (the rare events the memory must "
          "remember). A trained row makes its choices on a validation set (1,000 examples drawn like the test "
          "set, disjoint from it: `task.validation_set`) and is scored once on the 9,000 test examples no choice "
          "read (the first 1,000 steered the recipes' earlier development); a gap is only taken between rows "
          "scored on the same examples. These rows are on lengths 7-16, the paper's Table 2 on 7-40: the two are "
          "not compared. Curves: `synthetic_curves.png`.", ""]
    md += short_tables(rows, ham, gap_rows) if rows or ham else ["(no finished short-preset run yet)"]
    if probe_rows:
        md += ["", "Do the memory queries name the number? The probe (`python -m raremem.models.neural_gpu.probe`: "
               "1,000 numbers of S, each in two A/B contexts; recall = the query's nearest neighbour among the other "
               "context's queries at the same digit is its own number's; chance 0.1%) at kept checkpoints:", ""]
        md += probe_table(probe_rows)
    if a.notes and a.notes.is_file():
        md += ["", a.notes.read_text().rstrip()]
    md += ["", "Commands:", ""] + [f"- {r['key']}, seed {r['seed']}: `{r['command']}`" for r in rows]
    if ham:
        md.append(f"- hamming: `{ham['command']}`")
    if full:
        md += ["", "## The full task (lengths 7-40): earlier runs, 1-3 epochs each", "",
               "Measured before the authors' recipe and the short preset (recorded in `synthetic_full.json`, curves "
               "`synthetic_full_curves.png`); each row got 30-40 minutes of CPU, against training of order 10^5 steps "
               "in the paper.", ""] + full_table(full)
    md.append("")
    (results / "synthetic.md").write_text("\n".join(md))
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
