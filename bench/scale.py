"""Scale: lookup latency against memory size for exact and IVF search, and IVF's recall on
keys that trained models wrote.

1. Latency vs N (8K .. 4M slots: SIZES, d=128, k=256, b=16 and 256), the store's own lookup (what
   the server runs for a call, without the transport: bench/lookup.py measures that), on
   clustered unit keys (learned embeddings cluster; uniform random keys are IVF's worst case
   and no trained memory looks like them). IVF at nlist ~ 2 sqrt(N) over an nprobe sweep, each
   with its top-1 agreement and recall@k against exact on fresh queries; RAM per slot.
2. Recall on learned keys over an nlist x nprobe grid: memories of trained runs (the Omniglot
   model's queries for its training drawings; the Neural GPU + memory run's saved memory; any
   other saved memory given with --memory-npz), queried with held-out keys of the same memory.
   With the saved memory's ages, also the drift case: the quantizer fitted to the oldest keys
   (as a memory's first fit is) against one refitted to a uniform sample (``ivf_retrain``).

Writes results/bench_scale.{json,md} and bench_scale_latency.png, bench_scale_recall.png.

    python -m bench.scale [--max-n 4194304] [--omniglot-checkpoint PATH] [--memory-npz PATH ...]
"""

from __future__ import annotations

import torch  # noqa: I001 - torch before faiss (design.md §5)

import argparse
import json
import math
import time
from pathlib import Path

import faiss
import numpy as np

from raremem.models.paths import data_dir, results_dir
from raremem.models.runinfo import command, machine
from raremem.server import persistence
from raremem.server.config import MemoryConfig
from raremem.server.store import LookupSpec, MemoryStore

K, D = 256, 128


