"""Train the GNMT-style translator (Multi30k En->De) with or without memory, through raremem.

    python -m raremem.models.translation.train --out runs/translation/memory                    # + memory
    python -m raremem.models.translation.train --out runs/translation/baseline --no-memory-layer
    python -m raremem.models.translation.train --server HOST:PORT --hogwild 2 ...               # replicas
    torchrun --nproc-per-node 2 -m raremem.models.translation.train --server HOST:PORT ...

Loss = label-smoothed cross-entropy + memory_loss_weight x memory loss; under teacher forcing
every target position of a batch is one memory call with updates (values = target subword ids).
The memory is life-long (``translation/gnmt`` unless named). With ``--server spawn`` the server
keeps its memories in ``<out>/memory`` (snapshot at the end, restored by ``--resume`` and by
the evaluation). Validation BLEU (greedy, sacrebleu) every ``val_every`` steps.
"""

from __future__ import annotations

import torch  # noqa: I001 - torch before faiss (design.md §5)

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from raremem.models.distributed import Replica, bind_shared
from raremem.models.seq2seq import AttentionSeq2Seq, Seq2SeqConfig
from raremem.models.sequence_training import LengthBuckets, SequenceFlags, sequence_step
from raremem.models.checkpoints import initial_weights
from raremem.models.flags import parse_config
from raremem.models.run import Run
from raremem.models.trainer_memory import memory_backend
from raremem.models.training import run_trainer
from raremem.models.translation import data, subwords
from raremem.models.translation.evaluate import bleu, pad_batch, translate
from raremem.models.translation.holdout import held_out_lines


@dataclass
class TrainConfig(SequenceFlags):
    steps: int = 20_000
    memory_name: str = "translation/gnmt"
    data_dir: str = str(data.DEFAULT_DATA)
    spm: str = "runs/translation/spm-8000.model"   # trained on the training set if absent
    vocab: int = 8000
    batch: int = 64
    max_tokens: int = 64            # training pairs longer than this (either side) are skipped
    units: int = 256
    layers: int = 2
    dropout: float = 0.2
    memory_size: int = 32_768
    # Training lookups skip the slots their own sentence wrote (an earlier epoch's copy of the
    # same target): without it the model learns to copy itself instead of to retrieve.
    leave_one_out: bool = True
    # The memory's value also raises its own logit (seq2seq.py, ``copy``): the only way a word
    # whose embedding training never shaped (held out, seen once) reaches the output.
    memory_copy: bool = False
    # The k-shot protocol (kshot.py): hold out every training pair whose target holds one of
    # this many words seen 8-30 times (chosen with hold_out_seed); 0 = train on everything.
    hold_out: int = 0
    hold_out_seed: int = 0
    val_every: int = 1000           # steps between validation BLEU (0 = none)
    val_sentences: int = 256        # first lines of val, greedy

    def validate(self) -> "TrainConfig":
        if self.batch < 1 or self.steps < 0 or self.hogwild < 0 or self.max_tokens < 2:
            raise ValueError("batch >= 1, steps >= 0, hogwild >= 0, max_tokens >= 2")
        if self.memory_layer and self.memory_size < self.batch * self.max_tokens:
            raise ValueError("memory_size must hold one batch of writes (batch x max_tokens)")
        return self

    def default_out(self) -> str:
        return f"runs/translation/gnmt-{'memory' if self.memory_layer else 'plain'}-seed{self.seed}"

    @property
    def row(self) -> str:
        return "GNMT" + (" + memory" if self.memory_layer else "")


def load_subwords(cfg: TrainConfig) -> subwords.Subwords:
    """The joint En+De model at ``cfg.spm``, trained on the training set the first time."""
    path = Path(cfg.spm)
    if not path.is_file():
        train = data.load("train", Path(cfg.data_dir))
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        subwords.train(train.source + train.target, tmp, cfg.vocab)
        tmp.replace(path)   # several trainers may race here: each writes the same model whole
    return subwords.Subwords(path)


