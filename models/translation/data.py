"""Parallel text from a directory laid out like ``../shared/data/translation``:

    multi30k/train.{en,de}.gz  val.{en,de}  test_2016_flickr.{en,de}  (and the other test sets)
    wmt14_newstest2014/newstest2014.{en,de}

One sentence per line, raw (cased, untokenised); line i of the source translates line i of
the target. Splits are named ``train``, ``val``, ``test_2016_flickr``, ..., ``newstest2014``.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

from raremem.models.paths import data_dir

DEFAULT_DATA = data_dir("translation")  # $RAREMEM_DATA/translation


@dataclass
class Parallel:
    source: list[str]
    target: list[str]

    def __len__(self) -> int:
        return len(self.source)

    def lines(self, parity: str) -> "Parallel":
        """The even or odd lines, counting the first line as line 1 (odd), as the paper's
        one-shot protocol splits a test set into context and evaluation."""
        first = {"odd": 0, "even": 1}[parity]
        return Parallel(self.source[first::2], self.target[first::2])


def _read(path: Path) -> list[str]:
    for candidate in (path, path.with_name(path.name + ".gz")):
        if candidate.is_file():
            opener = gzip.open if candidate.suffix == ".gz" else open
            with opener(candidate, "rt", encoding="utf-8") as fh:
                return [line.rstrip("\n") for line in fh]
    raise FileNotFoundError(f"no {path} (or {path.name}.gz)")


def load(split: str, data: Path = DEFAULT_DATA, src: str = "en", tgt: str = "de") -> Parallel:
    folder = data / ("wmt14_newstest2014" if split.startswith("newstest") else "multi30k")
    source, target = _read(folder / f"{split}.{src}"), _read(folder / f"{split}.{tgt}")
    if len(source) != len(target):
        raise ValueError(f"{split}: {len(source)} {src} lines but {len(target)} {tgt} lines")
    return Parallel(source, target)
