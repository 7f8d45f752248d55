"""Write races between replicas sharing one life-long memory, with and without age noise.

Part 1 (through the service): R Hogwild Omniglot replicas write one shared memory
(``--shared-memory``: never cleared, labels kept apart per episode), fine-tuning from a trained
checkpoint when one is given. The server counts fresh writes evicted before any lookup returned
them ("lost writes"); the replicas' own 1-shot and 5-shot accuracy is the effect on training.

Part 2 (where the noise matters): replicas that pick their eviction slots themselves from an
age vector read at the start of their step, as the paper's asynchronous replicas did (and as
several servers each holding a view of one memory would). Without noise they all pick the same
oldest slots and overwrite each other; U(-noise, noise) on the ages spreads them out.

    python bench/races.py [--init runs/omniglot-cpu/checkpoint.pt --steps 10]
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
from pathlib import Path

import numpy as np

from replica_runs import run_replicas
from raremem.client import MemoryClient
from raremem.models.paths import results_dir
from raremem.models.runinfo import machine, write_results
from raremem.server.spawn import spawn_server


def stale_view_writers(replicas: int, size: int, batch: int, rounds: int, noise: float, seed: int = 0) -> float:
    """Fraction of writes overwritten in the same round by another replica, when every replica
    chooses its ``batch`` slots as the top of (age + U(-noise, noise)) from the ages as they were
    at the start of the round. Ages grow by one per round; written slots restart at 0."""
    rng = np.random.default_rng(seed)
    ages = rng.permutation(size).astype(np.float64)   # a full memory of distinct ages
    lost = 0
    for _ in range(rounds):
        chosen = [np.argpartition(-(ages + rng.uniform(-noise, noise, size)), batch)[:batch]
                  for _ in range(replicas)]
        written = np.concatenate(chosen)
        lost += written.size - np.unique(written).size   # later writes replace earlier ones
        ages += 1
        ages[written] = 0
    return lost / (replicas * batch * rounds)


def markdown(out: dict) -> list[str]:
    m = out["machine"]
    md = ["# Write races between replicas sharing one memory", "",
          f"`{out['command'].strip()}` at commit `{m['commit']}`, {m['time']}; {m['cpu']}, {m['cores']} cores.", "",
          "## Through one raremem-server", "",
          f"R Hogwild Omniglot replicas, {out['steps_each']} episode batches each (B={out['batch']}, 5-way, 6 draws), "
          f"one shared life-long memory of {out['memory_size']} slots, "
          + (f"fine-tuning from `{out['init']}`." if out['init'] else "from scratch.")
          + " Lost writes = fresh writes evicted before any lookup returned them (server counter "
          "`unread_evictions`). Accuracy = the replicas' training accuracy over the run.", "",
          "| replicas | age noise | lookups | fresh writes | lost writes | lost fraction | 1-shot | 5-shot |",
          "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    md += [f"| {r['replicas']} | {r['age_noise']:g} | {r['lookups']:,} | {r['fresh_writes']:,} | {r['lost_writes']:,} | "
           f"{r['lost_fraction']:.3f} | {r['train_1shot']:.3f} | {r['train_5shot']:.3f} |" for r in out['service']]
    md += ["", "## Replicas choosing slots from a stale view of the ages", "",
           f"Simulation (numpy, `stale_view_writers`): memory of {out['memory_size'] * 8} slots, every replica writes "
           f"{out['batch'] * 5} keys per round, choosing the top of age + U(-noise, noise) from the ages read at the "
           "start of the round; 2,000 rounds. Lost = writes overwritten by another replica in the same round.", "",
           "| replicas | age noise | lost fraction |", "|---:|---:|---:|"]
    md += [f"| {r['replicas']} | {r['age_noise']:g} | {r['lost_fraction']:.3f} |" for r in out['stale_view']]
    spread = max(abs(a["lost_fraction"] - b["lost_fraction"]) for a in out["service"] for b in out["service"]
                 if a["replicas"] == b["replicas"] and a["age_noise"] != b["age_noise"])
    worst = max(r["replicas"] for r in out["stale_view"])
    stale = {r["age_noise"]: r["lost_fraction"] for r in out["stale_view"] if r["replicas"] == worst}
    md += ["", "## Reading", "",
           "- Through one server the noise is moot: the server serialises each memory and gives every "
           "fresh write of a merged batch its own slot, so replicas never pick the same oldest slot; the lost "
           f"fraction moves by at most {spread:.3f} between noise settings. Writes are still lost as R grows: R "
           "replicas turn a fixed memory over R times faster, so fresh keys are evicted before their class comes "
           "back, and the replicas' 1-shot accuracy falls with it.",
           f"- Where replicas choose slots from a stale age vector (the paper's asynchronous setup, or several "
           f"servers holding views of one memory) the noise matters: at R={worst} it cuts the lost fraction from "
           + " to ".join(f"{stale[n]:.3f}" for n in sorted(stale)) + " (noise " + " vs ".join(f"{n:g}" for n in sorted(stale))
           + ").", ""]
    return md


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--init", default="runs/omniglot-cpu/checkpoint.pt", help="trained weights ('' = from scratch)")
    p.add_argument("--counts", type=int, nargs="+", default=[1, 2, 4, 8])
    p.add_argument("--noises", type=float, nargs="+", default=[0.0, 8.0])
    p.add_argument("--steps", type=int, default=8, help="episode batches per replica")
    p.add_argument("--memory-size", type=int, default=1024)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--report", action="store_true", help="only rewrite results/races.md from results/races.json")
    args = p.parse_args()
    if args.report:
        out = json.loads((results_dir() / "races.json").read_text())
        write_results("races", out, markdown(out))
        return 0
    init = args.init if args.init and Path(args.init).is_file() else ""
    proc, address, _ = spawn_server("--metrics-port", "-1", "--snapshot-interval", "0")
    service_rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp, MemoryClient(address) as client:
            for noise in args.noises:
                for r in args.counts:
                    out = Path(tmp) / f"r{r}-n{noise}"
                    runs = run_replicas("omniglot", "hogwild", r, address, out, [
                        "--steps", str(args.steps), "--shared-memory", "--age-noise", str(noise),
                        "--memory-size", str(args.memory_size), "--batch", str(args.batch), "--eval-every", "0",
                        "--threads", "1", *(["--init", init] if init else [])])
                    s = client.stats("omniglot/shared")
                    for mem in client.list_memories():  # the next run starts from an empty server
                        client.delete_memory(mem.name)
                    acc = {k: float(np.mean([row[k] for run in runs for row in run["rows"]]))
                           for k in ("train_1shot", "train_5shot")}
                    row = {"replicas": r, "age_noise": noise, "lookups": s.lookups,
                           "fresh_writes": s.fresh_writes, "evictions": s.evictions,
                           "lost_writes": s.unread_evictions,
                           "lost_fraction": s.unread_evictions / max(s.fresh_writes, 1), **acc}
                    service_rows.append(row)
                    print(json.dumps(row), flush=True)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    stale_rows = [{"replicas": r, "age_noise": noise,
                   "lost_fraction": stale_view_writers(r, args.memory_size * 8, args.batch * 5, 2000, noise)}
                  for noise in args.noises for r in args.counts]
    m = machine()
    out = {"machine": m, "command": "python bench/races.py " + " ".join(sys.argv[1:]), "init": init or None,
           "steps_each": args.steps, "memory_size": args.memory_size, "batch": args.batch,
           "service": service_rows, "stale_view": stale_rows}
    write_results("races", out, markdown(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
