"""The Omniglot ConvNet with memory (Kaiser et al. 2017, §4.1; design.md §3).

Embedder: conv3x3(64)-ReLU-conv3x3(64)-ReLU-maxpool, conv3x3(128)-ReLU-conv3x3(128)-ReLU-maxpool,
then one of two heads:

- ``"paper"`` (the paper's text): FC(rep_dim)-ReLU-dropout-FC(rep_dim);
- ``"authors"`` (the authors' code, tensorflow/models research/learning_to_remember_rare_events
  model.py): one linear FC to rep_dim, then dropout right before the memory's query projection.

Dropout is PyTorch's *drop* probability. The authors' ``keep_prob=0.3`` is ``dropout=0.7``.
The memory layer does the rest: projection, normalisation, lookup, loss (the only loss).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from raremem.models.memory_layer import MemoryLayer

HEADS = ("paper", "authors")


@dataclass
class OmniglotModelConfig:
    rep_dim: int = 256      # embedding size = memory key dimension
    head: str = "paper"     # "paper" | "authors" (module docstring); chosen by the ablation in results/omniglot.md
    dropout: float = 0.3    # drop probability (the authors' keep_prob 0.3 would be 0.7)
    channels_last: bool = True  # design.md §5: 1.6x faster convolutions on this CPU


class Embedder(nn.Module):
    def __init__(self, cfg: OmniglotModelConfig):
        super().__init__()
        if cfg.head not in HEADS:
            raise ValueError(f"head is one of {HEADS}, not {cfg.head!r}")

        def block(c_in, c_out):
            return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(),
                    nn.Conv2d(c_out, c_out, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]

        self.convs = nn.Sequential(*block(1, 64), *block(64, 128))
        flat = nn.Sequential(nn.Flatten(), nn.Linear(128 * 7 * 7, cfg.rep_dim))
        if cfg.head == "paper":
            self.fc = nn.Sequential(*flat, nn.ReLU(), nn.Dropout(cfg.dropout), nn.Linear(cfg.rep_dim, cfg.rep_dim))
        else:
            self.fc = nn.Sequential(*flat, nn.Dropout(cfg.dropout))
        self.channels_last = cfg.channels_last
        # The paper's code: truncated normal (std 0.1) weights, zero biases. PyTorch's default
        # init (small uniform weights, uniform biases) starts every image at a cosine of
        # ~0.999 to every other: the memory loss is then flat and training stalls.
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, std=0.1, a=-0.2, b=0.2)
                nn.init.zeros_(m.bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images[:, None]                                   # (N, 1, 28, 28)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.fc(self.convs(x))                         # (N, rep_dim)


class OmniglotModel(nn.Module):
    def __init__(self, cfg: OmniglotModelConfig, backend):
        super().__init__()
        self.cfg = cfg
        self.embedder = Embedder(cfg)
        self.memory = MemoryLayer(cfg.rep_dim, backend)
        if cfg.channels_last:
            self.embedder.to(memory_format=torch.channels_last)

    def queries(self, images: torch.Tensor) -> torch.Tensor:
        """Unit memory queries for images (N, 28, 28) -> (N, rep_dim), float32."""
        return self.memory.query(self.embedder(images))

    def forward(self, images: torch.Tensor, labels: torch.Tensor, sources: torch.Tensor | None = None):
        """One time step of B parallel episodes: images (B, 28, 28), labels (B,), sources (B,)
        dataset indices stored with each write (so a slot names the drawing that wrote it).
        Looks the B queries up and updates the memory; returns (mean memory loss, correct (B,)).
        A ``forward`` so that DDP sees the call and syncs the gradients of its backward."""
        out = self.memory(self.embedder(images), labels, sources=sources)
        return out.loss.mean(), out.result == labels


def load_model(path: Path, backend=None) -> OmniglotModel:
    """A trained model from a trainer checkpoint, over ``backend`` (none: queries only)."""
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    fields = OmniglotModelConfig.__dataclass_fields__
    cfg = OmniglotModelConfig(**{k: v for k, v in ckpt["config"].items() if k in fields})
    model = OmniglotModel(cfg, backend)
    model.load_state_dict(ckpt["model"])
    return model
