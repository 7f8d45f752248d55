"""The memory M = (K, V, A) of design.md §1: lookup, loss terms and the update rule.

Pure numpy + an index backend; no gRPC, no threads (the service serialises access). One call,
``lookup_many``, serves a list of requests merged into one search: every request sees the
memory as it was before the call, and their updates follow in request order with fresh slots
distinct across all of them. Ages then read exactly as if the requests had run one by one.

Shapes: b = queries in a call, k = neighbours, d = key_dim, N = size.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace

import numpy as np

from raremem.proto.types import EMPTY, STATS_AGE_BINS, STATS_TOP_VALUES, Counters, LookupResult, Neighbors
from raremem.server.config import MemoryConfig
from raremem.server.errors import InvalidArgument
from raremem.server.indexes import make_index

__all__ = ["EMPTY", "Counters", "LookupResult", "LookupSpec", "MemoryStore", "Neighbors"]


@dataclass
class LookupSpec:
    """One request. ``queries`` (b, d) float32; ``labels``/``sources`` (b,) int64 or None."""

    queries: np.ndarray
    labels: np.ndarray | None = None
    update: bool = False
    use_recent: bool = False
    sources: np.ndarray | None = None
    k: int = 0                      # 0 = config.choose_k
    nprobe: int = 0                 # IVF only; 0 = config.ivf_nprobe
    return_weight_terms: bool = False    # fill top_key and mean_key
    return_neighbors: bool = False       # fill the neighbour lists
    return_neighbor_keys: bool = False   # and the neighbour keys
    leave_one_out: bool = False     # skip slots whose source is the query's own (``sources``)
    request_id: str = ""            # an update's id: a repeat is answered, not applied (the service)


def _normalise_rows(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32, copy=False)


def _best(score: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise max of ``score`` (b, c) and its slot id, ties to the lower slot id; -1 if the
    row is all -inf."""
    best = score.max(axis=1)
    hit = (score == best[:, None]) & np.isfinite(score)
    slot = np.where(hit, ids, np.iinfo(np.int64).max).min(axis=1)
    return best, np.where(np.isfinite(best), slot, EMPTY)


