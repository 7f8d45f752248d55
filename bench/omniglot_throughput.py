"""Omniglot training throughput with the memory on a server vs in this process.

Models train side by side in one run, taking turns in blocks of episode batches, each with one
optimiser update per episode time step (30 memory calls and updates per batch): through a
raremem server over a LookupStream (TCP, and a Unix-domain socket), through unary Lookup
calls, and through the in-process store. Same config, same episodes, same initial weights.
Writes results/omniglot_throughput.{json,md}.

    python bench/omniglot_throughput.py [--blocks 4 --block-steps 8 --threads 2]
"""

from __future__ import annotations

import torch  # noqa: I001 - torch before faiss (design.md §5)

import argparse
import json
import signal
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from raremem.models.memory_layer import LocalBackend, RemoteBackend
from raremem.models.omniglot.data import Omniglot
from raremem.models.omniglot.episodes import sample_episodes
from raremem.models.omniglot.model import OmniglotModel
from raremem.models.omniglot.train import TrainConfig, train_episodes
from raremem.models.paths import results_dir
from raremem.models.runinfo import machine
from raremem.server.spawn import spawn_server


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--blocks", type=int, default=4)
    p.add_argument("--block-steps", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cfg = TrainConfig()
    data = Omniglot.load(Path(cfg.data)).train
    memory = dict(key_dim=cfg.rep_dim, size=cfg.memory_size, choose_k=cfg.choose_k, age_noise=cfg.age_noise,
                  alpha=cfg.alpha, seed=cfg.seed)
    sock = Path(tempfile.mkdtemp()) / "raremem.sock"
    proc, address, _ = spawn_server("--metrics-port", "-1", "--snapshot-interval", "0", "--unix", str(sock))
    try:
        backends = {
            "in-process": LocalBackend(**memory),
            "remote, stream (TCP)": RemoteBackend(address, "omniglot/stream-tcp", **memory),
            "remote, stream (Unix socket)": RemoteBackend(f"unix://{sock}", "omniglot/stream-uds", **memory),
            "remote, unary (TCP)": RemoteBackend(address, "omniglot/unary-tcp", stream=False, **memory),
        }
        runs = {}
        for where, backend in backends.items():
            torch.manual_seed(0)
            model = OmniglotModel(cfg.model_config(), backend)
            runs[where] = (model, torch.optim.Adam(model.parameters(), lr=cfg.lr, eps=cfg.adam_eps))
        seconds = {w: 0.0 for w in runs}
        rng = np.random.default_rng(0)
        for block in range(args.blocks + 1):  # block 0 warms up, untimed
            episodes = [sample_episodes(data, cfg.batch, cfg.width, cfg.shots, rng) for _ in range(args.block_steps)]
            for where, (model, opt) in runs.items():
                t0 = time.perf_counter()
                for ep in episodes:
                    train_episodes(model, opt, ep, cfg.clip)
                if block:
                    seconds[where] += time.perf_counter() - t0
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    steps = args.blocks * args.block_steps
    sps = {w: steps / s for w, s in seconds.items()}
    out = {"machine": machine(), "command": "python bench/omniglot_throughput.py " + " ".join(sys.argv[1:]),
           "steps_each": steps, "threads": args.threads,
           "config": {"batch": cfg.batch, "width": cfg.width, "shots": cfg.shots, "memory_size": cfg.memory_size,
                      "choose_k": cfg.choose_k, "head": cfg.head},
           "steps_per_second": sps, "remote/local": sps["remote, stream (TCP)"] / sps["in-process"]}
    m = out["machine"]
    md = ["# Omniglot training throughput: remote memory vs in-process", "",
          f"`{out['command']}` at commit `{m['commit']}`, {m['time']}; {m['cpu']}, {m['cores']} cores, "
          f"torch threads {args.threads}. {steps} episode batches each, taking turns in blocks of "
          f"{args.block_steps} (plus one untimed warm-up block); B={cfg.batch} episodes of {cfg.width}x{cfg.shots}: "
          f"{cfg.width * cfg.shots} memory calls and optimiser updates per episode batch.", "",
          "| memory | episode batches/s | / in-process |", "|---|---:|---:|"]
    md += [f"| {w} | {v:.3f} | {v / sps['in-process']:.3f} |" for w, v in sps.items()]
    md += ["", f"Remote (stream, TCP) / in-process: **{out['remote/local']:.3f}** (target >= 0.9).", ""]
    results_dir().mkdir(parents=True, exist_ok=True)
    (results_dir() / "omniglot_throughput.json").write_text(json.dumps(out, indent=2))
    (results_dir() / "omniglot_throughput.md").write_text("\n".join(md))
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
