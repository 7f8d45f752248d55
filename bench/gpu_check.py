"""The prepared check on one NVIDIA GPU (``make gpu-check``; under 8 minutes, no network).

1. the ``gpu``-marked tests (the device index against the reference, snapshot and restore on
   the device, every trainer on CUDA, DDP on one GPU);
2. lookup + update through a server whose memory lives on the device, at N = 1M and 16M slots
   (and the largest that fits, ``--largest``), d = 256, b = 16 and 256, side by side with the
   bare search on the same device keys (``faiss.knn_gpu`` where faiss-gpu is installed, else
   torch's ``mm + topk``: what the index runs) and with the CPU server (FAISS) on the same keys;
   memory per slot; top-1 agreement of float16 / bfloat16 device keys with float32;
3. Omniglot training on CUDA through a GPU server, episode batches per second against the
   same trainer on this machine's CPU through a CPU server.

Writes ``gpu.json`` and ``gpu.md`` (device name, machine, commit) into ``--out``.

    python -m bench.gpu_check                   # on a GPU: results/gpu.{json,md}
    python -m bench.gpu_check --cpu --out DIR   # the same plumbing at small sizes on the CPU (the suite runs it)
"""

from __future__ import annotations

import torch  # noqa: I001 - torch before faiss (design.md §5)

import argparse
import contextlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import faiss
import numpy as np

from bench.scale import timed
from raremem.client import MemoryClient
from raremem.models.omniglot.evaluate import DEFAULT_DATA
from raremem.models.paths import results_dir
from raremem.models.runinfo import machine
from raremem.server.config import MemoryConfig
from raremem.server.indexes import DeviceExactIndex, faiss_has_gpu
from raremem.server.service import MemoryService
from raremem.server.servicer import create_server
from raremem.server.spawn import spawn_server
from raremem.server.store import MemoryStore

D, K = 256, 256
ROOT = Path(__file__).resolve().parents[1]


