"""kNN-MT (Khandelwal et al., ICLR 2021) from the same raremem service: a datastore of a trained
model's decoder states (a baseline's, or a memory model's beside its memory) and decoding that
mixes its nearest neighbours into the model.

- ``build_datastore``: the model reads (source, target) pairs under teacher forcing; each
  target position's attention vector (what the memory model queries with) becomes a key, the
  target token its value, the pair's line its source. The keys go into an append-only memory
  (every write a fresh slot, keys as given, nothing evicted while slots are empty).
- ``KNNDecoder``: each decoder step looks the attention vectors up (k neighbours) and decodes
  with ``p = (1 - lam) p_model + lam p_kNN``, ``p_kNN(v) ∝ sum over neighbours with value v of
  exp(s / temperature)``, s the cosine similarity (keys and queries are unit vectors on the
  server, so this is the paper's exp(-d² / T) with d² = 2 - 2s). It offers ``start`` and
  ``step`` like the model, so beam search and greedy decoding use it unchanged. It may read
  several datastores (the training one and a small one of context lines, ``ContextStore``):
  their neighbours are pooled and the k most similar kept.
- ``training_datastore``: a spawned server holding the training datastore, for the tuning run
  (``run_experiment``) and for the one-shot protocols with kNN-MT.
"""

from __future__ import annotations

import torch  # noqa: I001 - torch before faiss (design.md §5)

import argparse
import contextlib
import functools
import json
import time
from pathlib import Path

import numpy as np

from raremem.client import MemoryClient
from raremem.models import runinfo
from raremem.models.seq2seq import DecoderOutput
from raremem.models.trainer_memory import memory_server
from raremem.models.translation import data
from raremem.models.translation.evaluate import _batches, bleu, context_pass, pad_batch, translate
from raremem.models.translation.holdout import held_out_lines
from raremem.models.translation.protocol import chosen_weights, load_run, trained_memory
from raremem.models.translation.significance import paired_bootstrap
from raremem.models.translation.subwords import EOS, PAD, Subwords
from raremem.models.translation.train import TrainConfig


@torch.no_grad()
def build_datastore(model, subwords: Subwords, sources: list[str], targets: list[str], client, name: str,
                    lines: list[int] | None = None, batch: int = 64, max_tokens: int = 200) -> int:
    """Write the model's states over (source, target) pairs into the append-only memory
    ``name`` (created by the caller, at least as large as the target tokens); returns the number
    of entries written. ``lines``: each pair's source id (default its index)."""
    model.eval()
    src = [s[:max_tokens] + [EOS] for s in subwords.encode(sources)]
    tgt = [t[:max_tokens] + [EOS] for t in subwords.encode(targets)]
    lines = list(range(len(src))) if lines is None else lines
    written = 0
    for idx in _batches([len(t) for t in tgt], batch):
        s, t = pad_batch([src[i] for i in idx]), pad_batch([tgt[i] for i in idx])
        att = model.states(s, t)                                          # (B, T, U)
        real = t != PAD
        keys = att[real].float().numpy()                                  # (n, U)
        line = torch.tensor([lines[i] for i in idx])[:, None].expand_as(t)[real].numpy()
        for a in range(0, len(keys), 8192):                               # within the server's batch limit
            client.write(name, np.ascontiguousarray(keys[a:a + 8192]), t[real].numpy()[a:a + 8192],
                         sources=np.ascontiguousarray(line[a:a + 8192]))
        written += len(keys)
    return written


TRAIN, CONTEXT = "knn/train", "knn/context"   # the datastores' memory names
KNN_ROWS = {"GNMT": "GNMT + kNN-MT", "GNMT + memory": "GNMT + memory, kNN-MT"}   # model -> its kNN-MT row


