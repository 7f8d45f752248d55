"""The flags every trainer has, and how a config dataclass becomes a command line."""

from __future__ import annotations

import argparse
import dataclasses

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
    # Where the model, its batches and an in-process memory live: "" = CUDA when there is one
    # (under torchrun each process's own GPU), else the CPU; "cpu", "cuda", "cuda:N". A run
    # records the device it resolved to.
    device: str = ""
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


def parse_config(cls, argv=None, description: str = ""):
    """A ``--flag`` per field of the dataclass ``cls`` (bools as --x/--no-x); ``cls.validate()``."""
    p = argparse.ArgumentParser(description=description)
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        if f.type == "bool":
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default)
        else:
            p.add_argument(flag, type={"int": int, "float": float, "str": str}[f.type], default=f.default)
    try:
        return cls(**vars(p.parse_args(argv))).validate()
    except ValueError as exc:   # a flag out of range or not for this run: one line, exit status 2
        p.error(str(exc))