def make_model(cfg: TrainConfig, address: str | None, vocab: int) -> AttentionSeq2Seq:
    mc = Seq2SeqConfig(src_vocab=vocab, tgt_vocab=vocab, units=cfg.units, layers=cfg.layers,
                       bidirectional_first=True, dropout=cfg.dropout, memory_layer=cfg.memory_layer,
                       pad=subwords.PAD, go=subwords.BOS, eos=subwords.EOS, copy=cfg.memory_copy)
    backend = None
    if cfg.memory_layer and address:
        backend = memory_backend(cfg, address, cfg.memory_name, cfg.units)
    return AttentionSeq2Seq(mc, backend)


class Corpus:
    """Encoded training pairs (each side + EOS) in buckets of similar target length."""

    def __init__(self, sw: subwords.Subwords, pairs: data.Parallel, max_tokens: int, batch: int,
                 exclude: frozenset[int] = frozenset()):
        src, tgt = sw.encode(pairs.source), sw.encode(pairs.target)
        keep = [i for i in range(len(src)) if len(src[i]) < max_tokens and len(tgt[i]) < max_tokens
                and i not in exclude]
        self.index = np.array(keep)
        self.src = [src[i] + [subwords.EOS] for i in keep]
        self.tgt = [tgt[i] + [subwords.EOS] for i in keep]
        self.batches = LengthBuckets(np.array([len(t) for t in self.tgt]), batch)

    def tensors(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(src (B, S), tgt (B, T), training line numbers (B,))."""
        return (pad_batch([self.src[i] for i in idx]), pad_batch([self.tgt[i] for i in idx]),
                torch.from_numpy(self.index[idx]))


def train(cfg: TrainConfig, address: str, replica: Replica | None = None,
          shared: dict[str, torch.Tensor] | None = None) -> dict:
    run = Run(cfg, replica, cfg.row, show=("loss", "memory_accuracy", "val_bleu"))
    sw = load_subwords(cfg)
    pairs = data.load("train", Path(cfg.data_dir))
    corpus = Corpus(sw, pairs, cfg.max_tokens, cfg.batch, held_out_lines(pairs.target, cfg.hold_out, cfg.hold_out_seed))
    val = data.load("val", Path(cfg.data_dir))
    val_src, val_ref = val.source[:cfg.val_sentences], val.target[:cfg.val_sentences]

    model = make_model(cfg, address, len(sw)).to(run.replica.device)
    if shared is not None:
        bind_shared(model, shared)
    else:
        initial_weights(model, cfg)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    run.start(model, opt)
    net = run.replica.wrap(model)

    for i in run.steps():
        src, tgt, lines = corpus.tensors(corpus.batches.sample(run.rng))
        row, out = sequence_step(model, net, opt, cfg, src, tgt, subwords.PAD, sources=lines,
                                 leave_one_out=cfg.leave_one_out and cfg.memory_layer)
        real = tgt != subwords.PAD
        row["tokens"] = int(real.sum())
        if out.memory_values is not None:  # how often the memory's nearest value is the next token
            row["memory_accuracy"] = float((out.memory_values.cpu()[real] == tgt[real]).float().mean())
        if run.replica.main and cfg.val_every and (i + 1) % cfg.val_every == 0:
            row["val_bleu"] = bleu(translate(model, sw, val_src, width=1), val_ref)["bleu"]
            best = run.keep_best(row["val_bleu"], model.memory.backend if model.memory is not None else None)
            run.say(f"step {i + 1:6d}  {run.minutes:6.1f} min  val BLEU {row['val_bleu']:.2f}" + ("  (best)" if best else ""))
        run.log(row)
    return run.finish()


def main(argv=None) -> int:
    cfg = parse_config(TrainConfig, argv, __doc__.splitlines()[0])
    lifelong = cfg.memory_name if cfg.memory_layer else ""
    return run_trainer(cfg, train, lambda: make_model(cfg, None, cfg.vocab), lifelong, data_dir=Path(cfg.out) / "memory",
                       lifelong=lifelong)


if __name__ == "__main__":
    sys.exit(main())
