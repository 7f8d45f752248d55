"""results/translation.{md,json,png}: Table 3 on Multi30k (and newstest2014 out of domain)
from the eval files of ``python -m raremem.models.translation.protocol``, beside the paper, with
worked examples and the training curves.

    python -m reports.translation                     # -> results/translation.{md,json}
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from raremem.models import runinfo
from raremem.models.paths import results_dir
from raremem.models.translation import data
from raremem.models.translation.evaluate import rare_hits
from raremem.models.translation.protocol import training_counts
from raremem.models.translation.train import TrainConfig
from reports.plots import finish, plt, smoothed


PAPER = {"GNMT": (23.25, 23.17), "GNMT + memory": (23.29, 23.16),
         "GNMT + memory, even-line context": (None, 23.60), "GNMT + memory, whole-test context": (31.11, None)}


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
        cells = [f"{_cell(p['rows'][name]['full'])} | {_cell(p['rows'][name]['odd'])}" for p in parts]
        md.append(f"| {name} | " + " | ".join(cells) + f" | {_paper(pf)} / {_paper(po)} |")
    md += ["", "Rare words: recall of reference words seen at most twice in training (clipped counts; "
           "count of such word occurrences in brackets).", "",
           "| row | " + " | ".join(f"{p['split']} full | odd" for p in parts) + " |", "|---|" + "---:|---:|" * len(parts)]
    for name in PAPER:
        cells = []
        for p in parts:
            full, odd = p["rows"][name]["full"], p["rows"][name]["odd"]
            cells.append(f"{_cell(full, 'rare_recall')} | {_cell(odd, 'rare_recall')} ({odd['rare_words']})")
        md.append(f"| {name} | " + " | ".join(cells) + " |")
    md += ["", "Decoding (each row's own record in the JSON):", ""]
    for p in parts:
        for name, row in p["rows"].items():
            ctx = f", context {row['context_lines']} lines -> {row['context_writes']:,} memory writes" \
                if row.get("context_lines") else ""
            md.append(f"- {p['split']}, {name}: {row['decode_seconds']} s{ctx}; `{row['command']}` at "
                      f"`{row['machine'].get('commit', '?')}`, {row['machine'].get('cpu', '?')}")
    first = parts[0]
    md += ["", f"Worked examples ({first['split']}; where a memory row got a rare word the baseline missed):", ""]
    for e in first["examples"]:
        md += [f"- line {e['line']} ({e['row']}; {', '.join(f'`{w}` seen {c}x' for w, c in e['training_counts'].items())})",
               f"  - source: {e['source']}", f"  - baseline: {e['baseline']}", f"  - memory: {e['memory']}",
               f"  - reference: {e['reference']}"]
    return "\n".join(md) + "\n"


def training(runs: dict[str, Path]) -> tuple[list[str], dict]:
    """A table of what each model's training got (steps, time, last validation BLEU) and the
    curves (cross-entropy, validation BLEU) in results/translation_curves.png."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    md = ["", "## Training", "", "| model | steps | train time | sentences seen | last val BLEU (greedy, 256 lines) | machine, commit |",
          "|---|---:|---:|---:|---:|---|"]
    info = {}
    for name, run in runs.items():
        rows = [json.loads(line) for line in open(run / "metrics.jsonl")]
        record = json.loads((run / "run.json").read_text())
        summary = json.loads((run / "replica-0.json").read_text())
        val = [r for r in rows if "val_bleu" in r]
        a.plot(*smoothed(rows, "ce", 50), label=name)
        b.plot([r["step"] for r in val], [r["val_bleu"] for r in val], marker="o", label=name)
        m = record["machine"]
        info[name] = {"steps": summary["steps"], "train_minutes": round(summary["wall_seconds"] / 60, 1),
                      "sentences": summary["steps"] * record["config"]["batch"],
                      "val_bleu": val[-1]["val_bleu"] if val else None, "command": record["command"], "machine": m}
        md.append(f"| {name} | {summary['steps']:,} | {info[name]['train_minutes']} min | {info[name]['sentences']:,} | "
                  f"{info[name]['val_bleu']} | {m.get('cpu', '?')}, `{m.get('commit', '?')}` |")
    a.set(xlabel="step", ylabel="cross-entropy (50-step mean)", title="training")
    b.set(xlabel="step", ylabel="BLEU", title="validation (greedy, first 256 lines)")
    finish(fig, results_dir() / "translation_curves.png", a, b)
    md += ["", "Commands: " + "; ".join(f"{n}: `{i['command']}`" for n, i in info.items()), ""]
    return md, info


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--baseline", type=Path, default=Path("runs/translation/baseline"))
    p.add_argument("--memory", type=Path, default=Path("runs/translation/memory"))
    p.add_argument("--splits", nargs="+", default=["test_2016_flickr", "newstest2014"])
    p.add_argument("--notes", default="", help="markdown appended to the tables (training, machine)")
    a = p.parse_args(argv)
    parts = [json.loads((a.memory.parent / f"eval-{s}.json").read_text()) for s in a.splits]
    for part in parts:
        part["examples"] = worked_examples(part)
    train_md, train_info = training({"GNMT": a.baseline, "GNMT + memory": a.memory})
    md = tables(parts).splitlines() + train_md + (Path(a.notes).read_text().splitlines() if a.notes else [])
    runinfo.write_results("translation", {"training": train_info, "evaluations": [
        {k: v for k, v in p.items() if k != "hypotheses"} for p in parts]}, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
