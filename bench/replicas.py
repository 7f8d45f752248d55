"""Training throughput of 1, 2 and 4 Omniglot replicas against one memory server.

For each engine (DDP under torchrun, Hogwild) and replica count, the replicas train a fixed
number of steps each through one spawned raremem-server; the cores are shared out
(``--threads`` = cores // replicas). Writes results/replicas.{json,md}.

    python bench/replicas.py [--steps 20 --counts 1 2 4]
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
from pathlib import Path

from replica_runs import run_replicas
from raremem.models.runinfo import machine, write_results
from raremem.server.spawn import spawn_server


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=20, help="steps per replica")
    p.add_argument("--counts", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--modes", nargs="+", default=["ddp", "hogwild"])
    args = p.parse_args()
    cores = os.cpu_count() or 1
    proc, address, _ = spawn_server("--metrics-port", "-1", "--snapshot-interval", "0")
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for mode in args.modes:
                for n in args.counts:
                    threads = max(1, cores // n)
                    runs = run_replicas("omniglot", mode, n, address, Path(tmp) / f"{mode}-{n}",
                                        ["--steps", str(args.steps), "--eval-every", "0", "--threads", str(threads)])
                    per = [r["steps_per_second"] for r in runs]
                    rows.append({"mode": mode, "replicas": n, "threads_each": threads,
                                 "steps_per_second_each": per, "per_replica": sum(per) / n, "total": sum(per)})
                    print(f"{mode} x{n}: {sum(per) / n:.3f} steps/s per replica, {sum(per):.3f} total", flush=True)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    base = {m: next(r["total"] for r in rows if r["mode"] == m and r["replicas"] == min(args.counts))
            for m in args.modes}
    for r in rows:
        r["total/one"] = r["total"] / base[r["mode"]]
    m = machine()
    out = {"machine": m, "command": "python bench/replicas.py " + " ".join(sys.argv[1:]), "steps_each": args.steps,
           "config": "Omniglot defaults: B=16 episodes of 5x6, memory 8192 per replica, k=256", "rows": rows}
    md = ["# Omniglot replicas against one memory server", "",
          f"`{out['command'].strip()}` at commit `{m['commit']}`, {m['time']}; {m['cpu']}, {m['cores']} cores. "
          f"{args.steps} steps per replica, one spawned raremem-server, each replica with its own episode "
          "memory; torch threads per replica = cores / replicas. A step is one episode batch per replica "
          "(B=16 episodes of 5 classes x 6 draws, 30 memory calls). One replica is the plain trainer "
          "process in both rows.", "",
          "| engine | replicas | threads each | steps/s per replica | total steps/s | total / one replica |",
          "|---|---:|---:|---:|---:|---:|"]
    md += [f"| {r['mode']} | {r['replicas']} | {r['threads_each']} | {r['per_replica']:.3f} | {r['total']:.3f} | "
           f"{r['total/one']:.2f} |" for r in rows]
    write_results("replicas", out, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
