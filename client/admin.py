"""``raremem-admin``: inspect and manage the memories of a running server.

A thin layer over ``MemoryClient``: rich tables for people, ``--json`` for scripts, and one
clear line (no traceback) on stderr with exit code 1 when the server refuses or cannot be reached.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import threading
from pathlib import Path

import grpc
import numpy as np
from rich.console import Console
from rich.table import Table

from raremem.client.memory_client import MemoryClient
from raremem.proto.types import DEVICE_DTYPES, INDEX_KINDS, STATS_AGE_BINS, STATS_TOP_VALUES, MemoryStats


def _load_queries(path: Path) -> np.ndarray:
    q = np.load(path, allow_pickle=False)
    q = np.atleast_2d(q).astype(np.float32)
    if q.ndim != 2:
        raise ValueError(f"{path}: expected a (d,) or (b, d) array, got shape {q.shape}")
    return q


def _slots(text: str) -> tuple[int, int]:
    start, _, stop = text.partition(":")
    return int(start or 0), int(stop)


def _jsonable(obj):
    if dataclasses.is_dataclass(obj):  # MemoryInfo, MemoryStats, LookupResult
        return _jsonable(dataclasses.asdict(obj))
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


# ---------------------------------------------------------------------- commands
# Each returns (data for --json, renderable for people).

def cmd_list(c: MemoryClient, a):
    mems = c.list_memories()
    t = Table("name", "index", "key_dim", "size", "filled", "fill", "writes", title="memories")
    for m in mems:
        cfg = m.config
        t.add_row(m.name, cfg["index"], str(cfg["key_dim"]), str(cfg["size"]), str(m.filled),
                  f"{m.filled / cfg['size']:.1%}", str(m.total_writes))
    return mems, t


def cmd_create(c: MemoryClient, a):
    options = {k: v for k, v in (("choose_k", a.k), ("age_noise", a.age_noise), ("seed", a.seed),
                                 ("append_only", a.append_only or None), ("device_dtype", a.device_dtype))
               if v is not None}
    info = c.create_memory(a.name, a.key_dim, a.size, index=a.index, exist_ok=a.exist_ok, device=a.device,
                           **options)
    return info, f"created {info.name}: {info.config}"


def cmd_stats(c: MemoryClient, a):
    s = c.stats(a.name, age_bins=a.age_bins, top_values=a.top, with_hash=a.hash)
    return s, stats_view(s)


def stats_view(s: MemoryStats) -> Table:
    """A memory's stats as tables: facts, age histogram, most frequent values."""
    info, cfg = s.info, s.info.config
    t = Table(show_header=False, title=f"memory {info.name}")
    rows = [("index", f"{cfg['index']} (k={cfg['choose_k']}, d={cfg['key_dim']})"
                      + (", append-only" if cfg.get("append_only") else "")),
            ("fill", f"{info.filled} / {cfg['size']} ({info.filled / cfg['size']:.1%})"),
            ("bytes", f"{s.bytes:,}"),
            ("lookups", f"{s.lookups:,}"),
            ("writes", f"{s.correct_writes:,} correct (averaged into their key), {s.fresh_writes:,} fresh, "
                       f"{s.evictions:,} evictions"),
            ("distinct values", f"{s.distinct_values:,}"),
            ("unsaved writes", f"{s.writes_since_snapshot:,} (log: {s.wal_unsynced:,} records not yet fsynced)")]
    if s.writes_lost_at_restore:
        rows.append(("writes lost at restore", f"{s.writes_lost_at_restore:,}"))
    if s.state_hash:
        rows.append(("state hash", s.state_hash))
    for r in rows:
        t.add_row(*r)
    edges, counts = s.age_bin_edges, s.age_counts
    hist = Table("age", "slots", "", title="age histogram (filled slots)")
    peak = max(int(counts.max()) if len(counts) else 0, 1)
    for lo, hi, n in zip(edges[:-1], edges[1:], counts):
        hist.add_row(f"{lo:.0f}..{hi:.0f}", str(n), "█" * int(30 * n / peak))
    vals = Table("value", "slots", title=f"most frequent values (top {len(s.top_values)})")
    for v, n in zip(s.top_values, s.top_value_counts):
        vals.add_row(str(v), str(n))
    grid = Table.grid()
    for part in (t, hist, vals):
        grid.add_row(part)
    return grid


