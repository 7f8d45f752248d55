"""The built wheel installs as one namespace, ``raremem``, beside proto-plus (whose top-level
package is ``proto``), and works from outside the checkout: import, server, lookup, admin, and
``raremem-launch`` training two replicas against the server it starts.

The fresh virtual environment gets the wheel (and proto-plus, where an index offers it); the
other dependencies come from this interpreter's site-packages through a ``.pth`` line — a plain
path, so the editable install's import hook there is not loaded and nothing can be imported
from the checkout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import time
import zipfile
from pathlib import Path

import pytest

REPO = Path.cwd()


def run(*cmd, cwd, env=None, timeout=300):
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    if not (REPO / "pyproject.toml").is_file():
        pytest.skip("run from the repository root")
    tmp = tmp_path_factory.mktemp("wheel")
    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp / "dist"), str(REPO), cwd=tmp)
    wheel = next((tmp / "dist").glob("raremem-*.whl"))
    run(sys.executable, "-m", "venv", str(tmp / "env"), cwd=tmp)
    py = tmp / "env" / "bin" / "python"
    site = run(py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp).strip()
    Path(site, "host-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run(py, "-m", "pip", "install", "-q", "--no-deps", str(wheel), cwd=tmp)
    outside = tmp / "elsewhere"
    outside.mkdir()
    return wheel, tmp / "env" / "bin", outside


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "RAREMEM_DATA")}


def test_the_wheel_installs_one_top_level_name(installed):
    wheel, _, _ = installed
    with zipfile.ZipFile(wheel) as z:
        top = next(n for n in z.namelist() if n.endswith(".dist-info/top_level.txt"))
        assert z.read(top).decode().split() == ["raremem"]
        assert {n.split("/")[0] for n in z.namelist()} <= {"raremem", top.split("/")[0]}


def test_installed_package_sits_beside_proto_plus(installed):
    _, bin_dir, outside = installed
    got = subprocess.run([bin_dir / "python", "-m", "pip", "install", "-q", "--no-deps", "proto-plus"],
                         capture_output=True, text=True, timeout=300)
    if got.returncode:
        pytest.skip(f"proto-plus cannot be installed here (no index offers it): {got.stderr.strip()[-200:]}")
    check = ("import proto, raremem.client, raremem.proto.memory_pb2 as pb; "
             "from raremem.client import MemoryClient; "
             "assert proto.Message and 'site-packages' in raremem.client.__file__; "
             "assert pb.DESCRIPTOR.name == 'raremem/proto/memory.proto'; print(proto.__file__)")
    assert "site-packages" in run(bin_dir / "python", "-c", check, cwd=outside, env=clean_env())


def test_installed_launcher_trains_two_replicas(installed, tmp_path):
    """``raremem-launch`` runs the installed trainer modules, not a checkout's."""
    _, bin_dir, outside = installed
    data = Path(os.environ.get("RAREMEM_DATA", REPO.parent / "shared" / "data")) / "omniglot"
    if not (data / "images_background.zip").is_file():
        pytest.skip("shared Omniglot zips not found")
    out = tmp_path / "run"
    run(bin_dir / "raremem-launch", "--replicas", "2", "--mode", "hogwild", "--data-dir", str(tmp_path / "memory"),
        "--log", str(tmp_path / "trainers.log"), "--every", "5", "--",
        "--steps", "2", "--batch", "2", "--eval-every", "0", "--memory-size", "64", "--choose-k", "16",
        "--rep-dim", "16", "--split", "lake", "--data", str(data), "--out", str(out), cwd=outside, env=clean_env(),
        timeout=600)
    for rank in (0, 1):
        assert json.loads((out / f"replica-{rank}.json").read_text())["steps"] == 2
        assert (tmp_path / "memory" / "omniglot" / f"replica-{rank}.npz").is_file()   # snapshotted at the end


def test_installed_package_works_outside_the_checkout(installed, tmp_path):
    _, bin_dir, outside = installed
    env = clean_env()
    check = ("import raremem.client, raremem.proto.memory_pb2 as pb; "
             "assert 'site-packages' in raremem.client.__file__; "
             "assert pb.DESCRIPTOR.name == 'raremem/proto/memory.proto'; print(raremem.client.__file__)")
    assert "site-packages" in run(bin_dir / "python", "-c", check, cwd=outside, env=env)
    server = subprocess.Popen([bin_dir / "raremem-server", "--port", "0", "--metrics-port", "-1",
                               "--data-dir", str(tmp_path / "data")], cwd=outside, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        address, deadline = None, time.time() + 60
        while address is None and time.time() < deadline:
            line = server.stdout.readline()
            if "listening on" in line:
                address = line.split("listening on")[1].split()[0]
        assert address, "raremem-server did not start"
        lookup = (f"import numpy as np; from raremem.client import MemoryClient\n"
                  f"with MemoryClient('{address}') as c:\n"
                  f"    c.create_memory('m', 4, 16, choose_k=4)\n"
                  f"    q = np.eye(4, dtype=np.float32)[:2]\n"
                  f"    r = c.lookup('m', q, np.array([7, 8]), update=True)\n"
                  f"    assert list(r.written_slot) == [0, 1]\n"
                  f"    assert list(c.lookup('m', q).result) == [7, 8]\n")
        run(bin_dir / "python", "-c", lookup, cwd=outside, env=env)
        listed = json.loads(run(bin_dir / "raremem-admin", "--server", address, "--json", "list", cwd=outside, env=env))
        assert [(m["name"], m["filled"]) for m in listed] == [("m", 2)]
    finally:
        server.terminate()
        server.wait(timeout=30)
