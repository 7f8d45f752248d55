"""The Docker deployment for real: build the images on a locally made Debian base, bring up
the server and 2 trainers with docker-compose, watch the memory fill through the admin
service, take it down, and check that the next ``up`` reloads the memories from the volume.

Needs a running Docker engine and a compose (v1 ``docker-compose`` or v2 ``docker compose``);
skipped cleanly without them. ``make docker-test`` installs and starts both on a Debian host.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from raremem.models.omniglot.evaluate import DEFAULT_DATA

ROOT = Path(__file__).resolve().parents[2]
BASE = os.environ.get("RAREMEM_BASE_IMAGE", "raremem/base:bookworm")
PROJECT = "raremem-test"

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def _ok(*cmd: str) -> bool:
    return shutil.which(cmd[0]) is not None and subprocess.run(cmd, capture_output=True).returncode == 0


def compose_command() -> list[str] | None:
    if _ok("docker-compose", "version"):
        return ["docker-compose"]
    if _ok("docker", "compose", "version"):
        return ["docker", "compose"]
    return None


@pytest.fixture(scope="module")
def compose():
    if not _ok("docker", "info"):
        pytest.skip("no Docker engine running")
    cmd = compose_command()
    if cmd is None:
        pytest.skip("neither docker-compose nor docker compose is installed")
    if not (DEFAULT_DATA / "images_background.zip").is_file():
        pytest.skip("Omniglot zips not in ../shared/data/omniglot")
    if not _ok("docker", "image", "inspect", BASE):
        if shutil.which("debootstrap") is None or os.geteuid() != 0:
            pytest.skip(f"no base image {BASE} and no root debootstrap to build one")
        subprocess.run(["sh", "docker/build-base.sh", BASE], cwd=ROOT, check=True)
    # every time: pip keeps what is there and adds what pyproject.toml gained since
    subprocess.run(["sh", "docker/fill-wheels.sh"], cwd=ROOT, check=True, env={**os.environ, "PYTHON": sys.executable})
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    env = {**os.environ, "RAREMEM_BASE_IMAGE": BASE, "RAREMEM_COMMIT": commit.stdout.strip() or "unknown", "RAREMEM_PIP_ARGS": "--no-index --find-links /wheels",
           "RAREMEM_PORT": str(port), "RAREMEM_DATA": str(DEFAULT_DATA.parent), "RAREMEM_SNAPSHOT_INTERVAL": "5",
           "TRAINER_ARGS": "--steps 100 --batch 4 --memory-size 1024 --eval-every 0 --threads 1"}
    base = [*cmd, "-f", str(ROOT / "docker" / "docker-compose.yml"), "-p", PROJECT]

    def run(*args: str, check: bool = True, timeout: float = 300) -> str:
        proc = subprocess.run([*base, *args], env=env, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode:
            raise AssertionError(f"{' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        return proc.stdout

    run("build", timeout=1800)
    try:
        yield run
    finally:
        run("--profile", "admin", "down", "-v", "--remove-orphans", check=False)


def _exit_code(container: str) -> int | None:
    state = json.loads(subprocess.run(["docker", "inspect", "--format", "{{json .State}}", container],
                                      capture_output=True, text=True).stdout or "{}")
    return None if state.get("Running", True) else state.get("ExitCode")


def admin_list(run) -> dict[str, dict]:
    out = run("--profile", "admin", "run", "--rm", "admin", "--json", "list")
    return {m["name"]: m for m in json.loads(out[out.index("["):])}


def test_compose_up_fill_down_and_reload(compose):
    run = compose
    run("up", "-d", "--scale", "trainer=2")
    seen: list[int] = []
    deadline = time.time() + 600
    while time.time() < deadline:   # the admin service watches two trainers fill their memories
        mems = {n: m for n, m in admin_list(run).items() if n.startswith("omniglot/replica-") and n.endswith("-0")}
        seen.append(sum(m["total_writes"] for m in mems.values()))
        failed = [c for c in run("ps", "-q", "trainer").split() if _exit_code(c) not in (None, 0)]
        assert not failed, run("logs", "--tail", "30", "trainer", check=False)
        filling = [n for n in seen if n > 0]
        if len(mems) == 2 and len(filling) >= 2 and filling[-1] > filling[0]:
            break
        time.sleep(2)
    assert len(mems) == 2 and filling[-1] > filling[0] > 0, seen
    trainers = run("ps", "-q", "trainer").split()
    assert len(trainers) == 2
    codes = subprocess.run(["docker", "wait", *trainers], capture_output=True, text=True, timeout=900).stdout.split()
    assert codes == ["0", "0"], run("logs", "trainer", check=False)[-3000:]
    before = admin_list(run)
    run("down")                                  # SIGTERM: the server snapshots into the volume
    run("up", "-d", "server")                    # no trainers: memories come back from disk
    after = admin_list(run)
    assert set(after) == set(before)
    for name, m in before.items():
        assert (after[name]["filled"], after[name]["total_writes"]) == (m["filled"], m["total_writes"]), name


def test_the_gpu_profile_validates_and_reserves_the_gpus():
    """``docker compose --profile gpu config``: the GPU server and trainers exist only in that
    profile, each reserves NVIDIA GPUs, and the trainers ask for CUDA and the GPU server. (The
    GPU images are not built here: no GPU, and their CUDA wheels are several GB.)"""
    cmd = compose_command()
    if cmd is None:
        pytest.skip("neither docker-compose nor docker compose is installed")
    base = [*cmd, "-f", str(ROOT / "docker" / "docker-compose.yml"), "-p", PROJECT]

    def config(*args: str) -> str:
        proc = subprocess.run([*base, *args, "config"], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    gpu = config("--profile", "gpu")
    for service in ("server-gpu:", "trainer-gpu:"):
        block = re.split(r"\n  (?=\S)", gpu[gpu.index("\n  " + service):])[1]   # up to the next service
        assert "driver: nvidia" in block and "capabilities:\n            - gpu" in block, block
        assert "profiles:\n    - gpu" in block, block                   # absent from a plain `up`
    assert "nvidia" not in gpu[:gpu.index("\n  server-gpu:")]             # the CPU services reserve no GPU
    trainer = gpu[gpu.index("\n  trainer-gpu:"):]
    assert "RAREMEM_ADDRESS: server-gpu:50051" in trainer and "--device cuda" in trainer
