"""``raremem-admin ui``: a read-only web page over a running raremem server.

Every view asks the server through one ``MemoryClient`` (with the server's token, if any):
``ListMemories``, ``GetStats``, ``ReadSlots`` and lookups *without* labels, which change no
slot. The one write is a snapshot, and only with the admin token typed into the page. Sources
are drawn by the models' renderers (``renderers.py``). Assets ship in this package: nothing
is fetched from the network.
"""

from __future__ import annotations

import base64
import hmac
import threading
import time
from collections import deque
from dataclasses import dataclass

import grpc
import numpy as np
from flask import Flask, abort, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

from raremem.client.memory_client import MemoryClient
from raremem.client.ui import charts
from raremem.client.ui.renderers import Renderers
from raremem.proto.types import MemoryStats

PER_PAGE, MAX_PER_PAGE, MAX_K = 50, 200, 100
HISTORY = 720            # points kept per memory (an hour at the sampler's 5 s)
MAX_UPLOAD = 4 << 20     # bytes

# How a refusal of the server reads as an HTTP status.
HTTP_OF = {grpc.StatusCode.NOT_FOUND: 404, grpc.StatusCode.INVALID_ARGUMENT: 400,
           grpc.StatusCode.OUT_OF_RANGE: 400, grpc.StatusCode.UNAUTHENTICATED: 403,
           grpc.StatusCode.PERMISSION_DENIED: 403, grpc.StatusCode.UNAVAILABLE: 503,
           grpc.StatusCode.DEADLINE_EXCEEDED: 504, grpc.StatusCode.RESOURCE_EXHAUSTED: 507}


@dataclass
class Point:
    t: float
    filled: int
    writes: int
    lookups: int


class MemoryView:
    """What the views share: the client, the renderers, and the fill/writes history that each
    stats fetch (a page, the live refresh, the sampler) adds a point to."""

    def __init__(self, client: MemoryClient, renderers: Renderers):
        self.client, self.renderers = client, renderers
        self.history: dict[str, deque[Point]] = {}
        self._lock = threading.Lock()

    def stats(self, name: str, age_bins: int = 20, top_values: int = 20) -> MemoryStats:
        s = self.client.stats(name, age_bins=age_bins, top_values=top_values)
        with self._lock:
            h = self.history.setdefault(name, deque(maxlen=HISTORY))
            now = time.time()
            if not h or now - h[-1].t >= 0.5:
                h.append(Point(now, s.info.filled, s.info.total_writes, s.lookups))
        return s

    def sample_all(self) -> None:
        for m in self.client.list_memories():
            self.stats(m.name, age_bins=1, top_values=1)


def summary(s: MemoryStats) -> dict:
    """The numbers of one memory, as the tables and the live refresh show them."""
    size = s.info.config["size"]
    return {"name": s.info.name, "index": s.info.config["index"], "key_dim": s.info.config["key_dim"],
            "size": size, "filled": s.info.filled, "fill": s.info.filled / size if size else 0.0,
            "lookups": s.lookups, "fresh_writes": s.fresh_writes, "correct_writes": s.correct_writes,
            "evictions": s.evictions, "unread_evictions": s.unread_evictions}


def _int_arg(name: str, default: int, lo: int, hi: int) -> int:
    raw = request.args.get(name, "")
    if raw == "":
        return default
    try:
        v = int(raw)
    except ValueError:
        abort(400, f"{name} must be a whole number, not {raw!r}")
    if not lo <= v <= hi:
        abort(400, f"{name} must be in [{lo}, {hi}], got {v}")
    return v


