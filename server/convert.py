"""Domain objects <-> protobuf messages on the server side (small pure functions)."""

from __future__ import annotations

from raremem.proto import kinds
from raremem.proto import memory_pb2 as pb
from raremem.proto.tensors import from_tensor, optional_tensor, to_tensor
from raremem.server.config import MemoryConfig
from raremem.server.errors import InvalidArgument
from raremem.proto.types import LookupResult, MemoryInfo, MemoryStats
from raremem.server.store import LookupSpec

_OPTIONAL = ("choose_k", "alpha", "inverse_temperature", "age_noise", "correct_in_top",
             "ivf_nlist", "ivf_nprobe", "ivf_retrain", "ivf_rebalance", "lsh_tables", "lsh_bits", "lsh_bucket_size", "seed", "append_only",
             "device_dtype")


def config_from_pb(msg: pb.MemoryConfig) -> MemoryConfig:
    if msg.index not in kinds.FROM_PB:
        raise InvalidArgument(f"unknown index kind {msg.index}")
    kwargs = {name: getattr(msg, name) for name in _OPTIONAL if msg.HasField(name)}
    return MemoryConfig(key_dim=int(msg.key_dim), size=int(msg.size), index=kinds.FROM_PB[msg.index],
                        device=msg.device, **kwargs)


def config_to_pb(config: MemoryConfig) -> pb.MemoryConfig:
    return pb.MemoryConfig(key_dim=config.key_dim, size=config.size, index=kinds.TO_PB[config.index],
                           device=config.device, **{name: getattr(config, name) for name in _OPTIONAL})


def info_to_pb(info: MemoryInfo) -> pb.MemoryInfo:
    return pb.MemoryInfo(name=info.name, config=config_to_pb(MemoryConfig.from_dict(info.config)), filled=info.filled,
                         total_writes=info.total_writes)


def lookup_spec_from_pb(req: pb.LookupRequest) -> LookupSpec:
    return LookupSpec(
        queries=from_tensor(req.queries, "queries"),
        labels=optional_tensor(req, "labels"),
        update=req.update, use_recent=req.use_recent,
        sources=optional_tensor(req, "sources"),
        k=req.k, nprobe=req.nprobe, return_weight_terms=req.return_weight_terms,
        return_neighbors=req.return_neighbors, return_neighbor_keys=req.return_neighbor_keys,
        leave_one_out=req.leave_one_out,
        request_id=req.request_id)


def lookup_result_to_pb(res: LookupResult) -> pb.LookupResponse:
    msg = pb.LookupResponse()
    for name in LookupResult.TENSORS:
        value = getattr(res, name)
        if value is not None:
            getattr(msg, name).CopyFrom(to_tensor(value))
    if res.neighbors is not None:
        nb = res.neighbors
        msg.neighbors.CopyFrom(pb.Neighbors(
            ids=to_tensor(nb.ids), similarities=to_tensor(nb.similarities),
            weights=to_tensor(nb.weights), values=to_tensor(nb.values),
            sources=to_tensor(nb.sources), keys=to_tensor(nb.keys) if nb.keys is not None else None))
    return msg


def stats_to_pb(stats: MemoryStats) -> pb.Stats:
    fields = {k: getattr(stats, k) for k in stats.__dataclass_fields__ if k != "info"}
    return pb.Stats(info=info_to_pb(stats.info), **{k: to_tensor(v) if k in MemoryStats.TENSORS else v
                                                     for k, v in fields.items()})


def slots_to_pb(slots: dict) -> pb.ReadSlotsResponse:
    return pb.ReadSlotsResponse(**{k: to_tensor(v) for k, v in slots.items()})
