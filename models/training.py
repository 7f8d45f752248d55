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
import shutil
import signal
import sys
import time
from pathlib import Path

import grpc
import numpy as np
import torch
from tqdm import tqdm

from raremem.client import MemoryClient
from raremem.models import runinfo
from raremem.models.distributed import Replica, from_env, hogwild, share
from raremem.models.errors import SetupError
from raremem.models.memory_layer import make_backend
from raremem.server.config import MemoryConfig


@dataclasses.dataclass
class TrainerFlags:
    """The flags every trainer has; a trainer's config adds its own and may change defaults."""
    server: str = "spawn"           # the memory server: "spawn" (start one for the run), "local"
                                    # (the store in this process) or HOST:PORT / unix:///PATH
    token: str = ""                 # bearer token of the server
    out: str = ""                   # checkpoints, metrics, run record ("": the trainer's default_out())
    steps: int = 1000
    minutes: float = 0.0            # stop after this wall time too (0 = no limit)
    checkpoint_every: int = 500
    keep_every: int = 0             # also keep a copy checkpoint-<step>.pt every N steps (0 = none)
    seed: int = 0
    threads: int = 0                # torch threads per replica (0 = the cores shared out)
    resume: bool = False            # continue the run in --out (its weights, optimiser, RNGs, memory)
    overwrite: bool = False         # start afresh in an --out that holds another run (deleting it)
    init: str = ""                  # start from this checkpoint's weights (fine-tuning)
    hogwild: int = 0                # N > 0: N lock-free replicas on this host share parameters
    # The memory (design.md §1): the defaults are the memory's own (server/config.py); a trainer
    # changes the ones its task needs.
    memory_size: int = 8192         # slots
    choose_k: int = 0               # neighbours per lookup (0 = the memory's: min(256, memory_size))
    age_noise: float = MemoryConfig.age_noise    # eviction noise: U(-a, a) added to the ages
    alpha: float = MemoryConfig.alpha            # margin of the memory loss
    memory_index: str = MemoryConfig.index       # "exact" | "ivf" | "lsh" (design.md §1)
    ivf_nlist: int = 0              # IVF: inverted lists (0 = sqrt(size))
    ivf_nprobe: int = 0             # IVF: lists visited per query (0 = the memory's default)
    ivf_retrain: int = 0            # IVF: refit the quantizer every N slot writes (0 = never)
    ivf_rebalance: float = 0.0      # IVF: refit when the lists grow this much more lopsided (0 = never)

    def __post_init__(self):
        if not self.out:
            self.out = self.default_out()

    def default_out(self) -> str:
        """A run folder that names what the run is (task, architecture, preset, seed), so two
        different runs never share one by default."""
        return f"runs/seed{self.seed}"


RUN_FILES = ("run.json", "checkpoint.pt")


def prepare_run_folder(cfg: TrainerFlags) -> None:
    """Refuse to start a fresh run in a folder that holds another one (its checkpoints, and the
    life-long memory a spawned server keeps in ``memory/``), unless ``--resume`` continues it
    or ``--overwrite`` deletes it first."""
    out = Path(cfg.out)
    held = [name for name in (*RUN_FILES, "memory") if (out / name).exists()]
    if cfg.resume and cfg.overwrite:
        raise SetupError("--resume continues the run in --out, --overwrite deletes it: give one")
    if cfg.resume or not held:
        return
    if cfg.overwrite:
        shutil.rmtree(out)
        return
    raise SetupError(f"{out} holds another run ({', '.join(held)}): continue it with --resume, "
                         "start afresh there with --overwrite, or give another --out")


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
    ivf = {k: v for k, v in (("ivf_nlist", cfg.ivf_nlist), ("ivf_nprobe", cfg.ivf_nprobe),
                             ("ivf_retrain", cfg.ivf_retrain), ("ivf_rebalance", cfg.ivf_rebalance)) if v}
    return make_backend(address, name, key_dim, cfg.memory_size, token=cfg.token or None, choose_k=cfg.choose_k,
                        age_noise=cfg.age_noise, alpha=cfg.alpha, seed=cfg.seed, index=cfg.memory_index, **ivf)


def claim_memory(cfg: TrainerFlags, address: str, name: str) -> None:
    """Before a fresh run writes the life-long memory ``name``: if the server already holds it
    filled (another run's), refuse, or with ``--overwrite`` clear it. Called once per run,
    before any replica writes (so replicas joining the run's memory are never refused)."""
    if address == "local" or cfg.resume:
        return
    with MemoryClient(address, token=cfg.token or None) as client:
        held = next((m for m in client.list_memories() if m.name == name), None)
        if held is None or not held.filled:
            return
        if not cfg.overwrite:
            raise SetupError(f"memory {name!r} on {address} already holds {held.filled:,} filled slots of another "
                             "run: continue it with --resume, clear it with --overwrite, or give the run another memory")
        client.reset(name)


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


