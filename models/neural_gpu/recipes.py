"""The query recipes of Table 2's memory rows, by name (``train --recipe NAME``), and the query
paths they build.

The paper's models (model.py, models/seq2seq.py) query the memory the authors' way
(``paper``). On this task the learned queries lose the number they must name before the memory
holds it (the probe, results/synthetic_notes.md); each other recipe is one response to that,
kept because a row of results/synthetic.md measured it. A recipe is a set of the trainer's query
settings (``SETTINGS``); ``build_model`` turns a model config and those settings into the
paper's model with the recipe's query path plugged into its hook.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from raremem.models.neural_gpu.model import (CGRU, ExtendedNeuralGPU, ModelConfig, StateQueries, build_model as
                                             paper_model, encode, seq2seq_config)
from raremem.models.neural_gpu.task import DIGITS, HIGH, VOCAB
from raremem.models.seq2seq import AttentionSeq2Seq


@dataclass(frozen=True)
class Recipe:
    why: str                 # the reason it exists
    measured: str            # the row (results/synthetic.md) that measured it
    archs: tuple[str, ...]   # the architectures it applies to
    settings: dict = field(default_factory=dict)   # TrainConfig fields it sets (the rest: defaults)


TOWER_HELD = {"query_from": "tower", "query_warmup": 1500, "leave_one_out": True}

RECIPES = {
    "paper": Recipe("the authors' queries: the Neural GPU's state one column ahead, seq2seq's attention vector a_t",
                    "Extended Neural GPU + memory; seq2seq + attention + memory", ("ngpu", "seq2seq")),
    "fixed-queries": Recipe("a ceiling for the memory-and-tape path: a fixed vector per (number, digit) as the "
                            "query, so only the path is tested, not the queries",
                            "control: Neural GPU + memory, fixed (number, digit) queries", ("ngpu",),
                            {"fixed_queries": True}),
    "no-weight-grad": Recipe("does the decoder's loss through w_1 flatten the queries? (it did not)",
                             "the probe: Neural GPU + memory, w_1 without decoder gradient", ("ngpu",),
                             {"weight_grad": False}),
    "no-query-grad": Recipe("which loss takes the number out of the state: the memory's losses reach only the "
                            "query projection", "the probe: queries without gradient into the network", ("ngpu",),
                            {"query_grad": False}),
    "encoder": Recipe("queries from the encoder's last state, which the decoder's steps do not touch",
                      "the probe: queries from the encoder", ("ngpu",), {"query_from": "encoder"}),
    "tower": Recipe("queries from a key tower of their own that only the memory's losses train",
                    "the probe: queries from a key tower", ("ngpu", "seq2seq"), {"query_from": "tower"}),
    "tower-held": Recipe("the tower held still 1,500 steps while the memory fills, and no lookup finds its own "
                         "example's earlier copy (leave-one-out)",
                         "the probe: a key tower held still for 1,500 steps, leave-one-out", ("ngpu",), TOWER_HELD),
    "tower-uniform": Recipe("the held tower with a uniformity term that makes queries that all look alike costly: "
                            "the recipe whose rows learn", "Neural GPU + memory and seq2seq + memory, key tower "
                            "held 1,500 steps, leave-one-out, uniformity term 0.1", ("ngpu", "seq2seq"),
                            {**TOWER_HELD, "query_uniformity": 0.1}),
}
# The settings a recipe may set, at the paper's values (the trainer's flags default to these and
# are refused beside --recipe).
DEFAULTS = {"fixed_queries": False, "weight_grad": True, "query_grad": True, "query_from": "state",
            "query_warmup": 0, "query_uniformity": 0.0, "leave_one_out": False}
SETTINGS = tuple(DEFAULTS)


def recipe_named(name: str, arch: str) -> Recipe:
    if name not in RECIPES:
        raise ValueError(f"--recipe is one of {', '.join(RECIPES)}, not {name!r}")
    recipe = RECIPES[name]
    if arch not in recipe.archs:
        raise ValueError(f"--recipe {name} is for --arch {' or '.join(recipe.archs)}")
    return recipe


QUERY_SOURCES = {"ngpu": ("state", "encoder", "tower"), "seq2seq": ("state", "tower")}


def build_model(cfg: ModelConfig, settings: dict | None = None, backend=None) -> nn.Module:
    """The paper's model of ``cfg`` with the query path ``settings`` (SETTINGS' names; the
    rest at DEFAULTS) ask for. Query warm-up and leave-one-out are the trainer's (a held
    ``model.memory``, the lookups' option); the rest is built here."""
    q = DEFAULTS | (settings or {})
    if q["query_from"] not in QUERY_SOURCES[cfg.arch]:
        raise ValueError(f"query_from for {cfg.arch} is one of {QUERY_SOURCES[cfg.arch]}, not {q['query_from']!r}")
    if cfg.arch == "seq2seq":
        if not (q["weight_grad"] and q["query_grad"] and not q["fixed_queries"]):
            raise ValueError("seq2seq's queries take no weight_grad, query_grad or fixed_queries setting")
        model = AttentionSeq2Seq(seq2seq_config(cfg), backend,
                                 tower=(lambda: AlignedTower(VOCAB, cfg.units)) if q["query_from"] == "tower" else None)
    elif q == DEFAULTS:
        model = paper_model(cfg, backend)
    else:   # the model refuses a query path without the memory layer
        model = ExtendedNeuralGPU(cfg, backend, queries=lambda: _ngpu_queries(cfg, q))
        if q["fixed_queries"]:
            model.queries.fix(model.memory)
    if q["query_uniformity"]:
        model.query_penalty = Uniformity(q["query_uniformity"])
    if q["query_from"] == "tower":
        model.register_load_state_dict_pre_hook(_LEGACY_TOWER[cfg.arch])
    return model


