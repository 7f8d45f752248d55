"""Soak: client processes hammer one raremem server (loopback only) with a mix of rpcs for a
bounded time; latency percentiles over time, the server's RSS after warm-up, every error.
Writes results/soak.json and results/soak.png (the reliability report reads them).

    python -m bench.soak [--clients 16] [--minutes 10]     # from the repository root, quiet machine

The memories are filled completely before the clock starts, so the server's RSS can only grow
from what the traffic leaves behind (answer caches, gRPC buffers, leaks), not from slots
being touched for the first time.
"""

from __future__ import annotations

import argparse
import collections
import json
import multiprocessing
import signal
import tempfile
import time
from pathlib import Path

import grpc
import numpy as np

from bench.keys import unit
from raremem.client import MemoryClient
from raremem.models.paths import results_dir
from raremem.models.runinfo import command, machine
from raremem.server.spawn import spawn_server

MEMORIES, N, D, B = 4, 65536, 64, 16
WINDOW = 10.0   # seconds per latency window
MIX = (("lookup", 0.30), ("stream lookup", 0.15), ("update", 0.30), ("write", 0.08), ("read slots", 0.08),
       ("stats", 0.05), ("list", 0.04))



def client(address: str, seed: int, t0: float, t_end: float, out) -> None:
    """One client process: random rpcs of MIX until ``t_end``; latencies per window, errors."""
    rng = np.random.default_rng(seed)
    names, p = [m for m, _ in MIX], np.array([w for _, w in MIX])
    lat = collections.defaultdict(list)     # window -> ms
    errors = collections.Counter()
    calls = collections.Counter()
    with MemoryClient(address, timeout=30) as c:
        stream = c.stream()
        while (now := time.time()) < t_end:
            kind = names[rng.choice(len(names), p=p / p.sum())]
            mem = f"soak/{rng.integers(MEMORIES)}"
            q, y = unit(rng, B, D), rng.integers(0, 4096, B)
            t = time.perf_counter()
            try:
                if kind == "lookup":
                    c.lookup(mem, q, return_neighbors=True)
                elif kind == "stream lookup":
                    stream.lookup(mem, q, y, update=True)
                elif kind == "update":
                    c.lookup(mem, q, y, update=True, sources=rng.integers(0, 10**6, B), return_weight_terms=True)
                elif kind == "write":
                    c.write(mem, q, y)
                elif kind == "read slots":
                    s = int(rng.integers(0, N - 256))
                    c.read_slots(mem, start=s, stop=s + 256)
                elif kind == "stats":
                    c.stats(mem)
                else:
                    c.list_memories()
            except grpc.RpcError as exc:
                errors[f"{kind}: {exc.code().name}"] += 1
            lat[int((now - t0) // WINDOW)].append(1e3 * (time.perf_counter() - t))
            calls[kind] += 1
        stream.close()
    out.put({"latencies": dict(lat), "errors": dict(errors), "calls": dict(calls)})


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--warmup", type=float, default=60.0, help="seconds before the RSS baseline")
    a = p.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="raremem-soak-") as tmp:
        proc, address, _ = spawn_server("--data-dir", tmp, "--metrics-port", "-1", "--snapshot-interval", "60",
                                        "--threads", "1")
        try:
            with MemoryClient(address, timeout=120) as c:
                for i in range(MEMORIES):
                    c.create_memory(f"soak/{i}", D, N, choose_k=64)
                    for s in range(0, N, 8192):   # distinct labels: every write takes a fresh slot
                        c.write(f"soak/{i}", unit(rng, 8192, D), np.arange(s, s + 8192) + 10**6)
                filled_before = {m.name: m.filled for m in c.list_memories()}
            ctx = multiprocessing.get_context("spawn")
            out = ctx.Queue()
            t0 = time.time() + 5.0                       # every client starts on the same clock
            t_end = t0 + 60 * a.minutes
            procs = [ctx.Process(target=client, args=(address, i, t0, t_end, out)) for i in range(a.clients)]
            for pr in procs:
                pr.start()
            rss = []
            while time.time() < t_end + 2:
                rss.append((time.time() - t0, rss_mb(proc.pid)))
                time.sleep(5.0)
            parts = [out.get(timeout=120) for _ in procs]
            for pr in procs:
                pr.join(timeout=60)
            alive = proc.poll() is None
            with MemoryClient(address, timeout=30) as c:
                healthy = c.health()
                filled_after = {m.name: m.filled for m in c.list_memories()}
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=120)
    windows = sorted({w for part in parts for w in part["latencies"]})
    series = []
    for w in windows:
        ms = np.concatenate([part["latencies"].get(w, []) for part in parts])
        series.append({"t": (w + 0.5) * WINDOW, "calls": int(len(ms)), "p50_ms": float(np.percentile(ms, 50)),
                       "p99_ms": float(np.percentile(ms, 99))})
    errors = collections.Counter()
    calls = collections.Counter()
    for part in parts:
        errors.update(part["errors"])
        calls.update(part["calls"])
    base = [r for t, r in rss if a.warmup <= t < a.warmup + 60]
    last = [r for t, r in rss if t >= 60 * a.minutes - 60]
    result = {
        "machine": machine(), "command": command(), "clients": a.clients, "minutes": a.minutes, "warmup": a.warmup,
        "memories": MEMORIES, "slots": N, "d": D, "b": B, "mix": dict(MIX),
        "calls": dict(calls), "total_calls": int(sum(calls.values())), "errors": dict(errors),
        "error_count": int(sum(errors.values())), "series": series, "rss_mb": rss,
        "rss_after_warmup_mb": float(np.median(base)), "rss_last_minute_mb": float(np.median(last)),
        "rss_growth": float(np.median(last) / np.median(base) - 1), "server_alive": alive, "health": healthy,
        "filled_before": filled_before, "filled_after": filled_after,
    }
    results_dir().mkdir(parents=True, exist_ok=True)
    (results_dir() / "soak.json").write_text(json.dumps(result, indent=2))
    plot(result, results_dir() / "soak.png")
    print(json.dumps({k: v for k, v in result.items() if k not in ("series", "rss_mb")}, indent=2))
    return 0


def plot(r: dict, path: Path) -> None:
    from reports.plots import finish, plt  # noqa: PLC0415

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 3.8))
    t = [s["t"] / 60 for s in r["series"]]
    ax.plot(t, [s["p50_ms"] for s in r["series"]], label="p50")
    ax.plot(t, [s["p99_ms"] for s in r["series"]], label="p99")
    ax.set(yscale="log", xlabel="minutes", ylabel="ms per call",
           title=f"{r['clients']} client processes, mixed rpcs ({r['total_calls']:,} calls)")
    bx.plot([x / 60 for x, _ in r["rss_mb"]], [y for _, y in r["rss_mb"]], label="server RSS")
    bx.axvline(r.get("warmup", 60) / 60, color="grey", ls=":", label="end of warm-up")
    bx.set(xlabel="minutes", ylabel="MiB", title=f"RSS growth after warm-up {100 * r['rss_growth']:+.1f}%")
    finish(fig, path, ax, bx)


if __name__ == "__main__":
    raise SystemExit(main())