class MemoryStore:
    """A memory of ``config.size`` slots. Not thread-safe: callers serialise."""

    def __init__(self, config: MemoryConfig):
        self.config = config = config.resolved()
        n, d = config.size, config.key_dim
        self.keys = np.zeros((n, d), dtype=np.float32)       # K: unit rows where filled
        self.values = np.full(n, EMPTY, dtype=np.int64)      # V
        self.ages = np.zeros(n, dtype=np.float32)            # A
        self.sources = np.full(n, EMPTY, dtype=np.int64)     # provenance of the last write
        self.recent: dict[int, int] = {}                     # value -> slot last written for it
        self.was_read = np.zeros(n, dtype=bool)              # returned as n_1 or positive since written
        self.filled = 0                                      # filled slots are [0, filled)
        self.rng = np.random.default_rng(config.seed)        # eviction noise
        self.counters = Counters()
        self.index = make_index(config, self.keys)

    # ------------------------------------------------------------------ validation
    def check(self, spec: LookupSpec) -> np.ndarray:
        """Validate a request and return its queries normalised. Raises InvalidArgument;
        the memory is untouched until every request of a call has passed."""
        q, cfg = spec.queries, self.config
        if not isinstance(q, np.ndarray) or q.ndim != 2:
            raise InvalidArgument(f"queries must be a 2-d array (b, d), got shape {getattr(q, 'shape', None)}")
        if q.dtype != np.float32:
            raise InvalidArgument(f"queries must be float32, got {q.dtype}")
        b, d = q.shape
        if d != cfg.key_dim:
            raise InvalidArgument(f"queries have dimension {d}, memory key_dim is {cfg.key_dim}")
        bad = ~np.isfinite(q).all(axis=1)
        if bad.any():
            raise InvalidArgument(f"queries contain NaN or inf (row {int(np.argmax(bad))})")
        norms = np.linalg.norm(q, axis=1)
        if (norms == 0).any():
            raise InvalidArgument(f"queries contain a zero row (row {int(np.argmax(norms == 0))})")
        for name in ("labels", "sources"):
            arr = getattr(spec, name)
            if arr is None:
                continue
            if not isinstance(arr, np.ndarray) or arr.dtype != np.int64 or arr.shape != (b,):
                raise InvalidArgument(
                    f"{name} must be int64 of shape ({b},), got {getattr(arr, 'dtype', type(arr))} "
                    f"{getattr(arr, 'shape', '')}")
        if spec.labels is not None and (spec.labels < 0).any():
            raise InvalidArgument("labels must be >= 0 (-1 marks empty slots)")
        if spec.update and spec.labels is None:
            raise InvalidArgument("update needs labels")
        if spec.update and b > cfg.size:
            raise InvalidArgument(f"{b} updating queries exceed the memory size {cfg.size}")
        if spec.sources is not None and not (spec.update or spec.leave_one_out):
            raise InvalidArgument("sources are only stored by updates (or name the queries' own for leave_one_out)")
        if spec.leave_one_out and spec.sources is None:
            raise InvalidArgument("leave_one_out needs sources: each query's own")
        if spec.use_recent and spec.labels is None:
            raise InvalidArgument("use_recent needs labels")
        if not 0 <= spec.k <= cfg.size:
            raise InvalidArgument(f"k must be in 1..{cfg.size} (0 = default {cfg.choose_k}), got {spec.k}")
        if spec.nprobe < 0:
            raise InvalidArgument(f"nprobe must be >= 0, got {spec.nprobe}")
        if spec.return_neighbor_keys and not spec.return_neighbors:
            raise InvalidArgument("return_neighbor_keys needs return_neighbors")
        return (q / norms[:, None]).astype(np.float32)

    # ------------------------------------------------------------------ lookup
    def checked(self, spec: LookupSpec) -> LookupSpec:
        """``spec`` validated, its queries normalised: what ``lookup_many`` takes."""
        return replace(spec, queries=self.check(spec))

    def lookup(self, spec: LookupSpec) -> LookupResult:
        return self.lookup_many([self.checked(spec)])[0]

    def lookup_many(self, specs: list[LookupSpec]) -> list[LookupResult]:
        """Requests that ``checked`` returned (the service checks each on arrival, the log
        holds only checked ones), answered from one search; their updates in order."""
        queries = [s.queries for s in specs]
        n_update = sum(len(q) for s, q in zip(specs, queries) if s.update)
        if n_update > self.config.size:   # each request fits (check); merged ones must fit together
            raise InvalidArgument(
                f"{n_update} updating queries in one batch exceed the memory size {self.config.size}")
        found = self._search_merged(specs, queries)
        results, plans = [], []
        for spec, q, (sims, ids) in zip(specs, queries, found):
            res, plan = self._lookup_one(spec, q, sims, ids)
            results.append(res)
            plans.append(plan)
        self.counters.lookups += sum(len(q) for q in queries)
        if n_update:
            self._update(specs, queries, plans, results)
        return results

    def _search(self, q: np.ndarray, k: int, nprobe: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k filled slots per query, sorted by (-similarity, slot id); (b, k) each."""
        b, n = len(q), self.filled
        kk = min(k, n)
        if kk == 0 or b == 0:
            return np.full((b, k), -np.inf, np.float32), np.full((b, k), EMPTY, np.int64)
        sims, ids = self.index.search(q, kk, n, nprobe)
        sims = np.asarray(sims, dtype=np.float32)
        missing = ids < 0
        if missing.any():  # approximate kinds may find fewer than k
            sims = np.where(missing, -np.inf, sims).astype(np.float32)
        # FAISS returns rows by decreasing similarity; the order among equal similarities is
        # ours to fix (lower slot first), and LSH returns rows unsorted.
        if self.index.sorted:
            rows = np.flatnonzero((sims[:, 1:] == sims[:, :-1]).any(axis=1))
        else:
            rows = np.arange(b)
        if len(rows):
            s, i = sims[rows], ids[rows]
            order = np.lexsort((np.where(i >= 0, i, np.iinfo(np.int64).max), -s), axis=1)
            sims[rows], ids[rows] = np.take_along_axis(s, order, 1), np.take_along_axis(i, order, 1)
        ids = np.where(np.isfinite(sims), ids, EMPTY)
        if kk == k:
            return sims, ids
        return (np.pad(sims, ((0, 0), (0, k - kk)), constant_values=-np.inf),
                np.pad(ids, ((0, 0), (0, k - kk)), constant_values=EMPTY))

    def _own_slots(self, spec: LookupSpec) -> int:
        """For leave-one-out: the most filled slots any one query's own source holds (the
        search must reach that much deeper to keep k neighbours after skipping them)."""
        if not spec.leave_one_out or not self.filled:
            return 0
        own = self.sources[: self.filled]
        mine = np.isin(own, spec.sources)
        return int(np.unique(own[mine], return_counts=True)[1].max()) if mine.any() else 0

    def _search_merged(self, specs, queries) -> list[tuple[np.ndarray, np.ndarray]]:
        """One search per distinct nprobe over all requests' queries, with the largest k;
        each request then takes the first k columns of its rows (the lists are sorted), after
        dropping its own sources' slots when it asks for leave-one-out."""
        out = [None] * len(specs)
        deeper = [self._own_slots(s) for s in specs]
        for nprobe in sorted({s.nprobe for s in specs}):
            members = [i for i, s in enumerate(specs) if s.nprobe == nprobe]
            k_max = min(max((specs[i].k or self.config.choose_k) + deeper[i] for i in members), self.config.size)
            q = np.concatenate([queries[i] for i in members]) if len(members) > 1 else queries[members[0]]
            sims, ids = self._search(q, k_max, nprobe)
            start = 0
            for i in members:
                b, k = len(queries[i]), specs[i].k or self.config.choose_k
                s_i, ids_i = sims[start:start + b], ids[start:start + b]
                if specs[i].leave_one_out:
                    s_i, ids_i = self._without_own(s_i, ids_i, specs[i].sources)
                out[i] = (s_i[:, :k], ids_i[:, :k])
                start += b
        return out

    def _without_own(self, sims, ids, own):
        """Neighbour lists (b, K) with the slots of each row's own source moved out (kept in
        order; the freed columns at the end hold -inf / -1)."""
        skip = (ids >= 0) & (self.sources[np.maximum(ids, 0)] == own[:, None])
        if not skip.any():
            return sims, ids
        order = np.argsort(skip, axis=1, kind="stable")           # kept columns first, in order
        sims = np.where(skip, -np.inf, sims).astype(np.float32)
        ids = np.where(skip, EMPTY, ids)
        return np.take_along_axis(sims, order, 1), np.take_along_axis(ids, order, 1)

    def _lookup_one(self, spec: LookupSpec, q: np.ndarray, sims: np.ndarray, ids: np.ndarray):
        """Answer one request from its neighbour lists ``sims``, ``ids`` (b, k)."""
        cfg = self.config
        valid = ids >= 0
        safe = np.maximum(ids, 0)
        values = np.where(valid, self.values[safe], EMPTY)         # (b, k)
        found = valid.sum(axis=1)
        logits = np.where(valid, cfg.inverse_temperature * sims, -np.inf)
        top = np.where(valid[:, :1], logits[:, :1], 0.0)           # max logit (sorted)
        weights = np.where(valid, np.exp(logits - top), 0.0)
        weights = (weights / np.maximum(weights.sum(axis=1, keepdims=True), 1e-30)).astype(np.float32)
        self.was_read[ids[valid[:, 0], 0]] = True
        res = LookupResult(
            result=values[:, 0].copy(), found=found.astype(np.int64),
            top_weight=weights[:, 0].copy(), top_similarity=sims[:, 0].copy())
        if spec.return_weight_terms:
            res.top_key = np.where(valid[:, :1], self.keys[safe[:, 0]], 0).astype(np.float32)
            # sum_i w_i K[n_i], one query at a time ((k,) @ (k, d)): the gather of the keys is the
            # cost. For a translation batch (1,359 x 256 neighbours, d = 256) this took 156 ms
            # against 211 ms gathering 16 queries' keys at once for an einsum, and 3x as long
            # gathering all of them at once (b x k x d floats, 356 MB: page faults)
            res.mean_key = np.empty((len(q), cfg.key_dim), np.float32)
            for i in range(len(q)):
                np.dot(weights[i], self.keys[safe[i]], out=res.mean_key[i])
        if spec.return_neighbors:
            res.neighbors = Neighbors(
                ids=ids, similarities=sims, weights=weights, values=values,
                sources=np.where(valid, self.sources[safe], EMPTY),
                keys=np.where(valid[..., None], self.keys[safe], 0).astype(np.float32)
                if spec.return_neighbor_keys else None)
        plan = None
        if spec.labels is not None:
            plan = self._loss_terms(spec, q, sims, ids, values, res)
        return res, plan

    def _loss_terms(self, spec, q, sims, ids, values, res):
        """Positive/negative, loss and correctness (design.md §1 step 3) for a labelled request."""
        cfg, labels, b = self.config, spec.labels, len(q)
        # correct: the label is among the top correct_in_top neighbours (never the extra recent)
        res.correct = (values[:, :cfg.correct_in_top] == labels[:, None]).any(axis=1)
        if spec.use_recent:  # recent[v] joins the pool unless it is already a neighbour
            extra = np.array([self.recent.get(int(v), EMPTY) for v in labels], dtype=np.int64)
            extra[(extra[:, None] == ids).any(axis=1)] = EMPTY
            if spec.leave_one_out:  # nor is the query's own source's slot
                extra[(extra >= 0) & (self.sources[np.maximum(extra, 0)] == spec.sources)] = EMPTY
            has = extra >= 0
            extra_sim = np.where(has, np.einsum("bd,bd->b", q, self.keys[np.maximum(extra, 0)]), -np.inf)
            ids = np.concatenate([ids, extra[:, None]], axis=1)
            sims = np.concatenate([sims, extra_sim[:, None].astype(np.float32)], axis=1)
            values = np.concatenate([values, np.where(has, self.values[np.maximum(extra, 0)], EMPTY)[:, None]], 1)
        valid = ids >= 0
        match = values == labels[:, None]
        s_pos, pos = _best(np.where(valid & match, sims, -np.inf), ids)
        s_neg, neg = _best(np.where(valid & ~match, sims, -np.inf), ids)
        s_pos = np.where(pos >= 0, s_pos, 0.0)   # no positive: s_p = 0 (and a zero key)
        s_neg = np.where(neg >= 0, s_neg, 0.0)
        zero = np.zeros((b, cfg.key_dim), np.float32)
        res.positive_slot, res.negative_slot = pos, neg
        self.was_read[pos[pos >= 0]] = True
        res.positive_key = np.where((pos >= 0)[:, None], self.keys[np.maximum(pos, 0)], zero)
        res.negative_key = np.where((neg >= 0)[:, None], self.keys[np.maximum(neg, 0)], zero)
        res.loss = np.maximum(s_neg - s_pos + cfg.alpha, 0.0).astype(np.float32)
        res.written_slot = np.full(b, EMPTY, np.int64)
        return pos

    # ------------------------------------------------------------------ update
    def _fresh_slots(self, n: int, averaged: np.ndarray) -> tuple[np.ndarray, int]:
        """``n`` distinct slots for a call's fresh writes, and how many of them are empty: empty
        slots in index order, then the oldest by noisy age, never one of the ``averaged`` slots
        that a correct query of the call averages into."""
        n_before, cfg = self.filled, self.config
        n_empty = min(n, cfg.size - n_before)
        fresh = np.arange(n_before, n_before + n_empty, dtype=np.int64)
        n_evict = n - n_empty
        if not n_evict:
            return fresh, n_empty
        noisy = self.ages[:n_before].astype(np.float64)
        if cfg.age_noise > 0:
            noisy = noisy + self.rng.uniform(-cfg.age_noise, cfg.age_noise, n_before)
        noisy[averaged] = -np.inf
        # the n_evict largest, ties to the lower slot id, without sorting all N
        thr = np.partition(noisy, n_before - n_evict)[n_before - n_evict]
        above = np.flatnonzero(noisy > thr)
        cand = np.concatenate([above, np.flatnonzero(noisy == thr)[:n_evict - len(above)]])
        return np.concatenate([fresh, cand[np.lexsort((cand, -noisy[cand]))]]), n_empty

    def _update(self, specs, queries, positives, results) -> None:
        """design.md §1 step 4 over every updating request, in order."""
        cfg = self.config
        upd = [i for i, s in enumerate(specs) if s.update]
        # Each request ages the memory by one; a slot written by request j is then as old as
        # the number of updating requests after j.
        later = {j: len(upd) - 1 - r for r, j in enumerate(upd)}
        # who averages into its positive: the correct queries (never, in an append-only memory)
        rows = [(j, results[j].correct & (not cfg.append_only)) for j in upd]
        correct_slots = np.concatenate([positives[j][c] for j, c in rows])
        n_fresh = sum(int((~c).sum()) for _, c in rows)
        n_before = self.filled
        fresh, n_empty = self._fresh_slots(n_fresh, correct_slots)
        n_evict = n_fresh - n_empty

        self.ages += len(upd)
        written_all = []
        cursor = 0
        for j, correct in rows:
            spec, q, res, later_j = specs[j], queries[j], results[j], later[j]
            src = spec.sources if spec.sources is not None else np.full(len(q), EMPTY, np.int64)
            slots = np.empty(len(q), np.int64)
            # correct: K[p] <- normalise(q + K[p]); sequential so repeated p's accumulate
            rows_c = np.flatnonzero(correct)
            pos = positives[j][rows_c]
            if len(np.unique(pos)) == len(pos):
                self.keys[pos] = _normalise_rows(q[rows_c] + self.keys[pos])
            else:
                for r, p in zip(rows_c, pos):
                    self.keys[p] = _normalise_rows(q[r:r + 1] + self.keys[p:p + 1])[0]
            slots[rows_c] = pos
            # incorrect: write (q, v) into the next fresh slot
            rows_i = np.flatnonzero(~correct)
            mine = fresh[cursor:cursor + len(rows_i)]
            cursor += len(rows_i)
            for s in mine:  # a slot that changes value is no longer recent for its old value
                old = int(self.values[s])
                if old != EMPTY and self.recent.get(old) == s:
                    del self.recent[old]
            self.counters.unread_evictions += int((~self.was_read[mine] & (self.values[mine] != EMPTY)).sum())
            self.was_read[mine] = False
            self.keys[mine] = q[rows_i]
            self.values[mine] = spec.labels[rows_i]
            slots[rows_i] = mine
            self.ages[slots] = later_j
            self.sources[slots] = src
            for v, s in zip(spec.labels.tolist(), slots.tolist()):
                self.recent[v] = s
            res.written_slot = slots
            written_all.append(slots)

        self.filled = n_before + n_empty
        self.counters.correct_writes += len(correct_slots)
        self.counters.fresh_writes += n_fresh
        self.counters.evictions += n_evict
        self.index.on_write(np.unique(np.concatenate(written_all)), self.filled)

    # ------------------------------------------------------------------ maintenance
    def reset(self) -> None:
        self.keys[:] = 0
        self.values[:] = EMPTY
        self.ages[:] = 0
        self.sources[:] = EMPTY
        self.was_read[:] = False
        self.recent.clear()
        self.filled = 0
        self.index.reset()

    def read(self, ids: np.ndarray) -> dict[str, np.ndarray]:
        if ids.dtype != np.int64 or ids.ndim != 1:
            raise InvalidArgument(f"ids must be a 1-d int64 array, got {ids.dtype} {ids.shape}")
        if len(ids) and (ids.min() < 0 or ids.max() >= self.config.size):
            raise InvalidArgument(f"slot ids must be in [0, {self.config.size})")
        return {"ids": ids, "keys": self.keys[ids], "values": self.values[ids],
                "ages": self.ages[ids], "sources": self.sources[ids]}

    def load(self, keys: np.ndarray, values: np.ndarray, sources: np.ndarray | None = None) -> None:
        """Bulk-load ``len(keys)`` slots from slot 0 (benchmarks, imports): keys (n, d) are
        normalised, ages start at 0, the index is rebuilt. Replaces what the memory held."""
        n = len(keys)
        if keys.shape != (n, self.config.key_dim) or values.shape != (n,) or n > self.config.size:
            raise InvalidArgument(f"load needs keys (n, {self.config.key_dim}) and values (n,), n <= "
                                  f"{self.config.size}; got {keys.shape} and {values.shape}")
        if n and (values < 0).any():
            raise InvalidArgument("values must be >= 0 (-1 marks empty slots)")
        self.reset()
        self.keys[:n] = _normalise_rows(np.asarray(keys, np.float32))
        self.values[:n] = values
        if sources is not None:
            self.sources[:n] = sources
        self.filled = n
        self.index.on_write(np.arange(n, dtype=np.int64), n)

    def statistics(self, age_bins: int = STATS_AGE_BINS, top_values: int = STATS_TOP_VALUES,
                   with_hash: bool = False) -> dict:
        """Contents and traffic: an age histogram of the filled slots, the most frequent
        values, the counters and (if asked) the state hash — the store's part of ``MemoryStats``."""
        ages = self.ages[: self.filled]
        values, counts = np.unique(self.values[: self.filled], return_counts=True)
        bins = age_bins or STATS_AGE_BINS
        hist, edges = np.histogram(ages, bins=bins) if len(ages) else (np.zeros(bins, np.int64), np.zeros(bins + 1))
        order = np.lexsort((values, -counts))[:top_values]
        return {"age_bin_edges": edges.astype(np.float32), "age_counts": hist.astype(np.int64),
                "top_values": values[order].astype(np.int64), "top_value_counts": counts[order].astype(np.int64),
                "distinct_values": len(values), "bytes": self.nbytes(),
                **{k: getattr(self.counters, k) for k in vars(self.counters)},
                "state_hash": self.state_hash() if with_hash else ""}

    @staticmethod
    def bytes_needed(config: MemoryConfig) -> int:
        """What a memory of ``config`` allocates for its slots: keys, values, ages, sources, read flags."""
        return config.size * (4 * config.key_dim + 8 + 4 + 8 + 1)

    def nbytes(self) -> int:
        arrays = (self.keys, self.values, self.ages, self.sources)
        return sum(a.nbytes for a in arrays) + self.index.nbytes() + 16 * len(self.recent)

    def recent_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        items = sorted(self.recent.items())
        return (np.array([v for v, _ in items], np.int64), np.array([s for _, s in items], np.int64))

    def state_hash(self) -> str:
        h = hashlib.sha256()
        for a in (self.keys, self.values, self.ages, self.sources, *self.recent_arrays()):
            h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()

    # ------------------------------------------------------------------ persistence
    def state(self) -> dict[str, np.ndarray]:
        """Everything needed to continue exactly where this memory stands."""
        rv, rs = self.recent_arrays()
        meta = {"config": self.config.to_dict(), "filled": self.filled,
                "counters": vars(self.counters), "rng": self.rng.bit_generator.state}
        return {"keys": self.keys, "values": self.values, "ages": self.ages,
                "sources": self.sources, "was_read": self.was_read, "recent_values": rv, "recent_slots": rs,
                "meta": np.frombuffer(json.dumps(meta).encode(), np.uint8), **self.index.state()}

    SNAPSHOT_ARRAYS = ("meta", "keys", "values", "ages", "sources", "was_read", "recent_values", "recent_slots")

    @staticmethod
    def _meta(state: dict[str, np.ndarray]) -> dict:
        missing = [name for name in MemoryStore.SNAPSHOT_ARRAYS if name not in state]
        if missing:
            raise InvalidArgument(f"not a memory snapshot: it lacks {', '.join(missing)}")
        try:
            return json.loads(bytes(state["meta"]).decode())
        except (UnicodeDecodeError, ValueError) as exc:
            raise InvalidArgument(f"not a memory snapshot: unreadable metadata ({exc})") from exc

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray]) -> "MemoryStore":
        store = cls(MemoryConfig.from_dict(cls._meta(state)["config"]))
        store.load_state(state)
        return store

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        """Continue from ``state`` (what ``state()`` returned, for a memory of this config)."""
        meta = self._meta(state)
        for name in ("keys", "values", "ages", "sources", "was_read"):
            src = np.asarray(state[name])
            dst = getattr(self, name)
            if src.shape != dst.shape or src.dtype != dst.dtype:
                raise InvalidArgument(f"snapshot array {name} has {src.dtype}{src.shape}, "
                                      f"expected {dst.dtype}{dst.shape}")
            dst[...] = src
        self.recent = dict(zip(state["recent_values"].tolist(), state["recent_slots"].tolist()))
        self.filled = int(meta["filled"])
        self.counters = Counters(**meta["counters"])
        self.rng.bit_generator.state = meta["rng"]
        self.index.load_state(state)