def _ngpu_queries(cfg: ModelConfig, q: dict) -> nn.Module:
    if q["fixed_queries"]:
        if q["query_from"] != "state" or not q["query_grad"]:
            raise ValueError("fixed_queries takes no query_from or query_grad setting")
        return FixedQueries(cfg.channels)
    return LearnedQueries(cfg, q["query_from"], grad=q["query_grad"], weight_grad=q["weight_grad"])


class LearnedQueries(StateQueries):
    """The Neural GPU's learned queries at decoder column ``column``, read from:

    - ``state``: the decoder's state, as the authors';
    - ``encoder``: the encoder's final state, which the decoder's steps and their tape do not touch;
    - ``tower``: a key tower of its own (an embedding and ``nconv`` CGRU cells run over the input
      as the encoder is, no dropout), read only by the memory, so only the memory's losses train
      it: the cross-entropy flattens the state the memory reads until its queries no longer name
      the number (results/synthetic_notes.md, the probe).

    ``grad`` off: the query reads its source detached, so the memory's losses train the query
    projection only and the cross-entropy alone shapes the network. ``weight_grad`` off: the
    decoder's loss does not reach the queries through w_1, a constant gate for the decoder."""

    def __init__(self, cfg: ModelConfig, source: str, grad: bool = True, weight_grad: bool = True):
        super().__init__()
        self.source, self.grad, self.weight_grad, self.height = source, grad, weight_grad, cfg.height
        if source == "tower":
            self.embed = nn.Embedding(VOCAB, cfg.channels)
            self.cells = nn.ModuleList(CGRU(cfg.channels) for _ in range(cfg.nconv))

    def start(self, inputs, state, **batch):
        if self.source == "state":
            read = super().start(inputs, state)
        else:
            keys = (state if self.source == "encoder" else encode(self.embed, self.cells, inputs, self.height))[:, :, 0]
            read = lambda s, rows, column: keys[rows, :, column]             # noqa: E731 - keys (B, C, L)
        return read if self.grad else lambda s, rows, column: read(s, rows, column).detach()


