"""Recall of the approximate index kinds against exact search, on clustered unit keys.

Learned embeddings cluster by class; uniform random keys are the worst case for IVF and LSH
and say little about a trained memory (design.md §5). Writes results/index_recall.{json,md}.

    python bench/recall.py
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

from raremem.models.paths import results_dir
from raremem.models.runinfo import machine
from raremem.server.config import MemoryConfig
from raremem.server.store import LookupSpec, MemoryStore


def clustered_memory(kind, n=20000, d=64, clusters=200, noise=1.0, seed=0, **opts):
    """A full memory of clustered unit keys, filled through the update rule, and fresh queries."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, d)).astype(np.float32)
    keys = centres[rng.integers(0, clusters, n)] + noise * rng.standard_normal((n, d)).astype(np.float32)
    store = MemoryStore(MemoryConfig(key_dim=d, size=n, choose_k=32, index=kind, seed=seed, **opts))
    for i in range(0, n, 2000):
        store.lookup(LookupSpec(keys[i:i + 2000], np.arange(i, i + 2000), update=True))
    queries = centres[rng.integers(0, clusters, 500)] + noise * rng.standard_normal((500, d)).astype(np.float32)
    return store, queries


def recall(store, queries, k=32, nprobe=0):
    """(top-1 agreement, recall@k, seconds per query batch) against exact search of the same keys."""
    exact = MemoryStore(MemoryConfig(**{**store.config.to_dict(), "index": "exact"}))
    exact.load(store.keys[:store.filled], store.values[:store.filled])
    want = exact.lookup(LookupSpec(queries, k=k, return_neighbors=True)).neighbors.ids
    t0 = time.perf_counter()
    got = store.lookup(LookupSpec(queries, k=k, nprobe=nprobe, return_neighbors=True)).neighbors.ids
    seconds = time.perf_counter() - t0
    top1 = float((got[:, 0] == want[:, 0]).mean())
    rec = float(np.mean([len(set(g[g >= 0]) & set(w)) / k for g, w in zip(got, want)]))
    return top1, rec, seconds


def main() -> int:
    rows = []
    store, queries = clustered_memory("ivf", ivf_nlist=128)
    for nprobe in (1, 4, 8, 16, 32, 128):
        top1, rec, secs = recall(store, queries, nprobe=nprobe)
        rows.append({"index": "ivf", "setting": f"nlist 128, nprobe {nprobe}", "top1": top1, "recall@32": rec, "ms": secs * 1e3})
    for tables, bits, bucket in ((16, 8, 16), (16, 8, 64), (32, 8, 64), (16, 6, 128)):
        store, queries = clustered_memory("lsh", lsh_tables=tables, lsh_bits=bits, lsh_bucket_size=bucket)
        top1, rec, secs = recall(store, queries)
        rows.append({"index": "lsh", "setting": f"{tables} tables x {bits} bits, bucket {bucket}",
                     "top1": top1, "recall@32": rec, "ms": secs * 1e3})
    store, queries = clustered_memory("exact")
    _, _, secs = recall(store, queries)
    rows.append({"index": "exact", "setting": "FAISS flat", "top1": 1.0, "recall@32": 1.0, "ms": secs * 1e3})
    m = machine()
    out = {"machine": m, "command": "python bench/recall.py", "n": 20000, "d": 64, "clusters": 200,
           "queries": 500, "rows": rows}
    lines = ["# Recall of approximate indexes (clustered keys)", "",
             f"`python bench/recall.py` at commit `{m['commit']}`, {m['time']}; {m['cpu']}, {m['cores']} cores. "
             "20,000 unit keys around 200 class centres (d=64, noise 1.0), 500 fresh queries, k=32; "
             "exact search of the same memory is the truth.", "",
             "| index | setting | top-1 agreement | recall@32 | ms / 500 queries |", "|---|---|---:|---:|---:|"]
    lines += [f"| {r['index']} | {r['setting']} | {r['top1']:.3f} | {r['recall@32']:.3f} | {r['ms']:.1f} |" for r in rows]
    results_dir().mkdir(exist_ok=True)
    (results_dir() / "index_recall.json").write_text(json.dumps(out, indent=2))
    (results_dir() / "index_recall.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
