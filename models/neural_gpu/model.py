"""The models of Table 2, each with or without the memory layer (a flag, not a copy).

``ExtendedNeuralGPU`` (Kaiser & Bengio 2016, "Can active memory replace attention?"; paper
Fig. 3): a convolutional GRU state of shape (B, C, H=4, W=L). The encoder runs L steps of
``nconv`` CGRU cells over the embedded input; the decoder runs L steps of ``nconv`` CGRU cells
that also read an output tape (B, C, H, L). Decoder step ``it``, as the authors' ``dec_step``
(tensorflow/models research/neural_gpu/neural_gpu.py) orders it: with memory, query the memory
from the state *before* this step's cells, one position ahead (row 0, column it+1); run the
cells; emit the symbol at ``it`` from row 0 and write its embedding on the tape at ``it``; write
the memory's value embedding times its softmax weight on the tape at it+1, where the next
step reads it. Dropout on the state before every step's cells, at ``dropout * 3 / sqrt(L)``.

Initialisation as the authors': every conv kernel and the output matrix orthogonal with gain
1.8 * 0.8 = 1.44; separate update and reset gate convs, both biases 1.0 (the cut-off sigmoid
then gives 0.777).

The seq2seq rows are ``models.seq2seq.AttentionSeq2Seq``: a 2-layer LSTM encoder-decoder (256
units) with additive attention, whose attention vector queries the memory (or, with
``query_from="tower"``, a key tower's state at the output's own source position).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from raremem.models.memory_layer import MemoryLayer, uniformity
from raremem.models.seq2seq import AttentionSeq2Seq, DecoderOutput, Seq2SeqConfig
from raremem.models.neural_gpu.task import DIGITS, HIGH, PAD, VOCAB


@dataclass
class ModelConfig:
    arch: str = "ngpu"        # "ngpu" | "seq2seq"
    memory_layer: bool = True  # with the memory layer
    channels: int = 32        # Neural GPU: the paper's small model
    height: int = 4
    nconv: int = 2            # CGRU cells per step
    units: int = 256          # seq2seq: LSTM units (2 layers)
    dropout: float = 0.1      # Neural GPU: state dropout dropout * 3 / sqrt(L) (the authors'); seq2seq: as is
    # The control: memory queries are a fixed random unit vector per (number, digit position)
    # inside the run and per symbol outside it, not the model's state; everything else as is.
    # It shows how far the memory-and-tape path gets when the queries are right.
    fixed_queries: bool = False
    # Whether the decoder's loss reaches the queries through the softmax weight w_1 of the
    # memory's suggestion on the tape. Without it only the memory loss reaches the queries and
    # w_1 is a constant gate for the decoder (an experiment: results/synthetic_notes.md).
    weight_grad: bool = True
    # Whether any loss reaches the network through the memory's query (the memory loss, and the
    # decoder's through w_1). Off: the query reads the state detached, so only the query
    # projection learns from the memory and the cross-entropy alone shapes the state (an
    # experiment: results/synthetic_notes.md).
    query_grad: bool = True
    # Where the Neural GPU's queries come from. "state": the authors' (the decoder's state
    # before each step, row 0, one column ahead). "encoder": the encoder's final state at that
    # column, which the decoder's steps and their tape do not touch. "tower": a key tower of its
    # own (an embedding and ``nconv`` CGRU cells run over the input as the encoder is, no
    # dropout), read only by the memory, so only the memory's losses train it: the cross-entropy
    # flattens the state the memory reads until its queries no longer name the number
    # (results/synthetic_notes.md, the probe).
    query_from: str = "state"
    # Weight of a uniformity term on each decoder column's unit queries, added to the memory
    # loss: log mean over pairs of examples of exp(-2 |q_i - q_j|^2) (Wang & Isola, ICML 2020).
    # Under labels the queries cannot predict (a number not yet in memory, any digit as likely),
    # the margin loss is lowest on average when every query is alike (Jensen: its mean is alpha
    # then, more when spread), so learned queries drift together (results/synthetic_notes.md);
    # this term makes that state costly. 0 = none (the authors').
    query_uniformity: float = 0.0

    @property
    def key_dim(self) -> int:
        return self.channels if self.arch == "ngpu" else self.units


def cutoff_sigmoid(x: torch.Tensor) -> torch.Tensor:
    """The Neural GPU's gate: saturates at exactly 0 and 1 (Kaiser & Sutskever 2016)."""
    return torch.clamp(1.2 * torch.sigmoid(x) - 0.1, 0.0, 1.0)


