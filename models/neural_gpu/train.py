"""Train one row of Table 2 on the synthetic rare-function task, through a raremem server.

    python -m raremem.models.neural_gpu.train --arch ngpu                         # Neural GPU + memory
    python -m raremem.models.neural_gpu.train --arch ngpu --no-memory-layer       # Neural GPU
    python -m raremem.models.neural_gpu.train --arch seq2seq [--no-memory-layer]  # LSTM + attention
    python -m raremem.models.neural_gpu.train --arch ngpu --recipe tower-uniform  # a query recipe (recipes.py)
    python -m raremem.models.neural_gpu.train --arch seq2seq --no-memory-layer --recipe tower   # its fair twin
    python -m raremem.models.neural_gpu.train --server HOST:PORT --hogwild 2 ...  # replicas, one memory
    torchrun --nproc-per-node 2 -m raremem.models.neural_gpu.train --server HOST:PORT ...

The memory is life-long: never cleared, one memory for all replicas (``synthetic/<arch>``); a
spawned server keeps it in ``<out>/memory``, so ``--resume`` continues it.
At the end the test set is decoded greedily (``eval.json``: fully correct sequences, the
metric of Table 2) and, with memory, the function coverage and ``raremem-admin stats`` of the
trained memory are recorded. Checkpoints resume exactly (models/checkpoints.py).
"""

from __future__ import annotations

import torch  # noqa: I001 - torch before faiss (design.md §5)

import dataclasses
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from raremem.models.distributed import Replica, bind_shared
from raremem.models.neural_gpu.evaluate import evaluate, function_coverage
from raremem.models.neural_gpu.model import ModelConfig
from raremem.models.neural_gpu.recipes import DEFAULTS, QUERY_SOURCES, SETTINGS, build_model, recipe_named
from raremem.models.neural_gpu.task import (PAD, PRESETS, coverage, fully_correct, held_out, make_splits,
                                            validation_set)
from raremem.models.sequence_training import LengthBuckets, SequenceFlags, sequence_step
from raremem.models.checkpoints import initial_weights
from raremem.models.flags import parse_config
from raremem.models.run import Run
from raremem.models.trainer_memory import memory_backend
from raremem.models.training import run_trainer


