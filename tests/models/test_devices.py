"""``--device`` for every trainer: no CUDA here is one clear line, ``--device cpu`` is exactly
the run with no flag, and on a GPU (``gpu``-marked, skipped without one) each trainer trains
there, resumes exactly and runs under DDP on one device."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from raremem.models.devices import resolve_device
from raremem.models.errors import SetupError
from raremem.models.neural_gpu import train as synthetic
from raremem.models.omniglot import train as omniglot
from raremem.models.omniglot.evaluate import DEFAULT_DATA
from raremem.models.translation import train as translation
from raremem.models.translation.data import DEFAULT_DATA as TRANSLATION_DATA

CUDA = torch.cuda.is_available()


@pytest.fixture(scope="module")
def trainers(tmp_path_factory):
    """Each trainer's main and a few-step command line against an in-process memory."""
    have = {"omniglot": (DEFAULT_DATA / "images_background.zip").is_file(),
            "translation": (TRANSLATION_DATA / "multi30k").is_dir()}
    spm = tmp_path_factory.mktemp("spm") / "sp.model"
    return {
        "synthetic": (synthetic.main, ["--arch", "seq2seq", "--preset", "short", "--units", "16", "--batch", "4",
                                       "--steps", "3", "--eval-every", "0", "--final-examples", "20",
                                       "--memory-size", "4096", "--choose-k", "8"]),
        "omniglot": (omniglot.main, ["--split", "lake", "--batch", "2", "--rep-dim", "16", "--memory-size", "64",
                                     "--choose-k", "8", "--steps", "2", "--eval-every", "0"]) if have["omniglot"] else None,
        "translation": (translation.main, ["--spm", str(spm), "--vocab", "500", "--units", "16", "--batch", "4",
                                           "--max-tokens", "16", "--memory-size", "256", "--choose-k", "8",
                                           "--steps", "3", "--val-every", "0"]) if have["translation"] else None,
    }


NAMES = ("synthetic", "omniglot", "translation")


def trainer(trainers, name):
    if trainers[name] is None:
        pytest.skip(f"the {name} data set is not in ../shared/data")
    return trainers[name]


def digest(out) -> str:
    return json.loads((out / "replica-0.json").read_text())["parameters_sha256"]


@pytest.mark.skipif(CUDA, reason="this machine has CUDA")
@pytest.mark.parametrize("name", NAMES)
def test_cuda_asked_on_a_machine_without_it_is_one_clear_line(trainers, name, tmp_path, capsys):
    main, argv = trainer(trainers, name)
    assert main([*argv, "--server", "local", "--threads", "1", "--out", str(tmp_path / "r"),
                 "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--device cuda" in err[0] and "no CUDA device" in err[0], err
    assert not (tmp_path / "r" / "checkpoint.pt").exists()


@pytest.mark.parametrize("name", NAMES)
def test_device_cpu_is_the_run_without_the_flag(trainers, name, tmp_path):
    main, argv = trainer(trainers, name)
    common = [*argv, "--server", "local", "--threads", "1"]
    assert main([*common, "--out", str(tmp_path / "default")]) == 0
    assert main([*common, "--out", str(tmp_path / "cpu"), "--device", "cpu"]) == 0
    same = digest(tmp_path / "default") == digest(tmp_path / "cpu")
    assert same != CUDA   # with CUDA here the default is the GPU: its arithmetic differs
    recorded = json.loads((tmp_path / "cpu" / "run.json").read_text())["config"]["device"]
    assert recorded == "cpu"


def test_flags_resolve_to_devices():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("", hogwild=True) == torch.device("cpu")   # Hogwild shares CPU memory
    assert resolve_device("") == torch.device("cuda", 0) if CUDA else torch.device("cpu")
    with pytest.raises(SetupError, match="cpu, cuda or cuda:N"):
        resolve_device("gpu")
    with pytest.raises(SetupError, match="--hogwild"):
        resolve_device("cuda", hogwild=True)
    if not CUDA:
        with pytest.raises(SetupError, match="no CUDA device"):
            resolve_device("cuda:0")


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="no CUDA device")
@pytest.mark.parametrize("name", NAMES)
def test_every_trainer_trains_on_cuda_through_a_gpu_server_and_resumes_exactly(trainers, name, tmp_path):
    main, argv = trainer(trainers, name)
    # with its memory, through a server the run spawns on the same GPU
    assert main([*argv, "--server", "spawn", "--device", "cuda", "--out", str(tmp_path / "spawned")]) == 0
    assert json.loads((tmp_path / "spawned" / "run.json").read_text())["config"]["device"] == "cuda:0"
    # resume: every random state (the GPU's too) comes back; a life-long memory in this process
    # does not survive the restart, so the sequence models resume without one
    plain = [*argv, "--server", "local", "--device", "cuda", "--checkpoint-every", "1",
             *(["--no-memory-layer"] if name != "omniglot" else [])]
    assert main([*plain, "--out", str(tmp_path / "straight")]) == 0
    assert main([*plain, "--out", str(tmp_path / "halves"), "--steps", "1"]) == 0
    assert main([*plain, "--out", str(tmp_path / "halves"), "--resume"]) == 0
    assert digest(tmp_path / "halves") == digest(tmp_path / "straight")


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="no CUDA device")
@pytest.mark.parametrize("name", ["synthetic", "omniglot"])
def test_ddp_on_one_gpu(trainers, name, tmp_path, server):
    _, argv = trainer(trainers, name)
    module = {"synthetic": "raremem.models.neural_gpu.train", "omniglot": "raremem.models.omniglot.train"}[name]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "1", "-m", module, *argv,
           "--server", server[0], "--device", "cuda", "--out", str(tmp_path / "ddp")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((tmp_path / "ddp" / "replica-0.json").read_text())["mode"] == "ddp"
