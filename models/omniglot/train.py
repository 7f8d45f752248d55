"""Train the Omniglot ConvNet with memory through a raremem server (paper §4.1).

    python -m raremem.models.omniglot.train                      # spawns a server, short run
    python -m raremem.models.omniglot.train --memory HOST:PORT   # a running server
    python -m raremem.models.omniglot.train --memory local       # the store in this process
    python -m raremem.models.omniglot.train --steps 20000 --minutes 120 --out runs/omniglot-full
    torchrun --nproc-per-node 4 -m raremem.models.omniglot.train --memory HOST:PORT   # DDP replicas
    python -m raremem.models.omniglot.train --hogwild 4 --memory HOST:PORT           # Hogwild replicas

Each replica owns the memory ``omniglot/replica-<rank>`` (episodes clear it); with
``--shared-memory`` all replicas write one life-long memory instead (the write-race study).
``checkpoint.pt`` holds the model, config and step; ``replica-<rank>.pt`` each replica's
optimiser, step and RNG states, so ``--resume`` continues exactly (DDP and single process;
Hogwild replicas resume where each stopped).
"""

from __future__ import annotations

import torch  # noqa: I001 - torch before faiss (DESIGN §5)

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path


from raremem.models.distributed import Replica, bind_shared
from raremem.models.memory_layer import make_backend
from raremem.models.omniglot.data import Omniglot
from raremem.models.omniglot.episodes import sample_episodes
from raremem.models.omniglot.evaluate import DEFAULT_DATA, evaluate, model_encoder
from raremem.models.omniglot.model import OmniglotModel, OmniglotModelConfig
from raremem.models.training import (TrainerFlags, initial_weights, open_replica, parse_config, resume_replica,
                             run_trainer, training_loop)


@dataclass
class TrainConfig(TrainerFlags):
    out: str = "runs/omniglot"      # checkpoint, metrics.jsonl, plots
    steps: int = 300                # episode batches to train
    checkpoint_every: int = 200
    data: str = str(DEFAULT_DATA)   # folder with images_background.zip, images_evaluation.zip
    download: bool = False          # fetch missing zips from the canonical URLs (md5-checked)
    batch: int = 16                 # parallel episodes per batch (share one memory)
    width: int = 5                  # classes per episode
    shots: int = 6                  # draws per class (episode length = width * shots)
    memory_size: int = 8192
    choose_k: int = 256
    age_noise: float = 8.0
    alpha: float = 0.1
    lr: float = 1e-4
    adam_eps: float = 1e-4          # the paper's code
    clip: float = 5.0               # global gradient-norm clip
    rep_dim: int = 256
    # The paper's code drops 70% (keep_prob 0.3). Measured here over 60 steps (B=16, 5-way):
    # validation 1-shot 0.53 with p=0.7, 0.60 with p=0.3, 0.65 with p=0; 0.3 keeps some
    # regularisation for long runs while still learning at a CPU budget's pace.
    dropout: float = 0.3
    channels_last: bool = True
    eval_every: int = 100           # steps between validations (5-way, held-out classes; 0 = none)
    eval_episodes: int = 100
    shared_memory: bool = False     # one life-long memory for all replicas, never cleared
    replica_id: str = ""            # names this trainer's memories beside the rank (independent
                                    # trainers on one server, e.g. scaled containers)

    def validate(self) -> "TrainConfig":
        if self.batch < 1 or self.width < 2 or self.shots < 2 or self.steps < 0 or self.hogwild < 0:
            raise ValueError("batch >= 1, width >= 2, shots >= 2, steps >= 0, hogwild >= 0")
        if self.batch * self.width * self.shots > self.memory_size:
            raise ValueError("memory_size must hold a whole episode batch")
        return self

    def model_config(self) -> OmniglotModelConfig:
        return OmniglotModelConfig(rep_dim=self.rep_dim, dropout=self.dropout, channels_last=self.channels_last)


def parse_args(argv=None) -> TrainConfig:
    return parse_config(TrainConfig, argv, __doc__.splitlines()[0])


def memory_backend(cfg: TrainConfig, address: str, name: str):
    return make_backend(address, name, cfg.rep_dim, cfg.memory_size, token=cfg.token or None,
                        choose_k=cfg.choose_k, age_noise=cfg.age_noise, alpha=cfg.alpha, seed=cfg.seed)


