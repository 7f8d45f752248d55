"""How the memory page (``raremem-admin ui``) shows a translation slot: the training sentence
pair that wrote it, with the target token that is the slot's value highlighted.

A slot's source is the line of the Multi30k training set (``Corpus.index``) and its value a
subword id of the joint sentencepiece model (``translation:spm=PATH``, the trainer's
``--spm``). The slot does not record which occurrence wrote it, so every occurrence of the
token in the target line is marked. Found through the ``raremem.renderers`` entry point
``translation``.
"""

from __future__ import annotations

from pathlib import Path

from raremem.client.ui.renderers import Rendered
from raremem.models.translation import data
from raremem.models.translation.subwords import Subwords

DEFAULT_SPM = "runs/translation/spm-8000.model"   # the trainer's default --spm


class TranslationRenderer:
    def __init__(self, spm: str = DEFAULT_SPM, data_dir: str = "", split: str = "train"):
        self.pairs = data.load(split, Path(data_dir) if data_dir else data.DEFAULT_DATA)
        self.subwords = Subwords(Path(spm))

    def render(self, memory: str, source: int, value: int) -> Rendered:
        if not 0 <= source < len(self.pairs):
            raise LookupError(f"source {source} is not a training line ({len(self.pairs)})")
        src, tgt = self.pairs.source[source], self.pairs.target[source]
        ids = self.subwords.encode([tgt])[0]
        pieces = self.subwords.sp.id_to_piece(ids)
        runs = [(p.replace("\u2581", " "), i == value) for p, i in zip(pieces, ids)]
        token = self.subwords.sp.id_to_piece(value) if 0 <= value < len(self.subwords) else str(value)
        return Rendered(lines=[[("en ", False), (src, False)], [("de ", False), *runs]],
                        caption=f"training line {source}; token {value} {token!r}"
                                + ("" if any(hot for _, hot in runs) else " (not in this line's target)"))


def make(**options) -> TranslationRenderer:
    return TranslationRenderer(**options)
