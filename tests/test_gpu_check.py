"""``make gpu-check``'s CPU mode: the same plumbing as on a GPU at small sizes, so the script
cannot rot between the runs on a GPU machine."""

from __future__ import annotations

import json

import pytest
import torch

from bench import gpu_check
from raremem.models.omniglot.evaluate import DEFAULT_DATA


@pytest.mark.skipif(torch.cuda.is_available(), reason="with CUDA here, make gpu-check runs for real")
def test_the_gpu_check_runs_end_to_end_on_the_cpu(tmp_path):
    assert gpu_check.main(["--cpu", "--out", str(tmp_path)]) == 0
    r = json.loads((tmp_path / "gpu.json").read_text())
    assert r["device"] == "cpu" and r["device_name"].startswith("CPU")
    assert r["tests"]["returncode"] in (0, 5) and r["tests"].get("skipped", 0) >= 6   # no CUDA: every gpu test skips
    cells = {(x["slots"], x["batch"]) for x in r["lookup"]}
    assert cells == {(4096, 16), (4096, 64), (16384, 16), (16384, 64)}
    assert all(x["server_ms"] > 0 and x["bare_ms"] > 0 and x["cpu_server_ms"] > 0 for x in r["lookup"])
    by_dtype = {p["dtype"]: p for p in r["precision"]}
    assert by_dtype["float32"]["top1_agreement_with_float32"] == 1.0
    assert by_dtype["float16"]["device_bytes_per_slot"] * 2 == by_dtype["float32"]["device_bytes_per_slot"] == 1024
    assert by_dtype["float16"]["top1_agreement_with_float32"] > 0.95
    if (DEFAULT_DATA / "images_background.zip").is_file():
        run = r["omniglot"]["runs"][0]
        assert "error" not in run and run["batches"] >= 1 and run["batches_per_second"] > 0
    md = (tmp_path / "gpu.md").read_text()
    assert "| 16,384 | 64 |" in md and "float16" in md
    from reports.readme import gpu

    said = "\n".join(gpu(tmp_path))   # README's GPU lines read the same file
    assert "at b = 64" in said and "- 4,096 slots:" in said and "- 16,384 slots:" in said
