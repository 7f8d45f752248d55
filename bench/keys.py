"""Random unit keys, as the benchmarks that need no learned ones use them."""

from __future__ import annotations

import numpy as np


def unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    """(n, d) float32 rows, uniform on the unit sphere."""
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)
