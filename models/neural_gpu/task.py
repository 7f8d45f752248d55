"""The synthetic rare-function task of the paper (§4.2), as stated there, with the
interpretations it leaves open written down:

- Symbols: ``A``, ``B`` and the base-4 digits ``0``-``3``; ids PAD=0, A=1, B=2, digit d = 3+d.
- S = {2, ..., 16000}; f: S -> S is a uniformly random function (not a permutation) drawn
  from ``seed``. Every n in S fits in 7 base-4 digits (4^7 = 16384); shorter numbers are
  padded with leading zeros to exactly 7 digits. 7-digit strings outside S (0, 1,
  16001..16383) never occur, and f is undefined there.
- An input has length L, uniform in [7, 40]; one contiguous run of 7 digits starts at a
  uniform position in [0, L-7]; every other position is A or B with probability 1/2. n is
  uniform over S.
- The output has the same length: A and B copied, the run replaced by f(n) in 7 base-4 digits.
- 40,000 training and 10,000 test examples; no test input equals a training input
  (duplicates are redrawn).
- Presets (``PRESETS``): ``full`` is the task above; ``short`` is the same task with lengths
  7-16 instead of 7-40 (the same S, the same f for a seed, the same split sizes, so ~92% of
  test numbers are still seen in training, and distinct inputs), about 4x cheaper to train:
  the Neural GPU's cost grows as length^2. Arrays stay (N, 40) wide, PAD past each length. Test numbers are drawn from S like training ones, so most were
  seen in training only a few times: the rare events the memory must remember (``coverage``
  reports how many).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PAD, A, B, DIGIT0 = 0, 1, 2, 3
VOCAB = 7
DIGITS = 7
LOW, HIGH = 2, 16000
MAX_LENGTH = 40
PRESETS = {"full": MAX_LENGTH, "short": 16}   # preset -> longest input
SYMBOLS = "_AB0123"
# Rows trained before the validation set existed ran their quick evaluations, and so their
# stopping and recipe choices, on the first 1,000 test examples; final scores read only the
# test examples after them, which no choice has touched.
TOUCHED_TEST = 1_000


def held_out(test: "Examples") -> "Examples":
    """The test examples no choice has read: all but the first ``TOUCHED_TEST``."""
    return test.take(np.arange(TOUCHED_TEST, len(test)))


@dataclass
class Examples:
    inputs: np.ndarray    # (N, MAX_LENGTH) int64, PAD after each example's length
    targets: np.ndarray   # (N, MAX_LENGTH) int64
    lengths: np.ndarray   # (N,) int64
    numbers: np.ndarray   # (N,) int64: n of each example
    starts: np.ndarray    # (N,) int64: where its run of digits starts

    def __len__(self) -> int:
        return len(self.lengths)

    def take(self, idx) -> "Examples":
        return Examples(self.inputs[idx], self.targets[idx], self.lengths[idx], self.numbers[idx], self.starts[idx])


def random_function(seed: int) -> np.ndarray:
    """f as a table: f[n] for n in S (entries below LOW are unused, -1)."""
    table = np.full(HIGH + 1, -1, dtype=np.int64)
    table[LOW:] = np.random.default_rng([seed, 0xF]).integers(LOW, HIGH + 1, size=HIGH + 1 - LOW)
    return table


def to_base4(n: np.ndarray) -> np.ndarray:
    """(N,) numbers -> (N, 7) digits, most significant first."""
    powers = 4 ** np.arange(DIGITS - 1, -1, -1)
    return (np.asarray(n)[:, None] // powers) % 4


def from_base4(digits: np.ndarray) -> np.ndarray:
    """(N, 7) digits -> (N,) numbers."""
    return (np.asarray(digits) * 4 ** np.arange(DIGITS - 1, -1, -1)).sum(-1)


def generate(n: int, f: np.ndarray, rng: np.random.Generator, max_length: int = MAX_LENGTH) -> Examples:
    lengths = rng.integers(DIGITS, max_length + 1, size=n)
    starts = (rng.random(n) * (lengths - DIGITS + 1)).astype(np.int64)
    numbers = rng.integers(LOW, HIGH + 1, size=n)
    pos = np.arange(MAX_LENGTH)
    inside = pos < lengths[:, None]
    inputs = np.where(inside, rng.integers(A, B + 1, size=(n, MAX_LENGTH)), PAD)
    targets = inputs.copy()
    run = (pos >= starts[:, None]) & (pos < starts[:, None] + DIGITS)   # (n, 40), 7 per row
    inputs[run] = (DIGIT0 + to_base4(numbers)).ravel()
    targets[run] = (DIGIT0 + to_base4(f[numbers])).ravel()
    return Examples(inputs, targets, lengths, numbers, starts)


def make_splits(seed: int = 0, n_train: int = 40_000, n_test: int = 10_000,
                preset: str = "full") -> tuple[Examples, Examples, np.ndarray]:
    """(train, test, f): the data sets of Table 2 (or its ``short`` preset), fixed by ``seed``."""
    if preset not in PRESETS:
        raise ValueError(f"preset is one of {sorted(PRESETS)}, not {preset!r}")
    f, max_length = random_function(seed), PRESETS[preset]
    rng = np.random.default_rng([seed, 1])
    train = generate(n_train, f, rng, max_length)
    seen = {row.tobytes() for row in train.inputs}
    parts, have = [], 0
    while have < n_test:
        cand = generate(n_test, f, rng, max_length)
        keep = np.array([row.tobytes() not in seen for row in cand.inputs])
        parts.append(cand.take(np.flatnonzero(keep)))
        have += int(keep.sum())
    return train, _concat(parts, n_test), f


def validation_set(train: Examples, test: Examples, f: np.ndarray, seed: int = 0, n: int = 1_000,
                   preset: str = "full") -> Examples:
    """``n`` examples drawn as the test set is (same preset, same f) from a stream of their own,
    none equal to a training or test input: what quick evaluations and every choice read, so
    the test set is read once per reported row. Drawn after ``make_splits`` from its own seed,
    so the training and test sets stay the ones earlier rows were scored on."""
    rng = np.random.default_rng([seed, 2])
    taken = {row.tobytes() for part in (train, test) for row in part.inputs}
    parts, have = [], 0
    while have < n:
        cand = generate(n, f, rng, PRESETS[preset])
        keep = np.zeros(n, dtype=bool)
        for i, row in enumerate(cand.inputs):   # and no two validation inputs alike
            keep[i] = (b := row.tobytes()) not in taken
            taken.add(b)
        parts.append(cand.take(np.flatnonzero(keep)))
        have += int(keep.sum())
    return _concat(parts, n)


def _concat(parts: list[Examples], n: int) -> Examples:
    return Examples(*(np.concatenate([getattr(p, k) for p in parts])[:n]
                      for k in ("inputs", "targets", "lengths", "numbers", "starts")))


def decode(ids) -> str:
    """Ids -> the task's text ("ABB0123012AB"), stopping at the first PAD."""
    out = []
    for i in ids:
        if i == PAD:
            break
        out.append(SYMBOLS[int(i)])
    return "".join(out)


def fully_correct(predictions: np.ndarray, ex: Examples) -> np.ndarray:
    """(N,) bool: every position of the output up to the example's length is right."""
    inside = np.arange(MAX_LENGTH) < ex.lengths[:, None]
    return ((predictions == ex.targets) | ~inside).all(-1)


def coverage(test: Examples, train: Examples) -> float:
    """Fraction of test examples whose number occurs in some training example."""
    return float(np.isin(test.numbers, train.numbers).mean())
