"""Do a model's memory queries name the number they stand for?

The memory can only return f(n) for a number seen before if the query at digit j of n lands
nearer to the key an earlier example of n left there than to every other number's key. This
probe measures that property directly, without a memory: for ``numbers`` numbers of S, each
placed in two inputs that differ in their A/B context (and, in the second pair, also in where
the run starts), it records the unit queries at the 7 digit positions (teacher forcing, no
memory update) and reports per digit position j:

- ``spread``: mean cosine between the queries of different numbers (1.0: every query is the
  same vector, and the memory can tell nothing apart);
- ``recall``: share of numbers whose query in the second input has, among the first input's
  queries at the same digit, its own number's as nearest neighbour (chance: 1 / numbers).

    python -m raremem.models.neural_gpu.probe runs/synthetic/ngpu-memory/checkpoint.pt
    python -m raremem.models.neural_gpu.probe --fresh --arch ngpu       # the same model at initialisation
"""

from __future__ import annotations

import torch  # noqa: I001 - torch before faiss (design.md §5)

import argparse
import json
import sys
from dataclasses import fields

import numpy as np
import torch.nn.functional as F

from raremem.models.memory_layer import make_backend
from raremem.models.neural_gpu.model import ModelConfig
from raremem.models.neural_gpu.recipes import DEFAULTS, QUERY_SOURCES, build_model
from raremem.models.neural_gpu.task import A, B, DIGIT0, DIGITS, HIGH, LOW, random_function, to_base4


def record_queries(model, inputs: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """(N, L) inputs and targets, all of length L -> (N, L, d) unit queries; position p holds
    the query whose answer is the symbol at p (NaN where the model asks nothing)."""
    seen = []
    hook = model.memory.query_proj.register_forward_hook(lambda _m, _i, out: seen.append(out.detach()))
    try:
        with torch.no_grad():
            model.eval()
            model(torch.from_numpy(inputs), torch.from_numpy(targets), update=False)
    finally:
        hook.remove()
    n, length = inputs.shape
    out = np.full((n, length, seen[0].shape[-1]), np.nan, dtype=np.float32)
    if len(seen) == 1:          # seq2seq: one call for every position (teacher forcing)
        out[:] = F.normalize(seen[0], dim=-1).reshape(n, length, -1).numpy()
    else:                       # Neural GPU: call `it` asks for column it + 1
        for it, q in enumerate(seen):
            out[:, it + 1] = F.normalize(q, dim=-1).numpy()
    return out


def placed(numbers: np.ndarray, f: np.ndarray, start: int, length: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and targets with each number's run at ``start`` in a random A/B context."""
    ctx = np.random.default_rng([seed, 3]).integers(A, B + 1, size=(len(numbers), length))
    inputs, targets = ctx.copy(), ctx.copy()
    inputs[:, start:start + DIGITS] = DIGIT0 + to_base4(numbers)
    targets[:, start:start + DIGITS] = DIGIT0 + to_base4(f[numbers])
    return inputs, targets


def probe(model, f: np.ndarray, numbers: int = 1000, length: int = 20, seed: int = 0) -> dict:
    """The probe's numbers (see the module docstring) for ``model``, which must have a memory layer."""
    chosen = np.random.default_rng([seed, 4]).choice(np.arange(LOW, HIGH + 1), numbers, replace=False)
    starts = (5, 5, 9)                     # reference, other context, other context and start
    runs = [record_queries(model, *placed(chosen, f, s, length, seed + i))[:, s:s + DIGITS]
            for i, s in enumerate(starts)]  # each (N, 7, d)
    ref = runs[0]
    result = {"numbers": numbers, "chance": 1.0 / numbers,
              "spread": [float((ref[:, j] @ ref[:, j].T).mean()) for j in range(DIGITS)]}
    for name, other in (("recall_other_context", runs[1]), ("recall_other_start", runs[2])):
        recall = []
        for j in range(DIGITS):
            sim = other[:, j] @ ref[:, j].T                               # (N, N)
            recall.append(float((sim.argmax(1) == np.arange(numbers)).mean()))
        result[name] = recall
    return result


def load_model(checkpoint: str | None, arch: str, seed: int = 0, query_from: str = "state"):
    """A checkpoint's model (its memory layer on an empty in-process store), or a fresh one
    whose queries come from ``query_from``."""
    torch.manual_seed(seed)
    if checkpoint:
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        known = {f.name for f in fields(ModelConfig)}
        mc = ModelConfig(**{k: v for k, v in state["config"].items() if k in known} | {"memory_layer": True})
        settings = {k: v for k, v in state["config"].items() if k in DEFAULTS}
    else:
        state, mc, settings = None, ModelConfig(arch=arch, memory_layer=True), {"query_from": query_from}
    model = build_model(mc, settings, make_backend("local", "probe", mc.key_dim, 64))
    if state is not None:
        model.load_state_dict(state["model"])
    return model


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", nargs="?", help="a trained run's checkpoint.pt (with memory)")
    p.add_argument("--fresh", action="store_true", help="probe a freshly initialised model instead")
    p.add_argument("--arch", default="ngpu", choices=("ngpu", "seq2seq"))
    p.add_argument("--query-from", default="state", choices=QUERY_SOURCES["ngpu"],
                   help="with --fresh: where the fresh Neural GPU's queries come from")
    p.add_argument("--numbers", type=int, default=1000)
    p.add_argument("--task-seed", type=int, default=0)
    p.add_argument("--state", action="store_true",
                   help="probe the state the query is read from (the query projection set to the identity)")
    p.add_argument("--out", help="write the result as JSON here")
    a = p.parse_args(argv)
    if bool(a.checkpoint) == a.fresh:
        p.error("give a checkpoint or --fresh")
    model = load_model(a.checkpoint, a.arch, query_from=a.query_from)
    if a.state:   # what the network hands the memory, before the learned projection
        with torch.no_grad():
            model.memory.query_proj.weight.copy_(torch.eye(model.memory.query_proj.weight.shape[0]))
    result = {"model": a.checkpoint or f"fresh {a.arch}, queries from {a.query_from}", "state": a.state,
              **probe(model, random_function(a.task_seed), a.numbers)}
    text = json.dumps(result, indent=2)
    if a.out:
        with open(a.out, "w") as fh:
            fh.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
