"""Lookup benchmark: remote service vs in-process store vs raw FAISS vs torch vs the sgemm ceiling.

One run, side by side, interleaved call by call so that the shared machine's noise hits every
method alike. Exact index, k=256, d=128. Claims are ratios (DESIGN §6). Writes
results/bench_lookup.json and results/bench_lookup.md.

    python bench/lookup.py [--quick]
"""

from __future__ import annotations

import torch  # noqa: I001 - torch before faiss: their OpenMP runtimes clash the other way (DESIGN §5)

import argparse
import json
import multiprocessing
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import faiss
import numpy as np

from raremem.client import MemoryClient
from raremem.models.paths import results_dir
from raremem.models.runinfo import machine
from raremem.server import persistence
from raremem.server.config import MemoryConfig
from raremem.server.spawn import spawn_server
from raremem.server.store import LookupSpec, MemoryStore

K, D = 256, 128


def unit(rng, n):
    x = rng.standard_normal((n, D)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def full_store(n: int, rng) -> MemoryStore:
    store = MemoryStore(MemoryConfig(key_dim=D, size=n, choose_k=K))
    store.load(unit(rng, n), np.arange(n))
    return store


def interleaved(methods: dict, rounds: int, block: int = 16, untimed: int = 4) -> dict:
    """Median seconds per call of each method, taking turns in blocks of ``block`` calls.

    The first ``untimed`` calls of each block are not timed: on 2 cores the previous method's
    thread pool (in this process or the server's) still spins for a while and would be charged
    to it, and the next method's pool has to wake up."""
    times = {name: [] for name in methods}
    for _ in range(rounds):
        for name, fn in methods.items():
            for _ in range(untimed):
                fn()
            for _ in range(block - untimed):
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def _client_loop(address, name, b, seed, start, stop, counts, i):
    """One client: look up b random queries until told to stop."""
    q = unit(np.random.default_rng(seed), b)
    with MemoryClient(address) as c:
        c.lookup(name, q)
        start.wait()
        n = 0
        while not stop.is_set():
            c.lookup(name, q)
            n += b
        counts[i] = n


def concurrent_qps(address: str, name: str, clients: int, b: int, seconds: float, processes: bool) -> float:
    """Aggregate queries/s of ``clients`` clients, as threads of this process or as processes."""
    if processes:
        ctx = multiprocessing.get_context("spawn")  # no fork: gRPC threads do not survive it
        start, stop, counts = ctx.Barrier(clients + 1), ctx.Event(), ctx.Array("q", clients)
        workers = [ctx.Process(target=_client_loop, args=(address, name, b, i, start, stop, counts, i))
                   for i in range(clients)]
    else:
        start, stop, counts = threading.Barrier(clients + 1), threading.Event(), [0] * clients
        workers = [threading.Thread(target=_client_loop, args=(address, name, b, i, start, stop, counts, i))
                   for i in range(clients)]
    for w in workers:
        w.start()
    start.wait()
    t0 = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for w in workers:
        w.join()
    return sum(counts) / (time.perf_counter() - t0)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer rounds (a smoke run)")
    p.add_argument("--out", type=Path, default=results_dir())
    args = p.parse_args()
    torch.set_num_threads(os.cpu_count())
    rng = np.random.default_rng(0)
    data_dir = Path(tempfile.mkdtemp(prefix="raremem-bench-"))
    proc, address, _ = spawn_server("--data-dir", str(data_dir), "--metrics-port", "-1",
                                    "--snapshot-interval", "0")
    rows, info = [], machine()
    try:
        client = MemoryClient(address, timeout=120)
        for n in (65536, 524288):
            store = full_store(n, rng)
            name = f"bench-{n}"
            persistence.save(data_dir / f"{name}.npz", store.state())
            client.restore(name, f"{name}.npz")
            flat = faiss.IndexFlatIP(D)
            flat.add(store.keys)
            keys_t = torch.from_numpy(store.keys)
            for b in (16, 256):
                q = unit(rng, b)
                qt = torch.from_numpy(q)
                labels = rng.integers(0, n, b)
                rounds = (1 if args.quick else 4) if n * b <= 65536 * 256 else (1 if args.quick else 2)
                t = interleaved({
                    "remote": lambda: client.lookup(name, q),
                    "in-process": lambda: store.lookup(LookupSpec(q)),
                    "faiss flat": lambda: flat.search(q, K),
                    "remote step": lambda: client.lookup(name, q, labels, update=True),
                    "in-process step": lambda: store.lookup(LookupSpec(q, labels, update=True)),
                }, rounds)
                # torch's and OpenBLAS's pools spin ~0.2 s after a call: measured after the rest
                t |= interleaved({"torch mm+topk": lambda: torch.topk(qt @ keys_t.T, K, dim=1),
                                  "sgemm": lambda: q @ store.keys.T}, rounds)
                time.sleep(0.5)
                gflops = 2 * b * n * D / t["sgemm"] / 1e9
                rows.append({"N": n, "b": b, "rounds": rounds, "ms": {k: v * 1e3 for k, v in t.items()},
                             "sgemm_gflops": gflops,
                             "remote/in-process": t["remote"] / t["in-process"],
                             "in-process/faiss": t["in-process"] / t["faiss flat"],
                             "faiss/sgemm": t["faiss flat"] / t["sgemm"],
                             "remote step/in-process step": t["remote step"] / t["in-process step"]})
                print(json.dumps(rows[-1]), flush=True)
            if n == 65536:
                secs = 2.0 if args.quick else 5.0
                conc = {"N": n, "b": 16, "seconds": secs}
                for kind in ("threads", "processes"):
                    qps = {c: concurrent_qps(address, name, c, 16, secs, kind == "processes") for c in (1, 8)}
                    conc[kind] = {"qps": qps, "8/1": qps[8] / qps[1]}
                print(json.dumps(conc), flush=True)
            client.delete_memory(name)
        client.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)

    result = {"machine": info, "k": K, "d": D, "rows": rows, "concurrency": conc,
              "command": "python bench/lookup.py" + (" --quick" if args.quick else "")}
    args.out.mkdir(exist_ok=True)
    (args.out / "bench_lookup.json").write_text(json.dumps(result, indent=2))
    (args.out / "bench_lookup.md").write_text(markdown(result))
    print(markdown(result))
    return 0


