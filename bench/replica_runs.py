"""Run a trainer with N replicas against one server and collect what each replica recorded."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from raremem.models.launch import trainer_command


def run_replicas(trainer: str, mode: str, replicas: int, address: str, out: Path, args: list[str]) -> list[dict]:
    """Each replica's summary (steps, wall, steps/s) plus its per-step metrics rows."""
    cmd = trainer_command(trainer, mode, replicas, address, [*args, "--out", str(out)])
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    runs = []
    for r in range(replicas):
        summary = json.loads((out / f"replica-{r}.json").read_text())
        metrics = out / ("metrics.jsonl" if r == 0 else f"metrics-rank{r}.jsonl")
        summary["rows"] = [json.loads(line) for line in metrics.read_text().splitlines()]
        runs.append(summary)
    return runs
