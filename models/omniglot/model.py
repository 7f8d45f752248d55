"""The Omniglot ConvNet with memory (Kaiser et al. 2017, §4.1; DESIGN §3.1).

Embedder: conv3x3(64)-ReLU-conv3x3(64)-ReLU-maxpool, conv3x3(128)-ReLU-conv3x3(128)-ReLU-maxpool,
then two fully connected layers of ``rep_dim`` with dropout between (the paper's text; the
authors advised rep_dim 256 to reproduce its 20-way numbers). The memory layer does the rest:
projection, normalisation, lookup, loss. The memory loss is the only loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from raremem.models.memory_layer import MemoryLayer


@dataclass
class OmniglotModelConfig:
    rep_dim: int = 256      # embedding size = memory key dimension
    dropout: float = 0.3    # drop probability between the FC layers (see TrainConfig.dropout)
    channels_last: bool = True  # DESIGN §5: 1.6x faster convolutions on this CPU


class Embedder(nn.Module):
    def __init__(self, cfg: OmniglotModelConfig):
        super().__init__()

        def block(c_in, c_out):
            return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(),
                    nn.Conv2d(c_out, c_out, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]

        self.convs = nn.Sequential(*block(1, 64), *block(64, 128))
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(128 * 7 * 7, cfg.rep_dim), nn.ReLU(),
                                nn.Dropout(cfg.dropout), nn.Linear(cfg.rep_dim, cfg.rep_dim))
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
        """``episode_loss``, as ``forward`` so that DDP sees the call and syncs its gradients."""
        return self.episode_loss(images, labels, sources)

    def episode_loss(self, images: torch.Tensor, labels: torch.Tensor, sources: torch.Tensor | None = None):
        """One episode batch, step by step through the memory.

        images (T, B, 28, 28), labels (T, B), sources (T, B) dataset indices stored with each
        write (so the admin CLI can say which training images answer). The embedder sees all T*B images at once (no
        step depends on another's embedding); the memory is then queried and updated one time
        step at a time, as the episode unfolds. Returns (mean loss, correct (T, B) bool)."""
        T, B = labels.shape
        emb = self.embedder(images.reshape(T * B, *images.shape[2:])).reshape(T, B, -1)  # (T, B, rep)
        losses, correct = [], []
        for t in range(T):
            out = self.memory(emb[t], labels[t], sources=None if sources is None else sources[t])
            losses.append(out.loss.mean())
            correct.append(out.result == labels[t])
        return torch.stack(losses).mean(), torch.stack(correct)