def gpu_tests() -> dict:
    """Run the ``gpu``-marked tests; their summary line and exit status."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", "tests"],
                          cwd=ROOT, capture_output=True, text=True, timeout=240)
    last = [line for line in proc.stdout.splitlines() if line.strip()][-1:] or [proc.stderr[-300:]]
    counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|skipped|error|deselected)", last[0])}
    return {"summary": last[0].strip("= "), "returncode": proc.returncode, **counts,
            "seconds": round(time.perf_counter() - t0, 1)}


def unit_keys(n: int, device: str, seed: int) -> torch.Tensor:
    """(n, D) random unit rows, made on ``device`` in chunks (16M x 256 floats is 16 GiB)."""
    g = torch.Generator(device=device).manual_seed(seed)
    out = torch.empty((n, D), dtype=torch.float32, device=device)
    for i in range(0, n, 1 << 20):
        rows = torch.randn((min(1 << 20, n - i), D), generator=g, device=device)
        out[i:i + len(rows)] = torch.nn.functional.normalize(rows, dim=1)
    return out


def median_ms(fn, reps: int, warm: int = 2) -> float:
    """Median milliseconds of ``reps`` calls after ``warm`` untimed ones (a GPU's first calls
    pay for kernel selection and allocations)."""
    for _ in range(warm - 1):
        fn()
    return 1000 * timed(fn, reps)   # itself one untimed call first


@contextlib.contextmanager
def serving(device: str):
    """An in-process server (gRPC on a local port) whose exact memories live on ``device``."""
    service = MemoryService(device=device)
    server, port, _ = create_server(service, "127.0.0.1:0")
    server.start()
    try:
        with MemoryClient(f"127.0.0.1:{port}", timeout=600) as client:
            yield service, client
    finally:
        server.stop(0).wait()
        service.close(snapshot=False)


def filled(service: MemoryService, client: MemoryClient, name: str, keys: np.ndarray) -> MemoryStore:
    """A memory of ``len(keys)`` slots created over the wire and bulk-loaded in process (16M
    keys over gRPC would take minutes: the benchmark times lookups, not the fill)."""
    client.create_memory(name, D, len(keys), choose_k=K)
    store = service._get(name).store
    store.load(keys, np.arange(len(keys)) % 1000)
    return store


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def bare_search(index, q: np.ndarray, n: int):
    """The search alone, on the keys the index holds: FAISS's GPU brute force or torch's
    ``mm + topk`` over the device mirror (what the device index calls), or FAISS on the CPU."""
    if not isinstance(index, DeviceExactIndex):
        return lambda: faiss.knn(q, index.keys[:n], K, metric=faiss.METRIC_INNER_PRODUCT)
    qd, keys = torch.from_numpy(q).to(index.device, index.dtype), index.mirror[:n]
    if index.gpu_resources is not None:
        def search():
            faiss.knn_gpu(index.gpu_resources, qd, keys, K, metric=faiss.METRIC_INNER_PRODUCT)
            torch.cuda.synchronize()
    else:
        def search():
            torch.topk(qd @ keys.T, K, dim=1)
            sync(str(index.device))
    return search


def lookup_bench(device: str, sizes: list[int], batches: list[int], reps: int, cpu_reps: int) -> list[dict]:
    """Per (N, b): lookup + update in the device server and in the CPU server, and the bare
    search over the device index's own key tensor, medians in ms."""
    rows = []
    rng = np.random.default_rng(0)
    for n in sizes:
        keys = unit_keys(n, device, seed=n).cpu().numpy()
        with serving(device) as (service, client), serving("") as (cpu_service, cpu_client):
            store = filled(service, client, "bench", keys)
            cpu_filled = filled(cpu_service, cpu_client, "bench", keys) if cpu_reps else None
            del keys
            index = store.index
            for b in batches:
                q = rng.standard_normal((b, D)).astype(np.float32)
                q /= np.linalg.norm(q, axis=1, keepdims=True)
                labels = rng.integers(0, 1000, b)
                bare = bare_search(index, q, n)

                row = {"slots": n, "batch": b, "k": K, "d": D,
                       "searcher": getattr(index, "searcher", "faiss.knn (CPU)"),
                       "server_ms": median_ms(lambda: client.lookup("bench", q, labels, update=True), reps),
                       "bare_ms": median_ms(bare, reps)}
                if cpu_filled is not None:
                    row["cpu_server_ms"] = median_ms(lambda: cpu_client.lookup("bench", q, labels, update=True),
                                                     cpu_reps, warm=1)
                row["server_over_bare"] = row["server_ms"] / row["bare_ms"]
                print(f"lookup+update N={n:,} b={b}: server {row['server_ms']:.2f} ms, bare {row['bare_ms']:.2f} ms"
                      + (f", CPU server {row['cpu_server_ms']:.1f} ms" if "cpu_server_ms" in row else ""), flush=True)
                rows.append(row)
    return rows


