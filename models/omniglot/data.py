"""Omniglot (Lake et al. 2015) in the two class splits that Kaiser et al. (2017, §4.1) touch.

- ``vinyals`` (the paper's text: "identical to Vinyals et al. (2016b)", 1,200 characters for
  training, the rest for evaluation): the class lists of the few-shot literature, one class a
  line ``Alphabet/characterNN/rotDDD``: train 1,028 characters, val 172, test 423, each in 4
  rotations (4,112 / 688 / 1,692 classes). The lists live beside the zips in
  ``splits/vinyals/`` (``--download`` fetches them, sha256-checked).
- ``lake`` (the authors' TensorFlow code): train on ``images_background`` in 4 rotations, test on
  the 659 ``images_evaluation`` characters unrotated. Its validation classes are carved out of
  the background: the 172 characters of the five background alphabets that are Vinyals' val
  (Armenian, Bengali, Early Aramaic, Hebrew, Mkhedruli), unrotated like its test; train keeps
  the other 792 in 4 rotations (3,168 classes). Train + val are the 964 background characters
  the authors train on (3,856 classes with rotations).

Every class has 20 drawings; images are resized from 105x105 to 28x28 (bilinear) and stored as
float32 ink in [0, 1] (1 = ink). Each part (``train``, ``val``, ``test``) is built from the
decoded characters the first time it is read, so a trainer that never evaluates on the test
classes never builds them (and a test can tell).

Zips come from a directory, or are downloaded from the canonical URLs and checked against the
official md5s. Zips found locally may be faithful rebuilds with other bytes, so they are
checked by structure instead (character and drawing counts).
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tempfile
import urllib.request
import zipfile
from functools import cached_property
from pathlib import Path

import numpy as np
from PIL import Image

from raremem.models.errors import SetupError

SIZE = 28
DRAWINGS = 20
SPLITS = {
    # name: (characters, canonical URL, md5 of the official zip)
    "images_background": (964, "https://github.com/brendenlake/omniglot/raw/master/python/images_background.zip",
                          "68d2efa1b9178cc56df9314c21c6e718"),
    "images_evaluation": (659, "https://github.com/brendenlake/omniglot/raw/master/python/images_evaluation.zip",
                          "6b91aef0f799c5bb55b94e3f2daec811"),
}


SPLITS_KNOWN = ("vinyals", "lake")
PARTS = ("train", "val", "test")
# The Vinyals class lists as the few-shot literature publishes them (jakesnell/prototypical-networks,
# MIT licence), pinned to a commit and checked by sha256.
VINYALS_URL = ("https://raw.githubusercontent.com/jakesnell/prototypical-networks/"
               "c9bb4d258267c11cb6e23f0a19242d24ca98ad8a/data/omniglot/splits/vinyals/{part}.txt")
VINYALS_SHA256 = {
    "train": "984522c194c30fb678ce53304a160a42faf5403ad4f9a67010f32dd3a35738e0",
    "val": "11f99e54faee3e26f53d3231c1cceac5bf7b8730e9be31cb6dab256551dc0c1a",
    "test": "845264cc5c156180828ccf17915668b17ee21424d0170df6e7d81676aa5d1204",
}
LAKE_VAL_ALPHABETS = ("Armenian", "Bengali", "Early_Aramaic", "Hebrew", "Mkhedruli_(Georgian)")
ROTATIONS = ("rot000", "rot090", "rot180", "rot270")  # counter-clockwise, np.rot90's k = index


class OmniglotError(SetupError):
    """A missing, corrupt or unexpected Omniglot file."""


def _digest(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fetch(url: str, target: Path, algorithm: str, digest: str) -> Path:
    """``url`` into ``target`` when its ``algorithm`` digest is ``digest``; nothing is kept if not."""
    target.parent.mkdir(parents=True, exist_ok=True)
    # a temporary file of its own: trainers that start together may fetch the same file at once
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    tmp = Path(name)
    try:
        with urllib.request.urlopen(url, timeout=60) as resp, os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(resp, out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OmniglotError(f"could not download {url}: {exc}") from exc
    got = _digest(tmp, algorithm)
    if got != digest:
        tmp.unlink()
        raise OmniglotError(f"{url}: {algorithm} {got} is not the official {digest}")
    tmp.replace(target)
    return target


def download(split: str, root: Path, url: str | None = None, md5: str | None = None) -> Path:
    """Fetch ``split``.zip into ``root`` and check its md5; nothing is kept if it differs."""
    _, default_url, default_md5 = SPLITS[split]
    return _fetch(url or default_url, root / f"{split}.zip", "md5", md5 or default_md5)


def vinyals_classes(root: Path, download_missing: bool = False) -> dict[str, list[str]]:
    """The Vinyals class lists from ``root/splits/vinyals/{train,val,test}.txt`` (fetched,
    sha256-checked, when missing and asked to): part -> ["Alphabet/characterNN/rotDDD", ...]."""
    out = {}
    for part in PARTS:
        path = Path(root) / "splits" / "vinyals" / f"{part}.txt"
        if not path.is_file():
            if not download_missing:
                raise OmniglotError(f"{path} not found: the Vinyals class split is read from the data directory "
                                    "(give --data DIR holding splits/vinyals/, --download, or --split lake)")
            _fetch(VINYALS_URL.format(part=part), path, "sha256", VINYALS_SHA256[part])
        out[part] = path.read_text().split()
    return out


def read_split(zip_path: Path, split: str) -> tuple[list[str], np.ndarray]:
    """The characters' names ("Alphabet/characterNN", sorted) and their drawings
    (characters, 20, 28, 28) float32 ink in [0, 1], in the same order."""
    expected_chars = SPLITS[split][0]
    if not zip_path.is_file():
        raise OmniglotError(f"{zip_path} not found: set RAREMEM_DATA to the folder holding omniglot/{split}.zip "
                            f"(or give --data DIR with {split}.zip), or --download")
    try:
        with zipfile.ZipFile(zip_path) as z:
            by_char: dict[str, list[str]] = {}
            for name in z.namelist():
                parts = name.split("/")
                if name.endswith(".png") and len(parts) == 4 and parts[0] == split:
                    by_char.setdefault("/".join(parts[1:3]), []).append(name)
            counts = {len(v) for v in by_char.values()}
            if len(by_char) != expected_chars or counts != {DRAWINGS}:
                raise OmniglotError(
                    f"{zip_path}: {len(by_char)} characters with {sorted(counts)} drawings each; "
                    f"expected {expected_chars} characters of {DRAWINGS}")
            out = np.empty((expected_chars, DRAWINGS, SIZE, SIZE), np.float32)
            for c, char in enumerate(sorted(by_char)):
                for j, name in enumerate(sorted(by_char[char])):
                    with Image.open(io.BytesIO(z.read(name))) as img:
                        small = img.convert("L").resize((SIZE, SIZE), Image.BILINEAR)
                    out[c, j] = 1.0 - np.asarray(small, np.float32) / 255.0  # white paper -> 0
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise OmniglotError(f"{zip_path} is not a readable Omniglot zip: {exc}") from exc
    return sorted(by_char), out




def _characters(root: Path, download_missing: bool, cache_dir: Path | None) -> dict[str, np.ndarray]:
    """Every character of both zips by name ("Alphabet/characterNN") -> (20, 28, 28),
    ``images_background``'s first. The decoded arrays are cached in ``cache_dir`` under a name
    that carries the zips' sizes."""
    paths = {split: root / f"{split}.zip" for split in SPLITS}
    for split, path in paths.items():
        if not path.is_file() and download_missing:
            download(split, root)
    tag = "_".join(str(p.stat().st_size) if p.is_file() else "missing" for p in paths.values())
    cache_file = cache_dir / f"omniglot-characters_{SIZE}_{tag}.npz" if cache_dir else None
    if cache_file and cache_file.is_file():
        with np.load(cache_file) as data:
            return dict(zip(data["names"].tolist(), data["drawings"]))
    names, drawings = [], []
    for split, path in paths.items():
        n, d = read_split(path, split)
        names += n
        drawings.append(d)
    chars = dict(zip(names, np.concatenate(drawings)))
    if cache_file:
        try:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            np.savez(cache_file, names=np.array(names), drawings=np.stack(list(chars.values())))
        except OSError:
            pass  # nowhere to cache: decode again next time
    return chars


