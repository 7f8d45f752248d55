"""Named memories: creation, batching, statistics and persistence (design.md §2).

Raises the domain errors of ``server.errors``; knows nothing of gRPC. Each memory has a lock
(serialising every access to its store) and a batcher (merging concurrent lookups).
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from raremem.server import metrics, persistence, wal
from raremem.server.batching import Batcher
from raremem.server.config import MemoryConfig
from raremem.server.errors import (AlreadyExists, FailedPrecondition, InvalidArgument, MemoryServiceError, NotFound,
                                   PermissionDenied, ResourceExhausted)
from raremem.proto.types import Counters, LookupResult, MemoryInfo, MemoryStats, snapshot_file
from raremem.server.store import LookupSpec, MemoryStore

log = logging.getLogger("raremem.service")
MAX_BATCH = 16384     # queries per request and per merged search
WAL_INTERVAL = 0.2    # seconds between write-ahead log fsyncs (policy "interval")
ANSWERS_KEPT = 1024   # recent update answers kept per memory for retries (a retry comes within seconds)


def stored_owner(state: dict[str, np.ndarray]) -> str:
    """The owner a snapshot records ("" for snapshots from before owners: admin-reset only
    where tokens are in use)."""
    return bytes(state["owner"]).decode() if "owner" in state else ""


@dataclass
class Managed:
    """A store with its lock, batcher and persistence bookkeeping."""

    name: str
    store: MemoryStore
    lock: threading.Lock = field(default_factory=threading.Lock)
    batcher: Batcher | None = None
    writes_at_snapshot: int = 0
    last_snapshot: float = 0.0
    writes_lost_at_restore: int = 0
    owner: str = ""           # auth.owner_of the creator's token; it may Reset the memory
    wal: wal.WriteAheadLog | None = None
    # the answers to recent updates by request id: a retried update is answered, not applied
    answered: OrderedDict = field(default_factory=OrderedDict)

    def remember(self, request_id: str, result: LookupResult) -> None:
        self.answered[request_id] = result
        while len(self.answered) > ANSWERS_KEPT:
            self.answered.popitem(last=False)

    def info(self) -> MemoryInfo:
        s = self.store
        return MemoryInfo(self.name, s.config.to_dict(), s.filled, s.counters.total_writes)


class MemoryService:
    def __init__(self, data_dir: Path | None = None, max_batch: int = MAX_BATCH,
                 snapshot_interval: float = 0.0, restore: bool = True, wal_fsync: str = "interval",
                 wal_interval: float = WAL_INTERVAL, max_bytes: int = 0, device: str = ""):
        """``wal_fsync``: the write-ahead log's policy (``always``, ``interval``, ``none``; ``off``
        keeps no log: a crash then loses the writes since the last snapshot). ``device``: where
        exact memories created without one live (``cuda[:N]``; "" = the CPU)."""
        if wal_fsync not in (*wal.POLICIES, "off"):
            raise InvalidArgument(f"wal_fsync is one of {(*wal.POLICIES, 'off')}, not {wal_fsync!r}")
        self.data_dir = Path(data_dir) if data_dir else None
        self.max_batch = max_batch
        self.device = device
        # the largest memory one create may ask for: half the machine's RAM unless told
        self.max_bytes = max_bytes or os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
        self.wal_fsync = wal_fsync if self.data_dir else "off"
        self._memories: dict[str, Managed] = {}
        self._lock = threading.Lock()  # guards the dict, not the memories
        self._admin_lock = threading.Lock()  # create, restore and delete run one at a time
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        if self.data_dir:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            if restore:
                self._restore_all()
            self._start(self._count_writes_loop, 1.0)
            if snapshot_interval > 0:
                self._start(self._snapshot_loop, snapshot_interval)
            if self.wal_fsync == "interval":
                self._start(self._sync_loop, wal_interval)

    # ------------------------------------------------------------------ lifecycle
    def _start(self, loop, period: float) -> None:
        thread = threading.Thread(target=loop, args=(period,), daemon=True, name=loop.__name__)
        thread.start()
        self._threads.append(thread)

    def _count_writes_loop(self, period: float) -> None:
        last = None
        while not self._stop.wait(period):
            counts = {m.name: m.store.counters.total_writes for m in self._all()}
            if counts != last:
                persistence.write_counts(self.data_dir, counts)
                last = counts

    def _sync_loop(self, period: float) -> None:
        while not self._stop.wait(period):
            for m in self._all():
                if m.wal:
                    m.wal.sync()

    def _snapshot_loop(self, period: float) -> None:
        while not self._stop.wait(period):
            for m in self._all():
                if m.store.counters.total_writes != m.writes_at_snapshot:
                    try:
                        self._snapshot_one(m, None)
                    except MemoryServiceError as exc:   # one line; the next tick retries
                        log.error("timed %s", exc)
                    except Exception:  # noqa: BLE001 - keep serving; the next tick retries
                        log.exception("timed snapshot of %s failed", m.name)

    def close(self, snapshot: bool = True) -> list[str]:
        """Stop background work; snapshot every memory with unsaved writes (if persistent)."""
        self._stop.set()
        for thread in self._threads:
            thread.join()
        saved = []
        if snapshot and self.data_dir:
            for m in self._all():
                if m.store.counters.total_writes != m.writes_at_snapshot or not m.last_snapshot:
                    try:
                        saved.append(self._snapshot_one(m, None)[0])
                    except MemoryServiceError as exc:   # the log still holds it: say so, go on
                        log.error("at shutdown: %s", exc)
            persistence.write_counts(self.data_dir, {m.name: m.store.counters.total_writes for m in self._all()})
        for m in self._all():
            m.batcher.close()
            if m.wal:
                m.wal.close()
        return saved

    def _restore_all(self) -> None:
        counts = persistence.read_counts(self.data_dir)
        for name, path in persistence.find_snapshots(self.data_dir).items():
            try:
                state = persistence.load(path)
                store = MemoryStore.from_state(state)
                in_snapshot = store.counters.total_writes
                m = self._install(name, store, *self._replay(name, store, int(state.get("wal_seq", [0])[0])),
                                  owner=stored_owner(state))
            except Exception:  # noqa: BLE001 - one bad file must not keep the others down
                log.exception("could not restore %s from %s", name, path)
                continue
            m.writes_at_snapshot = in_snapshot          # what the log replayed is not in a snapshot yet
            m.last_snapshot = path.stat().st_mtime
            m.writes_lost_at_restore = max(0, counts.get(name, 0) - m.store.counters.total_writes)
            level = logging.WARNING if m.writes_lost_at_restore else logging.INFO
            log.log(level, "restored %s: %d filled slots; %d writes since its snapshot were lost",
                    name, m.store.filled, m.writes_lost_at_restore)

    # ------------------------------------------------------------------ registry
    def _all(self) -> list[Managed]:
        with self._lock:
            return list(self._memories.values())

    def _get(self, name: str) -> Managed:
        with self._lock:
            m = self._memories.get(name)
        if m is None:
            raise NotFound(f"no memory named {name!r}")
        return m

    def _wal_path(self, name: str) -> Path:
        return self.data_dir / (name + ".wal")

    def _replay(self, name: str, store: MemoryStore, seq: int) -> tuple[int, OrderedDict]:
        """Apply to ``store`` (restored from a snapshot holding records up to ``seq``) the logged
        records after it. Returns the last sequence number and the answers to replayed updates."""
        answered: OrderedDict = OrderedDict()
        if self.wal_fsync == "off":
            return seq, answered
        records, dropped, last = wal.replay_records(self._wal_path(name), seq)
        for header, arrays in records:
            if header["kind"] == "reset":
                store.reset()
                continue
            specs = wal.batch_specs(header, arrays)
            for spec, result in zip(specs, store.lookup_many(specs)):
                if spec.request_id:
                    answered[spec.request_id] = result
        if records or dropped:
            level = logging.WARNING if dropped else logging.INFO
            log.log(level, "%s: replayed %d logged records after its snapshot; a torn tail of %d bytes was cut",
                    name, len(records), dropped)
        while len(answered) > ANSWERS_KEPT:
            answered.popitem(last=False)
        return last, answered

    def _install(self, name: str, store: MemoryStore, wal_seq: int = 0, answered: OrderedDict | None = None,
                 owner: str = "") -> Managed:
        m = Managed(name, store, answered=answered or OrderedDict(), owner=owner)

        def run(specs):
            results: list[LookupResult | None] = [None] * len(specs)
            todo, first = [], {}
            with m.lock:
                for i, spec in enumerate(specs):   # a repeated update id gets its first answer
                    rid = spec.request_id if spec.update else ""
                    if rid and rid in m.answered:
                        results[i] = m.answered[rid]
                    elif rid and rid in first:
                        continue
                    else:
                        if rid:
                            first[rid] = i
                        todo.append(i)
                before = replace(m.store.counters)
                done = m.store.lookup_many([specs[i] for i in todo]) if todo else []
                after = replace(m.store.counters)
                for i, result in zip(todo, done):
                    results[i] = result
                updates = [specs[i] for i in todo if specs[i].update]
                if updates and m.wal:      # logged before any of them is answered
                    m.wal.append(*wal.batch_record(updates))
                for i in todo:
                    if specs[i].update and specs[i].request_id:
                        m.remember(specs[i].request_id, results[i])
                for i, spec in enumerate(specs):
                    if results[i] is None:
                        results[i] = results[first[spec.request_id]]
            self._record(m, [specs[i] for i in todo], before, after)
            return results

        m.batcher = Batcher(name, run, self.max_batch, store.config.size)
        with m.lock:   # requests to the new memory wait until its log is open
            with self._lock:
                old = self._memories.get(name)
                self._memories[name] = m
            if old:    # the old memory finishes what it queued, and its log, first
                old.batcher.close()
                if old.wal:
                    old.wal.close()
                    wal_seq = max(wal_seq, old.wal.seq)
            if self.wal_fsync != "off":
                m.wal = wal.WriteAheadLog(self._wal_path(name), self.wal_fsync, wal_seq)
        return m

    @staticmethod
    def _record(m: Managed, specs: list[LookupSpec], before: Counters, after: Counters) -> None:
        metrics.BATCH_ROWS.labels(m.name).observe(sum(len(s.queries) for s in specs))
        metrics.BATCH_REQUESTS.labels(m.name).observe(len(specs))
        metrics.FILL.labels(m.name).set(m.store.filled)
        metrics.WRITES.labels(m.name, "correct").inc(after.correct_writes - before.correct_writes)
        metrics.WRITES.labels(m.name, "fresh").inc(after.fresh_writes - before.fresh_writes)
        metrics.EVICTIONS.labels(m.name).inc(after.evictions - before.evictions)

    def create(self, name: str, config: MemoryConfig, exist_ok: bool = False, owner: str = "") -> MemoryInfo:
        """A new memory owned by ``owner``; with ``exist_ok`` an existing one of the same config
        is answered as it is (its owner stays the creator)."""
        persistence.check_name(name)
        if self.device and not config.device and config.index == "exact":
            config = replace(config, device=self.device)
        config = config.resolved()
        need = MemoryStore.bytes_needed(config)
        if need > self.max_bytes:
            raise ResourceExhausted(f"a memory of {config.size:,} slots x {config.key_dim} dimensions needs "
                                    f"{need / 2**30:.1f} GiB; this server takes at most {self.max_bytes / 2**30:.1f} GiB")
        with self._admin_lock:
            with self._lock:
                existing = self._memories.get(name)
            if existing:
                if exist_ok and existing.store.config == config:
                    return existing.info()
                raise AlreadyExists(f"memory {name!r} exists" + (" with another config" if exist_ok else ""))
            m = self._install(name, MemoryStore(config), owner=owner)
            if m.wal:   # a log always follows a snapshot, so a replay knows the memory's config
                self._snapshot_one(m, None)
        log.info("created %s: %s", name, config)
        return m.info()

    def delete(self, name: str) -> bool:
        with self._admin_lock:
            m = self._get(name)
            with self._lock:
                self._memories.pop(name, None)
        m.batcher.close()
        metrics.forget_memory(name)
        if self.data_dir:
            (self.data_dir / snapshot_file(name)).unlink(missing_ok=True)
        if m.wal:
            m.wal.remove()
        log.info("deleted %s", name)
        return True

    def list(self) -> list[MemoryInfo]:
        return sorted((m.info() for m in self._all()), key=lambda i: i.name)

    # ------------------------------------------------------------------ data path
    def _check_rows(self, b: int) -> None:
        if b > self.max_batch:
            raise ResourceExhausted(f"batch of {b} queries exceeds the server limit of {self.max_batch}")

    def lookup(self, name: str, spec: LookupSpec) -> LookupResult:
        m = self._get(name)
        # validate (and normalise) here, so bad input never fails a merged batch
        spec = m.store.checked(spec)
        self._check_rows(len(spec.queries))
        return m.batcher.submit(spec)   # it merges requests only as far as their updates fit

    def write(self, name: str, keys: np.ndarray, labels: np.ndarray, sources: np.ndarray | None = None,
              use_recent: bool = False, request_id: str = "") -> LookupResult:
        if labels is None:
            raise InvalidArgument("write needs labels")
        return self.lookup(name, LookupSpec(keys, labels, update=True, use_recent=use_recent,
                                            sources=sources, request_id=request_id))

    def read_slots(self, name: str, ids: np.ndarray | None = None, start: int = 0,
                   stop: int = 0) -> dict[str, np.ndarray]:
        m = self._get(name)
        if ids is None:
            size = m.store.config.size
            if not 0 <= start <= stop <= size:
                raise InvalidArgument(f"range [{start}, {stop}) is not within [0, {size}]")
            ids = np.arange(start, stop, dtype=np.int64)
        self._check_rows(len(ids))
        with m.lock:
            return {k: np.array(v) for k, v in m.store.read(ids).items()}

    def reset(self, name: str, owner: str | None = None) -> MemoryInfo:
        """Empty the memory. ``owner``: the caller's (auth.owner_of), which must be the memory's;
        None for an admin, who may reset any."""
        m = self._get(name)
        if owner is not None and owner != m.owner:
            raise PermissionDenied(f"memory {name!r} was created with another token: resetting it needs "
                                   "that token or the admin token")
        with m.lock:
            m.store.reset()
            if m.wal:
                m.wal.append({"kind": "reset"}, [])
        metrics.FILL.labels(name).set(0)
        return m.info()

    def stats(self, name: str, age_bins: int = 10, top_values: int = 10,
              with_hash: bool = False) -> MemoryStats:
        if not 0 <= age_bins <= 1000 or not 0 <= top_values <= 10000:
            raise InvalidArgument("age_bins must be in 0..1000 and top_values in 0..10000")
        m = self._get(name)
        with m.lock:
            store = m.store.statistics(age_bins, top_values, with_hash)
            info = m.info()
        return MemoryStats(info=info, **store, writes_since_snapshot=info.total_writes - m.writes_at_snapshot,
                           last_snapshot_unix=m.last_snapshot, writes_lost_at_restore=m.writes_lost_at_restore,
                           wal_unsynced=m.wal.unsynced if m.wal else 0)

    # ------------------------------------------------------------------ persistence
    def _need_dir(self) -> Path:
        if not self.data_dir:
            raise FailedPrecondition("the server runs without --data-dir: nothing can be saved")
        return self.data_dir

    def _snapshot_one(self, m: Managed, path: str | None) -> tuple[str, int]:
        data_dir = self._need_dir()
        rel = path or snapshot_file(m.name)
        target = persistence.resolve(data_dir, rel)
        own = target == data_dir.resolve() / snapshot_file(m.name)
        with m.lock:  # copy under the lock, write outside it
            state = {k: np.array(v) for k, v in m.store.state().items()}
            state["owner"] = np.frombuffer(m.owner.encode(), np.uint8)
            writes = m.store.counters.total_writes
            if m.wal:
                state["wal_seq"] = np.array([m.wal.seq], np.int64)
                if own:   # the log starts afresh: what it held is in this snapshot
                    m.wal.rotate()
        try:
            nbytes = persistence.save(target, state)
        except OSError as exc:
            # Nothing acknowledged is lost: the previous snapshot is untouched and the log keeps
            # every update since it (rotate appends to a leftover .old), so a restart replays them.
            full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
            kind = ResourceExhausted if full else FailedPrecondition
            raise kind(f"snapshot of {m.name} to {rel} failed: {exc.strerror or exc}; the previous snapshot "
                       f"and the write-ahead log still hold every acknowledged update") from exc
        if own:
            if m.wal:
                m.wal.drop_old()
            m.writes_at_snapshot, m.last_snapshot = writes, time.time()
        log.info("snapshot of %s: %s (%d bytes)", m.name, rel, nbytes)
        return rel, nbytes

    def snapshot(self, name: str = "", path: str = "") -> tuple[list[str], int]:
        self._need_dir()
        if not name:
            if path:
                raise InvalidArgument("a path needs a memory name")
            done = [self._snapshot_one(m, None) for m in self._all()]
        else:
            done = [self._snapshot_one(self._get(name), path or None)]
        return [p for p, _ in done], sum(n for _, n in done)

    def restore(self, name: str, path: str = "") -> MemoryInfo:
        persistence.check_name(name)
        data_dir = self._need_dir()
        target = persistence.resolve(data_dir, path or snapshot_file(name))
        state = persistence.load(target)
        store = MemoryStore.from_state(state)
        with self._admin_lock:
            m = self._install(name, store, owner=stored_owner(state))
            if m.wal:   # durable before it is acknowledged: the log restarts from this state
                self._snapshot_one(m, None)
        m.writes_at_snapshot, m.last_snapshot = store.counters.total_writes, time.time()
        log.info("restored %s from %s", name, path or "its default snapshot")
        return m.info()
