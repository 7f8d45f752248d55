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
units) with additive attention, whose attention vector queries the memory.

Where the queries come from is the model's one hook (``queries``, the paper's by default): the
other query recipes of results/synthetic.md are built in recipes.py and plug in there.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from raremem.models.memory_layer import MemoryLayer
from raremem.models.seq2seq import AttentionSeq2Seq, DecoderOutput, Seq2SeqConfig
from raremem.models.neural_gpu.task import PAD, VOCAB


@dataclass
class ModelConfig:
    arch: str = "ngpu"        # "ngpu" | "seq2seq"
    memory_layer: bool = True  # with the memory layer
    channels: int = 32        # Neural GPU: the paper's small model
    height: int = 4
    nconv: int = 2            # CGRU cells per step
    units: int = 256          # seq2seq: LSTM units (2 layers)
    dropout: float = 0.1      # Neural GPU: state dropout dropout * 3 / sqrt(L) (the authors'); seq2seq: as is

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


def encode(embed: nn.Embedding, cells: nn.ModuleList, inputs: torch.Tensor, height: int, drop=None) -> torch.Tensor:
    """(B, L) inputs -> the state (B, C, H, L) after L steps of ``cells`` over the embedded input
    on row 0; ``drop`` (a function of the state) runs before every step's cells."""
    B, L = inputs.shape
    s = inputs.new_zeros((B, embed.embedding_dim, height, L), dtype=torch.float32)
    s[:, :, 0] = embed(inputs).transpose(1, 2)
    for _ in range(L):
        if drop is not None:
            s = drop(s)
        for cell in cells:
            s = cell(s)
    return s


class StateQueries(nn.Module):
    """The authors' memory queries: the decoder's state before a step's cells, row 0, one column
    ahead. A query path turns one forward's inputs into a function that gives decoder column
    ``column``'s queries (R, C) for examples ``rows`` from the state ``s`` (B, C, H, L)."""

    weight_grad = True   # the decoder's loss reaches the queries through w_1 on the tape

    def start(self, inputs: torch.Tensor, state: torch.Tensor, **batch):
        """inputs (B, L), the encoder's final state (B, C, H, L); ``batch``: the examples'
        numbers and starts, which only a control reads."""
        return lambda s, rows, column: s[rows, :, 0, column]


