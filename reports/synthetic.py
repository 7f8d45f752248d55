"""results/synthetic.{md,json,png}: Table 2 from the runs' eval.json files, beside the paper.

    python -m reports.synthetic --runs runs/synthetic [--admin runs/synthetic/admin-stats.txt]

Each row carries its compute (steps, wall time, machine) and command from the run's own record.
"""

from __future__ import annotations

import argparse
import json
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
         "ngpu + memory": "Extended Neural GPU + memory"}
DIRS = {"seq2seq": "seq2seq", "ngpu": "ngpu", "seq2seq + memory": "seq2seq-memory", "ngpu + memory": "ngpu-memory"}
# Runs beside Table 2 that test why its memory rows fail (directory: what differs).
VARIANTS = {"ngpu-memory-lr1e-4": "Neural GPU + memory, lr 1e-4 (10x lower)",
            "ngpu-memory-frozen": "Neural GPU + memory, weights fixed at initialisation (lr 0)"}


def finished_run(runs: Path, d: str) -> dict | None:
    """A finished run's eval.json with its directory, command, machine and config; None if unfinished."""
    ev = runs / d / "eval.json"
    if not ev.is_file():
        return None
    run = json.loads((runs / d / "run.json").read_text())
    return {**json.loads(ev.read_text()), "dir": d, "command": run["command"], "machine": run["machine"],
            "config": run["config"]}


def load_rows(runs: Path) -> list[dict]:
    rows = []
    ham = runs / "hamming.json"
    if ham.is_file():
        h = json.loads(ham.read_text())
        rows.append({"row": "hamming", "fully_correct": h["fully_correct"], "command": h["command"],
                     "machine": h["machine"], "train_steps": 0, "train_seconds": 0.0})
    rows += [r for r in (finished_run(runs, d) for d in DIRS.values()) if r]
    order = list(PAPER)
    return sorted(rows, key=lambda r: order.index(r["row"]))


def load_variants(runs: Path) -> list[dict]:
    return [r | {"variant": what} for d, what in VARIANTS.items() if (r := finished_run(runs, d))]


def where(m: dict) -> str:
    """A run's machine and commit, as the tables show them."""
    return f"{m['cores']}-core {m['cpu'].split('(')[0].strip()}, `{m['commit']}`"


def probe_rows(runs: Path, rows: list[dict], variants: list[dict]) -> list[dict]:
    """The query probe (models/neural_gpu/probe.py) on fresh models and every finished memory run."""
    f = random_function(0)
    out = [{"model": f"{NAMES[arch + ' + memory']}, at initialisation", "steps": 0,
            **probe(load_model(None, arch), f)} for arch in ("ngpu", "seq2seq")]
    for r in [r for r in rows if r["row"].endswith("+ memory")] + variants:
        out.append({"model": f"{r.get('variant') or NAMES[r['row']]}, after its run", "steps": r["train_steps"],
                    **probe(load_model(str(runs / r["dir"] / "checkpoint.pt"), ""), f)})
    return out


def probe_table(rows: list[dict]) -> list[str]:
    def pct(xs):
        return " ".join(f"{100 * x:.0f}" for x in xs)

    md = ["| queries of | steps | spread (mean cosine) | recall %, other context, digits 0-6 | "
          "recall %, other context and start, digits 0-6 |", "|---|---:|---:|---|---|"]
    for r in rows:
        md.append(f"| {r['model']} | {r['steps']:,} | {np.mean(r['spread']):.3f} | {pct(r['recall_other_context'])} | "
                  f"{pct(r['recall_other_start'])} |")
    return md


def curves(runs: Path, out: Path) -> None:
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for row, d in DIRS.items():
        path = runs / d / "metrics.jsonl"
        if not path.is_file():
            continue
        data = [json.loads(line) for line in path.read_text().splitlines()]
        a.plot(*smoothed(data, "ce", 100), label=row)
        ev = [r for r in data if "test_fully_correct" in r]
        b.plot([r["step"] for r in ev], [100 * r["test_fully_correct"] for r in ev], marker="o", label=row)
    a.set(xlabel="step", ylabel="cross-entropy, mean of 100 batches", title="training loss")
    b.set(xlabel="step", ylabel="% fully correct", title="test subset (500 examples), greedy")
    finish(fig, out, a, b)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=Path, default=Path("runs/synthetic"))
    p.add_argument("--admin", type=Path, help="raremem-admin stats output of the trained memory to include")
    p.add_argument("--notes", type=Path, help="markdown about the runs' conditions, included as written")
    a = p.parse_args(argv)
    rows, variants = load_rows(a.runs), load_variants(a.runs)
    probes = probe_rows(a.runs, rows, variants)
    results = results_dir()
    results.mkdir(parents=True, exist_ok=True)
    (results / "synthetic.json").write_text(json.dumps({"rows": rows, "paper": PAPER, "variants": variants,
                                                        "probe": probes}, indent=2))
    curves(a.runs, results / "synthetic_curves.png")
    md = ["# Synthetic rare-function task (paper Table 2)", "",
          "Fully correct output sequences on the 10,000 test examples (greedy decoding), beside the paper. "
          "Task, models and interpretations: `models/neural_gpu/`. Curves: `synthetic_curves.png`.", "",
          "| model | ours % | paper % | steps | train time | machine, commit |", "|---|---:|---:|---:|---:|---|"]
    for r in rows:
        md.append(f"| {NAMES[r['row']]} | {100 * r['fully_correct']:.2f} | {PAPER[r['row']]} | {r['train_steps']:,} | "
                  f"{r['train_seconds'] / 60:.0f} min | {where(r['machine'])} |")
    md += ["", "| model | digit runs correct % | memory alone: runs right % | function coverage % | "
           "memory filled | lost writes |", "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        if r["row"] == "hamming":
            continue
        mem = r.get("memory", {})
        md.append(f"| {NAMES[r['row']]} | {100 * r['run_correct']:.2f} | "
                  + (f"{100 * r['memory_run_correct']:.2f} | {100 * r['function_coverage']:.2f} | "
                     f"{mem.get('filled', 0):,} | {mem.get('unread_evictions', 0):,} |"
                     if "function_coverage" in r else "— | — | — | — |"))
    if variants:
        md += ["", "Runs beside the table (same harness, one thing changed):", "",
               "| run | fully correct % | memory alone: runs right % | function coverage % | steps | train time | "
               "machine, commit |", "|---|---:|---:|---:|---:|---:|---|"]
        md += [f"| {v['variant']} | {100 * v['fully_correct']:.2f} | {100 * v['memory_run_correct']:.2f} | "
               f"{100 * v['function_coverage']:.2f} | {v['train_steps']:,} | {v['train_seconds'] / 60:.0f} min | "
               f"{where(v['machine'])} |" for v in variants]
    md += ["", "Do the memory queries name the number? (`python -m raremem.models.neural_gpu.probe`: 1,000 numbers of S, "
           "each in two A/B contexts; recall = the query's nearest neighbour among the other context's queries "
           "at the same digit is its own number's; chance 0.1%):", ""] + probe_table(probes)
    if a.notes and a.notes.is_file():
        md += ["", a.notes.read_text().rstrip()]
    md += ["", "Commands:", ""] + [f"- {r['row']}: `{r['command']}`" for r in rows]
    md += [f"- {v['variant']}: `{v['command']}`" for v in variants]
    if a.admin and a.admin.is_file():
        md += ["", "`raremem-admin stats` on the trained Neural GPU memory:", "", "```", a.admin.read_text().rstrip(), "```"]
    md.append("")
    (results / "synthetic.md").write_text("\n".join(md))
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
