"""Snapshot files: atomic writes with a checksum, safe paths under the data directory, and the
write counter that tells, after a crash, how many writes the last snapshot missed."""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from raremem.proto.types import snapshot_file
from raremem.server.errors import InvalidArgument, NotFound, PermissionDenied

SUFFIX = snapshot_file("")   # the extension memory.proto names for a memory's own file
COUNTS_FILE = ".write_counts.json"
CHECKSUM = "sha256"   # the array holding the checksum of every other array in the file
_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]*(/[A-Za-z0-9_-][A-Za-z0-9._-]*)*$")


def check_name(name: str) -> str:
    """Memory names are '/'-separated parts of [A-Za-z0-9._-] that do not start with '.'."""
    if not isinstance(name, str) or not name or len(name) > 200 or not _NAME.match(name):
        raise InvalidArgument(
            f"invalid memory name {name!r}: use '/'-separated parts of letters, digits, '.', '_', "
            "'-' (not starting with '.'), at most 200 characters")
    return name


def resolve(data_dir: Path, relative: str) -> Path:
    """``data_dir / relative``, refusing absolute paths, '..' and symlinks that lead outside."""
    if not relative or os.path.isabs(relative) or "\\" in relative or "\x00" in relative:
        raise PermissionDenied(f"snapshot path {relative!r} must be relative to the data directory")
    if any(part == ".." for part in Path(relative).parts):
        raise PermissionDenied(f"snapshot path {relative!r} leaves the data directory")
    root = data_dir.resolve()
    path = (root / relative).resolve()
    if path != root and root not in path.parents:
        raise PermissionDenied(f"snapshot path {relative!r} leads outside the data directory")
    if path == root or path.is_dir():
        raise InvalidArgument(f"snapshot path {relative!r} is a directory")
    return path


def checksum(arrays: dict[str, np.ndarray]) -> np.ndarray:
    """sha256 over every array's name, dtype, shape and bytes, in name order, as uint8 (32,)."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        if name == CHECKSUM:
            continue
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}:{a.dtype.str}:{a.shape};".encode())
        h.update(a.tobytes())
    return np.frombuffer(h.digest(), np.uint8)


def _write(f, arrays: dict[str, np.ndarray]) -> None:
    """The bytes of a snapshot (its own function: the full-disk tests make it fail midway)."""
    np.savez(f, **arrays)


def save(path: Path, arrays: dict[str, np.ndarray]) -> int:
    """Write an uncompressed .npz with its checksum atomically (temporary file, fsync, rename);
    return its size."""
    arrays = {**arrays, CHECKSUM: checksum(arrays)}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            _write(f, arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path.stat().st_size


def load(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise NotFound(f"no snapshot at {path.name!r}")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise InvalidArgument(f"snapshot {path.name!r} is not a readable memory snapshot: {exc}") from exc
    stored = arrays.pop(CHECKSUM, None)
    if stored is None:
        raise InvalidArgument(f"snapshot {path.name!r} carries no checksum: refusing to restore it")
    if not np.array_equal(stored, checksum(arrays)):
        raise InvalidArgument(f"snapshot {path.name!r} fails its checksum (damaged or altered): refusing to restore it")
    return arrays


def find_snapshots(data_dir: Path) -> dict[str, Path]:
    """Memory name -> default snapshot file, for every snapshot under ``data_dir``."""
    found = {}
    for path in sorted(data_dir.rglob("*" + SUFFIX)):
        name = path.relative_to(data_dir).as_posix()[: -len(SUFFIX)]
        if _NAME.match(name):
            found[name] = path
    return found


def read_counts(data_dir: Path) -> dict[str, int]:
    try:
        return {k: int(v) for k, v in json.loads((data_dir / COUNTS_FILE).read_text()).items()}
    except (OSError, ValueError):
        return {}


def write_counts(data_dir: Path, counts: dict[str, int]) -> None:
    """Total writes per memory, rewritten atomically (no fsync: it is a lower bound anyway)."""
    tmp = data_dir / (COUNTS_FILE + ".tmp")
    tmp.write_text(json.dumps(counts))
    os.replace(tmp, data_dir / COUNTS_FILE)
