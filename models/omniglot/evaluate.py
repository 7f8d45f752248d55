"""k-shot evaluation on held-out Omniglot classes (Kaiser et al. 2017, Table 1).

Final numbers read the split's test classes (``--classes test``, the default), once per
reported number; choices (heads, precisions, when to stop) read ``--classes val``. The split is
the checkpoint's own unless ``--split`` says otherwise.

One episode at a time, each in an emptied memory: ``width`` evaluation classes drawn ``shots``
times, first draws first; the memory is updated as the episode unfolds (no weight changes).
Accuracy is kept per "times seen before" (0-shot ... (shots-1)-shot); 95% intervals are over
episodes. The same harness scores a trained model and the pixel nearest-neighbour baseline.

    python -m raremem.models.omniglot.evaluate --checkpoint runs/omniglot/checkpoint.pt
    python -m raremem.models.omniglot.evaluate --checkpoint runs/omniglot/best.pt --classes val
    python -m raremem.models.omniglot.evaluate --pixel-nn --split lake
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from raremem.models.devices import device_of
from raremem.models import runinfo
from raremem.models.paths import data_dir
from raremem.models.memory_layer import make_backend
from raremem.models.omniglot.data import PARTS, SPLITS_KNOWN, Omniglot
from raremem.models.omniglot.episodes import sample_episodes
from raremem.models.omniglot.model import load_model

DEFAULT_DATA = data_dir("omniglot")  # $RAREMEM_DATA/omniglot


def evaluate(encode: Callable[[np.ndarray], np.ndarray], backend, data: np.ndarray, width: int,
             shots: int, episodes: int, seed: int = 0) -> dict:
    """``encode`` maps images (N, 28, 28) to unit queries (N, d). Returns per-shot accuracy
    (mean and 95% half-width over episodes) and the per-episode table."""
    rng = np.random.default_rng(seed)
    per_episode = np.zeros((episodes, shots))
    for e in range(episodes):
        ep = sample_episodes(data, 1, width, shots, rng)
        queries = encode(ep.images[:, 0])                        # (T, d)
        backend.reset()
        correct = np.zeros(len(queries), bool)
        for t in range(len(queries)):
            res = backend.lookup(queries[t:t + 1], ep.labels[t], update=True, use_recent=True)
            correct[t] = res.result[0] == ep.labels[t, 0]
        for s in range(shots):
            per_episode[e, s] = correct[ep.shot[:, 0] == s].mean()
    mean = per_episode.mean(axis=0)
    half = 1.96 * per_episode.std(axis=0, ddof=1) / np.sqrt(episodes) if episodes > 1 else np.zeros(shots)
    return {"width": width, "shots": shots, "episodes": episodes, "accuracy": mean.tolist(),
            "ci95": half.tolist()}


def pixel_encoder(images: np.ndarray) -> np.ndarray:
    """Pixels as keys: the nearest neighbour by cosine on raw 28x28 ink."""
    flat = images.reshape(len(images), -1).astype(np.float32)
    return flat / np.maximum(np.linalg.norm(flat, axis=1, keepdims=True), 1e-12)


def model_encoder(model) -> Callable[[np.ndarray], np.ndarray]:
    @torch.no_grad()
    def encode(images: np.ndarray) -> np.ndarray:
        model.eval()
        return model.queries(torch.from_numpy(images).to(device_of(model))).cpu().numpy()
    return encode


def evaluate_all(encode, memory: str, key_dim: int, data: np.ndarray, episodes: int, name: str,
                 token: str | None = None, seed: int = 1, widths: tuple[int, ...] = (5, 20)) -> dict:
    """``widths``-way (5 and 20) with 6 draws per class (0..5-shot), each in a fresh memory."""
    out = {}
    for width in widths:
        backend = make_backend(memory, f"{name}/eval-{width}way", key_dim, width * 6, token=token,
                               choose_k=min(256, width * 6), age_noise=0.0)
        out[f"{width}-way"] = evaluate(encode, backend, data, width, 6, episodes, seed=seed + width)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--checkpoint", type=Path, help="a trainer checkpoint")
    what.add_argument("--pixel-nn", action="store_true", help="the pixel nearest-neighbour baseline")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--split", choices=SPLITS_KNOWN, help="class split (default: the checkpoint's; vinyals)")
    p.add_argument("--classes", choices=PARTS[1:], default="test",
                   help="the split's classes to read: test (final numbers) or val (choices)")
    p.add_argument("--server", default="local", help="'local' (the store in this process) or HOST:PORT")
    p.add_argument("--token")
    p.add_argument("--episodes", type=int, default=1000)
    p.add_argument("--widths", type=int, nargs="+", default=[5, 20], help="classes per episode [5 20]")
    p.add_argument("--seed", type=int, default=1, help="episode draws (width-way uses seed + width)")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--out", type=Path, help="write the results as JSON here")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    split = args.split or "vinyals"
    if args.pixel_nn:
        encode, key_dim, name = pixel_encoder, 28 * 28, "omniglot/pixel-nn"
    else:
        model = load_model(args.checkpoint)
        encode, key_dim, name = model_encoder(model), model.cfg.rep_dim, "omniglot/eval"
        ckpt = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
        step, split = ckpt["step"], args.split or ckpt["config"].get("split", "lake")  # before splits: lake
    data = Omniglot.load(args.data, split).part(args.classes)
    result = evaluate_all(encode, args.server, key_dim, data, args.episodes, name, args.token, args.seed,
                          tuple(args.widths))
    result |= {"split": split, "classes": args.classes, "command": runinfo.command(), "machine": runinfo.machine()}
    if args.checkpoint:
        result["checkpoint"] = {"path": str(args.checkpoint), "step": step}
    for key in (f"{w}-way" for w in args.widths):
        r = result[key]
        shots = ", ".join(f"{s}-shot {100 * a:.1f}±{100 * h:.1f}" for s, (a, h) in enumerate(zip(r["accuracy"], r["ci95"])))
        print(f"{key}: {shots}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
