"""The records the service speaks in, defined once for the server, the client and the models.

Plain dataclasses over numpy, no gRPC: the in-process store answers with the same
``LookupResult`` that ``MemoryClient`` decodes from a ``LookupResponse``, so a model never
knows which backend it has. Field meanings, units and sentinels are those of memory.proto.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

INDEX_KINDS = ("exact", "ivf", "lsh")
DEVICE_DTYPES = ("float32", "float16", "bfloat16")   # a device index's copy of the keys
MAX_MESSAGE_BYTES = 256 * 1024 * 1024   # gRPC send/receive limit on both sides (a translation
                                        # batch is thousands of queries; b=2048, k=256 ids = 4 MB)
EMPTY = -1  # value of an empty slot; also "no slot" in id arrays
# GetStats when a request leaves age_bins / top_values at 0: histogram bins, most common values
STATS_AGE_BINS = 10
STATS_TOP_VALUES = 10


def snapshot_file(name: str) -> str:
    """A memory's own snapshot file, relative to the server's data directory (memory.proto:
    Snapshot and Restore with no path): ``omniglot/replica-3`` -> ``omniglot/replica-3.npz``."""
    return name + ".npz"


@dataclass
class Neighbors:
    ids: np.ndarray           # (b, k) int64, -1 past `found`
    similarities: np.ndarray  # (b, k) float32, -inf past `found`
    weights: np.ndarray       # (b, k) float32, 0 past `found`
    values: np.ndarray        # (b, k) int64
    sources: np.ndarray       # (b, k) int64
    keys: np.ndarray | None = None  # (b, k, d) float32


@dataclass
class LookupResult:
    result: np.ndarray          # (b,) int64: V[n_1], -1 if none
    found: np.ndarray           # (b,) int64
    top_weight: np.ndarray      # (b,) float32: w_1
    top_similarity: np.ndarray  # (b,) float32: s_1, -inf if none
    # with labels
    positive_key: np.ndarray | None = None   # (b, d), zeros if none
    negative_key: np.ndarray | None = None   # (b, d), zeros if none
    positive_slot: np.ndarray | None = None  # (b,) int64
    negative_slot: np.ndarray | None = None  # (b,) int64
    loss: np.ndarray | None = None           # (b,) float32
    correct: np.ndarray | None = None        # (b,) bool
    written_slot: np.ndarray | None = None   # (b,) int64, -1 where nothing was written
    # with return_weight_terms: d w_1 / d q = t * w_1 * (top_key - mean_key)
    top_key: np.ndarray | None = None        # (b, d)
    mean_key: np.ndarray | None = None       # (b, d)
    neighbors: Neighbors | None = None

    TENSORS = ("result", "found", "top_weight", "top_similarity", "positive_key", "negative_key",
               "positive_slot", "negative_slot", "loss", "correct", "written_slot", "top_key", "mean_key")


@dataclass
class MemoryInfo:
    name: str
    config: dict          # the memory's MemoryConfig fields (index kind as its name)
    filled: int
    total_writes: int


@dataclass
class MemoryStats:
    """What ``GetStats`` answers: the memory, its contents and its traffic."""

    info: MemoryInfo
    age_bin_edges: np.ndarray      # (age_bins + 1,) float32
    age_counts: np.ndarray         # (age_bins,) int64
    top_values: np.ndarray         # (n,) int64, most frequent first
    top_value_counts: np.ndarray   # (n,) int64
    distinct_values: int = 0
    bytes: int = 0                 # keys, values, ages, sources and the index
    lookups: int = 0               # queries served
    correct_writes: int = 0        # slots averaged into
    fresh_writes: int = 0          # slots given a new key
    evictions: int = 0             # fresh writes over a filled slot
    unread_evictions: int = 0      # evicted fresh writes no lookup had returned
    writes_since_snapshot: int = 0
    last_snapshot_unix: float = 0.0   # 0 if never
    writes_lost_at_restore: int = 0
    state_hash: str = ""           # sha256 of the state, if asked for
    wal_unsynced: int = 0          # logged records not yet fsynced (at risk from a power cut)

    TENSORS = ("age_bin_edges", "age_counts", "top_values", "top_value_counts")


@dataclass
class Counters:
    """A store's traffic since it was created (kept across reset, snapshot and restore)."""

    lookups: int = 0
    correct_writes: int = 0
    fresh_writes: int = 0
    evictions: int = 0
    unread_evictions: int = 0

    @property
    def total_writes(self) -> int:
        return self.correct_writes + self.fresh_writes


