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
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import faiss
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from client import MemoryClient  # noqa: E402
from server import persistence  # noqa: E402
from server.config import MemoryConfig  # noqa: E402
from server.spawn import spawn_server  # noqa: E402
from server.store import LookupSpec, MemoryStore  # noqa: E402

K, D = 256, 128


def machine() -> dict:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "-uno"], cwd=ROOT, capture_output=True,
                                text=True).stdout.strip())
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"commit": commit + ("-dirty" if dirty else ""), "cpu": cpu, "cores": os.cpu_count(),
            "python": platform.python_version(), "faiss": faiss.__version__, "torch": torch.__version__,
            "numpy": np.__version__, "time": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def unit(rng, n):
    x = rng.standard_normal((n, D)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def full_store(n: int, rng) -> MemoryStore:
    store = MemoryStore(MemoryConfig(key_dim=D, size=n, choose_k=K))
    store.keys[:] = unit(rng, n)
    store.values[:] = np.arange(n)
    store.filled = n
    return store


def interleaved(methods: dict, rounds: int) -> dict:
    """Median seconds per call of each method, calling them in turn each round."""
    times = {name: [] for name in methods}
    for fn in methods.values():  # warm-up
        fn()
    for _ in range(rounds):
        for name, fn in methods.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def concurrent_qps(address: str, name: str, clients: int, b: int, seconds: float, rng) -> float:
    queries = [unit(rng, b) for _ in range(clients)]
    counts = [0] * clients
    stop = threading.Event()
    barrier = threading.Barrier(clients + 1)

    def run(i):
        with MemoryClient(address) as c:
            c.lookup(name, queries[i])
            barrier.wait()
            while not stop.is_set():
                c.lookup(name, queries[i])
                counts[i] += b

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    return sum(counts) / (time.perf_counter() - t0)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer rounds (a smoke run)")
    p.add_argument("--out", type=Path, default=ROOT / "results")
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
                rounds = (5 if args.quick else 30) if n * b <= 65536 * 256 else (3 if args.quick else 12)
                t = interleaved({
                    "remote": lambda: client.lookup(name, q),
                    "in-process": lambda: store.lookup(LookupSpec(q)),
                    "faiss flat": lambda: flat.search(q, K),
                    "torch mm+topk": lambda: torch.topk(qt @ keys_t.T, K, dim=1),
                    "sgemm": lambda: q @ store.keys.T,
                    "remote step": lambda: client.lookup(name, q, labels, update=True),
                    "in-process step": lambda: store.lookup(LookupSpec(q, labels, update=True)),
                }, rounds)
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
                qps = {c: concurrent_qps(address, name, c, 16, secs, rng) for c in (1, 8)}
                conc = {"N": n, "b": 16, "seconds": secs, "qps": qps, "8/1": qps[8] / qps[1]}
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
        f"faiss {m['faiss']}, torch {m['torch']}, numpy {m['numpy']}. Median ms per call, methods "
        "interleaved call by call in one run.", "",
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
    lines += ["", f"Concurrent clients at b=16, N={c['N']}: 1 client {c['qps'][1]:.0f} queries/s, "
              f"8 clients {c['qps'][8]:.0f} queries/s: **{c['8/1']:.2f}x** the aggregate of one.", "",
              "Targets: remote <= 1.25x in-process at b=16/N=65536; in-process <= 1.1x raw FAISS; "
              "8 clients >= 1.5x one.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
