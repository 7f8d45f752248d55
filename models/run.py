"""One replica's run as its trainer reads it (``Run``), and the files it leaves in ``out/``:
``run.json`` (the command, machine and config of each leg), ``metrics.jsonl`` /
``metrics-rank<r>.jsonl`` (one row per step), ``replica-<rank>.json`` (its summary),
``best.pt`` / ``best.json`` (the best validation's weights) and the checkpoints
(checkpoints.py)."""

from __future__ import annotations

import dataclasses
import json
import shutil
import signal
import sys
import time
from pathlib import Path

import grpc
import numpy as np
import torch
from tqdm import tqdm

from raremem.models import runinfo
from raremem.models.checkpoints import atomic_save, parameters_digest, save_checkpoint
from raremem.models.devices import set_rng_state
from raremem.models.distributed import Replica
from raremem.models.errors import SetupError
from raremem.models.flags import TrainerFlags


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
            set_rng_state(state, self.replica.device)
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
        atomic_save({"model": self.model.state_dict(), "config": dataclasses.asdict(self.cfg), "step": self.step + 1,
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
