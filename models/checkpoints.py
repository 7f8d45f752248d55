"""Checkpoints that resume exactly, per replica.

Layout in ``out/``: ``checkpoint.pt`` (model, config, step; rank 0) and ``replica-<rank>.pt``
(that replica's optimiser, step and RNG states: numpy's, the CPU's and its GPU's).
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import torch

from raremem.models.devices import rng_state
from raremem.models.distributed import Replica


def parameters_digest(model: torch.nn.Module) -> str:
    """sha256 of the parameters: DDP replicas must agree on it at every step."""
    h = hashlib.sha256()
    for p in model.parameters():
        h.update(p.detach().cpu().numpy().tobytes())
    return h.hexdigest()


def atomic_save(obj, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


def initial_weights(model: torch.nn.Module, cfg) -> None:
    """The checkpoint's weights when resuming, ``cfg.init``'s when fine-tuning, else the seed's."""
    ckpt = Path(cfg.out) / "checkpoint.pt"
    source = ckpt if cfg.resume and ckpt.is_file() else Path(cfg.init) if getattr(cfg, "init", "") else None
    if source:
        model.load_state_dict(torch.load(source, map_location="cpu", weights_only=False)["model"])


def save_checkpoint(out: Path, model, opt, cfg, step: int, rng: np.random.Generator, wall: float,
                    replica: Replica) -> None:
    atomic_save({"optimizer": opt.state_dict(), "step": step, "wall_seconds": wall,
                  "numpy_rng": rng.bit_generator.state, **rng_state(replica.device)},
                 out / f"replica-{replica.rank}.pt")
    if replica.main:
        atomic_save({"model": model.state_dict(), "config": dataclasses.asdict(cfg), "step": step,
                      "wall_seconds": wall, "replicas": replica.world, "mode": replica.mode},
                     out / "checkpoint.pt")
