"""What the write-ahead log costs: lookup-with-update calls against four servers that differ
only in ``--wal-fsync`` (off, none, interval, always), side by side in one run, taking turns in
blocks of calls so the machine's noise hits every policy alike. Writes results/wal_cost.json
(the reliability report reads it).

    python -m bench.wal_cost [--blocks 12]        # from the repository root, on a quiet machine
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.keys import unit
from raremem.client import MemoryClient
from raremem.models.paths import results_dir
from raremem.models.runinfo import command, machine
from raremem.server.spawn import spawn_server

POLICIES = ("off", "none", "interval", "always")
N, D, K = 65536, 128, 256



def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--blocks", type=int, default=12, help="turns per policy and batch size")
    p.add_argument("--block", type=int, default=16, help="calls per turn (the first 4 untimed)")
    a = p.parse_args()
    rng = np.random.default_rng(0)
    keys, labels = unit(rng, N, D), rng.integers(0, 4096, N)
    servers, clients = {}, {}
    with tempfile.TemporaryDirectory(prefix="raremem-wal-") as tmp:
        try:
            for policy in POLICIES:
                data = Path(tmp) / policy
                servers[policy] = spawn_server("--data-dir", str(data), "--wal-fsync", policy, "--metrics-port", "-1",
                                               "--snapshot-interval", "0", "--threads", "1")
                c = clients[policy] = MemoryClient(servers[policy][1], timeout=120)
                c.create_memory("m", D, N, choose_k=K)
                for s in range(0, N, 8192):   # filled: every update now evicts, as in a long run
                    c.write("m", keys[s:s + 8192], labels[s:s + 8192])
            rows = []
            for b in (16, 256):
                q, y = unit(rng, b, D), rng.integers(0, 4096, b)
                times = {policy: [] for policy in POLICIES}
                for _ in range(a.blocks):
                    for policy in POLICIES:
                        c = clients[policy]
                        for j in range(a.block):
                            t0 = time.perf_counter()
                            c.lookup("m", q, y, update=True)
                            if j >= 4:
                                times[policy].append(time.perf_counter() - t0)
                ms = {policy: 1e3 * statistics.median(t) for policy, t in times.items()}
                rows.append({"b": b, "ms": ms, "queries_per_s": {k: b / (v / 1e3) for k, v in ms.items()},
                             "vs_off": {k: v / ms["off"] for k, v in ms.items()}, "calls": len(times["off"])})
                print(json.dumps(rows[-1]), flush=True)
        finally:
            for c in clients.values():
                c.close()
            for proc, _, _ in servers.values():
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=60)
    out = {"machine": machine(), "command": command(), "N": N, "d": D, "k": K, "rows": rows,
           "note": "median ms per lookup with labels and update on a full memory (every update evicts); "
                   "--wal-interval 0.2 for interval"}
    results_dir().mkdir(parents=True, exist_ok=True)
    (results_dir() / "wal_cost.json").write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