INIT_GAIN = 1.8 * 0.8   # the authors' orthogonal initialiser gain for kernels and output matrix
GATE_BIAS = 1.0         # the authors' update and reset gate bias


class CGRU(nn.Module):
    """s' = u*s + (1-u)*tanh(conv([r*s, x])), u = cutoff_sigmoid(conv_u([s, x])),
    r = cutoff_sigmoid(conv_r([s, x])); 3x3 kernels. ``extra``: channels of an input ``x``
    read beside the state (the decoder's tape)."""

    def __init__(self, channels: int, extra: int = 0):
        super().__init__()
        self.update = nn.Conv2d(channels + extra, channels, 3, padding=1)
        self.reset = nn.Conv2d(channels + extra, channels, 3, padding=1)
        self.candidate = nn.Conv2d(channels + extra, channels, 3, padding=1)
        for conv in (self.update, self.reset, self.candidate):
            nn.init.orthogonal_(conv.weight, gain=INIT_GAIN)
        nn.init.constant_(self.update.bias, GATE_BIAS)
        nn.init.constant_(self.reset.bias, GATE_BIAS)
        nn.init.zeros_(self.candidate.bias)

    def forward(self, s: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        sx = s if x is None else torch.cat([s, x], 1)
        u, r = cutoff_sigmoid(self.update(sx)), cutoff_sigmoid(self.reset(sx))
        rs = r * s
        c = torch.tanh(self.candidate(rs if x is None else torch.cat([rs, x], 1)))
        return u * s + (1 - u) * c


QUERY_SOURCES = ("state", "encoder", "tower")


class ExtendedNeuralGPU(nn.Module):
    def __init__(self, cfg: ModelConfig, backend=None):
        super().__init__()
        c = cfg.channels
        self.cfg = cfg
        if cfg.query_from not in QUERY_SOURCES:
            raise ValueError(f"query_from is one of {QUERY_SOURCES}, not {cfg.query_from!r}")
        if cfg.query_from != "state" and (cfg.fixed_queries or not cfg.memory_layer):
            raise ValueError("query_from other than 'state' needs the memory layer and learned queries")
        self.embed_in = nn.Embedding(VOCAB, c)
        self.embed_out = nn.Embedding(VOCAB, c)
        self.encoder = nn.ModuleList(CGRU(c) for _ in range(cfg.nconv))
        if cfg.query_from == "tower":
            self.tower_embed = nn.Embedding(VOCAB, c)
            self.tower = nn.ModuleList(CGRU(c) for _ in range(cfg.nconv))
        self.queries_frozen = False   # see freeze_queries
        self.decoder = nn.ModuleList(CGRU(c, extra=c) for _ in range(cfg.nconv))
        self.out = nn.Linear(c, VOCAB)
        nn.init.orthogonal_(self.out.weight, gain=INIT_GAIN)
        nn.init.zeros_(self.out.bias)
        self.memory = MemoryLayer(c, backend) if cfg.memory_layer else None
        if cfg.fixed_queries:
            if self.memory is None:
                raise ValueError("fixed_queries needs the memory layer")
            g = torch.Generator().manual_seed(0x51ED)
            # (HIGH + 1, DIGITS, C) for digit positions, (VOCAB, C) for the symbols around them;
            # not parameters and not saved: the same seed rebuilds them.
            self.register_buffer("fixed_digits", F.normalize(torch.randn(HIGH + 1, DIGITS, c, generator=g), dim=-1),
                                 persistent=False)
            self.register_buffer("fixed_symbols", F.normalize(torch.randn(VOCAB, c, generator=g), dim=-1),
                                 persistent=False)
            with torch.no_grad():   # queries pass through unprojected: q = x
                self.memory.query_proj.weight.copy_(torch.eye(c))
            self.memory.query_proj.weight.requires_grad_(False)

    def freeze_queries(self, frozen: bool) -> None:
        """Hold the learned query path still (a warm-up): its input is detached and the query
        projection gets no gradient, so no loss moves the queries while ``frozen``: the memory
        first fills with keys of each number from other examples, and the queries keep their
        initial recall until then. Alone it did not stop the collapse (a key tower held 1,500
        steps, with leave-one-out, flattened within 500 steps of release); with
        ``query_uniformity`` it did (results/synthetic.md)."""
        if self.memory is None or self.cfg.fixed_queries:
            raise ValueError("freeze_queries is for learned memory queries")
        self.queries_frozen = frozen
        self.memory.query_proj.weight.requires_grad_(not frozen)

    def _fixed_query(self, rows, column: int, inputs, numbers, starts) -> torch.Tensor:
        """The control's queries (R, C) for decoder column ``column`` of examples ``rows``."""
        offset = column - starts[rows]                                      # (R,) digit index if in the run
        inside = (offset >= 0) & (offset < DIGITS)
        digits = self.fixed_digits[numbers[rows], offset.clamp(0, DIGITS - 1)]
        return torch.where(inside[:, None], digits, self.fixed_symbols[inputs[rows, column]])

    def _encode(self, embed: nn.Embedding, cells: nn.ModuleList, inputs: torch.Tensor, drop: bool) -> torch.Tensor:
        """(B, L) inputs -> the state (B, C, H, L) after L steps of ``cells`` over the
        embedded input on row 0 (state dropout before every step when ``drop``)."""
        B, L = inputs.shape
        s = inputs.new_zeros((B, self.cfg.channels, self.cfg.height, L), dtype=torch.float32)
        s[:, :, 0] = embed(inputs).transpose(1, 2)
        for _ in range(L):
            if drop:
                s = self._drop(s, L)
            for cell in cells:
                s = cell(s)
        return s

    def _query(self, s, keys, rows, column: int, inputs, numbers, starts) -> torch.Tensor:
        """The queries (R, C) for decoder column ``column`` of examples ``rows``: the control's
        fixed ones, or read from ``keys`` (B, C, L; the encoder's or the tower's row 0), or
        from the state ``s`` (B, C, H, L)."""
        if self.cfg.fixed_queries:
            return self._fixed_query(rows, column, inputs, numbers, starts)
        q = s[rows, :, 0, column] if keys is None else keys[rows, :, column]
        return q if self.cfg.query_grad and not self.queries_frozen else q.detach()

    def _drop(self, s: torch.Tensor, length: int) -> torch.Tensor:
        """The authors' state dropout before every step's cells: dropout * 3 / sqrt(L)."""
        return F.dropout(s, min(self.cfg.dropout * 3 / length ** 0.5, 0.9), self.training) if self.cfg.dropout else s

    def forward(self, inputs: torch.Tensor, targets: torch.Tensor | None = None, *, update: bool = False,
                gold_weight: float = 0.0, sources: torch.Tensor | None = None,
                numbers: torch.Tensor | None = None, starts: torch.Tensor | None = None,
                leave_one_out: bool = False) -> DecoderOutput:
        """inputs (B, L), PAD after each example. With ``targets`` (B, L): teacher forcing (the
        gold symbol goes on the tape; with memory, each query carries its label and ``update``
        writes). Without: greedy. ``gold_weight``: training only, the share of the gold embedding
        mixed into the memory's suggestion on the tape (the paper's code decays it early on).
        ``sources`` (B,): provenance stored with written slots (example indices). ``numbers``,
        ``starts`` (B,): each example's number and run start, read only by the fixed-query control.
        ``leave_one_out``: lookups skip the slots written by their own example (``sources``)."""
        if self.cfg.fixed_queries and (numbers is None or starts is None):
            raise ValueError("the fixed-query control needs numbers and starts")
        B, L = inputs.shape
        lengths = (inputs != PAD).sum(1)                                    # (B,)
        c = self.cfg.channels
        s = self._encode(self.embed_in, self.encoder, inputs, drop=True)    # (B, C, H, L)
        keys = None                                                         # (B, C, L) unless the state's
        if self.cfg.query_from == "encoder":
            keys = s[:, :, 0]
        elif self.cfg.query_from == "tower":
            keys = self._encode(self.tower_embed, self.tower, inputs, drop=False)[:, :, 0]
        tape = torch.zeros_like(s)                                          # (B, C, H, L)
        logits, mem_losses, mem_values = [], [], []
        for it in range(L):
            rows = (lengths > it + 1).nonzero()[:, 0]                        # examples still going
            suggestion = None
            if self.memory is not None and len(rows):  # queried from the state before the cells
                label = targets[rows, it + 1] if targets is not None else None
                query = self._query(s, keys, rows, it + 1, inputs, numbers, starts)
                out = self.memory(query, label, update=update and label is not None,
                                  sources=None if sources is None else sources[rows],
                                  weight_grad=self.cfg.weight_grad and torch.is_grad_enabled(),
                                  leave_one_out=leave_one_out and sources is not None)
                found = out.result >= 0
                suggestion = self.embed_out(out.result.clamp(min=0)) * (out.weight * found)[:, None]   # (R, C)
                if targets is not None and gold_weight > 0:
                    gold = F.dropout(self.embed_out(label), 0.3, self.training)     # the authors' keep 0.7
                    suggestion = gold_weight * gold + (1 - gold_weight) * suggestion
                term = out.loss.mean()
                if self.cfg.query_uniformity and len(rows) > 1 and torch.is_grad_enabled():
                    term = term + self.cfg.query_uniformity * uniformity(out.query)
                mem_losses.append(term)
                mem_values.append(torch.full_like(inputs[:, 0], -1).index_put((rows,), out.result))
            s = self._drop(s, L)
            for cell in self.decoder:
                s = cell(s, tape)
            step_logits = self.out(s[:, :, 0, it])                          # (B, VOCAB)
            logits.append(step_logits)
            symbol = targets[:, it] if targets is not None else step_logits.argmax(-1)
            tape = _put(tape, it, self.embed_out(symbol))
            if suggestion is not None:
                tape = _put(tape, it + 1, suggestion.new_zeros(B, c).index_put((rows,), suggestion))
        loss = torch.stack(mem_losses).mean() if mem_losses else s.new_zeros(())
        values = None
        if mem_values:  # (B, L): column it+1 holds what the memory suggested there
            values = torch.full_like(inputs, -1)
            values[:, 1:len(mem_values) + 1] = torch.stack(mem_values, 1)
        return DecoderOutput(torch.stack(logits, 1), loss, values)


def _put(tape: torch.Tensor, column: int, emb: torch.Tensor) -> torch.Tensor:
    """A copy of ``tape`` with column ``column`` set to ``emb`` (B, C) on every row (out of
    place: autograd keeps the earlier tape for the cells that read it)."""
    tape = tape.clone()
    tape[:, :, :, column] = emb[:, :, None]
    return tape


def build_model(cfg: ModelConfig, backend=None) -> nn.Module:
    if cfg.arch == "ngpu":
        return ExtendedNeuralGPU(cfg, backend)
    return AttentionSeq2Seq(Seq2SeqConfig(VOCAB, VOCAB, cfg.units, 2, dropout=cfg.dropout, memory_layer=cfg.memory_layer,
                                          pad=PAD, query_uniformity=cfg.query_uniformity,
                                          query_from=cfg.query_from), backend)