class KNNDecoder:
    """A trained model whose every decoder step is mixed with the k nearest neighbours of
    datastores ``names`` on ``client``, queried with its attention vectors (a memory model's
    too: p_model is then its own read-out, memory included, and the datastores are a second,
    unprojected key beside its memory). A memory model without ``client`` reads its own memory
    instead: its queries are the memory layer's unit queries, and what a context pass wrote
    into memory reaches p_kNN with all its neighbours' weight."""

    def __init__(self, model, client=None, names: str | tuple[str, ...] = TRAIN, k: int = 16,
                 temperature: float = 0.1, lam: float = 0.25, nprobe: int = 0):
        self.own = client is None   # a memory model reading its own memory
        if self.own and model.memory is None:
            raise ValueError("a baseline needs the client of its datastores")
        self.names = () if self.own else (names,) if isinstance(names, str) else tuple(names)
        # what p_kNN reads: each datastore on the client, or the model's own memory (its backend)
        self.stores = (model.memory.backend.lookup,) if self.own else tuple(
            functools.partial(client.lookup, name) for name in self.names)
        self.model = model
        self.k, self.temperature, self.lam, self.nprobe = k, temperature, lam, nprobe
        self.cfg, self.go = model.cfg, model.go

    def eval(self) -> "KNNDecoder":
        self.model.eval()
        return self

    def start(self, src: torch.Tensor) -> dict:
        return self.model.start(src)

    def knn_probs(self, att: torch.Tensor) -> torch.Tensor:
        """att (N, U) -> p_kNN (N, V) from the k nearest neighbours over all datastores."""
        queries = np.ascontiguousarray(att.float().numpy())
        sims, values = [], []
        for lookup in self.stores:
            nb = lookup(queries, k=self.k, nprobe=self.nprobe, return_neighbors=True).neighbors
            sims.append(torch.from_numpy(nb.similarities.copy()))          # (N, k'), -inf where none
            values.append(torch.from_numpy(nb.values.copy()).clamp(min=0))  # (N, k')
        sims, values = torch.cat(sims, 1), torch.cat(values, 1)
        if len(self.stores) > 1:                                           # the k best of the pooled neighbours
            sims, top = sims.topk(min(self.k, sims.shape[1]), dim=1)
            values = values.gather(1, top)
        w = torch.softmax(sims / self.temperature, -1)                    # rows with no neighbour: nan
        w = torch.nan_to_num(w, nan=0.0)
        return torch.zeros(len(att), self.cfg.tgt_vocab).scatter_add_(1, values, w)

    def step(self, prev: torch.Tensor, ctx: dict, active: torch.Tensor) -> tuple[torch.Tensor, None]:
        """As ``AttentionSeq2Seq.step``; the logits returned are log p of the mixture (N, 1, V)."""
        att = self.model.step_states(prev, ctx)                            # (N, 1, U)
        logits, _ = self.model.read_out(att, ctx, active)
        p_model = logits[:, 0].float().softmax(-1)                          # (N, V)
        if self.lam == 0:
            return p_model.log()[:, None], None
        queries = self.model.memory.query(att[:, 0]) if self.own else att[:, 0]
        p = (1 - self.lam) * p_model + self.lam * self.knn_probs(queries)
        return p.clamp_min(1e-30).log()[:, None], None

    @torch.no_grad()
    def __call__(self, src: torch.Tensor, max_len: int | None = None) -> DecoderOutput:
        """Greedy decoding (what ``translate`` does with width 1)."""
        B, S = src.shape
        ctx = self.start(src)
        prev = torch.full((B, 1), self.go, dtype=torch.long)
        done = torch.zeros(B, dtype=torch.bool)
        logits = []
        for _ in range(max_len or S):
            step, _ = self.step(prev, ctx, ~done)
            logits.append(step)
            prev = step.argmax(-1)
            done |= prev[:, 0] == self.cfg.eos
            if done.all():
                break
        return DecoderOutput(torch.cat(logits, 1), logits[0].new_zeros(()), None)


