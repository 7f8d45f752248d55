"""The Table 3 protocol on a test set: the baseline and the memory model without context,
with the even lines as one-shot context (odd lines scored) and with the whole test set as
context (the oracle). Every memory row starts from a fresh copy of the trained memory (restored
under another name on a server of its own); the trained one is never written.

    python -m raremem.models.translation.protocol --split test_2016_flickr    # -> runs/translation/eval-<split>.json
    python -m raremem.models.translation.protocol --split newstest2014 --models baseline   # one model now, the other later
    python -m raremem.models.translation.protocol --split test_2016_flickr --models memory --memory-run runs/translation/memory-k32 \
        --best --no-context --out runs/translation/memory-k32/eval-test_2016_flickr-best.json        # an ablation's score

``python -m reports.translation`` turns the eval files into results/translation.{md,json}.
"""

from __future__ import annotations

import torch  # noqa: I001 - torch before faiss (design.md §5)

import argparse
import contextlib
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
from raremem.models.checkpoints import parameters_digest
from raremem.models.run import Run
from raremem.models.trainer_memory import memory_server
from raremem.models.translation import data
from raremem.models.translation.evaluate import bleu, context_pass, rare_recall, translate, word_counts
from raremem.models.translation.subwords import Subwords
from raremem.models.translation.train import TrainConfig, make_model
from raremem.proto.types import snapshot_file

COPY = "translation/eval-copy"


def load_run(run: Path, address: str | None, memory_name: str = "", weights: str = "checkpoint.pt"):
    """(model with the trained weights, subwords, training summary); with memory, the model's
    backend is the memory ``memory_name`` on ``address``. ``weights``: the last checkpoint, or
    ``best.pt`` (the best validation's, see Run.keep_best)."""
    ckpt = torch.load(run / weights, map_location="cpu", weights_only=False)
    cfg = TrainConfig(**ckpt["config"])   # the run's own config: its subwords, sizes and memory
    backend_cfg = dataclasses.replace(cfg, memory_name=memory_name or cfg.memory_name)
    sw = Subwords(Path(cfg.spm))
    model = make_model(backend_cfg, address if cfg.memory_layer else None, len(sw))
    model.load_state_dict(ckpt["model"])
    model.eval()
    summary = json.loads((run / "replica-0.json").read_text())
    return model, sw, summary


def chosen_weights(run: Path, best: bool) -> tuple[str, str]:
    """(weights file, memory snapshot) to evaluate a run with: with ``best``, where the run kept
    them, the best validation's (``best.pt`` and the memory snapshotted beside it); else the last
    checkpoint and the memory's last snapshot ("")."""
    if best and (run / Run.BEST).is_file():
        record = run / "best.json"
        return Run.BEST, (json.loads(record.read_text()).get("memory") or "") if record.is_file() else ""
    return "checkpoint.pt", ""


@contextlib.contextmanager
def trained_memory(run: Path, weights: str = "checkpoint.pt", memory_file: str = ""):
    """A memory run's model over a copy of its trained memory on a server of its own (the run's
    files are never written): yields (model, subwords, summary, fresh), where ``fresh()`` puts
    the copy back as trained (``memory_file``, relative to the run's memory dir: default its
    last snapshot). On leaving, checks that nothing changed the weights."""
    trained = memory_file or snapshot_file(json.loads((run / "run.json").read_text())["config"]["memory_name"])
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copytree(run / "memory", Path(tmp) / "memory")
        with memory_server("spawn", Path(tmp) / "memory") as address, MemoryClient(address) as client:
            client.restore(COPY, trained)
            model, sw, summary = load_run(run, address, COPY, weights=weights)
            digest = parameters_digest(model)
            yield model, sw, summary, lambda: client.restore(COPY, trained)
            assert parameters_digest(model) == digest, "a context pass changed the weights"


@functools.cache
def training_counts() -> Counter:
    """How often each German word occurs in the training targets (what "rare" is measured by)."""
    return word_counts(data.load("train", Path(TrainConfig().data_dir)).target)


def _scores(hyps: list[str], refs: list[str], lines: list[int], counts) -> dict:
    h, r = [hyps[i] for i in lines], [refs[i] for i in lines]
    return {**bleu(h, r), **rare_recall(h, r, counts)}


