"""``MemoryClient``: the one class that owns a channel to a raremem server.

Typed methods take and return numpy arrays. Every call has a deadline. Every update carries a
fresh request id, which the server uses to apply a repeated request once, so every call is
safe to repeat: on UNAVAILABLE or DEADLINE_EXCEEDED (a server restarting, a lost response) it
is retried with exponential backoff for up to ``retry_seconds``, with one warning line per
outage. Errors reach the caller as ``grpc.RpcError`` with the server's status and message.
"""

from __future__ import annotations

import logging
import queue
import random
import time
import uuid
from dataclasses import fields

import grpc
import numpy as np

from raremem.proto import kinds
from raremem.proto import memory_pb2 as pb
from raremem.proto import memory_pb2_grpc as pb_grpc
from raremem.proto.tensors import from_tensor, to_tensor
from raremem.proto.types import (INDEX_KINDS, MAX_MESSAGE_BYTES, STATS_AGE_BINS, STATS_TOP_VALUES, LookupResult,
                                 MemoryInfo, MemoryStats, Neighbors)

RETRY_CODES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
log = logging.getLogger("raremem.client")


def retrying(attempt, retry_seconds: float, backoff: float, address: str):
    """``attempt()`` until it succeeds, fails with a code not worth retrying, or
    ``retry_seconds`` have passed; jittered exponential backoff from ``backoff`` to 2 s."""
    deadline, delay, warned = time.monotonic() + retry_seconds, backoff, False
    while True:
        try:
            result = attempt()
            if warned:
                log.warning("raremem server at %s answers again", address)
            return result
        except grpc.RpcError as exc:
            if exc.code() not in RETRY_CODES or time.monotonic() + delay > deadline:
                raise
            if not warned:
                log.warning("raremem server at %s: %s; retrying for up to %.0f s", address, exc.code().name,
                            retry_seconds)
                warned = True
            time.sleep(delay * (0.5 + random.random()))
            delay = min(2 * delay, 2.0)


def _tensors(msg, names) -> dict:
    """Decode the set Tensor fields ``names`` of ``msg``."""
    return {name: from_tensor(getattr(msg, name), name) for name in names if msg.HasField(name)}


def _info(msg: pb.MemoryInfo) -> MemoryInfo:
    return MemoryInfo(name=msg.name, config=_message_dict(msg.config), filled=msg.filled,
                      total_writes=msg.total_writes)


def _message_dict(msg) -> dict:
    """A message as plain Python (tensors as numpy, enums by lower-case name); scalars
    at their default are included, unset optional fields and sub-messages are not."""
    out = {}
    for desc in msg.DESCRIPTOR.fields:
        if desc.has_presence and not msg.HasField(desc.name):
            continue
        value = getattr(msg, desc.name)
        if desc.message_type is not None and desc.message_type.name == "Tensor":
            out[desc.name] = from_tensor(value, desc.name)
        elif desc.message_type is not None:
            out[desc.name] = _message_dict(value)
        elif desc.enum_type is not None:
            out[desc.name] = desc.enum_type.values_by_number[value].name.lower()
        else:
            out[desc.name] = value
    return out


def lookup_request(name: str, queries: np.ndarray, labels: np.ndarray | None = None, *,
                   update: bool = False, use_recent: bool = False, sources: np.ndarray | None = None,
                   k: int = 0, nprobe: int = 0, return_weight_terms: bool = False, return_neighbors: bool = False,
                   return_neighbor_keys: bool = False, leave_one_out: bool = False) -> pb.LookupRequest:
    """A LookupRequest (memory.proto says what each field does); ``sources`` are the queries'
    provenance for the slots an update writes, and their own sources for ``leave_one_out``.
    An update gets a fresh request id: its retries then apply it once."""
    req = pb.LookupRequest(
        name=name, queries=to_tensor(queries), update=update, use_recent=use_recent, k=k,
        nprobe=nprobe, return_weight_terms=return_weight_terms, return_neighbors=return_neighbors,
        return_neighbor_keys=return_neighbor_keys, leave_one_out=leave_one_out,
        request_id=uuid.uuid4().hex if update else "")
    if labels is not None:
        req.labels.CopyFrom(to_tensor(labels))
    if sources is not None:
        req.sources.CopyFrom(to_tensor(sources))
    return req


