"""What every trainer shares: flags from a config dataclass, checkpoints that resume exactly
(per replica), the run record, and starting a server or Hogwild replicas around a loop.

Checkpoint layout in ``out/``: ``checkpoint.pt`` (model, config, step; rank 0) and
``replica-<rank>.pt`` (that replica's optimiser, step and RNG states), ``replica-<rank>.json``
(its summary) and ``metrics.jsonl`` / ``metrics-rank<r>.jsonl`` (one row per step).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from raremem.models import runinfo
from raremem.models.distributed import Replica, from_env, hogwild, share
from raremem.models.memory_layer import make_backend


@dataclasses.dataclass
class TrainerFlags:
    """The flags every trainer has; a trainer's config adds its own and may change defaults."""
    memory: str = "spawn"           # "spawn" (start a server), "local" or HOST:PORT
    token: str = ""                 # bearer token of the server
    out: str = "runs"               # checkpoints, metrics, run record
    steps: int = 1000
    minutes: float = 0.0            # stop after this wall time too (0 = no limit)
    checkpoint_every: int = 500
    seed: int = 0
    threads: int = 0                # torch threads per replica (0 = the cores shared out)
    resume: bool = False
    init: str = ""                  # start from this checkpoint's weights (fine-tuning)
    hogwild: int = 0                # N > 0: N lock-free replicas on this host share parameters
    # The memory (DESIGN §1); a trainer changes the defaults that its task needs.
    memory_size: int = 8192         # slots
    choose_k: int = 256             # neighbours per lookup (capped at memory_size)
    age_noise: float = 8.0          # eviction noise: U(-a, a) added to the ages
    alpha: float = 0.1              # margin of the memory loss


def parse_config(cls, argv=None, description: str = ""):
    """A ``--flag`` per field of the dataclass ``cls`` (bools as --x/--no-x); ``cls.validate()``."""
    p = argparse.ArgumentParser(description=description)
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        if f.type == "bool":
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default)
        else:
            p.add_argument(flag, type={"int": int, "float": float, "str": str}[f.type], default=f.default)
    return cls(**vars(p.parse_args(argv))).validate()


def memory_backend(cfg: TrainerFlags, address: str, name: str, key_dim: int):
    """The memory ``name`` as ``cfg`` configures it, at ``address`` ("local" or HOST:PORT)."""
    return make_backend(address, name, key_dim, cfg.memory_size, token=cfg.token or None,
                        choose_k=cfg.choose_k, age_noise=cfg.age_noise, alpha=cfg.alpha, seed=cfg.seed)


def parameters_digest(model: torch.nn.Module) -> str:
    """sha256 of the parameters: DDP replicas must agree on it at every step."""
    h = hashlib.sha256()
    for p in model.parameters():
        h.update(p.detach().cpu().numpy().tobytes())
    return h.hexdigest()


def _atomic_save(obj, path: Path) -> None:
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
    _atomic_save({"optimizer": opt.state_dict(), "step": step, "wall_seconds": wall,
                  "numpy_rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state()},
                 out / f"replica-{replica.rank}.pt")
    if replica.main:
        _atomic_save({"model": model.state_dict(), "config": dataclasses.asdict(cfg), "step": step,
                      "wall_seconds": wall, "replicas": replica.world, "mode": replica.mode},
                     out / "checkpoint.pt")


def open_replica(cfg, replica: Replica | None) -> tuple[Replica, "RunFiles", np.random.Generator]:
    """A replica's start: its run files, torch threads, and seeds of its own (``seed + rank``)."""
    replica = replica or Replica()
    files = RunFiles(cfg, replica)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed + replica.rank)
    return replica, files, np.random.default_rng([cfg.seed, replica.rank])


def training_loop(cfg, replica: Replica, files: "RunFiles", model, opt, rng: np.random.Generator, step: int,
                  wall: float, one_step, desc: str, show: tuple[str, ...] = ("loss",)) -> dict:
    """Call ``one_step(step) -> metrics row`` (it trains step + 1, and may validate) until
    ``cfg.steps``, ``cfg.minutes`` or SIGTERM, all replicas stopping together. Each row goes to
    the metrics file and its ``show`` keys to the progress bar; checkpoints every
    ``cfg.checkpoint_every`` steps and at the end. Returns the replica's summary, where
    ``interrupted`` says SIGTERM stopped it (callers then skip long final work)."""
    stop = stop_flag()
    bar = tqdm(total=cfg.steps, initial=step, desc=desc, unit="step", dynamic_ncols=True, disable=not replica.main)
    start = time.perf_counter() - wall
    while step < cfg.steps:
        late = bool(cfg.minutes) and (time.perf_counter() - start) / 60 >= cfg.minutes
        if replica.any(stop["now"] or late):
            break
        row = one_step(step)
        step += 1
        bar.update(1)
        bar.set_postfix({k: f"{v:.3f}" for k, v in row.items() if k in show})
        files.row({"step": step, "wall": time.perf_counter() - start, **row})
        if step % cfg.checkpoint_every == 0:
            save_checkpoint(files.out, model, opt, cfg, step, rng, time.perf_counter() - start, replica)
    bar.close()
    wall = time.perf_counter() - start
    save_checkpoint(files.out, model, opt, cfg, step, rng, wall, replica)
    return files.finish(model, step, wall, interrupted=stop["now"])