class ExtendedNeuralGPU(nn.Module):
    def __init__(self, cfg: ModelConfig, backend=None, queries=None):
        """``queries``: a function building the memory's query path (a recipe's, recipes.py)
        in place of ``StateQueries``; called where the path's weights are drawn, after the
        encoder's, so a recipe leaves the rest of the model's initial weights as they were."""
        super().__init__()
        c = cfg.channels
        self.cfg = cfg
        self.embed_in = nn.Embedding(VOCAB, c)
        self.embed_out = nn.Embedding(VOCAB, c)
        self.encoder = nn.ModuleList(CGRU(c) for _ in range(cfg.nconv))
        if queries is not None and not cfg.memory_layer:
            raise ValueError("a query path needs the memory layer")
        self.queries = queries() if queries is not None else StateQueries()
        self.decoder = nn.ModuleList(CGRU(c, extra=c) for _ in range(cfg.nconv))
        self.out = nn.Linear(c, VOCAB)
        nn.init.orthogonal_(self.out.weight, gain=INIT_GAIN)
        nn.init.zeros_(self.out.bias)
        self.memory = MemoryLayer(c, backend) if cfg.memory_layer else None
        # An extra term on each column's unit queries (R, C) -> (), added to the memory loss
        # (a recipe's; none in the paper).
        self.query_penalty = None

    def _drop(self, s: torch.Tensor, length: int) -> torch.Tensor:
        """The authors' state dropout before every step's cells: dropout * 3 / sqrt(L)."""
        return F.dropout(s, min(self.cfg.dropout * 3 / length ** 0.5, 0.9), self.training) if self.cfg.dropout else s

    def forward(self, inputs: torch.Tensor, targets: torch.Tensor | None = None, *, update: bool = False,
                gold_weight: float = 0.0, sources: torch.Tensor | None = None, leave_one_out: bool = False,
                **batch) -> DecoderOutput:
        """inputs (B, L), PAD after each example. With ``targets`` (B, L): teacher forcing (the
        gold symbol goes on the tape; with memory, each query carries its label and ``update``
        writes). Without: greedy. ``gold_weight``: training only, the share of the gold embedding
        mixed into the memory's suggestion on the tape (the paper's code decays it early on).
        ``sources`` (B,): provenance stored with written slots (example indices); with
        ``leave_one_out`` lookups skip the slots written by their own example. ``batch``: what
        a query path may read (the examples' ``numbers`` and ``starts``, (B,) each)."""
        B, L = inputs.shape
        lengths = (inputs != PAD).sum(1)                                    # (B,)
        s = encode(self.embed_in, self.encoder, inputs, self.cfg.height, lambda s: self._drop(s, L))  # (B, C, H, L)
        query = self.queries.start(inputs, s, **batch) if self.memory is not None else None
        tape = torch.zeros_like(s)                                          # (B, C, H, L)
        logits, mem_losses, mem_values = [], [], []
        for it in range(L):
            rows = (lengths > it + 1).nonzero()[:, 0]                        # examples still going
            suggestion = None
            if query is not None and len(rows):   # queried from the state before the cells
                label = targets[rows, it + 1] if targets is not None else None
                out = self.memory(query(s, rows, it + 1), label, update=update and label is not None,
                                  sources=None if sources is None else sources[rows],
                                  weight_grad=self.queries.weight_grad and torch.is_grad_enabled(),
                                  leave_one_out=leave_one_out and sources is not None)
                suggestion = self._suggestion(out, label, gold_weight)      # (R, C)
                term = out.loss.mean()
                if self.query_penalty is not None:
                    term = term + self.query_penalty(out.query)
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
                tape = _put(tape, it + 1, suggestion.new_zeros(B, self.cfg.channels).index_put((rows,), suggestion))
        loss = torch.stack(mem_losses).mean() if mem_losses else s.new_zeros(())
        values = None
        if mem_values:  # (B, L): column it+1 holds what the memory suggested there
            values = torch.full_like(inputs, -1)
            values[:, 1:len(mem_values) + 1] = torch.stack(mem_values, 1)
        return DecoderOutput(torch.stack(logits, 1), loss, values)

    def _suggestion(self, out, label: torch.Tensor | None, gold_weight: float) -> torch.Tensor:
        """What the memory writes on the tape (R, C): its value's embedding times w_1 (zero where
        it found nothing), blended with ``gold_weight`` of the gold symbol's while training."""
        found = out.result >= 0
        suggestion = self.embed_out(out.result.clamp(min=0)) * (out.weight * found)[:, None]
        if label is not None and gold_weight > 0:
            gold = F.dropout(self.embed_out(label), 0.3, self.training)     # the authors' keep 0.7
            suggestion = gold_weight * gold + (1 - gold_weight) * suggestion
        return suggestion


def _put(tape: torch.Tensor, column: int, emb: torch.Tensor) -> torch.Tensor:
    """A copy of ``tape`` with column ``column`` set to ``emb`` (B, C) on every row (out of
    place: autograd keeps the earlier tape for the cells that read it)."""
    tape = tape.clone()
    tape[:, :, :, column] = emb[:, :, None]
    return tape


def build_model(cfg: ModelConfig, backend=None) -> nn.Module:
    """The paper's model of ``cfg.arch`` (a query recipe's: recipes.build_model)."""
    if cfg.arch == "ngpu":
        return ExtendedNeuralGPU(cfg, backend)
    return AttentionSeq2Seq(seq2seq_config(cfg), backend)


def seq2seq_config(cfg: ModelConfig) -> Seq2SeqConfig:
    return Seq2SeqConfig(VOCAB, VOCAB, cfg.units, 2, dropout=cfg.dropout, memory_layer=cfg.memory_layer, pad=PAD)