def lookup_result(resp: pb.LookupResponse) -> LookupResult:
    res = LookupResult(**_tensors(resp, LookupResult.TENSORS))
    if resp.HasField("neighbors"):
        res.neighbors = Neighbors(**_tensors(resp.neighbors, [f.name for f in fields(Neighbors)]))
    return res


class StreamError(grpc.RpcError):
    """One LookupStream message failed (the stream is still open): ``code()`` and
    ``details()`` as on any ``grpc.RpcError``."""

    def __init__(self, code: grpc.StatusCode, details: str):
        super().__init__(f"{code.name}: {details}")
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


_CODES = {c.value[0]: c for c in grpc.StatusCode}


class LookupStream:
    """Lookups over one bidirectional LookupStream call: each ``lookup`` sends one request and
    waits for its response, so a caller making one call per step pays the call setup once.
    Not for several threads at once. If the stream breaks (a server restarting), the same
    request is sent again on a new stream, as the client retries any call."""

    def __init__(self, client: "MemoryClient"):
        self.client = client
        self._requests: queue.SimpleQueue | None = None
        self._responses = None

    def _open(self) -> None:
        self._requests = queue.SimpleQueue()
        self._responses = self.client.stub.LookupStream(iter(self._requests.get, None),
                                                        metadata=self.client.metadata)

    def _once(self, req: pb.LookupRequest) -> pb.LookupResponse:
        if self._responses is None:
            self._open()
        self._requests.put(req)
        try:
            return next(self._responses)
        except grpc.RpcError:
            self.close()
            raise

    def lookup(self, name: str, queries: np.ndarray, labels: np.ndarray | None = None, **options) -> LookupResult:
        req = lookup_request(name, queries, labels, **options)
        c = self.client
        resp = retrying(lambda: self._once(req), c.retry_seconds, c.backoff, c.address)
        if resp.HasField("error"):
            raise StreamError(_CODES.get(resp.error.code, grpc.StatusCode.UNKNOWN), resp.error.message)
        return lookup_result(resp)

    def close(self) -> None:
        if self._responses is not None:
            self._requests.put(None)   # ends the request iterator: the server finishes the call
            self._responses.cancel()
            self._requests = self._responses = None


