"""The Hamming nearest-neighbour baseline of Table 2: answer each test input with the output
of the training input at the smallest Hamming distance (positions padded to 40, so a length
mismatch counts; ties go to the lowest training index)."""

from __future__ import annotations

import numpy as np

from raremem.models.neural_gpu.task import MAX_LENGTH, VOCAB, Examples


def one_hot(inputs: np.ndarray) -> np.ndarray:
    """(N, 40) ids -> (N, 40 * VOCAB) float32: equal positions score 1 in a dot product."""
    out = np.zeros((len(inputs), MAX_LENGTH, VOCAB), dtype=np.float32)
    np.put_along_axis(out, inputs[..., None], 1.0, axis=-1)
    return out.reshape(len(inputs), -1)


def hamming_nn(train: Examples, test: Examples, chunk: int = 1024) -> np.ndarray:
    """(N_test, 40) predicted outputs. Matches = one-hot dot products; distance = 40 - matches."""
    keys = one_hot(train.inputs)                                   # (N_train, 280)
    out = np.empty_like(test.targets)
    for i in range(0, len(test), chunk):
        matches = one_hot(test.inputs[i:i + chunk]) @ keys.T       # (chunk, N_train)
        out[i:i + chunk] = train.targets[matches.argmax(1)]
    return out
