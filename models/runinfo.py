"""Where a number came from: commit, machine and library versions, recorded beside results."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from raremem.models.paths import results_dir


def machine() -> dict:
    def git(*args):
        try:
            return subprocess.run(["git", *args], capture_output=True, text=True).stdout.strip()
        except OSError:  # no git (a container): the image may name its commit instead
            return ""

    dirty = bool(git("status", "--porcelain", "-uno"))
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    versions = {}
    for package in ("faiss-cpu", "torch", "numpy", "grpcio"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    commit = git("rev-parse", "--short", "HEAD") or os.environ.get("RAREMEM_COMMIT", "unknown")
    return {"commit": commit + ("-dirty" if dirty else ""), "cpu": cpu,
            "cores": os.cpu_count(), "python": platform.python_version(), **versions,
            "time": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def command() -> str:
    """The command line that started this process, with the interpreter shown as ``python``."""
    return " ".join(["python", *sys.orig_argv[1:]])


def write_results(stem: str, data: dict, markdown: list[str]) -> None:
    """<results>/<stem>.json and <stem>.md ($RAREMEM_RESULTS, default ./results), and the
    table on stdout."""
    results = results_dir()
    results.mkdir(parents=True, exist_ok=True)
    (results / f"{stem}.json").write_text(json.dumps(data, indent=2))
    (results / f"{stem}.md").write_text("\n".join(markdown) + "\n")
    print("\n".join(markdown))