def cmd_show(c: MemoryClient, a):
    start, stop = _slots(a.slots)
    r = c.read_slots(a.name, start=start, stop=stop)
    t = Table("slot", "value", "age", "source", "key[:4]", title=f"{a.name} slots {start}:{stop}")
    for i in range(len(r["ids"])):
        t.add_row(str(r["ids"][i]), str(r["values"][i]), f"{r['ages'][i]:.0f}", str(r["sources"][i]),
                  np.array2string(r["keys"][i][:4], precision=3, suppress_small=True))
    return r, t


def cmd_nearest(c: MemoryClient, a):
    q = _load_queries(a.query)
    r = c.lookup(a.name, q, k=a.k, return_neighbors=True, nprobe=a.nprobe)
    nb = r.neighbors
    t = Table("query", "rank", "slot", "value", "similarity", "weight", "source", title=f"nearest in {a.name}")
    for i in range(len(q)):
        for j in range(int(r.found[i])):
            t.add_row(str(i), str(j + 1), str(nb.ids[i, j]), str(nb.values[i, j]),
                      f"{nb.similarities[i, j]:.4f}", f"{nb.weights[i, j]:.4f}", str(nb.sources[i, j]))
    data = {"result": r.result, "found": r.found, "ids": nb.ids, "values": nb.values,
            "similarities": nb.similarities, "weights": nb.weights, "sources": nb.sources}
    return data, t


def cmd_explain(c: MemoryClient, a):
    """Which source examples answered each query: result, its weight, and the sources behind it."""
    q = _load_queries(a.query)
    r = c.lookup(a.name, q, k=a.k, return_neighbors=True)
    nb = r.neighbors
    t = Table("query", "answer", "weight of answer", "answering sources (similarity)", title=f"explain {a.name}")
    data = []
    for i in range(len(q)):
        hit = [j for j in range(int(r.found[i])) if nb.values[i, j] == r.result[i]]
        srcs = [(int(nb.sources[i, j]), float(nb.similarities[i, j])) for j in hit]
        weight = float(nb.weights[i, hit].sum()) if hit else 0.0
        data.append({"query": i, "answer": int(r.result[i]), "weight": weight,
                     "sources": [{"source": s, "similarity": sim} for s, sim in srcs]})
        t.add_row(str(i), str(r.result[i]), f"{weight:.3f}", ", ".join(f"{s} ({sim:.3f})" for s, sim in srcs))
    return data, t


def cmd_snapshot(c: MemoryClient, a):
    paths, nbytes = c.snapshot(a.name or "", a.path or "")
    return {"paths": paths, "bytes": nbytes}, f"wrote {', '.join(paths) or 'nothing'} ({nbytes:,} bytes)"


def cmd_restore(c: MemoryClient, a):
    info = c.restore(a.name, a.path or "")
    return info, f"restored {info.name}: {info.filled} filled slots"


def cmd_health(c: MemoryClient, a):
    status = c.health()
    if status != "SERVING":
        raise ValueError(f"server at {a.server} is {status}")
    return {"status": status}, status


def cmd_reset(c: MemoryClient, a):
    info = c.reset(a.name)
    return info, f"reset {info.name}"


def cmd_delete(c: MemoryClient, a):
    return {"deleted": c.delete_memory(a.name)}, f"deleted {a.name}"