@dataclass
class TrainConfig(SequenceFlags):
    steps: int = 2000
    arch: str = "ngpu"              # "ngpu" (Extended Neural GPU) | "seq2seq" (2-layer LSTM + attention)
    memory_name: str = ""           # default synthetic/<arch>
    preset: str = "full"            # "full" (lengths 7-40, Table 2) | "short" (7-16; see task.py)
    # The memory rows' query recipe by name (recipes.py): it sets the query settings below, which
    # as flags of their own remain only for the commands of earlier results. "" = those flags.
    recipe: str = ""
    # The query settings (recipes.py; defaults: the paper's, recipes.DEFAULTS): the control's fixed
    # (number, digit position) queries; whether the decoder's loss reaches the queries through w_1;
    # whether the memory's losses reach the network through the query.
    fixed_queries: bool = DEFAULTS["fixed_queries"]
    weight_grad: bool = DEFAULTS["weight_grad"]
    query_grad: bool = DEFAULTS["query_grad"]
    # Where the queries come from: "state" (the authors': the Neural GPU's state, seq2seq's
    # attention vector), "encoder" (Neural GPU) or "tower" (recipes.py)
    query_from: str = DEFAULTS["query_from"]
    # Steps at the start in which no loss moves the learned queries (MemoryLayer.hold): the
    # memory first fills with keys of every number from other examples. 0 = none.
    query_warmup: int = DEFAULTS["query_warmup"]
    query_uniformity: float = DEFAULTS["query_uniformity"]   # weight of the uniformity term (recipes.py)
    # Lookups skip the slots of their own example (its copies from earlier epochs): an example
    # seen again finds its own earlier key, so without this the memory loss is met by telling
    # exact inputs apart, not by a query that names the number in any context (test inputs
    # are new). Off by default: not in the authors' code.
    leave_one_out: bool = DEFAULTS["leave_one_out"]
    channels: int = 32              # Neural GPU channels: the paper's small model
    units: int = 256                # seq2seq LSTM units
    # The authors' Neural GPU trainer (tensorflow/models research/neural_gpu, neural_gpu_trainer.py
    # and neural_gpu.py) for what follows: state dropout 0.1 * 3 / sqrt(L) before every step;
    # Adam at 0.005 x lr 0.1 = 5e-4 with epsilon 1e-3; global-norm clip 4; lr x 0.995 whenever
    # the perplexity since the last checkpoint is worse than the one before.
    dropout: float = 0.1
    lr: float = 5e-4
    adam_eps: float = 1e-3
    clip: float = 4.0
    lr_decay: float = 0.995         # applied at each quick evaluation whose training CE got worse
    memory_size: int = 500_000      # the paper's 500K
    # The authors' gold on the tape: with probability max(1 - step / gold_decay_steps, gold_floor)
    # a batch's tape gets that share of the gold embedding (dropped with keep 0.7) blended into
    # the memory's suggestion; otherwise the memory's suggestion alone.
    gold_decay_steps: int = 10_000
    gold_floor: float = 0.2
    # bfloat16 autocast for the model body (the memory query stays fp32). Off: over 80 cells it
    # matched fp32's loss without memory, but nothing showed yet that it keeps the memory
    # queries as discriminative (the probe); fp32 until it does.
    bf16: bool = False
    task_seed: int = 0              # fixes f and the data sets
    eval_every: int = 500           # steps between quick evaluations (0 = none)
    # Quick evaluations (and so every choice: when to stop, the learning-rate decay, recipes)
    # read a validation set drawn like the test set and disjoint from it (task.validation_set);
    # the test set is decoded once, at the end.
    val_examples: int = 1000
    final_examples: int = 0         # held-out test examples (task.held_out; and numbers of S for coverage) at the end; 0 = all

    def validate(self) -> "TrainConfig":
        if self.arch not in ("ngpu", "seq2seq"):
            raise ValueError("--arch is ngpu or seq2seq")
        return (self._with_recipe() if self.recipe else self)._check()

    def _check(self) -> "TrainConfig":
        if self.batch < 1 or self.steps < 0 or self.hogwild < 0 or self.memory_size < self.batch * 40:
            raise ValueError("batch >= 1, steps >= 0, hogwild >= 0, memory_size >= 40 * batch")
        if self.fixed_queries and not (self.arch == "ngpu" and self.memory_layer):
            raise ValueError("--fixed-queries is a control of the Neural GPU + memory row")
        learned = self.memory_layer and not self.fixed_queries
        if (self.query_warmup or self.query_uniformity or self.leave_one_out) and not learned:
            raise ValueError("--query-warmup, --query-uniformity and --leave-one-out are for a memory row with "
                             "learned queries")
        twin = self.arch == "seq2seq" and not self.memory_layer   # the aligned tower feeds the decoder
        if self.query_from != "state" and not (learned or twin):
            raise ValueError("--query-from is for a memory row with learned queries, or seq2seq's twin without "
                             "memory (--query-from tower --no-memory-layer)")
        if self.val_examples < 1:
            raise ValueError("--val-examples is >= 1")
        if self.query_from not in QUERY_SOURCES[self.arch]:
            raise ValueError("--query-from: state, encoder or tower for the Neural GPU; state or tower for seq2seq")
        other = {"ngpu": ("units",), "seq2seq": ("channels", "weight_grad", "query_grad")}[self.arch]
        changed = [name for name in other if getattr(self, name) != type(self).__dataclass_fields__[name].default]
        if changed:   # the other architecture's knobs: refused, not silently ignored
            flags = [f"--{'no-' if getattr(self, n) is False else ''}{n.replace('_', '-')}" for n in changed]
            raise ValueError(f"{', '.join(flags)}: not a knob of --arch {self.arch}")
        if self.query_warmup < 0 or self.query_uniformity < 0:
            raise ValueError("--query-warmup and --query-uniformity are >= 0")
        if self.preset not in PRESETS:
            raise ValueError(f"--preset is one of {sorted(PRESETS)}")
        return self

    def _with_recipe(self) -> "TrainConfig":
        """This config with its recipe's settings in place; a setting also given as a flag, to
        another value, is refused."""
        recipe = recipe_named(self.recipe, self.arch)
        fields = type(self).__dataclass_fields__
        given = [n for n in SETTINGS if getattr(self, n) not in (fields[n].default, recipe.settings.get(n))]
        if given:
            raise ValueError(f"--recipe {self.recipe} sets the query settings: drop "
                             + ", ".join("--" + n.replace("_", "-") for n in given))
        return dataclasses.replace(self, **recipe.settings)

    def model_config(self) -> ModelConfig:
        return ModelConfig(arch=self.arch, memory_layer=self.memory_layer, channels=self.channels, units=self.units,
                           dropout=self.dropout)

    def query_settings(self) -> dict:
        return {name: getattr(self, name) for name in SETTINGS}

    def default_out(self) -> str:
        return (f"runs/synthetic/{self.preset}-{self.arch}-{'memory' if self.memory_layer else 'plain'}"
                + (f"-{self.recipe}" if self.recipe else "") + f"-seed{self.seed}")

    @property
    def row(self) -> str:
        return (self.arch + (" + memory" if self.memory_layer else "") + (", fixed queries" if self.fixed_queries else "")
                + ("" if self.weight_grad or not self.memory_layer else ", w_1 without decoder gradient")
                + ("" if self.query_grad or not self.memory_layer else ", queries without gradient into the network")
                + {"state": "", "encoder": ", queries from the encoder",
                   "tower": (", queries from a key tower" if self.arch == "ngpu" else
                             ", queries from the key tower aligned to the output" if self.memory_layer else
                             ", the key tower aligned to the output feeding the decoder")}[self.query_from]
                + (f", queries held {self.query_warmup:,} steps" if self.query_warmup else "")
                + (f", uniformity {self.query_uniformity:g}" if self.query_uniformity else "")
                + (", leave-one-out" if self.leave_one_out and self.memory_layer else ""))