def clustered(rng, n: int, d: int, per_cluster: int = 100, noise: float = 1.0, chunk: int = 1 << 20):
    """(n, d) unit keys around n / per_cluster Gaussian centres, made in chunks (4M x 128 is 2 GiB);
    also the centres and each key's centre (n,)."""
    centres = rng.standard_normal((max(1, n // per_cluster), d)).astype(np.float32)
    out = np.empty((n, d), np.float32)
    labels = np.empty(n, np.int32)
    for s in range(0, n, chunk):
        m = min(chunk, n - s)
        labels[s:s + m] = rng.integers(0, len(centres), m)
        x = centres[labels[s:s + m]]
        x += noise * rng.standard_normal((m, d)).astype(np.float32)
        out[s:s + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out, centres, labels


def queries_near(rng, centres, b: int, noise: float = 1.0):
    x = centres[rng.integers(0, len(centres), b)] + noise * rng.standard_normal((b, centres.shape[1])).astype(np.float32)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def timed(fn, calls: int) -> float:
    """Median seconds of ``calls`` calls after one untimed."""
    fn()
    ts = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def agreement(got: np.ndarray, want: np.ndarray, k: int) -> tuple[float, float]:
    """(top-1 agreement, recall@k) of neighbour id lists (b, k) against exact ones."""
    top1 = float((got[:, 0] == want[:, 0]).mean())
    rec = float(np.mean([len(set(g[g >= 0]) & set(w[w >= 0])) / max(1, (w >= 0).sum()) for g, w in zip(got, want)]))
    return top1, rec


def store_of(keys: np.ndarray, index: str = "exact", values: np.ndarray | None = None, **ivf) -> MemoryStore:
    n, d = keys.shape
    store = MemoryStore(MemoryConfig(key_dim=d, size=n, choose_k=min(K, n), index=index, **ivf))
    store.load(keys, np.arange(n) if values is None else values)
    return store


def neighbours(store: MemoryStore, q: np.ndarray, k: int, nprobe: int = 0) -> np.ndarray:
    return store.lookup(LookupSpec(q, k=k, nprobe=nprobe, return_neighbors=True)).neighbors.ids


SIZES = (8192, 32768, 131072, 524288, 1048576, 2097152, 4194304)


def ivf_row(keys: np.ndarray, nlist: int, q: dict, truth: np.ndarray, calls: int) -> dict:
    """One IVF configuration over ``keys``: build time, RAM, and per nprobe top-1, recall, ms."""
    n = len(keys)
    t0 = time.perf_counter()
    ivf = store_of(keys, "ivf", ivf_nlist=nlist)
    out = {"nlist": nlist, "build_s": time.perf_counter() - t0, "bytes_per_slot": ivf.nbytes() / n, "nprobe": {}}
    for nprobe in (4, 8, 16, 32, 64):
        if nprobe > nlist:
            continue
        top1, rec = agreement(neighbours(ivf, q[256], K, nprobe), truth, K)
        out["nprobe"][nprobe] = {
            "top1": top1, "recall": rec,
            "ms": {b: 1e3 * timed(lambda b=b: ivf.lookup(LookupSpec(q[b], nprobe=nprobe)), calls) for b in (16, 256)},
            # where a b = 256 lookup's time goes: the index's search (lists found, then scanned)
            # within the store's lookup, and of that the search for each query's nprobe lists
            "parts_ms": parts(ivf.index, q[256], n, nprobe, calls)}
    return out


def parts(index, q: np.ndarray, n: int, nprobe: int, calls: int) -> dict:
    """ms of ``index.search`` alone (the store's lookup adds the rest around it) and of the
    flat scan of the centroids that finds each query's ``nprobe`` lists in it."""
    return {"index": 1e3 * timed(lambda: index.search(q, K, n, nprobe), calls),
            "lists": 1e3 * timed(lambda: index.quantizer.search(q, nprobe), calls)}


HNSW_M, HNSW_EF_CONSTRUCTION = 32, 200   # the graph compared in ``routing``: FAISS's usual degree


def routing(n: int, rng, calls: int = 5) -> dict:
    """How a many-list IVF (N / 64 lists) should find a query's nprobe lists, for 256 queries: a
    flat scan of the centroids (what the store does) or an HNSW graph over them at several
    efSearch; ms of that step alone and the top-1 agreement with exact of the whole search."""
    keys, centres, _ = clustered(rng, n, D)
    q = queries_near(rng, centres, 256)
    truth = neighbours(store_of(keys), q, K)
    ivf = store_of(keys, "ivf", ivf_nlist=n // 64).index
    keys = None
    index, flat = ivf.index, ivf.quantizer
    graph = faiss.IndexHNSWFlat(D, HNSW_M, faiss.METRIC_INNER_PRODUCT)
    graph.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    graph.add(flat.reconstruct_n(0, ivf.nlist))

    def scan(near, lists, nprobe):   # the lists given, scanned: (b, K) ids
        dist, ids = np.empty((len(q), K), np.float32), np.empty((len(q), K), np.int64)
        # the C++ call: FAISS's Python wrapper of it takes nprobe from the index, not the call
        index.search_preassigned_c(len(q), faiss.swig_ptr(q), K, faiss.swig_ptr(lists), faiss.swig_ptr(near),
                                   faiss.swig_ptr(dist), faiss.swig_ptr(ids), False,
                                   faiss.SearchParametersIVF(nprobe=nprobe))
        return ids

    rows = []
    for nprobe in (4, 8, 16, 64):
        ways = {"flat": lambda nprobe=nprobe: flat.search(q, nprobe)}
        for ef in (16, 32, 64, 128):
            if ef >= nprobe:
                params = faiss.SearchParametersHNSW(efSearch=ef)
                ways[f"graph, efSearch {ef}"] = lambda nprobe=nprobe, params=params: graph.search(q, nprobe, params=params)
        for way, find in ways.items():
            rows.append({"nprobe": nprobe, "lists_by": way, "lists_ms": 1e3 * timed(find, calls),
                         "top1": agreement(scan(*find(), nprobe), truth, K)[0]})
            print(json.dumps(rows[-1]), flush=True)
    return {"N": n, "nlist": ivf.nlist, "rows": rows}


def latency_rows(max_n: int, rng, many_from: int) -> list[dict]:
    """Exact and IVF at nlist ~ 2 sqrt(N); from ``many_from`` slots on also IVF with a list per
    64 keys (about one per cluster of these keys: what a top-1 of 0.98 takes at millions)."""
    rows = []
    for n in (s for s in SIZES if s <= max_n):
        keys, centres, _ = clustered(rng, n, D)
        q = {b: queries_near(rng, centres, b) for b in (16, 256)}
        exact = store_of(keys)
        truth = neighbours(exact, q[256], K)
        calls = 9 if n <= 1 << 19 else 3
        row = {"N": n, "exact": {"bytes_per_slot": exact.nbytes() / n,
                                 "ms": {b: 1e3 * timed(lambda b=b: exact.lookup(LookupSpec(q[b])), calls)
                                        for b in (16, 256)}}}
        exact = None   # free 2 GiB before the IVF copy is built
        row["ivf"] = ivf_row(keys, 2 ** round(math.log2(2 * math.sqrt(n))), q, truth, calls)
        if n >= many_from:
            row["ivf_many"] = ivf_row(keys, n // 64, q, truth, calls)
        keys = None
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def ivfs(row: dict) -> list[dict]:
    """A latency row's IVF configurations (rows from before ``ivf_many`` have one)."""
    return [row["ivf"]] + ([row["ivf_many"]] if "ivf_many" in row else [])


def fastest(row: dict, b, min_top1: float = 0.98) -> tuple | None:
    """A latency row's fastest IVF setting at top-1 >= min_top1 for batch ``b`` (its key in
    "ms": int while measuring, str once read from the file): (nlist, nprobe, entry) or None."""
    ok = [(v["nlist"], nprobe, x) for v in ivfs(row) for nprobe, x in v["nprobe"].items() if x["top1"] >= min_top1]
    return min(ok, key=lambda g: g[2]["ms"][b], default=None)


def omniglot_keys(checkpoint: Path) -> np.ndarray:
    """The trained model's unit queries for every training drawing (C * 20, rep_dim)."""
    from raremem.models.omniglot.data import Omniglot  # noqa: PLC0415
    from raremem.models.omniglot.model import load_model  # noqa: PLC0415

    model = load_model(checkpoint).eval()
    images = Omniglot.load(data_dir("omniglot")).train.reshape(-1, 28, 28)
    with torch.no_grad():
        return np.concatenate([model.queries(torch.from_numpy(images[s:s + 2048])).numpy()
                               for s in range(0, len(images), 2048)])


def saved_memory(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(filled keys, their ages) of a snapshot."""
    state = persistence.load(path)
    store = MemoryStore.from_state(state)
    return store.keys[:store.filled].copy(), store.ages[:store.filled].copy()


def recall_rows(name: str, keys: np.ndarray, ages: np.ndarray | None, rng, held_out: int = 1000) -> list[dict]:
    """IVF on a learned memory: nlist x nprobe against exact, queries = held-out keys."""
    n = len(keys)
    perm = rng.permutation(n)
    q, rest = np.ascontiguousarray(keys[perm[:held_out]]), perm[held_out:]
    mem = np.ascontiguousarray(keys[rest])
    k = min(K, len(mem))
    exact = store_of(mem)
    truth = neighbours(exact, q, k)
    exact_ms = 1e3 * timed(lambda: exact.lookup(LookupSpec(q[:256])), 5)
    rows = []
    root = math.sqrt(len(mem))
    for nlist in sorted({2 ** round(math.log2(f * root)) for f in (0.5, 2, 8)}):
        if 39 * nlist > len(mem):
            continue
        ivf = store_of(mem, "ivf", ivf_nlist=nlist)
        for nprobe in (1, 4, 16, 64):
            if nprobe > nlist:
                continue
            top1, rec = agreement(neighbours(ivf, q, k, nprobe), truth, k)
            ms = 1e3 * timed(lambda: ivf.lookup(LookupSpec(q[:256], nprobe=nprobe)), 5)
            rows.append({"memory": name, "N": len(mem), "d": mem.shape[1], "nlist": nlist, "nprobe": nprobe,
                         "fit": "uniform sample", "top1": top1, "k": k, "recall": rec, "ms_b256": ms,
                         "exact_ms_b256": exact_ms})
            print(json.dumps(rows[-1]), flush=True)
        del ivf
    if ages is not None:   # drift: fitted to the oldest keys (how a first fit sees the memory) vs refitted
        nlist = 2 ** round(math.log2(2 * root))
        oldest = np.argsort(-ages[rest], kind="stable")[:39 * nlist]
        for fit in ("oldest keys", "uniform sample"):
            ivf = store_of(mem, "ivf", ivf_nlist=nlist)
            if fit == "oldest keys":
                ivf.index._new_index()
                ivf.index.index.train(np.ascontiguousarray(mem[oldest]))
                ivf.index.index.add_with_ids(mem, np.arange(len(mem), dtype=np.int64))
                ivf.index.present[:] = True
            for nprobe in (4, 16):
                top1, rec = agreement(neighbours(ivf, q, k, nprobe), truth, k)
                rows.append({"memory": name, "N": len(mem), "d": mem.shape[1], "nlist": nlist, "nprobe": nprobe,
                             "fit": fit, "top1": top1, "k": k, "recall": rec, "drift": True,
                             "ms_b256": 1e3 * timed(lambda: ivf.lookup(LookupSpec(q[:256], nprobe=nprobe)), 5),
                             "exact_ms_b256": exact_ms})
                print(json.dumps(rows[-1]), flush=True)
    return rows


def crossover(rows: list[dict], b: int, min_top1: float = 0.98) -> int | None:
    """Smallest N where IVF at some nprobe with top-1 >= min_top1 is faster than exact."""
    for r in rows:
        best = fastest(r, b, min_top1)
        if best and best[2]["ms"][b] < r["exact"]["ms"][b]:
            return r["N"]
    return None


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--max-n", type=int, default=1 << 22)
    p.add_argument("--many-lists-from", type=int, default=1 << 20,
                   help="from this N on, also IVF with N / 64 lists (two-level k-means)")
    p.add_argument("--omniglot-checkpoint", type=Path, default=Path("runs/omniglot/5way-paper/checkpoint.pt"))
    p.add_argument("--memory-npz", type=Path, nargs="*", default=[], help="saved memories (snapshots) to measure")
    p.add_argument("--routing", type=int, default=0, metavar="N",
                   help="also compare how N / 64 lists are found for a query (flat scan, HNSW graph) at N slots")
    p.add_argument("--skip-latency", action="store_true",
                   help="measure learned keys only; the latency rows are kept from the results file, with the "
                        "machine and commit they had")
    a = p.parse_args()
    rng = np.random.default_rng(0)
    # the learned rows of memories not measured now (their runs may live in another checkout)
    # are kept from the results file, each with its machine and commit
    earlier = results_dir() / "bench_scale.json"
    earlier = json.loads(earlier.read_text()) if earlier.is_file() else {}
    learned = []
    if a.omniglot_checkpoint.is_file():
        learned += recall_rows(f"Omniglot queries ({a.omniglot_checkpoint.parent.name})",
                               omniglot_keys(a.omniglot_checkpoint), None, rng)
    for path in a.memory_npz:
        keys, ages = saved_memory(path)
        learned += recall_rows(f"saved memory {path.parent.parent.name}/{path.stem}", keys, ages, rng)
    now = {"machine": machine(), "command": command()}
    for row in learned:
        row |= now
    if earlier:
        measured = {x["memory"] for x in learned}
        learned = [{**now_or(x, earlier), **x} for x in earlier["learned"] if x["memory"] not in measured] + learned
    if a.skip_latency and earlier:
        rows, then = earlier["latency"], earlier.get("latency_run") or {k: earlier[k] for k in ("machine", "command")}
        cross = earlier["crossover"]
    else:
        rows, then = latency_rows(a.max_n, rng, a.many_lists_from), now
        # the larger memories' rows (beyond --max-n) are kept from the file, with their run
        kept = [{**x, "run": x.get("run") or earlier.get("latency_run") or now_or({}, earlier)}
                for x in earlier.get("latency", []) if x["N"] > a.max_n]
        cross = {b: crossover(rows, b) for b in (16, 256)}
        rows += kept
    found = ({**routing(a.routing, rng), **now} if a.routing else earlier.get("routing"))
    out = {**now, "latency_run": then, "k": K, "d": D, "latency": rows, "learned": learned, "crossover": cross,
           **({"routing": found} if found else {})}
    out = json.loads(json.dumps(out))   # one form from here on: the file's (string keys)
    res = results_dir()
    res.mkdir(parents=True, exist_ok=True)
    (res / "bench_scale.json").write_text(json.dumps(out, indent=2))
    (res / "bench_scale.md").write_text("\n".join(markdown(out)) + "\n")
    plots(out, res)
    print("\n".join(markdown(out)))
    return 0


def now_or(row: dict, run: dict) -> dict:
    """The machine and command a learned row was measured with (older files kept one for all)."""
    return {"machine": row.get("machine", run["machine"]), "command": row.get("command", run["command"])}


def markdown(r: dict) -> list[str]:
    run = r.get("latency_run") or r
    m = run["machine"]
    lines = ["# Scale: exact and IVF search from 8K to 4M slots", "",
             f"`{run['command']}` at commit `{m['commit']}`, {m['time']}; {m['cpu']}, {m['cores']} cores; "
             f"faiss {m.get('faiss-cpu')}. The store's lookup (the server's work for one call, no transport), "
             "median ms; clustered unit keys (100 per centre, noise 1.0), fresh queries; top-1 agreement and "
             "recall@256 of IVF against exact on the same memory, b = 256 queries.", "",
             "| N | exact b=16 | exact b=256 | exact B/slot | IVF nlist | nprobe | IVF b=16 | IVF b=256 | of it: index "
             "(finding the lists) | top-1 | recall@256 | IVF B/slot | IVF build s |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in r["latency"]:
        e = row["exact"]
        cells = [(v, nprobe, x) for v in ivfs(row) for nprobe, x in v["nprobe"].items()]
        for j, (v, nprobe, x) in enumerate(cells):
            head = (f"| {row['N']:,} | {e['ms']['16']:.2f} | {e['ms']['256']:.1f} | {e['bytes_per_slot']:.0f} | "
                    if j == 0 else "| | | | | ")
            part = x.get("parts_ms", {})   # rows measured before the breakdown have none
            finder = part.get("lists", part.get("router"))   # earlier runs found lists through a graph
            split = "—" if not part else f"{part['index']:.1f}" + (f" ({finder:.1f})" if finder is not None else "")
            lines.append(head + f"{v['nlist']} | {nprobe} | {x['ms']['16']:.2f} | {x['ms']['256']:.2f} | {split} | "
                         f"{x['top1']:.3f} | {x['recall']:.3f} | {v['bytes_per_slot']:.0f} | {v['build_s']:.1f} |")
    for x in r["latency"]:
        if "run" in x:
            lines += ["", f"N = {x['N']:,}: kept from `{x['run']['command']}` at `{x['run']['machine']['commit']}`, "
                      f"{x['run']['machine']['cpu']} (its lists found through an HNSW graph of the centroids)."]
    c = r["crossover"]
    largest = next((row for row in r["latency"] if row["N"] == 1 << 22), None)
    if largest:
        best = fastest(largest, "256")
        lines += ["", "Goal, N = 4,194,304, b = 256: <= 50 ms at top-1 >= 0.98 with exact: " + (
            f"fastest such setting nlist {best[0]}, nprobe {best[1]}: {best[2]['ms']['256']:.1f} ms, top-1 "
            f"{best[2]['top1']:.3f} ({'met' if best[2]['ms']['256'] <= 50 else 'not met'})." if best
            else "no setting measured reaches top-1 0.98 (not met).")]
    lines += ["", f"Crossover (smallest N where IVF at top-1 >= 0.98 beats exact): b=16 at "
              f"{c['16'] or 'none measured'}, b=256 at {c['256'] or 'none measured'}.", ""]
    if r.get("routing"):
        g = r["routing"]
        lines += [f"## Finding a query's lists: flat scan or graph (N = {g['N']:,}, {g['nlist']:,} lists)", "",
                  f"`{g['command']}` at `{g['machine']['commit']}`, {g['machine']['cpu']}. 256 queries; ms of "
                  "finding the nprobe lists alone (a flat scan of the centroids, what the store does, or an HNSW "
                  f"graph over them, M {HNSW_M}, efConstruction {HNSW_EF_CONSTRUCTION}), and the top-1 agreement "
                  "with exact of the whole search through those lists.", "",
                  "| nprobe | lists found by | ms | top-1 |", "|---:|---|---:|---:|"]
        lines += [f"| {x['nprobe']} | {x['lists_by']} | {x['lists_ms']:.1f} | {x['top1']:.3f} |" for x in g["rows"]]
        lines.append("")
    if r["learned"]:
        lines += ["## IVF on learned keys", "",
                  "Held-out keys of the memory (1,000) query the rest; exact search of the same keys is the truth; "
                  "ms per 256 queries. \"fit\": what the quantizer was fitted to.", "",
                  "| memory | N | d | nlist | nprobe | fit | top-1 | recall@k | IVF ms | exact ms | commit |",
                  "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---|"]
        for x in r["learned"]:
            at = now_or(x, r)["machine"]["commit"]
            lines.append(f"| {x['memory']} | {x['N']:,} | {x['d']} | {x['nlist']} | {x['nprobe']} | {x['fit']} | "
                         f"{x['top1']:.3f} | {x['recall']:.3f} | {x['ms_b256']:.2f} | {x['exact_ms_b256']:.2f} | `{at}` |")
        lines += ["", "Learned rows measured by: "
                  + "; ".join(sorted({f"`{now_or(x, r)['command']}` at `{now_or(x, r)['machine']['commit']}`"
                                      for x in r["learned"]}))]
        lines.append("")
    lines += ["![latency](bench_scale_latency.png) ![recall](bench_scale_recall.png)", ""]
    return lines


def plots(r: dict, res: Path) -> None:
    from reports.plots import finish, plt  # noqa: PLC0415

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    ns = [row["N"] for row in r["latency"]]
    for b, style in ((16, "--"), (256, "-")):
        if ns:
            ax.plot(ns, [row["exact"]["ms"][str(b)] for row in r["latency"]], style, marker="o", label=f"exact b={b}")
            best = []
            for row in r["latency"]:
                f = fastest(row, str(b))
                best.append(f[2]["ms"][str(b)] if f else np.nan)
            ax.plot(ns, best, style, marker="s", label=f"IVF b={b} (fastest at top-1 >= 0.98)")
    ax.axhline(50, color="grey", ls=":", label="50 ms")
    ax.set(xscale="log", yscale="log", xlabel="slots N", ylabel="ms per lookup", title="latency vs memory size")
    finish(fig, res / "bench_scale_latency.png", ax, fontsize=8)
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for name in sorted({x["memory"] for x in r["learned"]}):
        xs = [x for x in r["learned"] if x["memory"] == name and not x.get("drift")]
        ax.plot([x["ms_b256"] for x in xs], [x["top1"] for x in xs], "o", label=name)
    ax.axhline(0.98, color="grey", ls=":")
    ax.set(xscale="log", xlabel="ms per 256 queries", ylabel="top-1 agreement with exact",
           title="IVF on learned keys (nlist x nprobe)")
    finish(fig, res / "bench_scale_recall.png", ax, fontsize=8)


if __name__ == "__main__":
    raise SystemExit(main())
