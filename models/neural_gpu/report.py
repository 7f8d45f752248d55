"""results/synthetic.{md,json,png}: Table 2 from the runs' eval.json files, beside the paper.

    python -m models.neural_gpu.report --runs runs/synthetic [--admin runs/synthetic/admin-stats.txt]

Each row carries its compute (steps, wall time, machine) and command from the run's own record.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
# Table 2 of the paper: fully correct sequences on the 10K test examples, in %.
PAPER = {"hamming": 0.1, "seq2seq": 0.9, "ngpu": 12.2, "seq2seq + memory": 35.2, "ngpu + memory": 71.3}
NAMES = {"hamming": "Hamming nearest neighbour", "seq2seq": "seq2seq + attention (2x256 LSTM)",
         "ngpu": "Extended Neural GPU (32 channels)", "seq2seq + memory": "seq2seq + attention + memory",
         "ngpu + memory": "Extended Neural GPU + memory"}
DIRS = {"seq2seq": "seq2seq", "ngpu": "ngpu", "seq2seq + memory": "seq2seq-memory", "ngpu + memory": "ngpu-memory"}


def load_rows(runs: Path) -> list[dict]:
    rows = []
    ham = runs / "hamming.json"
    if ham.is_file():
        h = json.loads(ham.read_text())
        rows.append({"row": "hamming", "fully_correct": h["fully_correct"], "command": h["command"],
                     "machine": h["machine"], "train_steps": 0, "train_seconds": 0.0})
    for row, d in DIRS.items():
        ev = runs / d / "eval.json"
        if not ev.is_file():
            continue
        run = json.loads((runs / d / "run.json").read_text())
        rows.append({**json.loads(ev.read_text()), "command": run["command"], "machine": run["machine"],
                     "config": run["config"]})
    order = list(PAPER)
    return sorted(rows, key=lambda r: order.index(r["row"]))


def curves(runs: Path, out: Path) -> None:
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for row, d in DIRS.items():
        path = runs / d / "metrics.jsonl"
        if not path.is_file():
            continue
        data = [json.loads(line) for line in path.read_text().splitlines()]
        ce = np.convolve([r["ce"] for r in data], np.ones(100) / 100, mode="valid")   # batches differ in length
        a.plot([r["step"] for r in data][99:], ce, label=row)
        ev = [r for r in data if "test_fully_correct" in r]
        b.plot([r["step"] for r in ev], [100 * r["test_fully_correct"] for r in ev], marker="o", label=row)
    a.set(xlabel="step", ylabel="cross-entropy, mean of 100 batches", title="training loss")
    b.set(xlabel="step", ylabel="% fully correct", title="test subset (500 examples), greedy")
    for ax in (a, b):
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=Path, default=ROOT / "runs" / "synthetic")
    p.add_argument("--admin", type=Path, help="raremem-admin stats output of the trained memory to include")
    p.add_argument("--notes", type=Path, help="markdown about the runs' conditions, included as written")
    a = p.parse_args(argv)
    rows = load_rows(a.runs)
    results = ROOT / "results"
    results.mkdir(exist_ok=True)
    (results / "synthetic.json").write_text(json.dumps({"rows": rows, "paper": PAPER}, indent=2))
    curves(a.runs, results / "synthetic_curves.png")
    md = ["# Synthetic rare-function task (paper Table 2)", "",
          "Fully correct output sequences on the 10,000 test examples (greedy decoding), beside the paper. "
          "Task, models and interpretations: `models/neural_gpu/`. Curves: `synthetic_curves.png`.", "",
          "| model | ours % | paper % | steps | train time | machine, commit |", "|---|---:|---:|---:|---:|---|"]
    for r in rows:
        m = r["machine"]
        md.append(f"| {NAMES[r['row']]} | {100 * r['fully_correct']:.2f} | {PAPER[r['row']]} | {r['train_steps']:,} | "
                  f"{r['train_seconds'] / 60:.0f} min | {m['cores']}-core {m['cpu'].split('(')[0].strip()}, "
                  f"`{m['commit']}` |")
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
    if a.notes and a.notes.is_file():
        md += ["", a.notes.read_text().rstrip()]
    md += ["", "Commands:", ""] + [f"- {r['row']}: `{r['command']}`" for r in rows]
    if a.admin and a.admin.is_file():
        md += ["", "`raremem-admin stats` on the trained Neural GPU memory:", "", "```", a.admin.read_text().rstrip(), "```"]
    md.append("")
    (results / "synthetic.md").write_text("\n".join(md))
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