def cmd_ui(c: MemoryClient, a):
    """Serve the web page (client/ui) until interrupted."""
    try:
        from raremem.client.ui.app import PageServer, create_app  # noqa: PLC0415 - flask only here
        from raremem.client.ui.renderers import Renderers, parse_options  # noqa: PLC0415
    except ImportError as exc:
        raise ValueError(f"the page needs Flask: pip install 'raremem[ui]' ({exc})") from exc
    c.retry_seconds = 0   # a page view reports a server that is down at once
    renderers = Renderers(parse_options(a.render))
    server = PageServer(create_app(c, renderers, admin_token=a.admin_token or ""), a.host, a.port)
    url = f"http://{a.host}:{server.port}/"
    print(f"raremem page for {a.server} on {url} (renderers: {', '.join(renderers.names) or 'none'}); "
          "Ctrl-C stops it", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    return {"url": url}, f"stopped {url}"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="raremem-admin", description=__doc__.splitlines()[0])
    p.add_argument("--server", "--memory", dest="server", default=os.environ.get("RAREMEM_ADDRESS", "127.0.0.1:50051"),
                   help="server HOST:PORT [env RAREMEM_ADDRESS or 127.0.0.1:50051] (--memory: its old name)")
    p.add_argument("--token", default=os.environ.get("RAREMEM_ADMIN_TOKEN") or os.environ.get("RAREMEM_TOKEN"),
                   help="bearer token [env RAREMEM_ADMIN_TOKEN, then RAREMEM_TOKEN]")
    p.add_argument("--timeout", type=float, default=10.0)
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    sub = p.add_subparsers(dest="command", required=True)

    def add(name, func, help_):
        sp = sub.add_parser(name, help=help_)
        sp.set_defaults(func=func)
        return sp

    add("list", cmd_list, "list memories")
    add("health", cmd_health, "exit 0 if the server is serving (container healthchecks)")
    sp = add("create", cmd_create, "create a memory")
    sp.add_argument("name")
    sp.add_argument("--key-dim", type=int, required=True)
    sp.add_argument("--size", type=int, required=True)
    sp.add_argument("--index", choices=INDEX_KINDS, default="exact")
    sp.add_argument("-k", type=int, help="choose_k")
    sp.add_argument("--age-noise", type=float)
    sp.add_argument("--seed", type=int)
    sp.add_argument("--device", default="", help="exact only: cuda or cuda:N keeps the keys and searches there "
                                                 "[the server's --device]")
    sp.add_argument("--device-dtype", choices=DEVICE_DTYPES,
                    help="the device's copy of the keys [float32]")
    sp.add_argument("--append-only", action="store_true",
                    help="every labelled write takes a fresh slot, no averaging (a kNN datastore)")
    sp.add_argument("--exist-ok", action="store_true")
    sp = add("stats", cmd_stats, "fill, age histogram, value counts, index, bytes")
    sp.add_argument("name")
    sp.add_argument("--age-bins", type=int, default=STATS_AGE_BINS)
    sp.add_argument("--top", type=int, default=STATS_TOP_VALUES)
    sp.add_argument("--hash", action="store_true", help="also compute the state hash")
    sp = add("show", cmd_show, "show slots")
    sp.add_argument("name")
    sp.add_argument("--slots", default="0:10", help="range A:B [0:10]")
    for name, func, help_ in (("nearest", cmd_nearest, "nearest slots of queries in a .npy file"),
                              ("explain", cmd_explain, "which source examples answered each query")):
        sp = add(name, func, help_)
        sp.add_argument("name")
        sp.add_argument("--query", type=Path, required=True, help=".npy file, (d,) or (b, d)")
        sp.add_argument("-k", type=int, default=10)
        if name == "nearest":
            sp.add_argument("--nprobe", type=int, default=0)
    sp = add("snapshot", cmd_snapshot, "snapshot one memory (or all) into the data directory")
    sp.add_argument("name", nargs="?")
    sp.add_argument("--path", help="file relative to the data directory")
    sp = add("restore", cmd_restore, "replace a memory with a snapshot (admin)")
    sp.add_argument("name")
    sp.add_argument("--path", help="file relative to the data directory")
    sp = add("ui", cmd_ui, "serve a web page of the memories, their slots and sources (read-only)")
    sp.add_argument("--host", default="127.0.0.1", help="address the page binds [127.0.0.1]")
    sp.add_argument("--port", type=int, default=8080, help="page port; 0 = any free one [8080]")
    sp.add_argument("--admin-token", default=os.environ.get("RAREMEM_ADMIN_TOKEN"),
                    help="the token the page asks for before it writes a snapshot [env RAREMEM_ADMIN_TOKEN; "
                         "none: no snapshots from the page]")
    sp.add_argument("--render", action="append", default=[], metavar="NAME:KEY=VALUE",
                    help="an option of a source renderer, e.g. omniglot:checkpoint=runs/x/checkpoint.pt "
                         "(embed uploaded drawings), synthetic:preset=short, translation:spm=PATH")
    add("reset", cmd_reset, "empty a memory (admin)").add_argument("name")
    add("delete", cmd_delete, "delete a memory and its snapshot (admin)").add_argument("name")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    console, err = Console(), Console(stderr=True, soft_wrap=True)  # errors stay one line
    try:
        with MemoryClient(args.server, token=args.token, timeout=args.timeout, retry_seconds=1) as client:
            data, view = args.func(client, args)
    except grpc.RpcError as exc:
        code = exc.code()
        detail = exc.details() or ""
        if code == grpc.StatusCode.UNAVAILABLE:
            detail = f"cannot reach a raremem server at {args.server} ({detail})"
        err.print(f"error: {code.name}: {detail}", markup=False, highlight=False)
        return 1
    except (OSError, ValueError) as exc:
        err.print(f"error: {exc}", markup=False, highlight=False)
        return 1
    if args.json:
        print(json.dumps(_jsonable(data), indent=2))
    else:
        console.print(view)
    return 0


if __name__ == "__main__":
    sys.exit(main())