class FixedQueries(StateQueries):
    """The control: the queries are a fixed random unit vector per (number, digit position)
    inside the run and per symbol outside it, not the model's state, and pass the projection
    unchanged; everything else as is. It shows how far the memory-and-tape path gets when the
    queries are right."""

    def __init__(self, channels: int):
        super().__init__()
        g = torch.Generator().manual_seed(0x51ED)
        # (HIGH + 1, DIGITS, C) for digit positions, (VOCAB, C) for the symbols around them;
        # not parameters and not saved: the same seed rebuilds them.
        self.register_buffer("digits", F.normalize(torch.randn(HIGH + 1, DIGITS, channels, generator=g), dim=-1),
                             persistent=False)
        self.register_buffer("symbols", F.normalize(torch.randn(VOCAB, channels, generator=g), dim=-1),
                             persistent=False)

    @staticmethod
    def fix(memory) -> None:
        """The memory's projection as the identity, untrained: q = x."""
        with torch.no_grad():
            memory.query_proj.weight.copy_(torch.eye(len(memory.query_proj.weight)))
        memory.query_proj.weight.requires_grad_(False)

    def start(self, inputs, state, numbers=None, starts=None, **batch):
        if numbers is None or starts is None:
            raise ValueError("the fixed-query control needs numbers and starts")

        def read(s, rows, column):
            offset = column - starts[rows]                                   # (R,) digit index if in the run
            inside = (offset >= 0) & (offset < DIGITS)
            digits = self.digits[numbers[rows], offset.clamp(0, DIGITS - 1)]
            return torch.where(inside[:, None], digits, self.symbols[inputs[rows, column]])
        return read


class AlignedTower(nn.Module):
    """seq2seq's key tower: src (B, S) -> (B, S, U), a bidirectional LSTM of its own (U/2 each
    way, like the GNMT encoder's first layer) over its own embedding of the source."""

    def __init__(self, vocab: int, units: int):
        super().__init__()
        self.embed = nn.Embedding(vocab, units)
        self.lstm = nn.LSTM(units, units // 2, 1, batch_first=True, bidirectional=True)

    def forward(self, src: torch.Tensor) -> torch.Tensor:
        return self.lstm(self.embed(src))[0]


def uniformity(q: torch.Tensor, t: float = 2.0) -> torch.Tensor:
    """(R, d) unit rows -> log mean_{i<j} exp(-t |q_i - q_j|^2): 0 when all alike, about -2t
    when spread over the sphere (Wang & Isola, ICML 2020)."""
    return torch.pdist(q).pow(2).mul(-t).exp().mean().log()


class Uniformity:
    """The uniformity term, ``weight`` x uniformity of a memory call's unit queries (at most
    ``sample`` of them: pairs grow as n^2). Under labels the queries cannot predict (a number not
    yet in memory, any digit as likely) the margin loss is lowest on average when every query is
    alike (Jensen: its mean is alpha then, more when spread), so learned queries drift together
    (results/synthetic_notes.md); this term makes that state costly."""

    def __init__(self, weight: float, sample: int = 1024):
        self.weight, self.sample = weight, sample

    def __call__(self, q: torch.Tensor) -> torch.Tensor | float:
        """The term for queries q (n, d): none (0) while decoding or for fewer than two."""
        if len(q) < 2 or not torch.is_grad_enabled():
            return 0.0
        if len(q) > self.sample:
            q = q[torch.randperm(len(q), device=q.device)[:self.sample]]
        return self.weight * uniformity(q)


def _renamer(*renames: tuple[str, str]):
    """A load_state_dict pre-hook that maps checkpoints written before the query paths moved
    here (the tower's weights sat on the model itself) onto today's names."""
    def hook(module, state_dict, prefix, *_):
        for old, new in renames:
            for key in [k for k in state_dict if k.startswith(prefix + old)]:
                state_dict[prefix + new + key[len(prefix + old):]] = state_dict.pop(key)
    return hook


_LEGACY_TOWER = {"ngpu": _renamer(("tower_embed.", "queries.embed."), ("tower.", "queries.cells.")),
                 "seq2seq": _renamer(("tower_embed.", "tower.embed."), ("tower.weight", "tower.lstm.weight"),
                                     ("tower.bias", "tower.lstm.bias"))}
