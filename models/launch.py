"""``raremem-launch``: a memory server and N trainer replicas on this host, without Docker.

    raremem-launch --replicas 4 --mode hogwild -- --steps 200
    raremem-launch --replicas 2 --mode ddp --trainer omniglot -- --steps 100 --threads 1
    raremem-launch --server HOST:PORT --replicas 2 -- --steps 100   # an already running server

Starts ``raremem-server`` (snapshots in ``--data-dir``), then the trainer: ``torchrun`` for DDP,
``--hogwild N`` for Hogwild. Trainer output goes to ``--log``; this terminal shows the
memories filling (the admin view) every ``--every`` seconds until the trainer exits.
Arguments after ``--`` go to the trainer.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from raremem.client import MemoryClient
from raremem.server.spawn import spawn_server

TRAINERS = ("omniglot", "neural_gpu", "translation")


def trainer_command(trainer: str, mode: str, replicas: int, address: str, args: list[str]) -> list[str]:
    module = f"raremem.models.{trainer}.train"
    if mode == "ddp" and replicas > 1:
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={replicas}",
                "-m", module, "--server", address, *args]
    hogwild = ["--hogwild", str(replicas)] if mode == "hogwild" and replicas > 1 else []
    return [sys.executable, "-m", module, "--server", address, *hogwild, *args]


def memory_table(client: MemoryClient, elapsed: float) -> Table:
    t = Table(title=f"raremem after {elapsed:.0f} s")
    t.add_column("memory", no_wrap=True)
    for name in ("fill", "lookups", "fresh writes", "evictions", "evicted unread"):
        t.add_column(name, justify="right")
    for m in client.list_memories():
        s = client.stats(m.name, age_bins=1, top_values=0)
        size = m.config["size"]
        t.add_row(m.name, f"{m.filled:,} / {size:,} ({m.filled / size:.0%})", f"{s.lookups:,}",
                  f"{s.fresh_writes:,}", f"{s.evictions:,}", f"{s.unread_evictions:,}")
    return t


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    own = argv[:argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trainer", choices=TRAINERS, default="omniglot")
    p.add_argument("--replicas", type=int, default=2)
    p.add_argument("--mode", choices=("hogwild", "ddp"), default="hogwild")
    p.add_argument("--server", default="", help="HOST:PORT of a running server (default: start one)")
    p.add_argument("--data-dir", default="runs/launch/memory", help="the started server's snapshot folder")
    p.add_argument("--token", default="")
    p.add_argument("--log", default="runs/launch/trainers.log")
    p.add_argument("--every", type=float, default=10.0, help="seconds between memory tables")
    a = p.parse_args(own)
    if a.replicas < 1:
        p.error("--replicas must be >= 1")
    console = Console()
    proc, address = None, a.server
    if not address:
        token = ["--token", a.token, "--admin-token", a.token] if a.token else []
        proc, address, _ = spawn_server("--data-dir", a.data_dir, "--metrics-port", "-1", *token)
        console.print(f"raremem-server on {address} (snapshots in {a.data_dir})")
    log = Path(a.log)
    log.parent.mkdir(parents=True, exist_ok=True)
    cmd = trainer_command(a.trainer, a.mode, a.replicas, address, [*(["--token", a.token] if a.token else []), *extra])
    console.print(f"trainer: {' '.join(cmd)}\n  output: {log}")
    start = time.time()
    with open(log, "w") as out, MemoryClient(address, token=a.token or None) as client:
        trainer = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        try:
            while True:
                try:
                    trainer.wait(timeout=a.every)
                    break
                except subprocess.TimeoutExpired:
                    console.print(memory_table(client, time.time() - start))
            console.print(memory_table(client, time.time() - start))
        except KeyboardInterrupt:
            trainer.send_signal(signal.SIGTERM)
            trainer.wait(timeout=120)
        finally:
            if proc:  # SIGTERM: the server snapshots every memory before it exits
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=120)
    console.print(f"trainer exited with {trainer.returncode}; its output: {log}")
    return trainer.returncode


if __name__ == "__main__":
    sys.exit(main())
