"""An independent reference memory, written from design.md §1 alone: the tests' oracle.

Deliberately plain: one query at a time, full sorts, Python loops. It imports nothing from
``server``. Conventions it shares with the store because design.md §1 leaves them open (stated in
proto/memory.proto and README): eviction noise is drawn only when a batch must evict, as
``rng.uniform(-a, a, filled)`` from ``np.random.default_rng(seed)``; a slot rewritten with
another value stops being ``recent`` for its old value; slots that correct queries of a call
average into are never chosen as fresh slots in that call; sources hold the last writer.

Two options beyond the paper (design.md §1): leave-one-out lookups skip every slot whose source
is the query's own (the recent candidate too); an append-only memory writes every labelled
query of an update into a fresh slot (no averaging), so nothing is evicted while slots are empty.
"""

from __future__ import annotations

import numpy as np


class ReferenceMemory:
    def __init__(self, size, key_dim, choose_k=None, alpha=0.1, inverse_temperature=40.0,
                 age_noise=8.0, correct_in_top=1, seed=0, append_only=False):
        self.size, self.d = size, key_dim
        self.k = choose_k or min(256, size)
        self.alpha, self.t, self.noise, self.c = alpha, inverse_temperature, age_noise, correct_in_top
        self.K = np.zeros((size, key_dim), np.float32)
        self.V = np.full(size, -1, np.int64)
        self.A = np.zeros(size, np.float32)
        self.S = np.full(size, -1, np.int64)
        self.recent = {}
        self.rng = np.random.default_rng(seed)
        self.append_only = append_only

    def filled(self):
        return [i for i in range(self.size) if self.V[i] != -1]

    def _neighbours(self, q, k, own=None):
        slots = np.array([i for i in self.filled() if own is None or self.S[i] != own], dtype=np.int64)
        if not len(slots):
            return [], []
        sims = self.K[slots].astype(np.float64) @ q.astype(np.float64)
        order = np.lexsort((slots, -sims))[:k]  # decreasing similarity, ties to the lower slot
        return slots[order].tolist(), sims[order].tolist()

    def _query(self, q, label, use_recent, k, own=None):
        ids, sims = self._neighbours(q, k, own)
        out = {"ids": ids, "sims": sims}
        if ids:
            logits = self.t * np.array(sims)
            w = np.exp(logits - logits.max())
            w /= w.sum()
        else:
            w = np.zeros(0)
        out["weights"] = w
        out["result"] = int(self.V[ids[0]]) if ids else -1
        out["top_weight"] = float(w[0]) if ids else 0.0
        # the weight's gradient terms: the top neighbour's key and sum_i w_i K[n_i]
        out["top_key"] = self.K[ids[0]].copy() if ids else np.zeros(self.d, np.float32)
        out["mean_key"] = sum((wi * self.K[i].astype(np.float64) for wi, i in zip(w, ids)), np.zeros(self.d))
        if label is None:
            return out
        pool = list(zip(ids, sims))
        r = self.recent.get(label) if use_recent else None
        if r is not None and r not in ids and (own is None or self.S[r] != own):
            pool.append((r, float(np.dot(q.astype(np.float64), self.K[r].astype(np.float64)))))
        pos = [(s, i) for i, s in pool if self.V[i] == label]
        neg = [(s, i) for i, s in pool if self.V[i] != label]
        # highest similarity, ties to the lower slot id
        p = min(pos, key=lambda x: (-x[0], x[1])) if pos else (0.0, -1)
        n = min(neg, key=lambda x: (-x[0], x[1])) if neg else (0.0, -1)
        out["pos"], out["neg"] = p[1], n[1]
        out["pos_key"] = self.K[p[1]].copy() if p[1] >= 0 else np.zeros(self.d, np.float32)
        out["neg_key"] = self.K[n[1]].copy() if n[1] >= 0 else np.zeros(self.d, np.float32)
        out["loss"] = max(0.0, n[0] - p[0] + self.alpha)
        out["correct"] = label in [int(self.V[i]) for i in ids[: self.c]]
        return out

    def call(self, requests):
        """requests: list of dicts(queries, labels=None, update=False, use_recent=False,
        sources=None, k=None). Lookups see the memory before the call; updates follow in order."""
        outs = []
        for req in requests:
            q = np.asarray(req["queries"], np.float32)
            q = (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)
            req["_q"] = q
            labels, own = req.get("labels"), req.get("sources") if req.get("leave_one_out") else None
            outs.append([self._query(q[i], None if labels is None else int(labels[i]),
                                     req.get("use_recent", False), req.get("k") or self.k,
                                     None if own is None else int(own[i]))
                         for i in range(len(q))])
        updating = [j for j, req in enumerate(requests) if req.get("update")]
        if not updating:
            return outs
        def averages(o):  # the query averages into its positive; append-only never does
            return o["correct"] and not self.append_only

        protected = {o["pos"] for j in updating for o in outs[j] if averages(o)}
        # fresh slots for the whole call: empty slots in index order, then oldest by noisy age
        n_incorrect = sum(1 for j in updating for o in outs[j] if not averages(o))
        filled = self.filled()
        empty = [i for i in range(self.size) if self.V[i] == -1][:n_incorrect]
        fresh = list(empty)
        if n_incorrect > len(empty):
            noise = (self.rng.uniform(-self.noise, self.noise, len(filled))
                     if self.noise > 0 else np.zeros(len(filled)))
            score = {i: float(self.A[i]) + float(noise[i]) for i in filled}
            old = sorted((i for i in filled if i not in protected), key=lambda i: (-score[i], i))
            fresh += old[: n_incorrect - len(empty)]
        fresh_iter = iter(fresh)
        for j in updating:
            req, q = requests[j], requests[j]["_q"]
            labels, sources = req["labels"], req.get("sources")
            written = []
            for i, o in enumerate(outs[j]):
                v = int(labels[i])
                if averages(o):
                    s = o["pos"]
                    x = q[i] + self.K[s]
                    self.K[s] = x / np.linalg.norm(x)
                else:
                    s = next(fresh_iter)
                    if self.V[s] != -1 and self.recent.get(int(self.V[s])) == s:
                        del self.recent[int(self.V[s])]
                    self.K[s], self.V[s] = q[i], v
                self.S[s] = -1 if sources is None else int(sources[i])
                self.recent[v] = s
                written.append(s)
                o["written"] = s
            self.A += 1
            self.A[written] = 0
        return outs