class Run:
    """One replica's run, read top to bottom by its trainer::

        run = Run(cfg, replica)                  # run files, torch threads, seeds (seed + rank)
        ...                                      # data, model, optimiser (run.rng samples data)
        run.start(model, opt)                    # resume: optimiser, RNGs, step, wall time
        for step in run.steps():                 # until cfg.steps, cfg.minutes or SIGTERM
            ...                                  # train step + 1
            run.log(row)                         # metrics file and progress bar
        summary = run.finish()

    All replicas stop together; checkpoints every ``cfg.checkpoint_every`` steps and at the end.
    ``summary["interrupted"]`` says SIGTERM stopped it (callers then skip long final work)."""

    def __init__(self, cfg, replica: Replica | None = None, desc: str = "train",
                 show: tuple[str, ...] = ("loss",)):
        self.cfg, self.replica, self.desc, self.show = cfg, replica or Replica(), desc, show
        self.files = RunFiles(cfg, self.replica)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed + self.replica.rank)
        self.rng = np.random.default_rng([cfg.seed, self.replica.rank])
        self.step, self.wall = 0, 0.0

    def start(self, model: torch.nn.Module, opt) -> None:
        self.model, self.opt = model, opt
        own = self.files.out / f"replica-{self.replica.rank}.pt"
        if self.cfg.resume and own.is_file():
            state = torch.load(own, map_location="cpu", weights_only=False)
            opt.load_state_dict(state["optimizer"])
            self.rng.bit_generator.state = state["numpy_rng"]
            torch.set_rng_state(state["torch_rng"])
            self.step, self.wall = state["step"], state["wall_seconds"]
            print(f"replica {self.replica.rank}: resumed from step {self.step}", flush=True)
        self._start = time.perf_counter() - self.wall

    @property
    def minutes(self) -> float:
        return (time.perf_counter() - self._start) / 60

    def steps(self):
        """Yield the index of each step to train (``self.step`` counts the ones done)."""
        cfg, stop = self.cfg, stop_flag()
        self._stop = stop
        # a bar for people at a terminal; in a log file one line a minute, not one a step
        self.bar = tqdm(total=cfg.steps, initial=self.step, desc=self.desc, unit="step", dynamic_ncols=True,
                        disable=not self.replica.main, mininterval=0.1 if sys.stderr.isatty() else 60)
        while self.step < cfg.steps:
            if self.replica.any(stop["now"] or (bool(cfg.minutes) and self.minutes >= cfg.minutes)):
                break
            yield self.step
            self.step += 1
            self.bar.update(1)
            if self.step % cfg.checkpoint_every == 0:
                self.checkpoint()

    def log(self, row: dict) -> None:
        """The metrics row of the step being trained; its ``show`` keys go to the progress bar."""
        self.bar.set_postfix({k: f"{v:.3f}" for k, v in row.items() if k in self.show}, refresh=False)
        self.files.row({"step": self.step + 1, "wall": time.perf_counter() - self._start, **row})

    def say(self, line: str) -> None:
        """A readable line for people (validations), above the progress bar."""
        if self.replica.main:
            tqdm.write(line)

    def checkpoint(self) -> None:
        out = self.files.out
        save_checkpoint(out, self.model, self.opt, self.cfg, self.step, self.rng,
                        time.perf_counter() - self._start, self.replica)
        if self.replica.main and self.cfg.keep_every and self.step % self.cfg.keep_every == 0:
            shutil.copyfile(out / "checkpoint.pt", out / f"checkpoint-{self.step}.pt")  # e.g. for the probe

    BEST = "best.pt"

    def keep_best(self, score: float, backend=None) -> bool:
        """After a validation (main replica): when ``score`` (higher is better) beats every
        earlier one of the run, the current weights become ``best.pt`` and ``best.json`` says
        the step and score; with ``backend`` its memory is kept where it lives (``keep``: on its
        server as ``best/<memory>.npz``), so the best weights are evaluated with the memory they
        had. Returns whether this was the best so far (resumes know the earlier best)."""
        out = self.files.out
        record = out / "best.json"
        best = json.loads(record.read_text())["score"] if record.is_file() else -float("inf")
        if not score > best:
            return False
        # checkpoint.pt's form (load_run reads either); the step being trained counts as done
        _atomic_save({"model": self.model.state_dict(), "config": dataclasses.asdict(self.cfg), "step": self.step + 1,
                      "wall_seconds": time.perf_counter() - self._start, "replicas": self.replica.world,
                      "mode": self.replica.mode}, out / self.BEST)
        kept = {"step": self.step + 1, "score": score, "memory": None}
        if backend is not None:
            try:
                kept["memory"] = backend.keep("best")
            except grpc.RpcError as exc:   # e.g. a server without a data dir: the weights are still kept
                self.say(f"best weights kept; their memory not ({exc.code().name}: {exc.details()})")
        record.write_text(json.dumps(kept))
        return True

    def finish(self) -> dict:
        self.bar.close()
        self.checkpoint()
        return self.files.finish(self.model, self.step, time.perf_counter() - self._start,
                                 interrupted=self._stop["now"])