def memory_name(cfg: TrainConfig) -> str:
    """One life-long memory shared by every replica of a run."""
    return cfg.memory_name or f"synthetic/{cfg.arch}"


def make_model(cfg: TrainConfig, address: str | None):
    mc = cfg.model_config()
    backend = None
    if cfg.memory_layer and address:
        backend = memory_backend(cfg, address, memory_name(cfg), mc.key_dim)
    return build_model(mc, cfg.query_settings(), backend)


def gold_probability(cfg: TrainConfig, step: int) -> float:
    """max(1 - step / gold_decay_steps, gold_floor): linear to the floor, then flat."""
    if not cfg.memory_layer or cfg.gold_decay_steps <= 0:
        return 0.0
    return max(cfg.gold_floor, 1.0 - step / cfg.gold_decay_steps)


def gold_weight(cfg: TrainConfig, step: int, rng: np.random.Generator) -> float:
    """The share of gold on this batch's tape: gold_probability with that probability, else 0."""
    p = gold_probability(cfg, step)
    return p if p > 0 and rng.random() < p else 0.0


def decay_on_worse(opt, cfg: TrainConfig, window_ce: float) -> None:
    """lr x lr_decay when this window's training CE is worse than the last window's. The last
    window's CE rides in the optimiser's param group, so checkpoints carry it and resume exactly."""
    group = opt.param_groups[0]
    if window_ce > group.get("last_window_ce", float("inf")):
        for g in opt.param_groups:
            g["lr"] *= cfg.lr_decay
    group["last_window_ce"] = window_ce


