"""Omniglot loading from the real zips, downloads against a local HTTP server, and episodes."""

from __future__ import annotations

import functools
import hashlib
import http.server
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest

from raremem.models.omniglot.data import (VINYALS_SHA256, Omniglot, OmniglotError, download, read_split,
                                          vinyals_classes)
from raremem.models.omniglot.episodes import sample_episodes
from raremem.models.omniglot.evaluate import DEFAULT_DATA

pytestmark = pytest.mark.skipif(not (DEFAULT_DATA / "images_background.zip").is_file(),
                                reason="shared Omniglot zips not found")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def omniglot(cache):
    return Omniglot.load(DEFAULT_DATA, "vinyals", cache_dir=cache)


@pytest.fixture(scope="module")
def lake(cache):
    return Omniglot.load(DEFAULT_DATA, "lake", cache_dir=cache)


def character(name: str) -> str:
    return name.rsplit("/", 1)[0]   # "Alphabet/characterNN/rot090" -> "Alphabet/characterNN"


def test_vinyals_split_has_the_published_classes(omniglot):
    counts = {part: len(names) for part, names in omniglot.classes.items()}
    assert counts == {"train": 4112, "val": 688, "test": 1692}
    chars = {part: {character(n) for n in names} for part, names in omniglot.classes.items()}
    assert {part: len(c) for part, c in chars.items()} == {"train": 1028, "val": 172, "test": 423}
    assert not chars["train"] & chars["val"] and not chars["train"] & chars["test"] and not chars["val"] & chars["test"]
    assert len(chars["train"] | chars["val"]) == 1200    # the paper's "1,200 characters for training"
    assert omniglot.train.shape == (4112, 20, 28, 28) and omniglot.test.shape == (1692, 20, 28, 28)


def test_lake_split_has_the_authors_classes(lake):
    counts = {part: len(names) for part, names in lake.classes.items()}
    assert counts == {"train": 792 * 4, "val": 172, "test": 659}
    # train + val are the authors' 964 background characters (3,856 classes in 4 rotations)
    chars = {part: {character(n) for n in names} for part, names in lake.classes.items()}
    assert len(chars["train"]) + len(chars["val"]) == 964 and not chars["train"] & chars["val"]
    assert len(chars["train"]) * 4 + len(chars["val"]) * 4 == 3856
    assert all(n.endswith("/rot000") for n in lake.classes["test"] + lake.classes["val"])  # unrotated
    assert not (chars["train"] | chars["val"]) & chars["test"]


def test_drawings_are_ink_in_unit_range(omniglot, lake):
    for split in (omniglot.train, omniglot.val, lake.test):
        assert split.dtype == np.float32 and split.min() == 0.0 and split.max() == 1.0
        ink = split.mean(axis=(2, 3))
        assert (ink > 0.001).all() and (ink < 0.5).all()  # every drawing has some ink, not all


def test_rotations_are_distinct_classes(lake, omniglot):
    n = 792
    base = lake.train[:n]
    for r in range(1, 4):
        rotated = lake.train[n * r: n * (r + 1)]
        np.testing.assert_array_equal(rotated, np.rot90(base, r, axes=(2, 3)))   # counter-clockwise
        assert not np.array_equal(rotated[0, 0], base[0, 0])
    # the same named class is the same array in both splits
    name = lake.classes["train"][n + 5]
    np.testing.assert_array_equal(omniglot.train[omniglot.classes["train"].index(name)], lake.train[n + 5])


def test_parts_are_built_only_when_read(cache):
    data = Omniglot.load(DEFAULT_DATA, "vinyals", cache_dir=cache)
    data.train
    assert "train" in vars(data) and "test" not in vars(data) and "val" not in vars(data)


def test_held_out_drawings_differ_from_training_ones(omniglot):
    train = {hashlib.sha1(img.tobytes()).hexdigest() for img in omniglot.train[:, 0]}
    assert not train & {hashlib.sha1(img.tobytes()).hexdigest() for img in omniglot.test[:, 0]}
    assert not train & {hashlib.sha1(img.tobytes()).hexdigest() for img in omniglot.val[:, 0]}


def test_missing_split_lists_are_one_clear_error(tmp_path):
    with pytest.raises(OmniglotError, match="splits/vinyals/train.txt not found.*--split lake"):
        Omniglot.load(tmp_path, "vinyals")
    with pytest.raises(OmniglotError, match="unknown split 'matching'"):
        Omniglot.load(DEFAULT_DATA, "matching")


