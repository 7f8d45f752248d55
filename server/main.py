"""``raremem-server``: serve named memories over gRPC until SIGTERM or SIGINT.

On a signal it reports NOT_SERVING, lets in-flight calls finish (``--grace``), snapshots
every memory with unsaved writes into ``--data-dir`` and exits 0.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import tempfile
import threading
from pathlib import Path

from raremem.proto.types import MAX_MESSAGE_BYTES
from raremem.server import metrics
from raremem.server.indexes import device_unavailable, set_threads
from raremem.server.service import MAX_BATCH, WAL_INTERVAL, MemoryService
from raremem.server.servicer import create_server

log = logging.getLogger("raremem.server")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": self.formatTime(record), "level": record.levelname, "logger": record.name,
                 "message": record.getMessage()}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def parse_args(argv=None) -> argparse.Namespace:
    env = os.environ.get
    p = argparse.ArgumentParser(prog="raremem-server", description=__doc__.splitlines()[0])
    p.add_argument("--host", default=env("RAREMEM_HOST", "127.0.0.1"),
                   help="address to bind [127.0.0.1; 0.0.0.0 for every interface]")
    p.add_argument("--port", type=int, default=int(env("RAREMEM_PORT", "50051")), help="gRPC port [50051]")
    p.add_argument("--unix", default=env("RAREMEM_UNIX_SOCKET"),
                   help="also listen on this Unix-domain socket (clients: unix://PATH) [none]")
    p.add_argument("--data-dir", type=Path, default=env("RAREMEM_DATA_DIR"),
                   help="snapshots live here and are restored on start [none: nothing persists]")
    p.add_argument("--wal-fsync", choices=("always", "interval", "none", "off"),
                   default=env("RAREMEM_WAL_FSYNC", "interval"),
                   help="write-ahead log: fsync before each answer (always), every --wal-interval seconds "
                        "(interval), never (none), or no log (off) [interval]")
    p.add_argument("--wal-interval", type=float, default=WAL_INTERVAL,
                   help=f"seconds between log fsyncs [{WAL_INTERVAL}]")
    p.add_argument("--snapshot-interval", type=float, default=float(env("RAREMEM_SNAPSHOT_INTERVAL", "300")),
                   help="seconds between timed snapshots of changed memories; 0 = off [300]")
    p.add_argument("--metrics-port", type=int, default=int(env("RAREMEM_METRICS_PORT", "9464")),
                   help="Prometheus /metrics port; -1 = off [9464]")
    p.add_argument("--token", default=env("RAREMEM_TOKEN"),
                   help="user bearer tokens, comma-separated: ordinary rpcs, and Reset of the memories a "
                        "token created [env RAREMEM_TOKEN]")
    p.add_argument("--admin-token", default=env("RAREMEM_ADMIN_TOKEN"),
                   help="bearer token for everything: Restore, DeleteMemory, Reset of any memory "
                        "[env RAREMEM_ADMIN_TOKEN]")
    p.add_argument("--tls-cert", type=Path, help="PEM certificate chain (with --tls-key: serve TLS)")
    p.add_argument("--tls-key", type=Path, help="PEM private key")
    p.add_argument("--threads", type=int, default=int(env("RAREMEM_THREADS", "0")),
                   help="OpenMP threads for FAISS searches; 0 = one per core. Give 1 when trainers share "
                        "the cores: spinning OpenMP teams on an oversubscribed machine cost more than they win [0]")
    p.add_argument("--max-batch", type=int, default=MAX_BATCH,
                   help=f"queries per request and per merged search [{MAX_BATCH}]")
    p.add_argument("--device", default=env("RAREMEM_DEVICE", ""),
                   help="where exact memories created without a device keep their keys and search: cuda or "
                        "cuda:N (FAISS's GPU search, or torch's) [the CPU, FAISS]")
    p.add_argument("--max-memory-gb", type=float, default=0.0,
                   help="the largest memory a create may ask for [half the machine's RAM]")
    p.add_argument("--max-message-mb", type=int, default=MAX_MESSAGE_BYTES >> 20, help="gRPC message limit")
    p.add_argument("--grace", type=float, default=5.0, help="seconds in-flight calls get at shutdown")
    p.add_argument("--log-format", choices=("text", "json"), default=env("RAREMEM_LOG_FORMAT", "text"))
    p.add_argument("--log-level", default=env("RAREMEM_LOG_LEVEL", "INFO"))
    return p.parse_args(argv)


def unwritable(data_dir: Path) -> str:
    """Why snapshots could not be written in ``data_dir`` ("" if they can): checked at start,
    so a bad directory is one clear line, not a failed snapshot at shutdown."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=data_dir, prefix=".write-check-"):
            pass
    except OSError as exc:
        return exc.strerror or str(exc)
    return ""


def main(argv=None) -> int:
    args = parse_args(argv)
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if args.log_format == "json"
                         else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=args.log_level.upper(), handlers=[handler])
    if bool(args.tls_cert) != bool(args.tls_key):
        log.error("--tls-cert and --tls-key go together")
        return 2
    tls = (args.tls_key.read_bytes(), args.tls_cert.read_bytes()) if args.tls_cert else None

    if args.threads < 0:
        log.error("--threads is 0 (one per core) or more")
        return 2
    set_threads(args.threads)
    if args.data_dir and (problem := unwritable(args.data_dir)):
        log.error("data dir %s is not usable: %s", args.data_dir, problem)
        return 2
    if problem := device_unavailable(args.device):
        log.error("--device: %s", problem)
        return 2
    service = MemoryService(args.data_dir, max_batch=args.max_batch, device=args.device,
                            snapshot_interval=args.snapshot_interval, wal_fsync=args.wal_fsync,
                            wal_interval=args.wal_interval, max_bytes=int(args.max_memory_gb * 2 ** 30))
    server, port, health_servicer = create_server(
        service, f"{args.host}:{args.port}", token=args.token, admin_token=args.admin_token,
        max_message_bytes=args.max_message_mb << 20, tls=tls, unix=args.unix)
    if args.metrics_port >= 0:
        try:
            mport = metrics.serve_metrics(args.metrics_port, args.host)
        except OSError as exc:
            log.error("metrics port %d: %s (pick another with --metrics-port, or -1 for none)",
                      args.metrics_port, exc.strerror or exc)
            service.close(snapshot=False)
            return 2
        log.info("metrics on http://%s:%d/metrics", args.host, mport)
    # before the first request can come (and before the readiness line a supervisor waits
    # for): a SIGTERM right after it must still snapshot, not kill the process
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: stop.set())
    server.start()
    log.info("serving on %s:%d (%d memories restored, data dir %s)", args.host, port,
             len(service.list()), args.data_dir or "none")
    if args.unix:
        log.info("serving on unix://%s too", args.unix)
    print(f"raremem-server listening on {args.host}:{port}", flush=True)
    # Python runs signal handlers in the main thread only, and a SIGTERM the kernel hands to
    # one of the gRPC or OpenMP threads does not wake a main thread blocked without a timeout
    # (seen: a server still waiting 30 minutes after its SIGTERM); waking every half second
    # lets the handler run.
    while not stop.wait(0.5):
        pass
    log.info("shutting down: NOT_SERVING, %.1fs grace", args.grace)
    health_servicer.enter_graceful_shutdown()
    server.stop(args.grace).wait()
    saved = service.close(snapshot=True)
    log.info("stopped; snapshots written: %s", ", ".join(saved) or "none")
    return 0


if __name__ == "__main__":
    sys.exit(main())