def lake_classes(characters: list[str]) -> dict[str, list[str]]:
    """The authors' split with its validation carve-out, as class names (module docstring);
    ``characters`` as ``_characters`` orders them (the background zip's first)."""
    background = characters[:SPLITS["images_background"][0]]
    val = [c for c in background if c.split("/")[0] in LAKE_VAL_ALPHABETS]
    train = [c for c in background if c.split("/")[0] not in LAKE_VAL_ALPHABETS]
    test = characters[len(background):]
    return {"train": [f"{c}/{rot}" for rot in ROTATIONS for c in train],   # class r * C + c
            "val": [f"{c}/rot000" for c in val], "test": [f"{c}/rot000" for c in test]}


class Omniglot:
    """One class split of Omniglot: ``train``, ``val`` and ``test``, each (classes, 20, 28, 28),
    built on first read; ``classes[part]`` names each class ("Alphabet/characterNN/rotDDD")."""

    def __init__(self, split: str, characters: dict[str, np.ndarray], classes: dict[str, list[str]]):
        missing = [c for part in PARTS for c in classes[part] if c.rsplit("/", 1)[0] not in characters]
        if missing:
            raise OmniglotError(f"{len(missing)} classes of the {split} split are in neither zip, e.g. {missing[0]}")
        self.split, self.classes, self._characters = split, classes, characters

    @classmethod
    def load(cls, root: Path, split: str = "vinyals", download_missing: bool = False,
             cache_dir: Path | None = Path.home() / ".cache" / "raremem") -> "Omniglot":
        """``split`` ("vinyals" | "lake") from the zips in ``root`` (downloading what is missing
        if asked)."""
        if split not in SPLITS_KNOWN:
            raise OmniglotError(f"unknown split {split!r}: one of {', '.join(SPLITS_KNOWN)}")
        root = Path(root)
        classes = vinyals_classes(root, download_missing) if split == "vinyals" else None
        characters = _characters(root, download_missing, cache_dir)
        return cls(split, characters, classes or lake_classes(list(characters)))

    def _build(self, part: str) -> np.ndarray:
        out = np.empty((len(self.classes[part]), DRAWINGS, SIZE, SIZE), np.float32)
        for i, name in enumerate(self.classes[part]):
            char, rot = name.rsplit("/", 1)
            out[i] = np.rot90(self._characters[char], ROTATIONS.index(rot), axes=(1, 2))
        return out

    @cached_property
    def train(self) -> np.ndarray:
        return self._build("train")

    @cached_property
    def val(self) -> np.ndarray:
        return self._build("val")

    @cached_property
    def test(self) -> np.ndarray:
        return self._build("test")

    def part(self, name: str) -> np.ndarray:
        if name not in PARTS:
            raise ValueError(f"a part is one of {PARTS}, not {name!r}")
        return getattr(self, name)