def create_app(client: MemoryClient, renderers: Renderers | None = None, admin_token: str = "") -> Flask:
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_UPLOAD
    view = MemoryView(client, renderers or Renderers())
    app.extensions["raremem"] = view

    @app.template_filter("b64")
    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode("ascii")

    def render_sources(name: str, sources, values) -> list:
        return [view.renderers.render(name, int(s), int(v)) for s, v in zip(sources, values)]

    def nearest(name: str, query: np.ndarray, k: int, about: dict):
        r = client.lookup(name, query[None].astype(np.float32), k=k, return_neighbors=True)
        nb, found = r.neighbors, int(r.found[0])
        rows = [{"rank": j + 1, "slot": int(nb.ids[0, j]), "value": int(nb.values[0, j]),
                 "similarity": float(nb.similarities[0, j]), "weight": float(nb.weights[0, j]),
                 "source": int(nb.sources[0, j])} for j in range(found)]
        for row, rendered in zip(rows, render_sources(name, [x["source"] for x in rows], [x["value"] for x in rows])):
            row["rendered"] = rendered
        return render_template("nearest.html", name=name, rows=rows, about=about, answer=int(r.result[0]), k=k)

    def size_of(name: str) -> int:
        return int(view.stats(name, age_bins=1, top_values=1).info.config["size"])

    @app.get("/")
    def index():
        mems = [summary(view.stats(m.name, age_bins=1, top_values=1)) for m in client.list_memories()]
        return render_template("index.html", memories=mems, address=client.address)

    @app.get("/api/memories")
    def api_memories():
        return jsonify([summary(view.stats(m.name, age_bins=1, top_values=1)) for m in client.list_memories()])

    @app.get("/api/memory/<path:name>")
    def api_memory(name):
        s = view.stats(name)
        hist = [vars(p) for p in view.history.get(name, ())]
        return jsonify({**summary(s), "age_bin_edges": s.age_bin_edges.tolist(), "age_counts": s.age_counts.tolist(),
                        "top_values": s.top_values.tolist(), "top_value_counts": s.top_value_counts.tolist(),
                        "distinct_values": s.distinct_values, "history": hist})

    @app.get("/memory/<path:name>/charts")
    def memory_charts(name):
        return render_template("charts.html", **charts_of(name, view.stats(name)))

    def charts_of(name: str, s: MemoryStats) -> dict:
        edges = s.age_bin_edges
        age_labels = [f"{edges[i]:.0f}–{edges[i + 1]:.0f}" for i in range(len(s.age_counts))]
        h = list(view.history.get(name, ()))
        return {
            "age_chart": charts.bars(age_labels, s.age_counts, "ages of filled slots (writes since last written)"),
            "value_chart": charts.bars([str(v) for v in s.top_values], s.top_value_counts,
                                       f"most frequent values ({s.distinct_values:,} distinct)"),
            "time_chart": charts.lines([p.t for p in h], {"filled": [p.filled for p in h],
                                                          "writes": [p.writes for p in h]}, "fill and writes over time"),
        }

    @app.get("/memory/<path:name>")
    def memory(name):
        s = view.stats(name)
        size = int(s.info.config["size"])
        per = _int_arg("per", PER_PAGE, 1, MAX_PER_PAGE)
        pages = max(1, -(-size // per))
        page = _int_arg("page", 0, 0, pages - 1)
        start, stop = page * per, min(size, (page + 1) * per)
        slots = client.read_slots(name, start=start, stop=stop)
        rendered = render_sources(name, slots["sources"], slots["values"])
        rows = [{"slot": int(slots["ids"][i]), "value": int(slots["values"][i]), "age": float(slots["ages"][i]),
                 "source": int(slots["sources"][i]), "rendered": rendered[i]} for i in range(len(slots["ids"]))]
        return render_template("memory.html", s=summary(s), stats=s, rows=rows, page=page, pages=pages, per=per,
                               config=s.info.config, can_embed=view.renderers.can_embed(name),
                               renderer_error=view.renderers.errors.get(name.split("/", 1)[0], ""),
                               snapshot_enabled=bool(admin_token), **charts_of(name, s))

    @app.get("/memory/<path:name>/slot/<int(signed=True):slot>")
    def slot(name, slot):
        size = size_of(name)
        if not 0 <= slot < size:
            abort(404, f"slot {slot} is outside {name}'s {size:,} slots (0 to {size - 1:,})")
        k = _int_arg("k", 10, 1, MAX_K)
        row = client.read_slots(name, ids=np.array([slot]))
        if row["values"][0] < 0:
            abort(404, f"slot {slot} of {name} is empty")
        about = {"kind": "slot", "slot": slot, "value": int(row["values"][0]), "source": int(row["sources"][0]),
                 "rendered": view.renderers.render(name, int(row["sources"][0]), int(row["values"][0]))}
        return nearest(name, row["keys"][0], k, about)

    @app.post("/memory/<path:name>/nearest")
    def nearest_upload(name):
        size_of(name)   # an unknown memory is a 404 before anything is read
        k = _int_arg("k", 10, 1, MAX_K)
        upload = request.files.get("drawing")
        if upload is None or not upload.filename:
            abort(400, "choose a drawing to upload (form field 'drawing')")
        data = upload.read()
        try:
            query = view.renderers.embed(name, data)
        except ValueError as exc:
            abort(400, str(exc))
        about = {"kind": "upload", "filename": upload.filename, "png": data if data[:8] == b"\x89PNG\r\n\x1a\n" else None}
        return nearest(name, query, k, about)

    @app.post("/snapshot")
    def snapshot():
        name = request.form.get("name", "")
        given = request.form.get("token", "")
        if not admin_token:
            abort(403, "snapshots from this page are off: start the page with --admin-token (or RAREMEM_ADMIN_TOKEN)")
        if not hmac.compare_digest(given.encode(), admin_token.encode()):
            abort(403, "wrong admin token: nothing was written")
        paths, nbytes = client.snapshot(name)
        return render_template("message.html", title="snapshot written",
                               message=f"wrote {', '.join(paths) or 'nothing'} ({nbytes:,} bytes)", back=name)

    @app.errorhandler(grpc.RpcError)
    def rpc_error(exc: grpc.RpcError):
        code = exc.code()
        detail = exc.details() or ""
        if code == grpc.StatusCode.UNAVAILABLE:
            detail = f"cannot reach the raremem server at {client.address} ({detail})"
        elif code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
            detail = f"the server refused this page's token: {detail} (start the page with the server's --token)"
        status = HTTP_OF.get(code, 502)
        return render_template("message.html", title=f"{status}: {code.name}", message=detail, error=True), status

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        return (render_template("message.html", title=f"{exc.code}: {exc.name}", message=exc.description, error=True),
                exc.code)

    return app


class PageServer:
    """The page served by a threaded WSGI server on ``port`` (the bound one, also for port 0),
    and a sampler thread that records every memory's fill and writes over time."""

    def __init__(self, app: Flask, host: str = "127.0.0.1", port: int = 8080, sample_every: float = 5.0):
        from werkzeug.serving import make_server  # noqa: PLC0415

        self._http = make_server(host, port, app, threaded=True)
        self.port = self._http.port
        self._view: MemoryView = app.extensions["raremem"]
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._sample, args=(sample_every,), name="ui-sampler", daemon=True),
                         threading.Thread(target=self._http.serve_forever, name="ui-http", daemon=True)]
        for t in self._threads:
            t.start()

    def _sample(self, every: float) -> None:
        while not self._stop.wait(every):
            try:
                self._view.sample_all()
            except grpc.RpcError:
                pass   # the page shows the server's state when asked; the sampler just waits

    def close(self) -> None:
        self._stop.set()
        self._http.shutdown()
        for t in self._threads:
            t.join(timeout=10)
