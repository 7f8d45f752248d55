"""A memory's write-ahead log: every acknowledged change, appended before the response.

One file per memory beside its snapshot (``omniglot/replica-3.wal``). A record is one merged
batch of lookups with updates (the queries as the store saw them, already normalised, so a
replay is bit-identical, eviction noise included: the store's generator is in the snapshot) or
a reset. Frame: ``<u32 length><u32 crc32>`` then the payload: ``<u32 header length>``, a JSON
header (``seq``, kind, the requests' flags and request ids, array shapes) and the raw arrays.
Records carry increasing sequence numbers; a snapshot stores the last one it contains, and a
replay skips what the snapshot already holds.

A snapshot rotates the log: under the memory's lock the live file becomes ``.wal.old`` and a
new one starts; once the snapshot is on disk the old file goes. A crash in between leaves
both, and the replay reads both. A torn or corrupt tail (a crash mid-append) is cut off at the
last whole record, and how many bytes were dropped is reported.

fsync: ``always`` (before each response: nothing acknowledged is lost), ``interval`` (a
background flush every ``interval`` seconds: at most that much is lost), ``none`` (the OS's
page cache decides).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import struct
import threading
import zlib
from pathlib import Path

import numpy as np

from raremem.server.store import LookupSpec

log = logging.getLogger("raremem.wal")

FRAME = struct.Struct("<II")
POLICIES = ("always", "interval", "none")


def encode(seq: int, header: dict, arrays: list[np.ndarray]) -> bytes:
    arrays = [np.ascontiguousarray(a) for a in arrays]
    head = json.dumps({"seq": seq, **header, "arrays": [[a.dtype.str, list(a.shape)] for a in arrays]}).encode()
    payload = struct.pack("<I", len(head)) + head + b"".join(a.tobytes() for a in arrays)
    return FRAME.pack(len(payload), zlib.crc32(payload)) + payload


def decode(payload: bytes) -> tuple[dict, list[np.ndarray]]:
    (n,) = struct.unpack_from("<I", payload)
    header = json.loads(payload[4:4 + n])
    arrays, offset = [], 4 + n
    for dtype, shape in header.pop("arrays"):
        a = np.frombuffer(payload, np.dtype(dtype), int(np.prod(shape)), offset).reshape(shape)
        arrays.append(a)
        offset += a.nbytes
    return header, arrays


def read(path: Path, cut: bool = True) -> tuple[list[tuple[dict, list[np.ndarray]]], int]:
    """The whole records of a log file, and how many bytes past the last one were dropped
    (a torn or corrupt tail); with ``cut`` the file is truncated there."""
    if not path.is_file():
        return [], 0
    data = path.read_bytes()
    records, offset = [], 0
    while offset + FRAME.size <= len(data):
        length, crc = FRAME.unpack_from(data, offset)
        payload = data[offset + FRAME.size: offset + FRAME.size + length]
        if len(payload) != length or zlib.crc32(payload) != crc:
            break
        try:
            records.append(decode(payload))
        except (ValueError, struct.error, KeyError):
            break
        offset += FRAME.size + length
    dropped = len(data) - offset
    if dropped and cut:
        with open(path, "r+b") as f:
            f.truncate(offset)
            f.flush()
            os.fsync(f.fileno())
    return records, dropped


class WriteAheadLog:
    def __init__(self, path: Path, fsync: str = "interval", seq: int = 0):
        if fsync not in POLICIES:
            raise ValueError(f"fsync policy is one of {POLICIES}, not {fsync!r}")
        self.path, self.fsync, self.seq = path, fsync, seq
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "ab")
        self._dirty = False
        self.synced_seq = seq            # the last record known to be on disk (fsynced)
        self._lock = threading.Lock()   # appends come from one memory's batcher; flushes from a timer

    @property
    def unsynced(self) -> int:
        """Records acknowledged but not yet fsynced: what a power cut now would lose (with
        ``interval``, at most ``interval`` seconds of them; a killed process loses none)."""
        return self.seq - self.synced_seq

    @property
    def old(self) -> Path:
        return self.path.with_name(self.path.name + ".old")

    def append(self, header: dict, arrays: list[np.ndarray]) -> int:
        """Append one record (durably, with ``always``); returns its sequence number."""
        with self._lock:
            self.seq += 1
            self._file.write(encode(self.seq, header, arrays))
            self._file.flush()
            if self.fsync == "always":
                os.fsync(self._file.fileno())
                self.synced_seq = self.seq
            else:
                self._dirty = True
            return self.seq

    def sync(self) -> None:
        """Flush to disk what ``interval`` has buffered since the last call."""
        with self._lock:
            if self._dirty and not self._file.closed:
                os.fsync(self._file.fileno())
                self._dirty = False
                self.synced_seq = self.seq

    def rotate(self) -> None:
        """Start a new file; the current one becomes ``.wal.old`` until ``drop_old``. If an
        ``.old`` is still there (the snapshot after the last rotation failed, e.g. on a full
        disk), the current records are appended to it instead: it still holds every record
        since the last snapshot on disk, and replacing it would lose them."""
        with self._lock:
            self._file.flush()
            os.fsync(self._file.fileno())
            self.synced_seq = self.seq
            self._file.close()
            if self.old.exists():
                with open(self.path, "rb") as src, open(self.old, "ab") as dst:
                    shutil.copyfileobj(src, dst)
                    dst.flush()
                    os.fsync(dst.fileno())
                self.path.unlink()
            else:
                os.replace(self.path, self.old)
            self._file = open(self.path, "ab")

    def drop_old(self) -> None:
        self.old.unlink(missing_ok=True)

    def close(self) -> None:
        with self._lock:
            if not self._file.closed:
                self._file.flush()
                os.fsync(self._file.fileno())
                self._file.close()

    def remove(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)
        self.drop_old()


def replay_records(path: Path, after: int) -> tuple[list[tuple[dict, list[np.ndarray]]], int, int]:
    """Records of ``path.old`` then ``path`` with ``seq > after`` (what a snapshot at ``after``
    lacks), the bytes dropped from torn tails, and the last sequence number seen."""
    records, dropped, last = [], 0, after
    for part in (path.with_name(path.name + ".old"), path):
        got, lost = read(part)
        dropped += lost
        for header, arrays in got:
            last = max(last, header["seq"])
            if header["seq"] > after:
                records.append((header, arrays))
    return records, dropped, last


# ---------------------------------------------------------------------- what a record holds
def batch_record(specs) -> tuple[dict, list[np.ndarray]]:
    """The updating requests of one merged batch (``LookupSpec``s, queries already normalised)."""
    header = {"kind": "batch", "requests": []}
    arrays = []
    for s in specs:
        header["requests"].append({"use_recent": s.use_recent, "k": s.k, "nprobe": s.nprobe,
                                   "leave_one_out": s.leave_one_out, "sources": s.sources is not None,
                                   "request_id": s.request_id})
        arrays += [s.queries, s.labels] + ([s.sources] if s.sources is not None else [])
    return header, arrays


def batch_specs(header: dict, arrays: list[np.ndarray]) -> list[LookupSpec]:
    specs, it = [], iter(arrays)
    for r in header["requests"]:
        queries, labels = next(it), next(it)
        sources = next(it) if r["sources"] else None
        specs.append(LookupSpec(np.array(queries), np.array(labels), update=True, use_recent=r["use_recent"],
                                sources=None if sources is None else np.array(sources), k=r["k"],
                                nprobe=r["nprobe"], leave_one_out=r["leave_one_out"], request_id=r["request_id"]))
    return specs
