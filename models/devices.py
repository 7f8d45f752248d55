"""Where a trainer runs: the ``--device`` flag resolved to a torch device, the device a model
lives on, and the random state of that device (checkpoints keep it, so a resume stays exact)."""

from __future__ import annotations

import os

import torch

from raremem.models.errors import SetupError
from raremem.server.config import device_format_error


def resolve_device(flag: str, hogwild: bool = False) -> torch.device:
    """``flag``: "" (CUDA when there is one, else the CPU), "cpu", "cuda" or "cuda:N". Under
    torchrun "cuda" means this process's GPU (``LOCAL_RANK``). Hogwild replicas share their
    parameters through CPU shared memory, so they run on the CPU."""
    if device_format_error(flag):   # the memory's own spelling rule (server/config.py), one place
        raise SetupError(f"--device is cpu, cuda or cuda:N, not {flag!r}")
    if flag == "cpu" or (flag == "" and (hogwild or not torch.cuda.is_available())):
        return torch.device("cpu")
    if hogwild:
        raise SetupError("--hogwild replicas share parameters in CPU memory: give --device cpu, or use "
                         "torchrun for several GPUs")
    if not torch.cuda.is_available():
        raise SetupError(f"--device {flag}: this machine has no CUDA device that torch can use "
                         f"(torch {torch.__version__}); give --device cpu")
    index = int(flag[5:]) if flag.startswith("cuda:") else int(os.environ.get("LOCAL_RANK", 0))
    if index >= torch.cuda.device_count():
        raise SetupError(f"--device cuda:{index}: only {torch.cuda.device_count()} CUDA devices here")
    return torch.device("cuda", index)


def device_of(model: torch.nn.Module) -> torch.device:
    """The device of the model's parameters (evaluations move their batches there); the CPU for
    a model without any (a scoring oracle in the tests)."""
    first = next(model.parameters(), None) if hasattr(model, "parameters") else None
    return torch.device("cpu") if first is None else first.device


def rng_state(device: torch.device) -> dict:
    """The CPU generator's state, and the device's when it is a GPU."""
    state = {"torch_rng": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda_rng"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch_rng"])
    if device.type == "cuda" and "cuda_rng" in state:
        torch.cuda.set_rng_state(state["cuda_rng"], device)