def train(cfg: TrainConfig, address: str, replica: Replica | None = None,
          shared: dict[str, torch.Tensor] | None = None) -> dict:
    run = Run(cfg, replica, cfg.row, show=("loss", "train_correct", "val_fully_correct"))
    train_set, test_set, f = make_splits(cfg.task_seed, preset=cfg.preset)
    # Batches of similar length, cut to their longest example: inputs average ~24 symbols
    # instead of 40, and the Neural GPU's cost grows as length^2.
    batches = LengthBuckets(train_set.lengths, cfg.batch)
    quick = validation_set(train_set, test_set, f, cfg.task_seed, cfg.val_examples, cfg.preset)

    model = make_model(cfg, address).to(run.replica.device)
    if shared is not None:
        bind_shared(model, shared)
    else:
        initial_weights(model, cfg)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, eps=cfg.adam_eps)
    run.start(model, opt)
    net = run.replica.wrap(model)

    # Training CE since the last quick evaluation (resume is exact when checkpoints fall on
    # evaluations: checkpoint_every a multiple of eval_every, as by default).
    window = []
    for i in run.steps():
        idx = batches.sample(run.rng)
        length = int(train_set.lengths[idx].max())
        targets = torch.from_numpy(train_set.targets[idx, :length])
        gold = gold_weight(cfg, i, run.rng)
        if cfg.query_warmup:
            model.memory.hold(i < cfg.query_warmup)
        row, out = sequence_step(model, net, opt, cfg, torch.from_numpy(train_set.inputs[idx, :length]), targets,
                                 PAD, gold_weight=gold, sources=torch.from_numpy(idx),
                                 numbers=torch.from_numpy(train_set.numbers[idx]),
                                 starts=torch.from_numpy(train_set.starts[idx]),
                                 leave_one_out=cfg.leave_one_out and cfg.memory_layer)
        preds = np.full(train_set.targets[idx].shape, PAD)
        preds[:, :length] = out.logits.argmax(-1).cpu().numpy()
        row |= {"train_correct": float(fully_correct(preds, train_set.take(idx)).mean()), "gold": gold,
                "lr": opt.param_groups[0]["lr"]}
        window.append(row["ce"])
        if cfg.eval_every and (i + 1) % cfg.eval_every == 0:
            decay_on_worse(opt, cfg, run.replica.mean(float(np.mean(window))))
            window = []
            if run.replica.main:
                row |= {f"val_{k}": v for k, v in evaluate(model, quick).items() if k != "examples"}
                run.say(f"step {i + 1:6d}  {run.minutes:6.1f} min  CE {row['ce']:.3f}  lr {row['lr']:.2e}  "
                        f"validation fully correct {100 * row['val_fully_correct']:.2f}%")
        run.log(row)
    summary = run.finish()
    if run.replica.main and not summary["interrupted"]:  # SIGTERM means stop now, not after a long evaluation
        final_evaluation(cfg, model, train_set, test_set, f, address, summary)
    return summary


def final_evaluation(cfg, model, train_set, test_set, f, address, summary) -> dict:
    """eval.json: the metric on the whole test set, with the compute it took to get there."""
    t0 = time.perf_counter()
    held = held_out(test_set)
    n = cfg.final_examples or len(held)
    result = {"row": cfg.row, "preset": cfg.preset, "test_examples": "held out",
              **evaluate(model, held.take(np.arange(n)), train=train_set),
              "train_steps": summary["steps"],
              "train_seconds": summary["wall_seconds"], "test_numbers_seen_in_training": coverage(held, train_set)}
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
    lifelong = memory_name(cfg) if cfg.memory_layer else ""
    return run_trainer(cfg, train, lambda: make_model(cfg, None), lifelong, data_dir=Path(cfg.out) / "memory",
                       lifelong=lifelong)


if __name__ == "__main__":
    sys.exit(main())
