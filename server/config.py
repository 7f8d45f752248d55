"""A memory's fixed parameters (design.md §1), with the paper's defaults and validation."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from raremem.proto.types import DEVICE_DTYPES, INDEX_KINDS
from raremem.server.errors import InvalidArgument


def device_format_error(device: str) -> str:
    """What is wrong with the spelling of ``device`` ("" if nothing)."""
    if device in ("", "cpu", "cuda") or device.startswith("cuda:") and device[5:].isdigit():
        return ""
    return f"device must be '', 'cpu', 'cuda' or 'cuda:N', got {device!r}"


@dataclass(frozen=True)
class MemoryConfig:
    key_dim: int                      # d: dimension of keys and queries
    size: int                         # number of slots
    choose_k: int = 0                 # neighbours per lookup; 0 = min(256, size)
    alpha: float = 0.1                # margin of the memory loss
    inverse_temperature: float = 40.0  # t in softmax(t * s)
    age_noise: float = 8.0            # eviction picks the top of age + U(-a, a)
    correct_in_top: int = 1           # correct if the label is among the top c values
    index: str = "exact"              # one of INDEX_KINDS
    ivf_nlist: int = 0                # IVF lists; 0 = max(1, round(sqrt(size)))
    ivf_nprobe: int = 8               # IVF lists visited per query unless a request says
    ivf_retrain: int = 0              # IVF: refit the quantizer every this many slot writes (0 = never)
    ivf_rebalance: float = 0.0        # IVF: refit when the lists' imbalance grows past this multiple
                                      # of its value after the last fit (0 = never)
    lsh_tables: int = 16              # LSH hash tables (the paper's code: sqrt(256))
    lsh_bits: int = 0                 # LSH hyperplanes per table; 0 = clamp(log2(size/16), 1, 20)
    lsh_bucket_size: int = 16         # LSH slot ids kept per bucket (a ring: newest replace oldest)
    seed: int = 0                     # seeds eviction noise and LSH hyperplanes
    device: str = ""                  # exact only: "" / "cpu" = FAISS; "cuda[:N]" = the device index
    device_dtype: str = "float32"     # the device index's copy of the keys: float32, float16 or bfloat16
    append_only: bool = False         # every labelled update writes a fresh slot (no averaging):
                                      # a kNN datastore; nothing is evicted while slots are empty

    def resolved(self) -> "MemoryConfig":
        """Validate, and fill the defaults that depend on size."""
        if not (isinstance(self.key_dim, int) and self.key_dim > 0):
            raise InvalidArgument(f"key_dim must be a positive integer, got {self.key_dim!r}")
        if not (isinstance(self.size, int) and self.size > 0):
            raise InvalidArgument(f"size must be a positive integer, got {self.size!r}")
        if self.index not in INDEX_KINDS:
            raise InvalidArgument(f"index must be one of {INDEX_KINDS}, got {self.index!r}")
        for name in ("alpha", "inverse_temperature", "age_noise", "ivf_rebalance"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise InvalidArgument(f"{name} must be finite and >= 0, got {value}")
        for name in ("choose_k", "ivf_nlist", "lsh_bits", "ivf_nprobe", "ivf_retrain", "lsh_tables",
                     "lsh_bucket_size", "correct_in_top", "seed"):
            if getattr(self, name) < 0:
                raise InvalidArgument(f"{name} must be >= 0, got {getattr(self, name)}")
        if 0 < self.ivf_rebalance <= 1:
            raise InvalidArgument(f"ivf_rebalance must be 0 (off) or > 1, got {self.ivf_rebalance}")
        choose_k = self.choose_k or min(256, self.size)
        if choose_k > self.size:
            raise InvalidArgument(f"choose_k {choose_k} exceeds size {self.size}")
        if not 1 <= self.correct_in_top <= choose_k:
            raise InvalidArgument(f"correct_in_top must be in 1..choose_k, got {self.correct_in_top}")
        if self.device and self.device != "cpu":
            if self.index != "exact":
                raise InvalidArgument("device is only supported for the exact index")
            if problem := device_format_error(self.device):
                raise InvalidArgument(problem)
        if self.device_dtype not in DEVICE_DTYPES:
            raise InvalidArgument(f"device_dtype is one of {DEVICE_DTYPES}, got {self.device_dtype!r}")
        if self.device_dtype != "float32" and self.device in ("", "cpu"):
            raise InvalidArgument("device_dtype other than float32 needs a device (device cuda[:N])")
        nlist = self.ivf_nlist or max(1, round(math.sqrt(self.size)))
        bits = self.lsh_bits or min(20, max(1, int(math.log2(max(self.size / 16, 1)))))
        if bits > 24:
            raise InvalidArgument(f"lsh_bits must be at most 24, got {bits}")
        return dataclasses.replace(
            self, choose_k=choose_k, ivf_nlist=nlist, lsh_bits=bits,
            ivf_nprobe=self.ivf_nprobe or 1, lsh_tables=self.lsh_tables or 1,
            lsh_bucket_size=self.lsh_bucket_size or 1,
        )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "MemoryConfig":
        unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise InvalidArgument(f"unknown config fields: {sorted(unknown)}")
        return cls(**data)
