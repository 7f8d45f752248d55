"""Table 3 on Multi30k (and newstest2014 out of domain): the baseline and the memory model,
without context, with the even lines as one-shot context (odd lines scored) and with the whole
test set as context (the oracle). Every memory row starts from a fresh copy of the trained
memory (restored under another name on a server of its own); the trained one is never written.

    python -m models.translation.report --split test_2016_flickr     # -> runs/translation/eval-<split>.json
    python -m models.translation.report --split newstest2014
    python -m models.translation.report --tables                     # -> results/translation.{md,json}
"""

from __future__ import annotations

import torch  # noqa: I001 - torch before faiss (DESIGN §5)

import argparse
import dataclasses
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from models import runinfo
from models.training import memory_server, parameters_digest
from models.translation import data
from models.translation.evaluate import bleu, context_pass, rare_hits, rare_recall, translate, word_counts
from models.translation.subwords import Subwords
from models.translation.train import TrainConfig, make_model

COPY = "translation/eval-copy"
PAPER = {"GNMT": (23.25, 23.17), "GNMT + memory": (23.29, 23.16),
         "GNMT + memory, even-line context": (None, 23.60), "GNMT + memory, whole-test context": (31.11, None)}


def load_run(run: Path, address: str | None, memory_name: str = ""):
    """(config, model with trained weights, training summary); with memory, the model's backend
    is the memory ``memory_name`` on ``address``."""
    ckpt = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=False)
    cfg = TrainConfig(**ckpt["config"])
    backend_cfg = dataclasses.replace(cfg, memory_name=memory_name or cfg.memory_name)
    sw = Subwords(Path(cfg.spm))
    model = make_model(backend_cfg, address if cfg.memory_layer else None, len(sw))
    model.load_state_dict(ckpt["model"])
    model.eval()
    summary = json.loads((run / "replica-0.json").read_text())
    return cfg, model, sw, summary


def _scores(hyps: list[str], refs: list[str], lines: list[int], counts) -> dict:
    h, r = [hyps[i] for i in lines], [refs[i] for i in lines]
    return {**bleu(h, r), **rare_recall(h, r, counts)}


def evaluate_split(baseline: Path, memory: Path, split: str, width: int, limit: int, passes: int) -> dict:
    test = data.load(split, Path(TrainConfig().data_dir))
    src, ref = test.source[:limit or None], test.target[:limit or None]
    odd, even = list(range(0, len(src), 2)), list(range(1, len(src), 2))
    b_cfg, b_model, sw, b_summary = load_run(baseline, None)
    counts = word_counts(data.load("train", Path(b_cfg.data_dir)).target)
    rows, hyps = {}, {}

    def record(name, summary, hyp, lines_full, seconds, **extra):
        rows[name] = {"full": _scores(hyp, ref, lines_full, counts) if lines_full else None,
                      "odd": _scores(hyp, ref, odd, counts), "decode_seconds": round(seconds, 1),
                      "train_steps": summary["steps"], "train_minutes": round(summary["wall_seconds"] / 60, 1),
                      **extra}
        hyps[name] = hyp
        print(f"{split} {name}: " + json.dumps({k: v for k, v in rows[name].items() if k in ("full", "odd")}), flush=True)

    t0 = time.perf_counter()
    record("GNMT", b_summary, translate(b_model, sw, src, width), range(len(src)), time.perf_counter() - t0)

    m_ckpt_cfg = TrainConfig(**torch.load(memory / "checkpoint.pt", map_location="cpu", weights_only=False)["config"])
    with tempfile.TemporaryDirectory() as tmp:     # the server writes here, never into the run
        shutil.copytree(memory / "memory", Path(tmp) / "memory")
        with memory_server("spawn", Path(tmp) / "memory") as address:
            from client import MemoryClient  # noqa: PLC0415
            from server.persistence import default_file  # noqa: PLC0415

            client = MemoryClient(address)
            trained = default_file(m_ckpt_cfg.memory_name)
            client.restore(COPY, trained)
            _, model, _, summary = load_run(memory, address, COPY)
            digest = parameters_digest(model)

            def fresh(context: list[int]) -> dict:
                """Restore the copy, pass ``context`` lines through memory updates; what it did."""
                client.restore(COPY, trained)
                before = client.stats(COPY)["info"]["filled"]
                writes = context_pass(model, sw, [src[i] for i in context], [ref[i] for i in context], passes) \
                    if context else 0
                after = client.stats(COPY)
                assert parameters_digest(model) == digest, "a context pass changed the weights"
                return {"context_lines": len(context), "context_writes": writes, "filled_before": before,
                        "filled_after": after["info"]["filled"], "parameters_unchanged": True}

            for name, context, decode in (("GNMT + memory", [], range(len(src))),
                                          ("GNMT + memory, even-line context", even, odd),
                                          ("GNMT + memory, whole-test context", list(range(len(src))), range(len(src)))):
                t0 = time.perf_counter()
                ctx = fresh(context)
                decoded = translate(model, sw, [src[i] for i in decode], width)
                hyp = [""] * len(src)
                for i, text in zip(decode, decoded, strict=True):
                    hyp[i] = text
                full = range(len(src)) if len(decode) == len(src) else None
                record(name, summary, hyp, full, time.perf_counter() - t0, **ctx)
            client.close()
    examples = worked_examples(src, ref, hyps, odd, counts)
    return {"split": split, "lines": len(src), "beam_width": width, "context_passes": passes, "rows": rows,
            "examples": examples, "hypotheses": hyps, "machine": runinfo.machine(), "command": runinfo.command()}


