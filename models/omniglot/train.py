"""Train the Omniglot ConvNet with memory through a raremem server (paper §4.1).

    python -m raremem.models.omniglot.train                      # spawns a server, short run
    python -m raremem.models.omniglot.train --server HOST:PORT   # a running server
    python -m raremem.models.omniglot.train --server local       # the store in this process
    python -m raremem.models.omniglot.train --width 20 --out runs/omniglot-20way   # the 20-way model
    python -m raremem.models.omniglot.train --split lake   # the authors' class split (data.py)
    torchrun --nproc-per-node 4 -m raremem.models.omniglot.train --server HOST:PORT   # DDP replicas
    python -m raremem.models.omniglot.train --hogwild 4 --server HOST:PORT           # Hogwild replicas

Episodes are drawn from the split's training classes; in-training validation reads its
validation classes, never the test classes (those are for ``evaluate`` and the final numbers).

A step is one episode batch (B episodes of width x shots draws, so its numbers line up with
the authors' README). As the authors' ``episode_step`` does, every *time step* of the episode
is one optimiser update: that step's B queries are looked up and written (memory first), then
backward and Adam on them — width x shots updates per step.

Each replica owns the memory ``omniglot/replica-<rank>`` (episodes clear it); with
``--shared-memory`` all replicas write one life-long memory instead (the write-race study).
``checkpoint.pt`` holds the model, config and step; ``replica-<rank>.pt`` each replica's
optimiser, step and RNG states, so ``--resume`` continues exactly.
"""

from __future__ import annotations

import torch  # noqa: I001 - torch before faiss (design.md §5)

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from raremem.models.distributed import Replica, bind_shared
from raremem.models.omniglot.data import SPLITS_KNOWN, Omniglot
from raremem.models.omniglot.episodes import EpisodeBatch, sample_episodes
from raremem.models.omniglot.evaluate import DEFAULT_DATA, evaluate, model_encoder
from raremem.models.omniglot.model import HEADS, OmniglotModel, OmniglotModelConfig
from raremem.models.checkpoints import initial_weights
from raremem.models.flags import TrainerFlags, parse_config
from raremem.models.run import Run
from raremem.models.trainer_memory import memory_backend
from raremem.models.training import run_trainer


@dataclass
class TrainConfig(TrainerFlags):
    steps: int = 300                # episode batches to train (each is width * shots updates)
    checkpoint_every: int = 100
    data: str = str(DEFAULT_DATA)   # folder with images_background.zip, images_evaluation.zip
    download: bool = False          # fetch missing zips and split lists (checksummed)
    split: str = "vinyals"          # "vinyals" (the paper's text) | "lake" (the authors' code); data.py
    batch: int = 16                 # parallel episodes per batch (share one memory)
    width: int = 5                  # classes per episode
    shots: int = 6                  # draws per class (episode length = width * shots)
    lr: float = 1e-4
    # From episode batch lr_drop_step on, the learning rate is lr * lr_drop (0 = never): for the
    # rest of a budget once the validation curve has flattened (results/omniglot_notes.md). The
    # rate is a function of the step, so a resumed leg trains as an uninterrupted run would.
    lr_drop_step: int = 0
    lr_drop: float = 0.1
    adam_eps: float = 1e-4          # the authors' code
    clip: float = 5.0               # global gradient-norm clip
    rep_dim: int = 256
    # The paper's head won the ablation on the validation classes against the authors' (drop
    # 0.7, their keep_prob 0.3): results/omniglot.md.
    head: str = "paper"             # "paper" | "authors" (see model.py)
    dropout: float = 0.3            # drop probability (PyTorch's p; TF's keep_prob is 1 - p)
    channels_last: bool = True
    # bfloat16 autocast over the embedder (the memory query stays fp32): 1.46x the episode batches
    # per minute at validation accuracy level with fp32 at equal steps (results/omniglot.md)
    bf16: bool = True
    eval_every: int = 50            # steps between validations (the split's val classes, at --width; 0 = none)
    eval_episodes: int = 100
    shared_memory: bool = False     # one life-long memory for all replicas, never cleared
    replica_id: str = ""            # names this trainer's memories beside the rank (independent
                                    # trainers on one server, e.g. scaled containers)

    def validate(self) -> "TrainConfig":
        if self.batch < 1 or self.width < 2 or self.shots < 2 or self.steps < 0 or self.hogwild < 0:
            raise ValueError("batch >= 1, width >= 2, shots >= 2, steps >= 0, hogwild >= 0")
        if self.batch * self.width * self.shots > self.memory_size:
            raise ValueError("memory_size must hold a whole episode batch")
        if not 0 <= self.dropout < 1:
            raise ValueError("dropout is a drop probability in [0, 1)")
        if self.head not in HEADS:
            raise ValueError(f"--head is one of {HEADS}")
        if self.split not in SPLITS_KNOWN:
            raise ValueError(f"--split is one of {SPLITS_KNOWN}")
        if self.lr_drop_step < 0 or not 0 < self.lr_drop <= 1:
            raise ValueError("--lr-drop-step >= 0 and 0 < --lr-drop <= 1")
        return self

    def learning_rate(self, step: int) -> float:
        """The rate episode batch ``step`` (0-based) trains at."""
        return self.lr * (self.lr_drop if self.lr_drop_step and step >= self.lr_drop_step else 1.0)

    def default_out(self) -> str:
        return f"runs/omniglot/{self.split}-{self.width}way-{self.head}-seed{self.seed}"

    def model_config(self) -> OmniglotModelConfig:
        return OmniglotModelConfig(rep_dim=self.rep_dim, head=self.head, dropout=self.dropout,
                                   channels_last=self.channels_last)


