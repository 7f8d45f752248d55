"""How the memory page (``raremem-admin ui``) shows a synthetic-task slot: the training example
that wrote it, input and output, with the digit run marked and the slot's symbol named.

A slot's source is the example's index in the training set of ``make_splits(task_seed,
preset)``; its value is the output symbol the memory should suggest at that position. The task
is rebuilt from the options (``synthetic:preset=short``, ``synthetic:task_seed=0``), as the
trainer built it. Found through the ``raremem.renderers`` entry point ``synthetic``.
"""

from __future__ import annotations

from raremem.client.ui.renderers import Rendered
from raremem.models.neural_gpu.task import DIGITS, SYMBOLS, decode, make_splits


class SyntheticRenderer:
    def __init__(self, preset: str = "full", task_seed: str | int = 0):
        self.preset = preset
        self.train, _, self.f = make_splits(int(task_seed), preset=preset)

    def render(self, memory: str, source: int, value: int) -> Rendered:
        if not 0 <= source < len(self.train):
            raise LookupError(f"source {source} is not a training example ({len(self.train)})")
        ex = self.train.take([source])
        start, n = int(ex.starts[0]), int(ex.numbers[0])

        def marked(ids) -> list[tuple[str, bool]]:
            text = decode(ids)
            return [(text[:start], False), (text[start:start + DIGITS], True), (text[start + DIGITS:], False)]

        symbol = SYMBOLS[value] if 0 <= value < len(SYMBOLS) else str(value)
        return Rendered(lines=[[("in  ", False), *marked(ex.inputs[0])], [("out ", False), *marked(ex.targets[0])]],
                        caption=f"example {source} ({self.preset}): n = {n}, f(n) = {int(self.f[n])}; "
                                f"slot suggests {symbol!r}")


def make(**options) -> SyntheticRenderer:
    return SyntheticRenderer(**options)