def resume_replica(out: Path, replica: Replica, opt, rng: np.random.Generator) -> tuple[int, float]:
    """Restore this replica's optimiser and RNGs; (step, wall seconds) to continue from."""
    own = out / f"replica-{replica.rank}.pt"
    if not own.is_file():
        return 0, 0.0
    state = torch.load(own, map_location="cpu", weights_only=False)
    opt.load_state_dict(state["optimizer"])
    rng.bit_generator.state = state["numpy_rng"]
    torch.set_rng_state(state["torch_rng"])
    print(f"replica {replica.rank}: resumed from step {state['step']}", flush=True)
    return state["step"], state["wall_seconds"]


class RunFiles:
    """The run record (rank 0), one metrics file per replica, and the replica's summary."""

    def __init__(self, cfg, replica: Replica):
        self.out, self.replica = Path(cfg.out), replica
        self.out.mkdir(parents=True, exist_ok=True)
        if replica.main:
            print("config: " + json.dumps(dataclasses.asdict(cfg)), flush=True)
            if not cfg.resume or not (self.out / "run.json").is_file():
                (self.out / "run.json").write_text(json.dumps(
                    {"command": runinfo.command(), "config": dataclasses.asdict(cfg), "replicas": replica.world,
                     "mode": replica.mode, "machine": runinfo.machine()}, indent=2))
        name = "metrics.jsonl" if replica.main else f"metrics-rank{replica.rank}.jsonl"
        self.metrics = open(self.out / name, "a")

    def row(self, row: dict) -> None:
        self.metrics.write(json.dumps(row) + "\n")
        self.metrics.flush()

    def finish(self, model, step: int, wall: float, **extra) -> dict:
        self.metrics.close()
        r = self.replica
        summary = {"rank": r.rank, "mode": r.mode, "replicas": r.world, "steps": step, "wall_seconds": wall,
                   "steps_per_second": step / max(wall, 1e-9), "parameters_sha256": parameters_digest(model), **extra}
        (self.out / f"replica-{r.rank}.json").write_text(json.dumps(summary))
        return summary


def stop_flag() -> dict:
    """``{"now": False}``, set to True by SIGTERM (the loop finishes its step and checkpoints)."""
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    return stop


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


@contextlib.contextmanager
def memory_server(memory: str, data_dir: Path | None = None):
    """Yield the address to train against: ``memory`` itself, or a server started for the run
    when it is "spawn", stopped with SIGTERM afterwards. With ``data_dir`` that server restores
    the memories snapshotted there and snapshots them again when it stops (life-long memories
    survive ``--resume``); without, it keeps nothing."""
    if memory != "spawn":
        yield memory
        return
    from raremem.server.spawn import spawn_server  # noqa: PLC0415

    keep = ("--data-dir", str(data_dir)) if data_dir else ()
    proc, address, _ = spawn_server("--metrics-port", "-1", "--snapshot-interval", "0", *keep)
    print(f"started raremem-server on {address}", flush=True)
    try:
        yield address
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


def run_trainer(cfg, train_fn, parameters_only, show_memory: str = "", data_dir: Path | None = None) -> int:
    """A trainer's ``main``: one replica (plain or under torchrun) or ``cfg.hogwild`` of them,
    against ``cfg.memory`` (a server started for the run when "spawn"). ``parameters_only()``
    builds the model without a memory backend (Hogwild's shared parameters). ``show_memory``:
    a memory whose ``raremem-admin stats`` a spawned server prints before it stops; ``data_dir``:
    where a spawned server keeps its memories (see ``memory_server``)."""
    replica = from_env()
    if replica.mode == "ddp" and (cfg.hogwild or cfg.memory == "spawn"):
        raise SystemExit("under torchrun: give --memory HOST:PORT (raremem-launch starts one) and no --hogwild")
    try:
        with memory_server(cfg.memory, data_dir) as address:
            if cfg.hogwild:
                torch.manual_seed(cfg.seed)
                summary = train_hogwild(train_fn, cfg, address, parameters_only())
            else:
                summary = train_fn(cfg, address, replica)
            if cfg.memory == "spawn" and show_memory:
                from raremem.client.admin import main as admin  # noqa: PLC0415

                admin(["--memory", address, "stats", show_memory])
    finally:
        replica.close()
    print(json.dumps(summary), flush=True)
    return 0
