"""What the two sequence trainers (the synthetic task's and the translator's) share: their
flags, batches of similar length, and one training step of cross-entropy plus memory loss."""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from raremem.models.devices import device_of
from raremem.models.flags import TrainerFlags


@dataclass
class SequenceFlags(TrainerFlags):
    memory_layer: bool = True       # False: the same model without memory (the baseline row)
    memory_name: str = ""           # the life-long memory every replica of the run writes
    batch: int = 32
    lr: float = 1e-3
    clip: float = 5.0               # global gradient-norm clip
    label_smoothing: float = 0.1
    memory_loss_weight: float = 0.5  # loss = CE + weight x memory loss
    bf16: bool = False              # bfloat16 autocast over the model body (memory queries stay fp32)


class LengthBuckets:
    """Batches of examples of similar length (buckets of ``width``): a bucket drawn in
    proportion to its size, then ``batch`` of its examples without replacement."""

    def __init__(self, lengths: np.ndarray, batch: int, width: int = 4):
        self.batch = batch
        self.buckets = [np.flatnonzero(lengths // width == b) for b in np.unique(lengths // width)]
        self.p = np.array([len(b) for b in self.buckets], dtype=np.float64) / len(lengths)

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        bucket = self.buckets[rng.choice(len(self.buckets), p=self.p)]
        return rng.choice(bucket, size=min(self.batch, len(bucket)), replace=False)


def sequence_step(model, net, opt, cfg: SequenceFlags, inputs: torch.Tensor, targets: torch.Tensor, pad: int,
                  **forward) -> tuple[dict, object]:
    """One update: ``net(inputs, targets, update=True, **forward)`` under teacher forcing (its
    output has ``logits`` (B, T, V) and ``memory_loss``), label-smoothed CE over the non-pad
    targets + ``memory_loss_weight`` x memory loss, clipped Adam step. ``net`` is the model as
    replicated (DDP), ``model`` itself otherwise; the tensors go to the model's device. Returns
    (metrics row, the forward's output)."""
    model.train()
    memory = getattr(model, "memory", None)
    device = device_of(model)
    inputs, targets = inputs.to(device), targets.to(device)
    forward = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in forward.items()}
    t0, m0 = time.perf_counter(), memory.seconds if memory is not None else 0.0
    with torch.autocast(device.type, dtype=torch.bfloat16) if cfg.bf16 else nullcontext():
        out = net(inputs, targets, update=True, **forward)
    logits = out.logits.float()                                          # (B, T, V)
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=pad,
                         label_smoothing=cfg.label_smoothing)
    loss = ce + cfg.memory_loss_weight * out.memory_loss
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
    opt.step()
    row = {"loss": loss.item(), "ce": ce.item(), "memory_loss": out.memory_loss.item()}
    if memory is not None:   # the share of this step spent waiting on the memory
        row["memory_share"] = (memory.seconds - m0) / (time.perf_counter() - t0)
    return row, out