def weights_step(run: Path, best: bool, summary: dict) -> int:
    """The step of the weights ``chosen_weights`` decodes (the best validation's with ``best``)."""
    if chosen_weights(run, best)[0] == Run.BEST:
        return json.loads((run / "best.json").read_text())["step"]
    return summary["steps"]


def evaluate_split(baseline: Path, memory: Path, split: str, width: int, limit: int, passes: int,
                   models: tuple[str, ...] = ("baseline", "memory"), earlier: dict | None = None,
                   best: bool = False, contexts: bool = True) -> dict:
    """Decode ``split`` with the rows of ``models``; rows of ``earlier`` (the same split, lines and
    width, decoded before) are kept, so the baseline can be decoded while the memory model trains.
    Without ``contexts`` the memory model's row without context only (an ablation's score)."""
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
        b_model, sw, b_summary = load_run(baseline, None, weights=chosen_weights(baseline, best)[0])
        record("GNMT", b_summary, translate(b_model, sw, src, width), range(len(src)), time.perf_counter() - t0,
               weights_step=weights_step(baseline, best, b_summary))
    if "memory" in models:
        # best: the memory as it was at the best validation, beside those weights
        with trained_memory(memory, *chosen_weights(memory, best)) as (model, sw, summary, restore):
            backend = model.memory.backend
            digest = parameters_digest(model)

            def fresh(context: list[int]) -> dict:
                """Restore the copy, pass ``context`` lines through memory updates; what it did."""
                restore()
                before = backend.filled()
                writes = context_pass(model, sw, [src[i] for i in context], [ref[i] for i in context],
                                      passes) if context else 0
                assert parameters_digest(model) == digest, "a context pass changed the weights"
                return {"context_lines": len(context), "context_writes": writes, "filled_before": before,
                        "filled_after": backend.filled(), "parameters_unchanged": True}

            everything = list(range(len(src)))
            plans = (("GNMT + memory", [], everything), ("GNMT + memory, even-line context", even, odd),
                     ("GNMT + memory, whole-test context", everything, everything))
            for name, context, decode in plans if contexts else plans[:1]:
                t0 = time.perf_counter()
                ctx = fresh(context)
                hyp = [""] * len(src)
                for i, text in zip(decode, translate(model, sw, [src[i] for i in decode], width), strict=True):
                    hyp[i] = text
                record(name, summary, hyp, everything if decode is everything else None,
                       time.perf_counter() - t0, weights_step=weights_step(memory, best, summary), **ctx)
    return {"split": split, "lines": len(src), "beam_width": width, "context_passes": passes, "rows": rows,
            "hypotheses": hyps}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--baseline", type=Path, default=Path("runs/translation/baseline"))
    p.add_argument("--memory-run", "--memory", dest="memory_run", type=Path, default=Path("runs/translation/memory"),
                   help="the memory model's run folder (--memory: its old name)")
    p.add_argument("--split", required=True, help="the test set to decode (test_2016_flickr, newstest2014, ...)")
    p.add_argument("--limit", type=int, default=0, help="first lines only (0 = all)")
    p.add_argument("--width", type=int, default=4)
    p.add_argument("--passes", type=int, default=3)
    p.add_argument("--models", nargs="+", choices=("baseline", "memory"), default=["baseline", "memory"],
                   help="decode these rows (the others are kept from an earlier eval file of the same split)")
    p.add_argument("--no-context", action="store_true", help="the memory model's row without context only")
    p.add_argument("--out", type=Path, default=None,
                   help="the eval file (default: eval-<split>[-best].json beside the memory run)")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--best", action="store_true", help="decode with each run's best-validation weights (best.pt) "
                                                       "and, for the memory run, the memory kept with them")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    path = a.out or a.memory_run.parent / f"eval-{a.split}{'-best' if a.best else ''}.json"
    earlier = json.loads(path.read_text()) if path.is_file() else None
    result = evaluate_split(a.baseline, a.memory_run, a.split, a.width, a.limit, a.passes, tuple(a.models), earlier,
                            best=a.best, contexts=not a.no_context)
    path.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