def test_split_lists_download_checked(http_root, tmp_path, monkeypatch):
    www, base = http_root
    for part in ("train", "val", "test"):
        (www / f"{part}.txt").write_bytes((DEFAULT_DATA / "splits" / "vinyals" / f"{part}.txt").read_bytes())
    monkeypatch.setattr("raremem.models.omniglot.data.VINYALS_URL", base + "/{part}.txt")
    got = vinyals_classes(tmp_path / "dl", download_missing=True)
    assert [len(got[p]) for p in ("train", "val", "test")] == [4112, 688, 1692]
    (www / "val.txt").write_text("Hebrew/character01/rot000\n")
    monkeypatch.setitem(VINYALS_SHA256, "val", VINYALS_SHA256["val"])
    with pytest.raises(OmniglotError, match="sha256 .* is not the official"):
        vinyals_classes(tmp_path / "dl2", download_missing=True)


def test_episodes(omniglot):
    rng = np.random.default_rng(0)
    B, width, shots = 4, 5, 6
    ep = sample_episodes(omniglot.test, B, width, shots, rng)
    T = width * shots
    assert ep.images.shape == (T, B, 28, 28) and ep.labels.shape == ep.shot.shape == (T, B)
    for e in range(B):
        labels = ep.labels[:, e]
        assert set(labels) == set(range(e * width, (e + 1) * width))  # offset per episode
        for s in range(shots):  # all s-th draws come before any (s+1)-th draw
            block = slice(s * width, (s + 1) * width)
            assert (ep.shot[block, e] == s).all() and sorted(labels[block]) == list(range(e * width, (e + 1) * width))
        for c in range(width):  # the images of a label are distinct drawings of one class
            imgs = ep.images[labels == e * width + c, e]
            assert len({im.tobytes() for im in imgs}) == shots
            cls = ep.classes[e, c]
            assert all(any(np.array_equal(im, d) for d in omniglot.test[cls]) for im in imgs)
            for t in np.flatnonzero(labels == e * width + c):  # provenance points at the image
                src = ep.sources[t, e]
                np.testing.assert_array_equal(omniglot.test[src // 20, src % 20], ep.images[t, e])
    assert len({tuple(ep.labels[:width, e] % width) for e in range(B)}) > 1  # first draws shuffled


def fake_split(path: Path, split: str, chars: int, drawings: int = 20) -> None:
    png = next(iter(zipfile.ZipFile(DEFAULT_DATA / "images_evaluation.zip").namelist()[3:4]))
    data = zipfile.ZipFile(DEFAULT_DATA / "images_evaluation.zip").read(png)
    with zipfile.ZipFile(path, "w") as z:
        for c in range(chars):
            for d in range(drawings):
                z.writestr(f"{split}/Alpha/character{c:03d}/{c:04d}_{d:02d}.png", data)


def test_structure_is_checked(tmp_path):
    fake_split(tmp_path / "images_evaluation.zip", "images_evaluation", 10)
    with pytest.raises(OmniglotError, match="10 characters"):
        read_split(tmp_path / "images_evaluation.zip", "images_evaluation")
    (tmp_path / "bad.zip").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(OmniglotError, match="not a readable"):
        read_split(tmp_path / "bad.zip", "images_evaluation")
    with pytest.raises(OmniglotError, match="not found"):
        read_split(tmp_path / "missing.zip", "images_evaluation")


@pytest.fixture
def http_root(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_download_checks_the_md5(http_root, tmp_path):
    www, base = http_root
    fake_split(www / "images_evaluation.zip", "images_evaluation", 3)
    md5 = hashlib.md5((www / "images_evaluation.zip").read_bytes()).hexdigest()
    dest = tmp_path / "dl"
    path = download("images_evaluation", dest, url=f"{base}/images_evaluation.zip", md5=md5)
    assert path.read_bytes() == (www / "images_evaluation.zip").read_bytes()
    with pytest.raises(OmniglotError, match="is not the official"):
        download("images_evaluation", tmp_path / "dl2", url=f"{base}/images_evaluation.zip", md5="0" * 32)
    assert not list((tmp_path / "dl2").iterdir())  # nothing half-checked is left behind
    with pytest.raises(OmniglotError, match="could not download"):
        download("images_evaluation", tmp_path / "dl3", url=f"{base}/nothing.zip", md5=md5)
