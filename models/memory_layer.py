"""The memory layer of "Learning to Remember Rare Events" (Kaiser et al. 2017, §2) as an
``nn.Module``: a trainable query projection, L2 normalisation, one lookup in a memory backend,
and the memory loss with exact gradients w.r.t. the input.

The backend is either the in-process store (``"local"``) or a remote server (``"HOST:PORT"``);
both answer ``lookup`` with the same fields, so the layer never knows which one it has. Keys
are constants for autograd: only the query carries gradient (design.md §1 step 3).
"""

from __future__ import annotations

import time

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from raremem.proto.types import LookupResult, snapshot_file


class MemoryBackend(Protocol):
    """What the memory layer, the trainers and the evaluations use of a memory; the in-process
    and the remote backend both implement it, and nothing reaches past it."""

    alpha: float                # the memory's margin and softmax temperature (its config)
    inverse_temperature: float

    def lookup(self, queries: np.ndarray, labels: np.ndarray | None = None, **options) -> LookupResult:
        """``queries`` (B, d) unit float32; ``options`` as ``server.store.LookupSpec``'s fields."""

    def reset(self) -> None:
        """Empty every slot."""

    def filled(self) -> int:
        """Slots that hold a key."""

    def keep(self, folder: str) -> str | None:
        """Snapshot the memory as ``folder/<name>.npz`` where it lives; the path, or None where
        nothing can be kept (a memory in this process)."""

    def close(self) -> None:
        """Release the connection, if any."""


class LocalBackend:
    """A ``server.store.MemoryStore`` in this process (imports torch first: design.md §5)."""

    def __init__(self, key_dim: int, size: int, **config):
        from raremem.server.config import MemoryConfig  # noqa: PLC0415 - faiss after torch
        from raremem.server.store import LookupSpec, MemoryStore  # noqa: PLC0415

        self.spec = LookupSpec
        self.store = MemoryStore(MemoryConfig(key_dim=key_dim, size=size, **config))
        self.alpha = self.store.config.alpha
        self.inverse_temperature = self.store.config.inverse_temperature

    def lookup(self, queries, labels=None, **kwargs):
        return self.store.lookup(self.spec(queries, labels, **kwargs))

    def reset(self) -> None:
        self.store.reset()

    def filled(self) -> int:
        return self.store.filled

    def keep(self, folder: str) -> None:
        return None

    def close(self) -> None:
        pass


class RemoteBackend:
    """A named memory on a raremem server, created if absent. Lookups go over one long-lived
    LookupStream (a trainer makes one call per step) unless ``stream`` is False."""

    def __init__(self, address: str, name: str, key_dim: int, size: int, token: str | None = None,
                 stream: bool = True, **config):
        from raremem.client import MemoryClient  # noqa: PLC0415

        self.client = MemoryClient(address, token=token)
        self.name = name
        cfg = self.client.create_memory(name, key_dim, size, exist_ok=True, **config).config
        self.alpha, self.inverse_temperature = cfg["alpha"], cfg["inverse_temperature"]
        self.calls = self.client.stream() if stream else self.client

    def lookup(self, queries, labels=None, **kwargs):
        return self.calls.lookup(self.name, queries, labels, **kwargs)

    def reset(self) -> None:
        self.client.reset(self.name)

    def filled(self) -> int:
        return self.client.stats(self.name, age_bins=1, top_values=1).info.filled

    def keep(self, folder: str) -> str:
        """Raises grpc.RpcError where the server cannot (e.g. it has no data directory)."""
        path = f"{folder}/{snapshot_file(self.name)}"
        self.client.snapshot(self.name, path)
        return path

    def close(self) -> None:
        if self.calls is not self.client:
            self.calls.close()
        self.client.close()


def make_backend(server: str, name: str, key_dim: int, size: int, token: str | None = None,
                 **config) -> MemoryBackend:
    """``server`` is "local", "HOST:PORT" or "unix:///PATH"; ``config`` holds MemoryConfig fields."""
    if server == "local":
        return LocalBackend(key_dim, size, **config)
    return RemoteBackend(server, name, key_dim, size, token=token, **config)