@contextlib.contextmanager
def trained_model(run: Path, best: bool = True):
    """A trained run's model to decode with: a baseline's weights, or a memory model over a copy of
    its trained memory on a server of its own (``protocol.trained_memory``; decoding only reads
    it). Yields (model, subwords, summary, weights file)."""

    weights = chosen_weights(run, best)
    if json.loads((run / "run.json").read_text())["config"]["memory_layer"]:
        with trained_memory(run, *weights) as (model, sw, summary, _):
            yield model, sw, summary, weights[0]
    else:
        yield *load_run(run, None, weights=weights[0]), weights[0]


@contextlib.contextmanager
def training_datastore(run: Path, size: int = 1 << 19, nlist: int = 0, nprobe: int = 32, k: int = 32,
                       train_limit: int = 0, best: bool = True, threads: int = 1):
    """A server of its own holding the datastore of ``run``'s states (a baseline's or a memory
    model's attention vectors) over the training targets (append-only IVF memory ``TRAIN``):
    yields (model, subwords, summary, client, info). ``best``: the run's best-validation weights
    where it kept them. A run trained with ``--hold-out`` gets a datastore without its held-out
    pairs (what it trained on). ``threads``: the server's FAISS threads (beside a training, one)."""


    run = Path(run)
    train = data.load("train")
    cfg = TrainConfig(**json.loads((run / "run.json").read_text())["config"])
    out = held_out_lines(train.target, cfg.hold_out, cfg.hold_out_seed)
    keep = [i for i in range(len(train.target[:train_limit or None])) if i not in out]
    with trained_model(run, best) as (model, sw, summary, weights), \
            memory_server("spawn", threads=threads) as address, MemoryClient(address, timeout=600) as client:
        # a write is a lookup with update: its search only decides the write's `correct`, which
        # a datastore never reads, so writes probe one list; decoding asks for ``nprobe``
        client.create_memory(TRAIN, model.cfg.units, size, index="ivf", ivf_nlist=nlist, ivf_nprobe=1,
                             append_only=True, choose_k=k)
        t0 = time.perf_counter()
        entries = build_datastore(model, sw, [train.source[i] for i in keep], [train.target[i] for i in keep],
                                  client, TRAIN, lines=keep)
        info = {"run": str(run), "memory_model": cfg.memory_layer, "weights": weights, "steps": summary["steps"],
                "size": size, "nprobe": nprobe, "datastore_entries": entries, "held_out_pairs": len(out),
                "datastore_seconds": round(time.perf_counter() - t0, 1)}
        yield model, sw, summary, client, info


class ContextStore:
    """The one-shot protocols' context lines as a small append-only datastore ``CONTEXT`` beside
    the training one: ``learn`` writes the model's states over (source, reference) pairs,
    ``fresh`` empties it. What the memory model's context pass is to the memory model."""

    def __init__(self, model, subwords: Subwords, client, size: int = 1 << 15):
        self.model, self.subwords, self.client = model, subwords, client
        client.create_memory(CONTEXT, model.cfg.units, size, append_only=True, exist_ok=True)

    def fresh(self) -> None:
        self.client.reset(CONTEXT)

    def learn(self, sources: list[str], targets: list[str]) -> int:
        return build_datastore(self.model, self.subwords, sources, targets, self.client, CONTEXT)


@contextlib.contextmanager
def tuned_with_context(tuned_file: Path, baseline: Path | None = None):
    """kNN-MT for the one-shot protocols: ``baseline`` (default the run tuned in ``tuned_file``,
    a knn-<split>.json; a memory run's model keeps its trained memory) with the k, temperature
    and lambda tuned there, reading its training datastore and a ``ContextStore``. Yields
    (decoder, subwords, summary, store, record) where
    ``store.fresh``/``store.learn`` empty it and write context into it, and ``record`` says
    what was used."""

    tuned = json.loads(Path(tuned_file).read_text())
    chosen = {k: tuned["chosen"][k] for k in ("k", "temperature", "lam")}
    baseline = Path(baseline or tuned["run"])
    with training_datastore(baseline, tuned["size"], nprobe=tuned["nprobe"], k=chosen["k"]) as (model, sw, summary,
                                                                                               client, info):
        store = ContextStore(model, sw, client)
        decoder = KNNDecoder(model, client, (TRAIN, CONTEXT), nprobe=tuned["nprobe"], **chosen)
        yield decoder, sw, summary, store, {"knn": chosen, "datastore_entries": info["datastore_entries"],
                                            "held_out_pairs": info["held_out_pairs"]}