class MemoryClient:
    """``with MemoryClient("127.0.0.1:50051") as mem: mem.lookup("name", queries, labels)``."""

    def __init__(self, address: str, token: str | None = None, timeout: float = 30.0,
                 retry_seconds: float = 60.0, backoff: float = 0.05, root_certificates: bytes | None = None,
                 max_message_bytes: int = MAX_MESSAGE_BYTES):
        self.address, self.timeout, self.retry_seconds, self.backoff = address, timeout, retry_seconds, backoff
        options = [("grpc.max_receive_message_length", max_message_bytes),
                   ("grpc.max_send_message_length", max_message_bytes)]
        if root_certificates is not None:
            creds = grpc.ssl_channel_credentials(root_certificates)
            self.channel = grpc.secure_channel(address, creds, options=options)
        else:
            self.channel = grpc.insecure_channel(address, options=options)
        self.stub = pb_grpc.MemoryStub(self.channel)
        self.metadata = (("authorization", f"Bearer {token}"),) if token else ()

    def __enter__(self) -> "MemoryClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.channel.close()

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Block until the channel connects (raises grpc.FutureTimeoutError)."""
        grpc.channel_ready_future(self.channel).result(timeout=timeout)

    def health(self, service: str = "") -> str:
        """The server's gRPC health status ("SERVING", ...); ``service`` "" means the whole server."""
        from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: PLC0415 - only here

        resp = health_pb2_grpc.HealthStub(self.channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=self.timeout)
        return health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)

    def _call(self, method: str, request, idempotent: bool = True, timeout: float | None = None):
        """One rpc; retried (see ``retrying``) unless ``idempotent`` is False."""
        rpc = getattr(self.stub, method)

        def attempt():
            return rpc(request, timeout=timeout or self.timeout, metadata=self.metadata)
        return retrying(attempt, self.retry_seconds if idempotent else 0.0, self.backoff, self.address)

    # ------------------------------------------------------------------ memories
    def create_memory(self, name: str, key_dim: int, size: int, *, index: str = "exact",
                      exist_ok: bool = False, device: str = "", **options) -> MemoryInfo:
        """Create a memory; ``options`` are MemoryConfig fields (choose_k, alpha, age_noise, ...)."""
        if index not in kinds.TO_PB:
            raise ValueError(f"index must be one of {INDEX_KINDS}")
        config = pb.MemoryConfig(key_dim=key_dim, size=size, index=kinds.TO_PB[index], device=device,
                                 **options)
        req = pb.CreateMemoryRequest(name=name, config=config, exist_ok=exist_ok)
        return _info(self._call("CreateMemory", req, idempotent=exist_ok))

    def delete_memory(self, name: str) -> bool:
        return self._call("DeleteMemory", pb.MemoryName(name=name), idempotent=False).deleted

    def list_memories(self) -> list[MemoryInfo]:
        resp = self._call("ListMemories", pb.ListMemoriesRequest())
        return [_info(m) for m in resp.memories]

    def stats(self, name: str, age_bins: int = STATS_AGE_BINS, top_values: int = STATS_TOP_VALUES,
              with_hash: bool = False) -> MemoryStats:
        req = pb.GetStatsRequest(name=name, age_bins=age_bins, top_values=top_values, with_hash=with_hash)
        resp = self._call("GetStats", req)
        scalars = {f.name: getattr(resp, f.name) for f in fields(MemoryStats)
                   if f.name != "info" and f.name not in MemoryStats.TENSORS}
        return MemoryStats(info=_info(resp.info), **_tensors(resp, MemoryStats.TENSORS), **scalars)

    # ------------------------------------------------------------------ data path
    def lookup(self, name: str, queries: np.ndarray, labels: np.ndarray | None = None, *,
               timeout: float | None = None, **options) -> LookupResult:
        """Look ``queries`` (b, d) up; ``options`` as ``lookup_request`` takes them."""
        req = lookup_request(name, queries, labels, **options)
        return lookup_result(self._call("Lookup", req, timeout=timeout))

    def stream(self) -> "LookupStream":
        """A long-lived LookupStream on this channel (one per thread)."""
        return LookupStream(self)

    def write(self, name: str, keys: np.ndarray, labels: np.ndarray,
              sources: np.ndarray | None = None, use_recent: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Apply the update rule to (keys, labels); returns (written_slot, correct)."""
        req = pb.WriteRequest(name=name, keys=to_tensor(keys), labels=to_tensor(labels),
                              use_recent=use_recent, request_id=uuid.uuid4().hex)
        if sources is not None:
            req.sources.CopyFrom(to_tensor(sources))
        resp = self._call("Write", req)
        return from_tensor(resp.written_slot), from_tensor(resp.correct)

    def read_slots(self, name: str, ids: np.ndarray | None = None, start: int = 0,
                   stop: int = 0) -> dict[str, np.ndarray]:
        """Slots by ids, or the range [start, stop): ids, keys, values, ages, sources."""
        req = pb.ReadSlotsRequest(name=name, start=start, stop=stop)
        if ids is not None:
            req.ids.CopyFrom(to_tensor(np.asarray(ids, dtype=np.int64)))
        resp = self._call("ReadSlots", req)
        return {f: from_tensor(getattr(resp, f), f) for f in ("ids", "keys", "values", "ages", "sources")}

    # ------------------------------------------------------------------ admin
    def reset(self, name: str) -> MemoryInfo:
        return _info(self._call("Reset", pb.MemoryName(name=name)))

    def snapshot(self, name: str = "", path: str = "") -> tuple[list[str], int]:
        resp = self._call("Snapshot", pb.SnapshotRequest(name=name, path=path))
        return list(resp.paths), resp.bytes

    def restore(self, name: str, path: str = "") -> MemoryInfo:
        return _info(self._call("Restore", pb.RestoreRequest(name=name, path=path)))