def memory_name(cfg: TrainConfig, rank: int) -> str:
    if cfg.shared_memory:
        return "omniglot/shared"
    return f"omniglot/replica-{cfg.replica_id}-{rank}" if cfg.replica_id else f"omniglot/replica-{rank}"


def train_episodes(model: OmniglotModel, opt, ep: EpisodeBatch, clip: float, *, net=None, reset: bool = True,
                   label_offset: int = 0, device: torch.device | None = None,
                   bf16: bool = False) -> tuple[float, np.ndarray]:
    """One episode batch, one optimiser update per time step: for t = 0..T-1, the memory
    lookup-and-update of step t's B queries, then backward and an Adam step on them. ``net`` is
    the model as replicated (DDP), the model itself otherwise; ``bf16``: the forward under
    bfloat16 autocast. Returns (mean loss, correct (T, B))."""
    model.train()
    if reset:  # episodes start from an empty memory
        model.memory.backend.reset()
    images = torch.from_numpy(ep.images).to(device)                     # (T, B, 28, 28)
    labels = torch.from_numpy(ep.labels + label_offset).to(device)      # (T, B)
    sources = torch.from_numpy(ep.sources)                              # (T, B)
    losses, correct = [], []
    device_type = images.device.type
    for t in range(len(labels)):
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=bf16):
            loss, hit = (net or model)(images[t], labels[t], sources[t])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        losses.append(float(loss.detach()))
        correct.append(hit.cpu().numpy())
    return float(np.mean(losses)), np.stack(correct)


def train(cfg: TrainConfig, address: str, replica: Replica | None = None,
          shared: dict[str, torch.Tensor] | None = None) -> dict:
    """The training loop of one replica, against a memory at ``address`` ("local" or HOST:PORT).
    ``shared``: Hogwild parameters to train in place (the parent loaded their weights)."""
    run = Run(cfg, replica, "omniglot", show=("loss", "train_1shot", "train_5shot"))
    replica = run.replica
    data = Omniglot.load(Path(cfg.data), cfg.split, download_missing=cfg.download)

    backend = memory_backend(cfg, address, memory_name(cfg, replica.rank), cfg.rep_dim)
    model = OmniglotModel(cfg.model_config(), backend).to(replica.device)
    if shared is not None:
        bind_shared(model, shared)
    else:
        initial_weights(model, cfg)
    val_backend = None
    if replica.main and cfg.eval_every:  # validation episodes in a memory of their own
        episode = cfg.width * cfg.shots
        val_cfg = dataclasses.replace(cfg, memory_size=episode, choose_k=min(cfg.choose_k, episode) if cfg.choose_k else 0)
        val_backend = memory_backend(val_cfg,
                                     address, memory_name(dataclasses.replace(cfg, shared_memory=False), replica.rank)
                                     + "-val", cfg.rep_dim)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, eps=cfg.adam_eps)
    run.start(model, opt)
    net = replica.wrap(model)

    for i in run.steps():  # one episode batch a step
        ep = sample_episodes(data.train, cfg.batch, cfg.width, cfg.shots, run.rng)
        # A life-long shared memory keeps every episode's labels apart, across replicas too.
        offset = (i * replica.world + replica.rank) * cfg.batch * cfg.width if cfg.shared_memory else 0
        lr = cfg.learning_rate(i)
        for group in opt.param_groups:
            group["lr"] = lr
        loss, correct = train_episodes(model, opt, ep, cfg.clip, net=net, reset=not cfg.shared_memory,
                                       label_offset=offset, device=replica.device, bf16=cfg.bf16)
        row = {"loss": loss, "updates": (i + 1) * len(correct), "lr": lr,
               **{f"train_{s}shot": float(correct[ep.shot == s].mean()) for s in (1, 5) if s < cfg.shots}}
        if val_backend and ((i + 1) % cfg.eval_every == 0 or i + 1 == cfg.steps):
            v = evaluate(model_encoder(model), val_backend, data.val, cfg.width, cfg.shots, cfg.eval_episodes,
                         seed=i + 1)
            row |= {f"val_{s}shot": v["accuracy"][s] for s in range(cfg.shots)}
            run.keep_best(v["accuracy"][1])  # best.pt: the weights chosen on validation 1-shot
            run.say(f"step {i + 1:6d}  {run.minutes:6.1f} min  val {cfg.width}-way  "
                    + "  ".join(f"{s}-shot {100 * a:5.1f}" for s, a in enumerate(v["accuracy"])))
        run.log(row)
    return run.finish()


def main(argv=None) -> int:
    cfg = parse_config(TrainConfig, argv, __doc__.splitlines()[0])
    # a spawned server shows the first replica's memory (its last episode batch) before stopping
    return run_trainer(cfg, train, lambda: OmniglotModel(cfg.model_config(), backend=None), memory_name(cfg, 0),
                       lifelong=memory_name(cfg, 0) if cfg.shared_memory else "")


if __name__ == "__main__":
    sys.exit(main())