def mixed_memory(model, subwords: Subwords, tuned_file: Path, passes: int = 3):
    """A trained memory model read like kNN-MT from its own memory with the k, temperature and
    lambda tuned in ``tuned_file`` (a knn-<split>.json of ``memory_experiment``): (decoder, learn,
    record) for the one-shot protocols, where ``learn(sources, targets)`` is the model's own
    context pass (into the memory the decoder reads) and ``record`` says what was used."""

    tuned = json.loads(Path(tuned_file).read_text())
    if "memory_run" not in tuned:
        raise ValueError(f"{tuned_file} tuned kNN-MT over a datastore, not a memory model's own memory")
    chosen = {k: tuned["chosen"][k] for k in ("k", "temperature", "lam")}
    return (KNNDecoder(model, **chosen), lambda s, t: context_pass(model, subwords, s, t, passes),
            {"mix": chosen, "mix_tuned_on": tuned["memory_run"]})


GRID = ((8, 32), (0.05, 0.1), (0.1, 0.25, 0.5))                 # k, temperature, lambda
MEMORY_GRID = ((8, 32), (0.02, 0.05, 0.1), (0.25, 0.5, 0.75))   # larger lambda: kNN-MT chose its grid's largest


def tune(decoder, model, subwords, sources: list[str], references: list[str], grid=GRID) -> list[dict]:
    """Greedy BLEU on (sources, references) for ``model`` alone (k = 0) and for every setting
    of ``grid`` (k, temperature, lambda) of ``decoder(k, temperature, lam)``, in that order."""


    rows = [{"k": 0, "temperature": 0.0, "lam": 0.0,
             "val_bleu": bleu(translate(model, subwords, sources, 1), references)["bleu"]}]
    for k in grid[0]:
        for temperature in grid[1]:
            for lam in grid[2]:
                rows.append({"k": k, "temperature": temperature, "lam": lam,
                             "val_bleu": bleu(translate(decoder(k, temperature, lam), subwords, sources, 1),
                                              references)["bleu"]})
                print(json.dumps(rows[-1]), flush=True)
    return rows


def tuned_test(decoder, model, subwords, val: tuple[list[str], list[str]], test: tuple[list[str], list[str]],
               names: tuple[str, str], width: int, grid) -> dict:
    """(k, temperature, lambda) picked by greedy BLEU on ``val``, then beam decoding of ``test``
    by ``model`` and by the tuned ``decoder`` (rows ``names``) with paired-bootstrap intervals."""


    t0 = time.perf_counter()
    tuning = tune(decoder, model, subwords, *val, grid)
    result = {"tuning": tuning, "tuning_seconds": round(time.perf_counter() - t0, 1)}
    best = result["chosen"] = max(tuning[1:], key=lambda r: r["val_bleu"])
    t0 = time.perf_counter()
    hyps = {names[0]: translate(model, subwords, test[0], width),
            names[1]: translate(decoder(best["k"], best["temperature"], best["lam"]), subwords, test[0], width)}
    result["decode_seconds"] = round(time.perf_counter() - t0, 1)
    result["test"] = paired_bootstrap(test[1], hyps, names[0])
    result["hypotheses"] = hyps
    return result


def _lines(split: str, limit: int) -> tuple[list[str], list[str]]:

    part = data.load(split)
    return part.source[:limit or None], part.target[:limit or None]


