"""A run folder, or a server memory, that holds another run is never silently continued."""

from __future__ import annotations

import json

import pytest

from raremem.client import MemoryClient
from raremem.models.neural_gpu.train import TrainConfig as SyntheticConfig
from raremem.models.omniglot.evaluate import DEFAULT_DATA
from raremem.models.omniglot.train import TrainConfig as OmniglotConfig
from raremem.models.omniglot.train import main
from raremem.models.translation.train import TrainConfig as TranslationConfig

needs_data = pytest.mark.skipif(not (DEFAULT_DATA / "images_background.zip").is_file(),
                                reason="shared Omniglot zips not found")
TINY = ["--steps", "2", "--batch", "2", "--eval-every", "0", "--memory-size", "64", "--choose-k", "16",
        "--rep-dim", "16", "--split", "lake", "--threads", "1"]


def steps_logged(out) -> list[int]:
    return [json.loads(line)["step"] for line in open(out / "metrics.jsonl")]


def test_default_run_folders_name_the_run():
    assert OmniglotConfig().out == "runs/omniglot/vinyals-5way-paper-seed0"
    assert OmniglotConfig(width=20, seed=3, split="lake").out == "runs/omniglot/lake-20way-paper-seed3"
    assert SyntheticConfig(preset="short", arch="seq2seq", memory_layer=False).out == \
        "runs/synthetic/short-seq2seq-plain-seed0"
    assert TranslationConfig(seed=1).out == "runs/translation/gnmt-memory-seed1"
    assert OmniglotConfig(out="mine").out == "mine"


@needs_data
def test_a_folder_with_another_run_is_refused_unless_resumed_or_overwritten(tmp_path, capsys):
    out = tmp_path / "run"
    args = [*TINY, "--server", "local", "--out", str(out)]
    assert main(args) == 0
    assert steps_logged(out) == [1, 2]
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds another run" in err[0] and "--resume" in err[0] and "--overwrite" in err[0]
    assert steps_logged(out) == [1, 2]                               # nothing of it was touched
    assert main([*args, "--resume", "--steps", "3"]) == 0
    assert steps_logged(out) == [1, 2, 3]
    assert main([*args, "--overwrite", "--steps", "1"]) == 0
    assert steps_logged(out) == [1]
    assert main([*args, "--overwrite", "--resume"]) == 2


@needs_data
def test_a_fresh_run_never_continues_a_lifelong_memory_with_writes(server, tmp_path, capsys):
    address, _ = server
    args = [*TINY, "--server", address, "--shared-memory"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    with MemoryClient(address) as c:
        writes, filled = c.stats("omniglot/shared").info.total_writes, c.stats("omniglot/shared").info.filled
    assert writes > 0 and filled > 0
    capsys.readouterr()
    assert main([*args, "--out", str(tmp_path / "b")]) == 2         # another folder, the same memory
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already holds" in err[0] and "omniglot/shared" in err[0]
    with MemoryClient(address) as c:
        assert c.stats("omniglot/shared").info.total_writes == writes
    assert main([*args, "--out", str(tmp_path / "a"), "--resume", "--steps", "3"]) == 0   # its own run goes on
    assert main([*args, "--out", str(tmp_path / "b"), "--overwrite", "--steps", "0"]) == 0
    with MemoryClient(address) as c:   # cleared before the new run (of no steps) began
        assert c.stats("omniglot/shared").info.filled == 0
    # replicas that join a run's memory are not refused: two Hogwild replicas write one memory
    assert main([*args, "--out", str(tmp_path / "c"), "--overwrite", "--hogwild", "2"]) == 0


def test_missing_data_is_one_line(tmp_path, capsys):
    assert main([*TINY, "--server", "local", "--data", str(tmp_path / "nothing"), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "RAREMEM_DATA" in err[0] and "images_background.zip" in err[0]