def memory_name(cfg: TrainConfig, rank: int) -> str:
    if cfg.shared_memory:
        return "omniglot/shared"
    return f"omniglot/replica-{cfg.replica_id}-{rank}" if cfg.replica_id else f"omniglot/replica-{rank}"


def load_model(path: Path, memory: str = "local") -> OmniglotModel:
    """A trained model from a checkpoint, over a fresh memory (local unless told)."""
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    cfg = TrainConfig(**ckpt["config"])
    model = OmniglotModel(cfg.model_config(), memory_backend(cfg, memory, "omniglot/eval-model"))
    model.load_state_dict(ckpt["model"])
    return model


def train_step(model: OmniglotModel, opt, ep, clip: float, *, net=None, reset: bool = True, label_offset: int = 0,
               device: torch.device | None = None):
    """One episode batch: empty the memory (unless it is life-long), run the episodes through
    it, one optimiser step. ``net`` is the model as replicated (DDP), the model itself otherwise."""
    model.train()
    if reset:  # episodes start from an empty memory
        model.memory.backend.reset()
    loss, correct = (net or model)(torch.from_numpy(ep.images).to(device),
                                   torch.from_numpy(ep.labels + label_offset).to(device),
                                   torch.from_numpy(ep.sources))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    opt.step()
    return loss.detach().cpu(), correct.cpu()


def train(cfg: TrainConfig, address: str, replica: Replica | None = None,
          shared: dict[str, torch.Tensor] | None = None) -> dict:
    """The training loop of one replica, against a memory at ``address`` ("local" or HOST:PORT).
    ``shared``: Hogwild parameters to train in place (the parent loaded their weights)."""
    replica, files, rng = open_replica(cfg, replica)
    rank = replica.rank
    data = Omniglot.load(Path(cfg.data), download_missing=cfg.download)
    model = OmniglotModel(cfg.model_config(), memory_backend(cfg, address, memory_name(cfg, rank))).to(replica.device)
    if shared is not None:
        bind_shared(model, shared)
    else:
        initial_weights(model, cfg)
    val_backend = memory_backend(cfg, address, memory_name(dataclasses.replace(cfg, shared_memory=False), rank)
                                 + "-val") if replica.main and cfg.eval_every else None
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, eps=cfg.adam_eps)
    step, wall = resume_replica(files.out, replica, opt, rng) if cfg.resume else (0, 0.0)
    net = replica.wrap(model)
    episode_labels = cfg.batch * cfg.width

    def one_step(i: int) -> dict:
        ep = sample_episodes(data.train, cfg.batch, cfg.width, cfg.shots, rng)
        # A life-long shared memory keeps every episode's labels apart, across replicas too.
        offset = (i * replica.world + rank) * episode_labels if cfg.shared_memory else 0
        loss, correct = train_step(model, opt, ep, cfg.clip, net=net, reset=not cfg.shared_memory,
                                   label_offset=offset, device=replica.device)
        correct = correct.numpy()
        row = {"loss": float(loss),
               **{f"train_{s}shot": float(correct[ep.shot == s].mean()) for s in (1, 5) if s < cfg.shots}}
        if val_backend and ((i + 1) % cfg.eval_every == 0 or i + 1 == cfg.steps):
            v = evaluate(model_encoder(model), val_backend, data.test, 5, cfg.shots, cfg.eval_episodes,
                         seed=i + 1)
            row |= {f"val_{s}shot": v["accuracy"][s] for s in range(cfg.shots)}
        return row

    show = ("loss", "train_1shot", "train_5shot", *(f"val_{s}shot" for s in range(cfg.shots)))
    return training_loop(cfg, replica, files, model, opt, rng, step, wall, one_step, "omniglot", show)


def main(argv=None) -> int:
    cfg = parse_args(argv)
    # a spawned server shows the first replica's memory (its last episode batch) before stopping
    return run_trainer(cfg, train, lambda: OmniglotModel(cfg.model_config(), backend=None), memory_name(cfg, 0))


if __name__ == "__main__":
    sys.exit(main())
