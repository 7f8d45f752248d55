"""Table 3 on Multi30k (and newstest2014 out of domain): the baseline and the memory model,
without context, with the even lines as one-shot context (odd lines scored) and with the whole
test set as context (the oracle). Every memory row starts from a fresh copy of the trained
memory (restored under another name on a server of its own); the trained one is never written.

    python -m raremem.models.translation.report --split test_2016_flickr     # -> runs/translation/eval-<split>.json
    python -m raremem.models.translation.report --split newstest2014
    python -m raremem.models.translation.report --split newstest2014 --models baseline   # one model now, the other later
    python -m raremem.models.translation.report --tables                     # -> results/translation.{md,json}
"""

from __future__ import annotations

import torch  # noqa: I001 - torch before faiss (DESIGN §5)

import argparse
import dataclasses
import functools
import json
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from raremem.client import MemoryClient
from raremem.models import runinfo
from raremem.models.plots import finish, plt, smoothed
from raremem.models.training import memory_server, parameters_digest
from raremem.models.translation import data
from raremem.models.translation.evaluate import bleu, context_pass, rare_hits, rare_recall, translate, word_counts
from raremem.models.translation.subwords import Subwords
from raremem.models.translation.train import TrainConfig, make_model
from raremem.server.persistence import default_file


COPY = "translation/eval-copy"
PAPER = {"GNMT": (23.25, 23.17), "GNMT + memory": (23.29, 23.16),
         "GNMT + memory, even-line context": (None, 23.60), "GNMT + memory, whole-test context": (31.11, None)}


def load_run(run: Path, address: str | None, memory_name: str = ""):
    """(model with the trained weights, subwords, training summary); with memory, the model's
    backend is the memory ``memory_name`` on ``address``."""
    ckpt = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=False)
    cfg = TrainConfig(**ckpt["config"])   # the run's own config: its subwords, sizes and memory
    backend_cfg = dataclasses.replace(cfg, memory_name=memory_name or cfg.memory_name)
    sw = Subwords(Path(cfg.spm))
    model = make_model(backend_cfg, address if cfg.memory_layer else None, len(sw))
    model.load_state_dict(ckpt["model"])
    model.eval()
    summary = json.loads((run / "replica-0.json").read_text())
    return model, sw, summary


@functools.cache
def training_counts() -> Counter:
    """How often each German word occurs in the training targets (what "rare" is measured by)."""
    return word_counts(data.load("train", Path(TrainConfig().data_dir)).target)


def _scores(hyps: list[str], refs: list[str], lines: list[int], counts) -> dict:
    h, r = [hyps[i] for i in lines], [refs[i] for i in lines]
    return {**bleu(h, r), **rare_recall(h, r, counts)}


