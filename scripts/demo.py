"""The main job: start a memory server, stream a rare-event workload through it, show the memory.

A stream of examples from 3,000 classes whose frequencies follow a Zipf law (most classes are
rare) passes through one remote memory with the paper's update rule. Accuracy is reported by
how many times the class had been seen before (0-shot, 1-shot, ...): one example in memory is
enough to answer correctly. Then ``raremem-admin stats`` shows what the memory holds.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from client import MemoryClient  # noqa: E402
from server.spawn import spawn_server  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--classes", type=int, default=3000)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--data-dir", type=Path, help="keep snapshots here [a temporary folder]")
    args = p.parse_args()
    console = Console()
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="raremem-demo-"))
    proc, address, _ = spawn_server("--data-dir", str(data_dir), "--metrics-port", "-1")
    console.print(f"[bold]raremem-server[/] on {address}, data in {data_dir}")
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((args.classes, args.dim)).astype(np.float32)
    zipf = 1.0 / np.arange(1, args.classes + 1)
    zipf /= zipf.sum()
    seen = Counter()
    hits, totals = Counter(), Counter()
    try:
        with MemoryClient(address) as client:
            client.create_memory("demo/stream", args.dim, args.size, choose_k=64)
            for step in range(args.steps):
                labels = rng.choice(args.classes, args.batch, p=zipf)
                q = centres[labels] + 1.0 * rng.standard_normal((args.batch, args.dim)).astype(np.float32)
                res = client.lookup("demo/stream", q, labels.astype(np.int64), update=True,
                                    sources=(step * args.batch + np.arange(args.batch)).astype(np.int64))
                for v, ok in zip(labels.tolist(), (res.result == labels).tolist()):
                    shot = min(seen[v], 5)
                    hits[shot] += ok
                    totals[shot] += 1
                    seen[v] += 1
            client.snapshot("demo/stream")
        table = Table("times seen before", "queries", "accuracy", title="accuracy by shot (remote memory)")
        for shot in range(6):
            label = f"{shot}" + ("+" if shot == 5 else "")
            table.add_row(label, str(totals[shot]), f"{hits[shot] / max(totals[shot], 1):.1%}")
        console.print(table)
        subprocess.run([sys.executable, "-m", "client.admin", "--memory", address, "stats", "demo/stream"],
                       check=True, cwd=Path(__file__).resolve().parent.parent)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
