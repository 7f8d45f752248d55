"""The server's OpenMP threads sleep at once unless the user says otherwise (server/main.py)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest


def spin_count(**env: str) -> str:
    """GOMP_SPINCOUNT as the server process's libgomp settled it (it prints its settings at load
    with OMP_DISPLAY_ENV=verbose); ``--help`` loads everything and exits."""
    clean = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    out = subprocess.run([sys.executable, "-m", "raremem.server.main", "--help"], capture_output=True, text=True,
                         env={**clean, "OMP_DISPLAY_ENV": "verbose", **env}, timeout=120)
    assert out.returncode == 0, out.stderr
    found = re.search(r"GOMP_SPINCOUNT = '(\d+)'", out.stderr)
    if found is None:
        pytest.skip("this OpenMP runtime does not print its settings")
    return found.group(1)


def test_waiting_threads_sleep_at_once_by_default():
    assert spin_count() == "0"


def test_an_explicit_setting_wins():
    assert spin_count(GOMP_SPINCOUNT="300000") == "300000"
    assert spin_count(OMP_WAIT_POLICY="ACTIVE") != "0"