@dataclass
class MemoryOutput:
    result: torch.Tensor   # (B,) int64: value of the nearest key, -1 if memory is empty
    weight: torch.Tensor   # (B,) float32: softmax weight w_1 of that key, differentiable in x
    loss: torch.Tensor     # (B,) float32: relu(s_n - s_p + alpha), differentiable in x
    correct: torch.Tensor | None  # (B,) bool, with labels
    raw: object            # the backend's full answer (neighbours, slots, ...)
    query: torch.Tensor | None = None   # (B, d) the unit queries asked, differentiable in x


class MemoryLayer(nn.Module):
    def __init__(self, key_dim: int, backend):
        super().__init__()
        self.backend = backend
        # design.md §3: d x d query projection, no bias, N(0, 0.01) (the paper's code: truncated normal)
        self.query_proj = nn.Linear(key_dim, key_dim, bias=False)
        nn.init.trunc_normal_(self.query_proj.weight, std=0.01, a=-0.02, b=0.02)
        self.seconds = 0.0   # wall time spent in the backend's lookups (trainers log its share of a step)
        self.held = False    # see hold

    def hold(self, held: bool) -> None:
        """Hold the queries still (a warm-up): the layer reads its input detached and the
        projection gets no gradient, so no loss moves the queries while ``held`` and the memory
        fills with keys of the untrained query path first."""
        self.held = held
        self.query_proj.weight.requires_grad_(not held)

    def query(self, x: torch.Tensor) -> torch.Tensor:
        """(B, d) activations in any float dtype -> (B, d) unit float32 queries (design.md §3: the
        memory query stays in float32 whatever the embedder runs in)."""
        with torch.autocast(x.device.type, enabled=False):  # also under an autocast region
            return F.normalize(self.query_proj(x.float()), dim=-1)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None, *, update: bool = True,
                use_recent: bool = True, sources: torch.Tensor | None = None,
                weight_grad: bool = False, leave_one_out: bool = False) -> MemoryOutput:
        """Look up x (B, d); with labels, the loss terms and (if ``update``) the memory update.
        ``sources`` (B,): provenance of the writes, and with ``leave_one_out`` each query's own
        source, whose slots the lookup skips."""
        q = self.query(x.detach() if self.held else x)                      # (B, d) unit rows
        np_labels = labels.detach().cpu().numpy().astype(np.int64) if labels is not None else None
        update = update and labels is not None
        t0 = time.perf_counter()
        res = self.backend.lookup(
            np.ascontiguousarray(q.detach().cpu().numpy()), np_labels,
            update=update, use_recent=use_recent and labels is not None,
            sources=sources.cpu().numpy().astype(np.int64) if (update or leave_one_out) and sources is not None
            else None, return_weight_terms=weight_grad, leave_one_out=leave_one_out)
        self.seconds += time.perf_counter() - t0

        def t(a):
            return torch.tensor(a, device=q.device)  # a copy: wire arrays are read-only

        w1 = t(res.top_weight)                                              # (B,)
        if weight_grad:  # value w_1, gradient t * w_1 * (K[n_1] - sum_i w_i K[n_i])
            grad = self.backend.inverse_temperature * w1[:, None] * (t(res.top_key) - t(res.mean_key))
            w1 = w1 + ((q - q.detach()) * grad).sum(-1)                     # (B,)
        if labels is None:
            loss, correct = torch.zeros_like(w1), None
        else:
            s_pos = (q * t(res.positive_key)).sum(-1)                       # (B,); 0 if no positive
            s_neg = (q * t(res.negative_key)).sum(-1)                       # (B,); 0 if no negative
            loss = F.relu(s_neg - s_pos + self.backend.alpha)
            correct = t(res.correct)
        return MemoryOutput(result=t(res.result), weight=w1, loss=loss, correct=correct, raw=res, query=q)