def precision(device: str, n: int, queries: int = 1024) -> list[dict]:
    """Top-1 agreement of half-precision device keys with float32, on queries near stored keys
    (each a key plus noise of norm ~0.3: the answer is usually that key, sometimes a close one)."""
    keys = unit_keys(n, device, seed=7).cpu().numpy()
    g = np.random.default_rng(1)
    q = keys[g.integers(0, n, queries)] + 0.02 * g.standard_normal((queries, D)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    top = {}
    for dtype in ("float32", "float16", "bfloat16"):
        index = DeviceExactIndex(MemoryConfig(key_dim=D, size=n, device=device, device_dtype=dtype), keys)
        top[dtype] = (index.search(q, 1, n, 0)[1][:, 0], index.nbytes() / n)
        del index
    return [{"dtype": dt, "slots": n, "top1_agreement_with_float32": float((ids == top["float32"][0]).mean()),
             "device_bytes_per_slot": per} for dt, (ids, per) in top.items()]


def capacity(device: str) -> dict:
    """Bytes per slot on the host (the store's arrays) and on the device (the key mirror), and
    the most slots both memories hold with a quarter of each left free."""
    host = MemoryStore.bytes_needed(MemoryConfig(key_dim=D, size=1))
    host_free = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    out = {"d": D, "host_bytes_per_slot": host, "host_free_bytes": host_free}
    if device.startswith("cuda"):
        free, total = torch.cuda.mem_get_info()
        out |= {"device_free_bytes": free, "device_total_bytes": total}
        for dtype, size in (("float32", 4), ("float16", 2)):
            out[f"largest_slots_{dtype}"] = int(min(0.75 * free / (size * D), 0.75 * host_free / host))
    return out


def omniglot_rate(device: str, minutes: float, out: Path) -> dict:
    """Omniglot (5-way, B = 16, the defaults) through a server spawned on ``device`` for
    ``minutes``: episode batches per second."""
    proc, address, _ = spawn_server("--metrics-port", "-1", "--snapshot-interval", "0",
                                    *(("--device", device) if device.startswith("cuda") else ()))
    try:
        run = out / f"omniglot-{device.replace(':', '')}"
        cmd = [sys.executable, "-m", "raremem.models.omniglot.train", "--server", address, "--device", device,
               "--split", "lake" if not (DEFAULT_DATA / "splits").is_dir() else "vinyals", "--eval-every", "0",
               "--steps", "1000000", "--minutes", str(minutes), "--checkpoint-every", "1000000",
               "--out", str(run), "--overwrite"]
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60 * minutes + 180)
        if done.returncode:
            return {"device": device, "error": done.stderr.strip().splitlines()[-1:]}
        summary = json.loads((run / "replica-0.json").read_text())
        # the first batches pay for warm-up (CUDA kernels, the server's first allocations)
        walls = [json.loads(line)["wall"] for line in open(run / "metrics.jsonl")]
        skip = min(5, len(walls) // 4)
        steady = (len(walls) - 1 - skip) / (walls[-1] - walls[skip]) if len(walls) > skip + 2 else None
        return {"device": device, "minutes": minutes, "batches": summary["steps"],
                "batches_per_second": summary["steps_per_second"], "steady_batches_per_second": steady}
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"CPU: {machine()['cpu']}"


def markdown(r: dict) -> str:
    m = r["machine"]
    lines = [f"# The GPU check: {r['device_name']}", "",
             f"`{r['command']}` at commit `{m['commit']}`, {m['time']}; {m['cores']} CPU cores ({m['cpu']}), "
             f"torch {m.get('torch', '?')}, FAISS GPU search: {'yes' if r['faiss_gpu'] else 'no (torch mm + topk)'}.", ""]
    t = r.get("tests")
    if t:
        lines += [f"**gpu-marked tests**: {t['summary']} ({t['seconds']} s).", ""]
    lines += ["## Lookup + update on the device", "",
              f"Exact, k = {K}, d = {D}; medians. Server: over gRPC, with update. Bare: the index's own search on "
              "the same device keys. CPU server: FAISS on this machine's cores, same keys.", "",
              "| slots | b | searcher | server ms | bare ms | server / bare | CPU server ms |",
              "|---:|---:|---|---:|---:|---:|---:|"]
    for x in r["lookup"]:
        cpu = f"{x['cpu_server_ms']:.1f}" if "cpu_server_ms" in x else "—"
        lines.append(f"| {x['slots']:,} | {x['batch']} | {x['searcher']} | {x['server_ms']:.2f} | {x['bare_ms']:.2f} | "
                     f"{x['server_over_bare']:.2f} | {cpu} |")
    lines += ["", "## Key precision on the device", "", "| keys | slots | top-1 agreement with float32 | device bytes per slot |",
              "|---|---:|---:|---:|"]
    lines += [f"| {p['dtype']} | {p['slots']:,} | {p['top1_agreement_with_float32']:.4f} | {p['device_bytes_per_slot']:.0f} |"
              for p in r["precision"]]
    c = r["capacity"]
    lines += ["", f"Host bytes per slot (keys, values, ages, sources, flags): {c['host_bytes_per_slot']}."]
    if "largest_slots_float32" in c:
        lines.append(f"Largest memory with a quarter of device and host memory left free: "
                     f"{c['largest_slots_float32']:,} slots (float32 keys), {c['largest_slots_float16']:,} (float16).")
    o = r.get("omniglot")
    if o:
        lines += ["", "## Omniglot training through a server", "", "| trainer and server | minutes | episode batches | "
                  "batches/s | steady batches/s |", "|---|---:|---:|---:|---:|"]
        for x in o["runs"]:
            if "error" in x:
                lines.append(f"| {x['device']} | — | — | error: {' '.join(x['error'])} | — |")
                continue
            steady = f"{x['steady_batches_per_second']:.3f}" if x["steady_batches_per_second"] else "—"
            lines.append(f"| {x['device']} | {x['minutes']:g} | {x['batches']} | {x['batches_per_second']:.3f} | {steady} |")
        if o.get("speedup") is not None:
            lines += ["", f"GPU / CPU episode batches per second: **{o['speedup']:.1f}x**."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cpu", action="store_true", help="the same plumbing at small sizes on the CPU (no GPU needed)")
    p.add_argument("--out", type=Path, default=None, help="where gpu.json and gpu.md go [results/; --cpu: runs/gpu-check]")
    p.add_argument("--largest", action="store_true", help="also time the largest memory that fits")
    p.add_argument("--omniglot-minutes", type=float, default=None, help="[GPU 4, --cpu 0.1]")
    p.add_argument("--cpu-omniglot-minutes", type=float, default=None, help="the CPU figure's run [1, --cpu 0.1]")
    p.add_argument("--no-tests", action="store_true")
    a = p.parse_args(argv)
    if not a.cpu and not torch.cuda.is_available():
        p.error("no CUDA device here: run on a GPU, or give --cpu for the plumbing at small sizes")
    device = "cpu" if a.cpu else "cuda"
    out = a.out or (Path("runs/gpu-check") if a.cpu else results_dir())
    out.mkdir(parents=True, exist_ok=True)
    sizes = [1 << 12, 1 << 14] if a.cpu else [1 << 20, 1 << 24]
    r = {"command": " ".join(["python -m bench.gpu_check", *(argv if argv is not None else sys.argv[1:])]),
         "machine": machine(), "device": device, "device_name": device_name(device),
         "faiss_gpu": faiss_has_gpu()}
    t0 = time.perf_counter()
    if not a.no_tests:
        r["tests"] = gpu_tests()
        print("gpu tests:", r["tests"]["summary"], flush=True)
    r["capacity"] = capacity(device)
    if a.largest and "largest_slots_float32" in r["capacity"]:
        sizes.append(min(r["capacity"]["largest_slots_float32"], 1 << 26))
    r["lookup"] = lookup_bench(device, sizes, [16, 256] if not a.cpu else [16, 64], reps=50 if not a.cpu else 5,
                               cpu_reps=5 if not a.cpu else 3)
    r["precision"] = precision(device, sizes[0])
    if DEFAULT_DATA.joinpath("images_background.zip").is_file():
        runs = [omniglot_rate(device, a.omniglot_minutes or (0.1 if a.cpu else 4.0), out)]
        if not a.cpu:
            runs.append(omniglot_rate("cpu", a.cpu_omniglot_minutes or 1.0, out))
        ok = [x for x in runs if "error" not in x]
        speed = [x["steady_batches_per_second"] or x["batches_per_second"] for x in ok]
        r["omniglot"] = {"runs": runs, "speedup": speed[0] / speed[1] if len(speed) == 2 else None}
    r["seconds"] = round(time.perf_counter() - t0, 1)
    (out / "gpu.json").write_text(json.dumps(r, indent=2))
    (out / "gpu.md").write_text(markdown(r))
    print(markdown(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
