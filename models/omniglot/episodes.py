"""Life-long episodes (Kaiser et al. 2017, §4.1; the paper's data_utils): B parallel episodes,
each of ``width`` classes drawn ``shots`` times. All first draws come first (in random order),
then all second draws, and so on. Labels are offset per episode (class_index + episode * width)
so that all B episodes can share one memory; the memory is cleared between episode batches.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class EpisodeBatch:
    images: np.ndarray  # (T, B, 28, 28) float32, T = width * shots
    labels: np.ndarray  # (T, B) int64: class index in its episode + episode * width
    shot: np.ndarray    # (T, B) int64: how many times this class was seen before (0 = first)
    classes: np.ndarray  # (B, width) int64: dataset class of each episode label
    sources: np.ndarray  # (T, B) int64: dataset index of each image (class * drawings + drawing)


def sample_episodes(data: np.ndarray, batch: int, width: int, shots: int,
                    rng: np.random.Generator) -> EpisodeBatch:
    """``data`` is (classes, drawings, H, W). Each class gets ``shots`` distinct drawings."""
    n_classes, n_drawings = data.shape[:2]
    if width > n_classes or shots > n_drawings:
        raise ValueError(f"{width} classes x {shots} shots do not fit {n_classes} classes x {n_drawings} drawings")
    T = width * shots
    images = np.empty((T, batch) + data.shape[2:], np.float32)
    labels = np.empty((T, batch), np.int64)
    shot = np.empty((T, batch), np.int64)
    classes = np.empty((batch, width), np.int64)
    sources = np.empty((T, batch), np.int64)
    for e in range(batch):
        classes[e] = rng.choice(n_classes, width, replace=False)
        drawings = np.stack([rng.choice(n_drawings, shots, replace=False) for _ in range(width)])  # (width, shots)
        t = 0
        for s in range(shots):
            for c in rng.permutation(width):  # each round of draws in its own random order
                images[t, e] = data[classes[e, c], drawings[c, s]]
                labels[t, e] = c + e * width
                shot[t, e] = s
                sources[t, e] = classes[e, c] * n_drawings + drawings[c, s]
                t += 1
    return EpisodeBatch(images=images, labels=labels, shot=shot, classes=classes, sources=sources)
