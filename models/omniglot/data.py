"""Omniglot (Lake et al. 2015) as the paper uses it (Kaiser et al. 2017, §4.1).

Training classes: the 964 characters of ``images_background`` in 4 rotations (0, 90, 180, 270
degrees), each rotation a class of its own: 3,856 classes. Evaluation classes: the 659
characters of ``images_evaluation``, unrotated. Every class has 20 drawings; images are resized
from 105x105 to 28x28 (bilinear) and stored as float32 ink in [0, 1] (1 = ink).

Zips come from a directory, or are downloaded from the canonical URLs and checked against the
official md5s. Zips found locally may be faithful rebuilds with other bytes, so they are
checked by structure instead (character and drawing counts).
"""

from __future__ import annotations

import hashlib
import io
import shutil
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

SIZE = 28
DRAWINGS = 20
SPLITS = {
    # name: (characters, canonical URL, md5 of the official zip)
    "images_background": (964, "https://github.com/brendenlake/omniglot/raw/master/python/images_background.zip",
                          "68d2efa1b9178cc56df9314c21c6e718"),
    "images_evaluation": (659, "https://github.com/brendenlake/omniglot/raw/master/python/images_evaluation.zip",
                          "6b91aef0f799c5bb55b94e3f2daec811"),
}


class OmniglotError(RuntimeError):
    """A missing, corrupt or unexpected Omniglot file."""


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download(split: str, root: Path, url: str | None = None, md5: str | None = None) -> Path:
    """Fetch ``split``.zip into ``root`` and check its md5; nothing is kept if it differs."""
    _, default_url, default_md5 = SPLITS[split]
    url, md5 = url or default_url, md5 or default_md5
    root.mkdir(parents=True, exist_ok=True)
    target, tmp = root / f"{split}.zip", root / f".{split}.zip.part"
    try:
        with urllib.request.urlopen(url, timeout=60) as resp, open(tmp, "wb") as out:
            shutil.copyfileobj(resp, out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OmniglotError(f"could not download {url}: {exc}") from exc
    got = _md5(tmp)
    if got != md5:
        tmp.unlink()
        raise OmniglotError(f"{url}: md5 {got} is not the official {md5}")
    tmp.replace(target)
    return target


def read_split(zip_path: Path, split: str) -> np.ndarray:
    """(characters, 20, 28, 28) float32 ink in [0, 1], characters in sorted path order."""
    expected_chars = SPLITS[split][0]
    if not zip_path.is_file():
        raise OmniglotError(f"{zip_path} not found (give --data DIR with {split}.zip, or --download)")
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
    return out


@dataclass
class Omniglot:
    train: np.ndarray  # (3856, 20, 28, 28): background characters x 4 rotations
    test: np.ndarray   # (659, 20, 28, 28): evaluation characters

    @classmethod
    def load(cls, root: Path, download_missing: bool = False,
             cache_dir: Path | None = Path.home() / ".cache" / "raremem") -> "Omniglot":
        """Read both splits from ``root`` (downloading missing zips if asked). The resized arrays
        are cached in ``cache_dir`` under a name that carries the zips' sizes."""
        root = Path(root)
        paths = {split: root / f"{split}.zip" for split in SPLITS}
        for split, path in paths.items():
            if not path.is_file() and download_missing:
                download(split, root)
        tag = "_".join(str(p.stat().st_size) if p.is_file() else "missing" for p in paths.values())
        cache_file = cache_dir / f"omniglot_{SIZE}_{tag}.npz" if cache_dir else None
        if cache_file and cache_file.is_file():
            with np.load(cache_file) as data:
                return cls(train=data["train"], test=data["test"])
        arrays = {split: read_split(path, split) for split, path in paths.items()}
        data = cls(train=rotations(arrays["images_background"]), test=arrays["images_evaluation"])
        if cache_file:
            try:
                cache_file.parent.mkdir(parents=True, exist_ok=True)
                np.savez(cache_file, train=data.train, test=data.test)
            except OSError:
                pass  # nowhere to cache: decode again next time
        return data


def rotations(chars: np.ndarray) -> np.ndarray:
    """(C, 20, H, W) -> (4C, 20, H, W): class r*C + c is character c rotated by r * 90 degrees."""
    return np.concatenate([np.rot90(chars, r, axes=(2, 3)) for r in range(4)]).copy()