def worked_examples(src, ref, hyps, lines, counts, n: int = 3) -> list[dict]:
    """Lines where a memory row got a rare reference word (seen <= 2 times in training) that the
    baseline missed: the plain memory model first, then with even-line context."""
    out = []
    for name in ("GNMT + memory", "GNMT + memory, even-line context"):
        for i in lines:
            won = rare_hits(hyps[name][i], ref[i], counts) - rare_hits(hyps["GNMT"][i], ref[i], counts)
            if won and len(out) < n and all(e["line"] != i + 1 for e in out):
                out.append({"line": i + 1, "row": name, "rare_words": sorted(won), "source": src[i],
                            "baseline": hyps["GNMT"][i], "memory": hyps[name][i], "reference": ref[i],
                            "training_counts": {w: counts[w] for w in sorted(won)}})
    return out


def _cell(score: dict | None, key: str = "bleu") -> str:
    return "—" if score is None else f"{score[key]:.2f}" if key == "bleu" else f"{score[key]:.3f}"


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
        md.append(f"| {name} | " + " | ".join(cells) + f" | {pf or '—'} / {po or '—'} |")
    md += ["", "Rare words: recall of reference words seen at most twice in training (clipped counts; "
           "count of such word occurrences in brackets).", "",
           "| row | " + " | ".join(f"{p['split']} full | odd" for p in parts) + " |", "|---|" + "---:|---:|" * len(parts)]
    for name in PAPER:
        cells = []
        for p in parts:
            full, odd = p["rows"][name]["full"], p["rows"][name]["odd"]
            cells.append(f"{_cell(full, 'rare_recall')} | {_cell(odd, 'rare_recall')} ({odd['rare_words']})")
        md.append(f"| {name} | " + " | ".join(cells) + " |")
    first = parts[0]
    md += ["", f"Worked examples ({first['split']}, odd lines, where memory got a rare word the baseline missed):", ""]
    for e in first["examples"]:
        md += [f"- line {e['line']} ({e['row']}; {', '.join(f'`{w}` seen {c}x' for w, c in e['training_counts'].items())})",
               f"  - source: {e['source']}", f"  - baseline: {e['baseline']}", f"  - memory: {e['memory']}",
               f"  - reference: {e['reference']}"]
    return "\n".join(md) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--baseline", type=Path, default=Path("runs/translation/baseline"))
    p.add_argument("--memory", type=Path, default=Path("runs/translation/memory"))
    p.add_argument("--split", help="decode this test set (test_2016_flickr, newstest2014, ...)")
    p.add_argument("--limit", type=int, default=0, help="first lines only (0 = all)")
    p.add_argument("--width", type=int, default=4)
    p.add_argument("--passes", type=int, default=3)
    p.add_argument("--tables", action="store_true", help="results/translation.{md,json} from the eval files")
    p.add_argument("--splits", nargs="+", default=["test_2016_flickr", "newstest2014"])
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--notes", default="", help="markdown appended to the tables (training, machine)")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.split:
        result = evaluate_split(a.baseline, a.memory, a.split, a.width, a.limit, a.passes)
        (a.memory.parent / f"eval-{a.split}.json").write_text(json.dumps(result, indent=1))
    if a.tables:
        parts = [json.loads((a.memory.parent / f"eval-{s}.json").read_text()) for s in a.splits]
        md = tables(parts) + (Path(a.notes).read_text() if a.notes else "")
        runinfo.write_results("translation", [{k: v for k, v in p.items() if k != "hypotheses"} for p in parts], md.splitlines())
    return 0


if __name__ == "__main__":
    sys.exit(main())