def markdown(r: dict) -> str:
    m = r["machine"]
    lines = [
        "# Lookup benchmark (exact, k=256, d=128)", "",
        f"`{r['command']}` at commit `{m['commit']}`, {m['time']}; {m['cpu']}, {m['cores']} cores; "
        f"faiss {m['faiss-cpu']}, torch {m['torch']}, numpy {m['numpy']}. Median ms per call. Remote, "
        "in-process and FAISS take turns in blocks of 16 calls (first 4 of each block untimed); torch and "
        "sgemm after them (their thread pools spin ~0.2 s after a call and slow whatever runs next). "
        "\"step\" = lookup with labels and update, one training step's memory call.", "",
        "| N | b | remote | in-process | faiss flat | torch mm+topk | sgemm (GFLOP/s) | remote step | "
        "in-process step | remote / in-process | in-process / faiss | faiss / sgemm |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in r["rows"]:
        t = row["ms"]
        lines.append(
            f"| {row['N']} | {row['b']} | {t['remote']:.2f} | {t['in-process']:.2f} | {t['faiss flat']:.2f} | "
            f"{t['torch mm+topk']:.2f} | {t['sgemm']:.2f} ({row['sgemm_gflops']:.0f}) | {t['remote step']:.2f} | "
            f"{t['in-process step']:.2f} | {row['remote/in-process']:.2f} | {row['in-process/faiss']:.2f} | "
            f"{row['faiss/sgemm']:.2f} |")
    c = r["concurrency"]
    lines += ["", f"Concurrent clients at b=16, N={c['N']}, {c['seconds']:.0f} s each (aggregate queries/s):", "",
              "| clients as | 1 client | 8 clients | 8 / 1 |", "|---|---:|---:|---:|"]
    for kind in ("threads", "processes"):
        q = c[kind]["qps"]
        lines.append(f"| {kind} | {q[1]:.0f} | {q[8]:.0f} | {c[kind]['8/1']:.2f} |")
    lines += ["",
              "Targets: remote <= 1.25x in-process at b=16/N=65536; in-process <= 1.1x raw FAISS; "
              "8 clients >= 1.5x one.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
