"""A trainer's ``main``: one replica (plain or under torchrun) or Hogwild replicas, around the
trainer's loop, against the memory its flags name. What the pieces do: flags.py (the flags),
run.py (a replica's run and its files), checkpoints.py, trainer_memory.py (backends and a
spawned server), distributed.py (DDP and Hogwild).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path

import torch
from rich.console import Console

from raremem.client import MemoryClient
from raremem.client.admin import stats_view
from raremem.models.checkpoints import initial_weights
from raremem.models.devices import resolve_device
from raremem.models.distributed import Replica, from_env, hogwild, share
from raremem.models.errors import SetupError
from raremem.models.run import prepare_run_folder
from raremem.models.trainer_memory import claim_memory, memory_server


def _hogwild_replica(replica: Replica, shared, train_fn, cfg, address: str) -> None:
    train_fn(cfg, address, replica, shared)


def train_hogwild(train_fn, cfg, address: str, model: torch.nn.Module) -> dict:
    """``cfg.hogwild`` processes run ``train_fn(cfg, address, replica, shared)`` over the shared
    parameters of ``model`` (built by the caller without a memory backend)."""
    if not cfg.threads:  # share the cores out instead of oversubscribing them
        cfg = dataclasses.replace(cfg, threads=max(1, (os.cpu_count() or 1) // cfg.hogwild))
    initial_weights(model, cfg)
    hogwild(_hogwild_replica, cfg.hogwild, share(model), train_fn, cfg, address)
    per = [json.loads((Path(cfg.out) / f"replica-{r}.json").read_text()) for r in range(cfg.hogwild)]
    return {"mode": "hogwild", "replicas": cfg.hogwild, "steps": sum(p["steps"] for p in per),
            "wall_seconds": max(p["wall_seconds"] for p in per),
            "steps_per_second": sum(p["steps_per_second"] for p in per)}


def run_trainer(cfg, train_fn, parameters_only, show_memory: str = "", data_dir: Path | None = None,
                lifelong: str = "") -> int:
    """A trainer's ``main``: one replica (plain or under torchrun) or ``cfg.hogwild`` of them,
    against ``cfg.server`` (a server started for the run when "spawn"). ``parameters_only()``
    builds the model without a memory backend (Hogwild's shared parameters). ``show_memory``:
    a memory whose ``raremem-admin stats`` a spawned server prints before it stops; ``data_dir``:
    where a spawned server keeps its memories (see ``memory_server``); ``lifelong``: the
    life-long memory the run writes, claimed before training (``claim_memory``)."""
    replica = Replica()
    try:
        device = resolve_device(cfg.device, hogwild=bool(cfg.hogwild))
        cfg = dataclasses.replace(cfg, device=str(device))   # what every part of the run reads
        replica = from_env(device)
        if replica.mode == "ddp" and (cfg.hogwild or cfg.server == "spawn"):
            raise SetupError("under torchrun: give --server HOST:PORT (raremem-launch starts one) and no --hogwild")
        if replica.main:
            prepare_run_folder(cfg)
        with memory_server(cfg.server, data_dir, cfg.threads, cfg.device) as address:
            if lifelong and replica.main:
                claim_memory(cfg, address, lifelong)
            if cfg.hogwild:
                torch.manual_seed(cfg.seed)
                summary = train_hogwild(train_fn, cfg, address, parameters_only())
            else:
                summary = train_fn(cfg, address, replica)
            if cfg.server == "spawn" and show_memory:
                with MemoryClient(address, token=cfg.token or None) as client:
                    Console().print(stats_view(client.stats(show_memory)))
    except SetupError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    finally:
        replica.close()
    print(json.dumps(summary), flush=True)
    return 0