class RunFiles:
    """The run record (rank 0), one metrics file per replica, and the replica's summary.
    ``run.json`` keeps the first leg's command and machine; each ``--resume`` adds a leg."""

    def __init__(self, cfg, replica: Replica):
        self.out, self.replica = Path(cfg.out), replica
        self.out.mkdir(parents=True, exist_ok=True)
        if replica.main:
            print("config: " + json.dumps(dataclasses.asdict(cfg)), flush=True)
            record = self.out / "run.json"
            leg = {"command": runinfo.command(), "machine": runinfo.machine()}
            if cfg.resume and record.is_file():
                run = json.loads(record.read_text())
                run.setdefault("legs", [{k: run[k] for k in ("command", "machine")}]).append(leg)
            else:
                run = {**leg, "config": dataclasses.asdict(cfg), "replicas": replica.world, "mode": replica.mode,
                       "legs": [leg]}
            record.write_text(json.dumps(run, indent=2))
        name = "metrics.jsonl" if replica.main else f"metrics-rank{replica.rank}.jsonl"
        self.metrics = open(self.out / name, "a" if cfg.resume else "w")  # a fresh run starts a fresh file

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
def memory_server(server: str, data_dir: Path | None = None, threads: int = 0):
    """Yield the address to train against: ``server`` itself, or a server started for the run
    when it is "spawn", stopped with SIGTERM afterwards. With ``data_dir`` that server restores
    the memories snapshotted there and snapshots them again when it stops (life-long memories
    survive ``--resume``); without, it keeps nothing. ``threads``: the spawned server's FAISS
    threads (the trainer's own count: trainer and server take turns on the same cores)."""
    if server != "spawn":
        yield server
        return
    from raremem.server.spawn import spawn_server  # noqa: PLC0415

    keep = ("--data-dir", str(data_dir)) if data_dir else ()
    proc, address, _ = spawn_server("--metrics-port", "-1", "--snapshot-interval", "0", "--threads", str(threads),
                                    *keep)
    print(f"started raremem-server on {address}", flush=True)
    try:
        yield address
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


def run_trainer(cfg, train_fn, parameters_only, show_memory: str = "", data_dir: Path | None = None,
                lifelong: str = "") -> int:
    """A trainer's ``main``: one replica (plain or under torchrun) or ``cfg.hogwild`` of them,
    against ``cfg.server`` (a server started for the run when "spawn"). ``parameters_only()``
    builds the model without a memory backend (Hogwild's shared parameters). ``show_memory``:
    a memory whose ``raremem-admin stats`` a spawned server prints before it stops; ``data_dir``:
    where a spawned server keeps its memories (see ``memory_server``); ``lifelong``: the
    life-long memory the run writes, claimed before training (``claim_memory``)."""
    replica = from_env()
    if replica.mode == "ddp" and (cfg.hogwild or cfg.server == "spawn"):
        raise SystemExit("under torchrun: give --server HOST:PORT (raremem-launch starts one) and no --hogwild")
    try:
        if replica.main:
            prepare_run_folder(cfg)
        with memory_server(cfg.server, data_dir, cfg.threads) as address:
            if lifelong and replica.main:
                claim_memory(cfg, address, lifelong)
            if cfg.hogwild:
                torch.manual_seed(cfg.seed)
                summary = train_hogwild(train_fn, cfg, address, parameters_only())
            else:
                summary = train_fn(cfg, address, replica)
            if cfg.server == "spawn" and show_memory:
                from raremem.client.admin import main as admin  # noqa: PLC0415

                admin(["--server", address, "stats", show_memory])
    except SetupError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    finally:
        replica.close()
    print(json.dumps(summary), flush=True)
    return 0
