"""Write results/omniglot.{md,json} and plots from a training run and its evaluations.

    python -m reports.omniglot --run runs/omniglot-cpu \\
        --model-eval runs/omniglot-cpu/eval.json --pixel-eval runs/pixel_nn.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from raremem.models.paths import results_dir
from reports.plots import finish, plt, smoothed

PAPER = {"5-way": {1: 98.4, 5: 99.6}, "20-way": {1: 95.0, 5: 98.6}}
PAPER_PIXEL = {"5-way": {1: 41.7, 5: 63.2}, "20-way": {1: 26.7, 5: 42.6}}


def plot_curves(rows: list[dict], path: Path) -> None:
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    ax1.plot(*smoothed(rows, "loss", len(rows) // 100))
    ax1.set(xlabel="step (episode batch)", ylabel="memory loss (smoothed)", title="training loss")
    val = [r for r in rows if "val_1shot" in r]
    for s in (1, 2, 5):
        ax2.plot([r["step"] for r in val], [100 * r[f"val_{s}shot"] for r in val], marker=".", label=f"{s}-shot")
    ax2.set(xlabel="step", ylabel="accuracy (%)", title="validation, 5-way, held-out classes")
    finish(fig, path, ax2, dpi=110)


def plot_kshot(model: dict, pixel: dict, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, style in (("5-way", "-"), ("20-way", "--")):
        for name, res, color in (("memory model", model, "C0"), ("pixel NN", pixel, "C1")):
            acc = [100 * a for a in res[key]["accuracy"]]
            ax.plot(range(len(acc)), acc, style, color=color, marker="o", label=f"{name}, {key}")
    ax.set(xlabel="times the class was seen before (k-shot)", ylabel="accuracy (%)",
           title="k-shot accuracy on held-out classes")
    finish(fig, path, ax, dpi=110, fontsize=8)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", type=Path, required=True)
    p.add_argument("--model-eval", type=Path, required=True)
    p.add_argument("--pixel-eval", type=Path, required=True)
    p.add_argument("--throughput", type=Path, default=results_dir() / "omniglot_throughput.json")
    p.add_argument("--out", type=Path, default=results_dir())
    args = p.parse_args(argv)
    rows = [json.loads(line) for line in open(args.run / "metrics.jsonl")]
    run = json.loads((args.run / "run.json").read_text())
    model, pixel = json.loads(args.model_eval.read_text()), json.loads(args.pixel_eval.read_text())
    throughput = json.loads(args.throughput.read_text()) if args.throughput.is_file() else None
    args.out.mkdir(exist_ok=True)
    plot_curves(rows, args.out / "omniglot_curve.png")
    plot_kshot(model, pixel, args.out / "omniglot_kshot.png")

    def cell(res, key, s):
        return f"{100 * res[key]['accuracy'][s]:.1f} ± {100 * res[key]['ci95'][s]:.1f}"

    m = run["machine"]
    lines = [
        "# Omniglot (paper Table 1)", "",
        f"Training: `{run['command']}` at commit `{m['commit']}`, started {m['time']}; {m['cpu']}, "
        f"{m['cores']} cores, CPU only. {rows[-1]['step']} steps (episode batches of {run['config']['batch']} x "
        f"{run['config']['width']}-way x {run['config']['shots']} draws) in {rows[-1]['wall'] / 60:.0f} min, "
        "memory on a raremem server (spawned by the trainer).", "",
        f"Evaluation: `{model.get('command', '')}` — {model['5-way']['episodes']} episodes per setting on the 659 "
        "held-out classes, one episode at a time in an emptied memory, accuracy ± 95% interval over episodes.", "",
        "| model | 5-way 1-shot | 5-way 5-shot | 20-way 1-shot | 20-way 5-shot |",
        "|---|---:|---:|---:|---:|",
        f"| memory model (ours, CPU budget) | {cell(model, '5-way', 1)} | {cell(model, '5-way', 5)} | "
        f"{cell(model, '20-way', 1)} | {cell(model, '20-way', 5)} |",
        f"| paper | {PAPER['5-way'][1]} | {PAPER['5-way'][5]} | {PAPER['20-way'][1]} | {PAPER['20-way'][5]} |",
        f"| pixel NN (ours) | {cell(pixel, '5-way', 1)} | {cell(pixel, '5-way', 5)} | "
        f"{cell(pixel, '20-way', 1)} | {cell(pixel, '20-way', 5)} |",
        f"| pixel NN (paper) | {PAPER_PIXEL['5-way'][1]} | {PAPER_PIXEL['5-way'][5]} | "
        f"{PAPER_PIXEL['20-way'][1]} | {PAPER_PIXEL['20-way'][5]} |", "",
        "Full k-shot curve (accuracy %, memory model):", "",
        "| | " + " | ".join(f"{s}-shot" for s in range(6)) + " |", "|---|" + "---:|" * 6]
    for key in ("5-way", "20-way"):
        lines.append(f"| {key} | " + " | ".join(f"{100 * a:.1f}" for a in model[key]["accuracy"]) + " |")
    val = [r for r in rows if "val_1shot" in r]
    lines += ["", "Validation during training (5-way, 200 episodes; 1-shot / 5-shot %):", "",
              "| step | minutes | 1-shot | 5-shot |", "|---:|---:|---:|---:|"]
    for r in val[:: max(1, len(val) // 12)] + ([val[-1]] if len(val) % max(1, len(val) // 12) else []):
        lines.append(f"| {r['step']} | {r['wall'] / 60:.0f} | {100 * r['val_1shot']:.1f} | {100 * r['val_5shot']:.1f} |")
    if throughput:
        t = throughput["steps_per_second"]
        lines += ["", f"Training throughput ({throughput['machine']['commit']}, `{throughput['command']}`): "
                  f"remote {t['remote']:.3f} steps/s, in-process {t['local']:.3f} steps/s, "
                  f"ratio **{throughput['remote/local']:.3f}** (target >= 0.85)."]
    gaps = {f"{key} {s}-shot": PAPER[key][s] - 100 * model[key]["accuracy"][s] for key in PAPER for s in (1, 5)}
    lines += ["", "Gap to the paper (points): " + ", ".join(f"{k} {v:.1f}" for k, v in gaps.items()) + ". "
              "The bar (within 1 point on each) is not reached on this CPU budget. The training loss is "
              "still falling and validation 1-shot still rising at the end of the run (see the curve); "
              "the model was trained 5-way only and evaluated on 20-way as well."]
    lines += ["", "![learning curve](omniglot_curve.png)", "", "![k-shot accuracy](omniglot_kshot.png)", ""]
    (args.out / "omniglot.md").write_text("\n".join(lines))
    (args.out / "omniglot.json").write_text(json.dumps(
        {"run": run, "steps": rows[-1]["step"], "train_minutes": rows[-1]["wall"] / 60, "model": model,
         "pixel_nn": pixel, "paper": PAPER, "paper_pixel_nn": PAPER_PIXEL, "validation": val,
         "throughput": throughput}, indent=2))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