def run_experiment(run, out, size: int = 1 << 19, val_lines: int = 500, test_split: str = "test_2016_flickr",
                   width: int = 4, grid=GRID, nlist: int = 0, nprobe: int = 32,
                   train_limit: int = 0, test_limit: int = 0) -> dict:
    """The kNN-MT rows: a datastore of ``run``'s states (a baseline's, or a memory model's beside
    its memory) over the training targets in an append-only IVF memory of a spawned server,
    (k, temperature, lam) picked by greedy BLEU on the first ``val_lines`` of val, then beam
    decoding of the test split beside the model alone with paired-bootstrap intervals. Writes
    ``out`` (JSON) and returns it."""


    with training_datastore(run, size, nlist, nprobe, max(grid[0]), train_limit) as (model, sw, _, c, info):
        def decoder(k, temperature, lam):
            return KNNDecoder(model, c, TRAIN, k=k, temperature=temperature, lam=lam, nprobe=nprobe)

        name = "GNMT + memory" if info["memory_model"] else "GNMT"
        result = {**info, "machine": runinfo.machine(), "command": runinfo.command(), "test_split": test_split,
                  "width": width}
        result |= tuned_test(decoder, model, sw, _lines("val", val_lines), _lines(test_split, test_limit),
                             (name, KNN_ROWS[name]), width, grid)
    Path(out).write_text(json.dumps(result, indent=1))
    return result


def memory_experiment(run, out, best: bool = True, val_lines: int = 500, test_split: str = "test_2016_flickr",
                      width: int = 4, grid=MEMORY_GRID, test_limit: int = 0) -> dict:
    """The memory model read like kNN-MT from its own trained memory (``KNNDecoder`` without a
    client): (k, temperature, lam) tuned on val as in ``run_experiment``, then test beside the
    memory model's own read-out. Writes ``out`` (JSON; what ``--mix`` of the one-shot protocols
    reads) and returns it."""


    weights = chosen_weights(Path(run), best)
    with trained_memory(Path(run), *weights) as (model, sw, summary, _):
        def decoder(k, temperature, lam):
            return KNNDecoder(model, k=k, temperature=temperature, lam=lam)

        result = {"memory_run": str(run), "memory_weights": weights[0], "memory_steps": summary["steps"],
                  "machine": runinfo.machine(), "command": runinfo.command(), "test_split": test_split,
                  "width": width}
        result |= tuned_test(decoder, model, sw, _lines("val", val_lines), _lines(test_split, test_limit),
                             ("GNMT + memory", "GNMT + memory, kNN read"), width, grid)
    Path(out).write_text(json.dumps(result, indent=1))
    return result


def main(argv=None) -> int:

    p = argparse.ArgumentParser(description="kNN-MT rows: datastore, tuning on val, test with intervals")
    p.add_argument("--baseline", type=Path, default=Path("runs/translation/baseline"),
                   help="the run whose states fill the datastore: a baseline, or a memory run (read beside its memory)")
    p.add_argument("--memory-run", "--memory", dest="memory_run", type=Path, default=None,
                   help="a memory run instead: read its own trained memory like kNN-MT (its best weights)")
    p.add_argument("--out", default=None, help="default knn-<split>.json beside the runs (in --memory-run's folder; "
                   "knn-mt-<split>.json in the folder of a memory run given as --baseline)")
    p.add_argument("--split", default="test_2016_flickr")
    p.add_argument("--size", type=int, default=1 << 19, help="datastore slots (>= the training target tokens)")
    p.add_argument("--val-lines", type=int, default=500)
    p.add_argument("--width", type=int, default=4)
    p.add_argument("--nprobe", type=int, default=32)
    p.add_argument("--threads", type=int, default=0)
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.memory_run:
        r = memory_experiment(a.memory_run, a.out or a.memory_run / f"knn-{a.split}.json", True, a.val_lines, a.split,
                              a.width)
    else:
        memory_run = json.loads((a.baseline / "run.json").read_text())["config"]["memory_layer"]
        out = a.baseline / f"knn-mt-{a.split}.json" if memory_run else a.baseline.parent / f"knn-{a.split}.json"
        r = run_experiment(a.baseline, a.out or out, a.size, a.val_lines, a.split, a.width, nprobe=a.nprobe)
    print({k: v for k, v in r["test"]["systems"].items()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
