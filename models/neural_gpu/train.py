"""Train one row of Table 2 on the synthetic rare-function task, through a raremem server.

    python -m raremem.models.neural_gpu.train --arch ngpu                         # Neural GPU + memory
    python -m raremem.models.neural_gpu.train --arch ngpu --no-memory-layer       # Neural GPU
    python -m raremem.models.neural_gpu.train --arch seq2seq [--no-memory-layer]  # LSTM + attention
    python -m raremem.models.neural_gpu.train --memory HOST:PORT --hogwild 2 ...  # replicas, one memory
    torchrun --nproc-per-node 2 -m raremem.models.neural_gpu.train --memory HOST:PORT ...

The memory is life-long: never cleared, one memory for all replicas (``synthetic/<arch>``); a
spawned server keeps it in ``<out>/memory``, so ``--resume`` continues it.
At the end the test set is decoded greedily (``eval.json``: fully correct sequences, the
metric of Table 2) and, with memory, the function coverage and ``raremem-admin stats`` of the
trained memory are recorded. Checkpoints resume exactly (see models/training.py).
"""

from __future__ import annotations

import torch  # noqa: I001 - torch before faiss (DESIGN §5)

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from raremem.models.distributed import Replica, bind_shared
from raremem.models.neural_gpu.evaluate import evaluate, function_coverage
from raremem.models.neural_gpu.model import ModelConfig, build_model
from raremem.models.neural_gpu.task import PAD, VOCAB, Examples, coverage, fully_correct, make_splits
from raremem.models.sequence_training import LengthBuckets, SequenceFlags, sequence_step
from raremem.models.training import Run, initial_weights, memory_backend, parse_config, run_trainer


@dataclass
class TrainConfig(SequenceFlags):
    out: str = "runs/synthetic"
    steps: int = 2000
    arch: str = "ngpu"              # "ngpu" (Extended Neural GPU) | "seq2seq" (2-layer LSTM + attention)
    memory_name: str = ""           # default synthetic/<arch>
    channels: int = 32              # Neural GPU channels: the paper's small model
    units: int = 256                # seq2seq LSTM units
    dropout: float = 0.1
    memory_size: int = 500_000      # the paper's 500K
    adam_eps: float = 1e-3
    clip: float = 1.0
    # Gold embedding mixed into the memory's suggestion on the tape, decaying linearly from 1
    # to gold_floor over gold_decay_steps. The paper's code kept a floor of 0.2 over 10,000
    # steps; the floor here is 0, since at test time there is no gold to mix in.
    gold_decay_steps: int = 10_000
    gold_floor: float = 0.0
    # bfloat16 autocast for the model body (the memory query stays fp32). Measured here, Neural
    # GPU without memory, 80 steps: the same loss curve to 3 decimals as fp32, 2.5x faster.
    bf16: bool = True
    task_seed: int = 0              # fixes f and the data sets
    eval_every: int = 500           # steps between quick evaluations (0 = none)
    eval_examples: int = 1000       # test examples in quick evaluations
    final_examples: int = 0         # test examples (and numbers of S for coverage) at the end; 0 = all

    def validate(self) -> "TrainConfig":
        if self.arch not in ("ngpu", "seq2seq"):
            raise ValueError("--arch is ngpu or seq2seq")
        if self.batch < 1 or self.steps < 0 or self.hogwild < 0 or self.memory_size < self.batch * 40:
            raise ValueError("batch >= 1, steps >= 0, hogwild >= 0, memory_size >= 40 * batch")
        return self

    def model_config(self) -> ModelConfig:
        return ModelConfig(arch=self.arch, memory=self.memory_layer, channels=self.channels, units=self.units,
                           dropout=self.dropout)

    @property
    def row(self) -> str:
        return self.arch + (" + memory" if self.memory_layer else "")


def memory_name(cfg: TrainConfig) -> str:
    """One life-long memory shared by every replica of a run."""
    return cfg.memory_name or f"synthetic/{cfg.arch}"


