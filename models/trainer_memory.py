"""The memory a trainer trains against: its backend as the flags configure it, the claim a fresh
run makes on a life-long memory, and a server started for the run."""

from __future__ import annotations

import contextlib
import signal
from pathlib import Path

from raremem.client import MemoryClient
from raremem.models.errors import SetupError
from raremem.models.flags import TrainerFlags
from raremem.models.memory_layer import make_backend


def memory_backend(cfg: TrainerFlags, address: str, name: str, key_dim: int):
    """The memory ``name`` as ``cfg`` configures it, at ``address`` ("local" or HOST:PORT)."""
    ivf = {k: v for k, v in (("ivf_nlist", cfg.ivf_nlist), ("ivf_nprobe", cfg.ivf_nprobe),
                             ("ivf_retrain", cfg.ivf_retrain), ("ivf_rebalance", cfg.ivf_rebalance)) if v}
    # an in-process exact memory sits beside the model (cfg.device, as run_trainer resolved it);
    # a server's memories sit where that server keeps them
    beside_model = address == "local" and cfg.memory_index == "exact" and cfg.device.startswith("cuda")
    return make_backend(address, name, key_dim, cfg.memory_size, token=cfg.token or None, choose_k=cfg.choose_k,
                        age_noise=cfg.age_noise, alpha=cfg.alpha, seed=cfg.seed, index=cfg.memory_index, **ivf,
                        **({"device": cfg.device} if beside_model else {}))


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


@contextlib.contextmanager
def memory_server(server: str, data_dir: Path | None = None, threads: int = 0, device: str = ""):
    """Yield the address to train against: ``server`` itself, or a server started for the run
    when it is "spawn", stopped with SIGTERM afterwards. With ``data_dir`` that server restores
    the memories snapshotted there and snapshots them again when it stops (life-long memories
    survive ``--resume``); without, it keeps nothing. ``threads``: the spawned server's FAISS
    threads (the trainer's own count: trainer and server take turns on the same cores);
    ``device``: a GPU the trainer runs on is where that server keeps its exact memories too."""
    if server != "spawn":
        yield server
        return
    from raremem.server.spawn import spawn_server  # noqa: PLC0415

    keep = ("--data-dir", str(data_dir)) if data_dir else ()
    gpu = ("--device", device) if device.startswith("cuda") else ()
    proc, address, _ = spawn_server("--metrics-port", "-1", "--snapshot-interval", "0", "--threads", str(threads),
                                    *keep, *gpu)
    print(f"started raremem-server on {address}", flush=True)
    try:
        yield address
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
