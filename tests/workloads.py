"""Seeded request sequences shared by the tests: clustered queries whose labels recur, so
memories fill up, hit, miss and evict."""

from __future__ import annotations

import numpy as np


def clustered_batches(seed, d, n_classes, b, steps, noise=0.4, k=None, use_recent=True,
                      sources=True, repeat_labels=True):
    """Yield request dicts with queries near one centre per class; labels may repeat in a batch."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_classes, d)).astype(np.float32)
    for step in range(steps):
        if repeat_labels:
            labels = rng.integers(0, n_classes, b)
        else:
            labels = rng.choice(n_classes, b, replace=False)
        q = centres[labels] + noise * rng.standard_normal((b, d)).astype(np.float32)
        yield {
            "queries": q.astype(np.float32),
            "labels": labels.astype(np.int64),
            "update": True,
            "use_recent": use_recent,
            "sources": (step * b + np.arange(b)).astype(np.int64) if sources else None,
            "k": k,
        }
