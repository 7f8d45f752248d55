"""Start ``raremem-server`` as a child process on a free port (for launchers, demos, tests)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time


def spawn_server(*args: str, timeout: float = 60.0, env: dict | None = None) -> tuple[subprocess.Popen, str, str]:
    """Run ``python -m raremem.server.main --port 0 ARGS``; return (process, "host:port", start-up log).

    ``env`` adds to (or overrides) this process's environment for the child. The child's combined
    stdout/stderr stays readable from ``process.stdout`` afterwards."""
    proc = subprocess.Popen([sys.executable, "-m", "raremem.server.main", "--port", "0", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=None if env is None else {**os.environ, **env})
    deadline, lines = time.time() + timeout, []
    while time.time() < deadline:
        line = proc.stdout.readline()
        lines.append(line)
        found = re.search(r"listening on (\S+:\d+)", line)
        if found:
            return proc, found.group(1), "".join(lines)
        if proc.poll() is not None:
            break
    proc.kill()
    raise RuntimeError("raremem-server did not start:\n" + "".join(lines))