def make_model(cfg: TrainConfig, address: str | None):
    mc = cfg.model_config()
    backend = None
    if cfg.memory_layer and address:
        backend = memory_backend(cfg, address, memory_name(cfg), mc.key_dim)
    return build_model(mc, backend)


def gold_weight(cfg: TrainConfig, step: int) -> float:
    if not cfg.memory_layer or cfg.gold_decay_steps <= 0:
        return 0.0
    return max(cfg.gold_floor, 1.0 - step / cfg.gold_decay_steps)   # linear to the floor, then flat


def train(cfg: TrainConfig, address: str, replica: Replica | None = None,
          shared: dict[str, torch.Tensor] | None = None) -> dict:
    run = Run(cfg, replica, cfg.row, show=("loss", "train_correct", "test_fully_correct"))
    train_set, test_set, f = make_splits(cfg.task_seed)
    # Batches of similar length, cut to their longest example: inputs average ~24 symbols
    # instead of 40, and the Neural GPU's cost grows as length^2.
    batches = LengthBuckets(train_set.lengths, cfg.batch)
    quick = test_set.take(np.arange(min(cfg.eval_examples, len(test_set))))

    model = make_model(cfg, address)
    if shared is not None:
        bind_shared(model, shared)
    else:
        initial_weights(model, cfg)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, eps=cfg.adam_eps)
    run.start(model, opt)
    net = run.replica.wrap(model)

    for i in run.steps():
        idx = batches.sample(run.rng)
        length = int(train_set.lengths[idx].max())
        targets = torch.from_numpy(train_set.targets[idx, :length])
        row, out = sequence_step(model, net, opt, cfg, torch.from_numpy(train_set.inputs[idx, :length]), targets,
                                 PAD, gold_weight=gold_weight(cfg, i), sources=torch.from_numpy(idx))
        preds = np.full((len(idx), 40), PAD)
        preds[:, :length] = out.logits.argmax(-1).numpy()
        row["train_correct"] = float(fully_correct(preds, train_set.take(idx)).mean())
        if run.replica.main and cfg.eval_every and (i + 1) % cfg.eval_every == 0:
            row |= {f"test_{k}": v for k, v in evaluate(model, quick).items() if k != "examples"}
        run.log(row)
    summary = run.finish()
    if run.replica.main and not summary["interrupted"]:  # SIGTERM means stop now, not after a long evaluation
        final_evaluation(cfg, model, train_set, test_set, f, address, summary)
    return summary


def final_evaluation(cfg, model, train_set, test_set, f, address, summary) -> dict:
    """eval.json: the metric on the whole test set, with the compute it took to get there."""
    t0 = time.perf_counter()
    n = cfg.final_examples or len(test_set)
    result = {"row": cfg.row, **evaluate(model, test_set.take(np.arange(n))), "train_steps": summary["steps"],
              "train_seconds": summary["wall_seconds"], "test_numbers_seen_in_training": coverage(test_set, train_set)}
    if cfg.memory_layer:
        result["function_coverage"] = function_coverage(model, f, limit=cfg.final_examples or None)
        if address != "local":
            from raremem.client import MemoryClient  # noqa: PLC0415

            with MemoryClient(address, token=cfg.token or None) as c:
                s = c.stats(memory_name(cfg))
            result["memory"] = {k: getattr(s, k) for k in ("lookups", "fresh_writes", "correct_writes", "evictions",
                                                          "unread_evictions", "distinct_values")}
            result["memory"]["filled"] = s.info.filled
    result["eval_seconds"] = time.perf_counter() - t0
    (Path(cfg.out) / "eval.json").write_text(json.dumps(result, indent=2))
    print("eval: " + json.dumps(result), flush=True)
    return result


def main(argv=None) -> int:
    cfg = parse_config(TrainConfig, argv, __doc__.splitlines()[0])
    return run_trainer(cfg, train, lambda: make_model(cfg, None), memory_name(cfg) if cfg.memory_layer else "",
                       data_dir=Path(cfg.out) / "memory")


if __name__ == "__main__":
    sys.exit(main())