def evaluate_split(baseline: Path, memory: Path, split: str, width: int, limit: int, passes: int,
                   models: tuple[str, ...] = ("baseline", "memory"), earlier: dict | None = None) -> dict:
    """Decode ``split`` with the rows of ``models``; rows of ``earlier`` (the same split, lines and
    width, decoded before) are kept, so the baseline can be decoded while the memory model trains."""
    test = data.load(split, Path(TrainConfig().data_dir))
    src, ref = test.source[:limit or None], test.target[:limit or None]
    odd, even = list(range(0, len(src), 2)), list(range(1, len(src), 2))
    counts = training_counts()
    same = earlier and (earlier["lines"], earlier["beam_width"], earlier["context_passes"]) == (len(src), width, passes)
    rows, hyps = (dict(earlier["rows"]), dict(earlier["hypotheses"])) if same else ({}, {})
    stamp = {"machine": runinfo.machine(), "command": runinfo.command()}

    def record(name, summary, hyp, lines_full, seconds, **extra):
        rows[name] = {"full": _scores(hyp, ref, lines_full, counts) if lines_full else None,
                      "odd": _scores(hyp, ref, odd, counts), "decode_seconds": round(seconds, 1),
                      "train_steps": summary["steps"], "train_minutes": round(summary["wall_seconds"] / 60, 1),
                      **extra, **stamp}
        hyps[name] = hyp
        print(f"{split} {name}: " + json.dumps({k: v for k, v in rows[name].items() if k in ("full", "odd")}), flush=True)

    if "baseline" in models:
        t0 = time.perf_counter()
        b_model, sw, b_summary = load_run(baseline, None)
        record("GNMT", b_summary, translate(b_model, sw, src, width), range(len(src)), time.perf_counter() - t0)
    if "memory" in models:
        trained = default_file(json.loads((memory / "run.json").read_text())["config"]["memory_name"])
        with tempfile.TemporaryDirectory() as tmp:     # the server writes here, never into the run
            shutil.copytree(memory / "memory", Path(tmp) / "memory")
            with memory_server("spawn", Path(tmp) / "memory") as address, MemoryClient(address) as client:
                client.restore(COPY, trained)
                model, sw, summary = load_run(memory, address, COPY)
                digest = parameters_digest(model)

                def fresh(context: list[int]) -> dict:
                    """Restore the copy, pass ``context`` lines through memory updates; what it did."""
                    client.restore(COPY, trained)
                    before = client.stats(COPY)["info"]["filled"]
                    writes = context_pass(model, sw, [src[i] for i in context], [ref[i] for i in context],
                                          passes) if context else 0
                    assert parameters_digest(model) == digest, "a context pass changed the weights"
                    return {"context_lines": len(context), "context_writes": writes, "filled_before": before,
                            "filled_after": client.stats(COPY)["info"]["filled"], "parameters_unchanged": True}

                everything = list(range(len(src)))
                for name, context, decode in (("GNMT + memory", [], everything),
                                              ("GNMT + memory, even-line context", even, odd),
                                              ("GNMT + memory, whole-test context", everything, everything)):
                    t0 = time.perf_counter()
                    ctx = fresh(context)
                    hyp = [""] * len(src)
                    for i, text in zip(decode, translate(model, sw, [src[i] for i in decode], width), strict=True):
                        hyp[i] = text
                    record(name, summary, hyp, everything if decode is everything else None,
                           time.perf_counter() - t0, **ctx)
    return {"split": split, "lines": len(src), "beam_width": width, "context_passes": passes, "rows": rows,
            "hypotheses": hyps}


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
    finish(fig, runinfo.ROOT / "results" / "translation_curves.png", a, b)
    md += ["", "Commands: " + "; ".join(f"{n}: `{i['command']}`" for n, i in info.items()), ""]
    return md, info


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--baseline", type=Path, default=Path("runs/translation/baseline"))
    p.add_argument("--memory", type=Path, default=Path("runs/translation/memory"))
    p.add_argument("--split", help="decode this test set (test_2016_flickr, newstest2014, ...)")
    p.add_argument("--limit", type=int, default=0, help="first lines only (0 = all)")
    p.add_argument("--width", type=int, default=4)
    p.add_argument("--passes", type=int, default=3)
    p.add_argument("--models", nargs="+", choices=("baseline", "memory"), default=["baseline", "memory"],
                   help="decode these rows (the others are kept from an earlier eval file of the same split)")
    p.add_argument("--tables", action="store_true", help="results/translation.{md,json} from the eval files")
    p.add_argument("--splits", nargs="+", default=["test_2016_flickr", "newstest2014"])
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--notes", default="", help="markdown appended to the tables (training, machine)")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.split:
        path = a.memory.parent / f"eval-{a.split}.json"
        earlier = json.loads(path.read_text()) if path.is_file() else None
        result = evaluate_split(a.baseline, a.memory, a.split, a.width, a.limit, a.passes, tuple(a.models), earlier)
        path.write_text(json.dumps(result, indent=1))
    if a.tables:
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
