"""An LSTM encoder-decoder with additive attention and an optional memory layer, shared by the
synthetic task's seq2seq baseline and the GNMT-style translator (paper Fig. 2).

The attention vector ``a_t = tanh(W [h_t; c_t])`` queries the memory; the embedded memory
value times its softmax weight joins it in one linear read-out before the softmax (the paper's
"additional linear layer"): ``logits = out(a_t) + out_mem(emb(v_t) * w_t)``, with ``out_mem``
starting at zero, so the memory model starts exactly as its baseline (same seed, same logits).
With ``copy`` the value's own logit also gets ``g(a_t) * w_t`` (``g`` a linear gate over
``a_t``, zero at the start): a word whose embedding and output row training never shaped (a
held-out or one-shot word) can only reach the output this way. Under teacher forcing all decoder
steps of a batch go to the memory in one call; greedy decoding makes one call per step, beam
search (models/translation/beam.py) one per step for all beams.

``tower``, for tasks whose output position t answers to source position t (the synthetic task;
a recipe of models/neural_gpu/recipes.py builds it): a module of its own over the source whose
state at position t (past the source's end, its last position) stands for output position t.
With the memory layer the memory is queried with it instead of ``a_t``; without, it joins the
attention vector's inputs, ``a_t = tanh(W [h_t; c_t; k_t])``: the twin with the same prior and
no memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from raremem.models.memory_layer import MemoryLayer


@dataclass
class DecoderOutput:
    logits: torch.Tensor       # (B, T, target vocabulary)
    memory_loss: torch.Tensor  # () mean memory loss over the real positions (0 without memory)
    memory_values: torch.Tensor | None  # (B, T) int64 value the memory returned (-1: none)


@dataclass
class Seq2SeqConfig:
    src_vocab: int
    tgt_vocab: int
    units: int = 256
    layers: int = 2
    bidirectional_first: bool = False  # GNMT: the first encoder layer reads both ways
    dropout: float = 0.1
    memory_layer: bool = True
    pad: int = 0
    go: int = -1               # the decoder's first input; -1 = an extra embedding row
    eos: int = -1              # greedy decoding stops once every row produced it; -1 = never
    copy: bool = False         # the memory's value also raises its own logit by gate(a_t) * w_t


class AttentionSeq2Seq(nn.Module):
    def __init__(self, cfg: Seq2SeqConfig, backend=None, tower=None):
        """``tower``: a function building the aligned source module (src (B, S) -> (B, S, U); see
        above), called after every other weight is drawn."""
        super().__init__()
        u = cfg.units
        self.cfg = cfg
        self.go = cfg.tgt_vocab if cfg.go < 0 else cfg.go
        self.embed_in = nn.Embedding(cfg.src_vocab, u)
        self.embed_out = nn.Embedding(cfg.tgt_vocab + (cfg.go < 0), u)
        if cfg.bidirectional_first:   # u/2 each way; the decoder starts from zeros
            self.first = nn.LSTM(u, u // 2, 1, batch_first=True, bidirectional=True)
            self.encoder = nn.LSTM(u, u, cfg.layers - 1, batch_first=True,
                                   dropout=cfg.dropout if cfg.layers > 2 else 0.0) if cfg.layers > 1 else None
        else:                         # the decoder starts from the encoder's final state
            self.first = None
            self.encoder = nn.LSTM(u, u, cfg.layers, batch_first=True, dropout=cfg.dropout)
        self.decoder = nn.LSTM(u, u, cfg.layers, batch_first=True, dropout=cfg.dropout)
        self.att_q, self.att_k = nn.Linear(u, u, bias=False), nn.Linear(u, u)
        self.att_v = nn.Linear(u, 1, bias=False)
        self.combine = nn.Linear((3 if tower is not None and not cfg.memory_layer else 2) * u, u)   # k_t joins a_t
        self.out = nn.Linear(u, cfg.tgt_vocab)
        # Created after everything the baseline has, so both draw the same initial weights.
        self.memory = MemoryLayer(u, backend) if cfg.memory_layer else None
        self.out_mem = nn.Linear(u, cfg.tgt_vocab, bias=False) if cfg.memory_layer else None
        if self.out_mem is not None:
            nn.init.zeros_(self.out_mem.weight)
        self.copy_gate = nn.Linear(u, 1) if cfg.memory_layer and cfg.copy else None
        if self.copy_gate is not None:   # zero: the copy term starts switched off
            nn.init.zeros_(self.copy_gate.weight)
            nn.init.zeros_(self.copy_gate.bias)
        self.tower = tower() if tower is not None else None
        # An extra term on a memory call's unit queries (n, U) -> (), added to the memory loss
        # (a recipe's; none in the paper).
        self.query_penalty = None

    def encode(self, src: torch.Tensor):
        """src (B, S) -> (states (B, S, U), decoder initial state or None)."""
        x = self.embed_in(src)
        if self.first is None:
            return self.encoder(x)
        x, _ = self.first(x)
        if self.encoder is not None:
            x, _ = self.encoder(x)
        return x, None

    def _attend(self, dec: torch.Tensor, ctx: dict) -> torch.Tensor:
        """dec (B, T, U) -> attention vectors (B, T, U) over ``ctx``'s encoding."""
        scores = self.att_v(torch.tanh(self.att_q(dec)[:, :, None] + ctx["keys"][:, None])).squeeze(-1)  # (B, T, S)
        weights = scores.masked_fill(ctx["pad"][:, None], float("-inf")).softmax(-1)
        parts = [dec, weights @ ctx["enc"]]
        if "tower" in ctx and self.memory is None:   # the twin: the aligned tower feeds a_t
            parts.append(self._aligned(ctx, dec.shape[1]))
        return torch.tanh(self.combine(torch.cat(parts, -1)))

    @staticmethod
    def _aligned(ctx: dict, steps: int) -> torch.Tensor:
        """The tower's states (B, T, U) at the source positions of the decoder's next ``steps``
        positions (``ctx["t"]``: the first of them; past the source's end its last position)."""
        k = ctx["tower"]                                                    # (B, S, U)
        pos = (ctx["t"] + torch.arange(steps, device=k.device)).clamp(max=k.shape[1] - 1)
        return k[:, pos]

    def _with_memory(self, att: torch.Tensor, ctx: dict, labels: torch.Tensor | None, update: bool,
                     mask: torch.Tensor, sources: torch.Tensor | None, leave_one_out: bool = False):
        """att (B, T, U): one memory call for the B*T positions where ``mask`` (B, T) holds.
        Returns (logits (B, T, V), mean memory loss, values (B, T)). The weight's gradient
        terms are asked for only when autograd records (not while decoding)."""
        B, T, U = att.shape
        asked = self._aligned(ctx, T) if "tower" in ctx else att             # (B, T, U)
        flat, keep = asked.reshape(B * T, U), mask.reshape(-1)
        src = None if sources is None else sources[:, None].expand(B, T).reshape(-1)[keep]
        out = self.memory(flat[keep], labels.reshape(-1)[keep] if labels is not None else None,
                          update=update, weight_grad=torch.is_grad_enabled(), sources=src,
                          leave_one_out=leave_one_out)
        weight = out.weight * (out.result >= 0)                                # (n,): 0 where none
        emb = self.embed_out(out.result.clamp(min=0)) * weight[:, None]
        rows = (keep.nonzero()[:, 0],)
        mem = emb.new_zeros(B * T, U).index_put(rows, emb).to(att.dtype)
        values = torch.full((B * T,), -1, dtype=torch.long, device=att.device)
        values[keep] = out.result
        logits = self.out(att) + self.out_mem(mem.reshape(B, T, U))             # (B, T, V)
        if self.copy_gate is not None:   # logits[v_t] += gate(a_t) * w_t
            w = weight.new_zeros(B * T).index_put(rows, weight).reshape(B, T, 1).to(logits.dtype)
            logits = logits.scatter_add(-1, values.reshape(B, T, 1).clamp(min=0), self.copy_gate(att) * w)
        loss = out.loss.mean()
        if self.query_penalty is not None:
            loss = loss + self.query_penalty(out.query)
        return logits, loss, values.reshape(B, T)

    def states(self, src: torch.Tensor, tgt: torch.Tensor, ctx: dict | None = None) -> torch.Tensor:
        """Teacher-forced attention vectors (B, T, U) for src (B, S), tgt (B, T): at position t
        the decoder has read GO, tgt[:, :t]. What queries the memory, and a kNN-MT datastore's key."""
        ctx = ctx or self.start(src)
        go = torch.full((len(src), 1), self.go, dtype=torch.long, device=src.device)
        dec, _ = self.decoder(self.embed_out(torch.cat([go, tgt[:, :-1]], 1)), ctx["state"])
        ctx["t"] = 0
        return self._attend(dec, ctx)

    def start(self, src: torch.Tensor) -> dict:
        """Encode src (B, S) once for step-by-step decoding: what ``step`` reads."""
        enc, state = self.encode(src)
        ctx = {"enc": enc, "keys": self.att_k(enc), "pad": src == self.cfg.pad, "state": state, "t": -1}
        if self.tower is not None:
            ctx["tower"] = self.tower(src)                                     # (B, S, U)
        return ctx

    def step_states(self, prev: torch.Tensor, ctx: dict) -> torch.Tensor:
        """One decoder step's attention vectors (N, 1, U) for prev (N, 1) tokens; ``ctx["state"]``
        advances. What ``step`` reads out, and what a kNN-MT decoder looks up."""
        dec, ctx["state"] = self.decoder(self.embed_out(prev), ctx["state"])
        ctx["t"] += 1   # the position this step answers
        return self._attend(dec, ctx)

    def step(self, prev: torch.Tensor, ctx: dict, active: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One decoder step for every row: prev (N, 1) tokens -> logits (N, 1, V) and the memory's
        values (N, 1) or None; ``ctx["state"]`` advances. Only ``active`` (N,) rows query memory."""
        return self.read_out(self.step_states(prev, ctx), ctx, active)

    def read_out(self, att: torch.Tensor, ctx: dict, active: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One decoder step's attention vectors att (N, 1, U) -> logits (N, 1, V) and the
        memory's values (N, 1) or None, without memory updates; only ``active`` (N,) rows
        query memory."""
        if self.memory is None:
            return self.out(att), None
        logits, _, values = self._with_memory(att, ctx, None, False, active[:, None], None)
        return logits, values

    def forward(self, src: torch.Tensor, tgt: torch.Tensor | None = None, *, update: bool = False,
                max_len: int | None = None, sources: torch.Tensor | None = None, leave_one_out: bool = False,
                **_) -> DecoderOutput:
        """src (B, S). With ``tgt`` (B, T): teacher forcing, labels = tgt (PAD positions skipped);
        ``update`` writes memory. Without: greedy decoding of ``max_len`` (default S) steps.
        ``sources`` (B,): provenance stored with written slots (example indices); with
        ``leave_one_out`` the lookups skip the slots their own example wrote."""
        B, S = src.shape
        ctx = self.start(src)
        go = torch.full((B, 1), self.go, dtype=torch.long, device=src.device)
        if tgt is not None:
            att = self.states(src, tgt, ctx)
            if self.memory is None:
                return DecoderOutput(self.out(att), att.new_zeros(()), None)
            logits, loss, values = self._with_memory(att, ctx, tgt, update, tgt != self.cfg.pad, sources, leave_one_out)
            return DecoderOutput(logits, loss, values)
        logits, values, prev = [], [], go
        done = torch.zeros(B, dtype=torch.bool, device=src.device)
        for _ in range(max_len or S):
            step_logits, v = self.step(prev, ctx, ~done)
            logits.append(step_logits)
            if v is not None:
                values.append(v)
            prev = step_logits.argmax(-1)
            done |= prev[:, 0] == self.cfg.eos
            if done.all():
                break
        return DecoderOutput(torch.cat(logits, 1), logits[0].new_zeros(()), torch.cat(values, 1) if values else None)
