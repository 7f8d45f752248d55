"""Replicated training for every trainer (design.md §3, Trainers).

Two engines synchronise parameters; the memory is always the remote service:

- **DDP** under ``torchrun --nproc-per-node N [--nnodes ...]``: one process per replica,
  gradients all-reduced every step (gloo on CPU, nccl on GPU). :func:`from_env` reads the
  variables torchrun sets.
- **Hogwild** (``--hogwild N`` in a trainer): N processes on one host share the parameters
  through shared memory and update them without locks, each with its own optimiser and data
  order. :func:`hogwild` starts them.

A trainer's loop takes a :class:`Replica` and asks it the few questions that differ between
modes (wrap the model, agree to stop).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


@dataclass
class Replica:
    rank: int = 0
    world: int = 1
    mode: str = "single"   # "single" | "ddp" | "hogwild"
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def main(self) -> bool:
        """Rank 0 validates, writes the shared checkpoint and the run record."""
        return self.rank == 0

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """DDP broadcasts rank 0's parameters at construction, so all replicas start equal."""
        if self.mode != "ddp":
            return model
        ids = [self.device.index] if self.device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def any(self, flag: bool) -> bool:
        """True on every replica if it is true on one (so DDP replicas stop at the same step)."""
        if self.mode != "ddp":
            return flag
        t = torch.tensor([int(flag)], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def mean(self, value: float) -> float:
        """The mean of ``value`` over the replicas (DDP), so decisions made from it agree."""
        if self.mode != "ddp":
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return float(t.item()) / self.world

    def close(self) -> None:
        if self.mode == "ddp" and dist.is_initialized():
            dist.destroy_process_group()


def from_env(device: torch.device) -> Replica:
    """A DDP replica when started by torchrun (WORLD_SIZE set), a single process otherwise; on
    ``device`` (models/devices.py resolves the flag: under torchrun each process's own GPU)."""
    if "WORLD_SIZE" not in os.environ or "RANK" not in os.environ:
        return Replica(device=device)
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if cuda else "gloo")
    return Replica(dist.get_rank(), dist.get_world_size(), "ddp", device)


def share(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Move ``model``'s parameters and buffers to shared memory; name -> shared tensor."""
    model.share_memory()
    return dict(model.state_dict(keep_vars=False))


def bind_shared(model: torch.nn.Module, shared: dict[str, torch.Tensor]) -> None:
    """Make ``model`` (built in a worker, with its own memory backend) use the shared tensors,
    so every replica's optimiser steps write into the same storage (Hogwild)."""
    params = dict(model.named_parameters())
    buffers = dict(model.named_buffers())
    missing = set(params) | set(buffers)
    for name, tensor in shared.items():
        target = params.get(name, buffers.get(name))
        if target is None or target.shape != tensor.shape:
            raise ValueError(f"shared tensor {name!r} does not fit the model")
        target.data = tensor
        missing.discard(name)
    if missing:
        raise ValueError(f"no shared tensor for {sorted(missing)}")


def _hogwild_entry(rank: int, fn, world: int, shared, args) -> None:
    fn(Replica(rank, world, "hogwild"), shared, *args)


def hogwild(fn, world: int, shared: dict[str, torch.Tensor], *args) -> None:
    """Run ``fn(replica, shared, *args)`` in ``world`` processes (spawned: each builds its own
    gRPC channel and thread pools, which must not cross a fork). Raises if any replica fails."""
    mp.spawn(_hogwild_entry, args=(fn, world, shared, args), nprocs=world, join=True)
