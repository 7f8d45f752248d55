"""The gRPC layer: decode, call the service, encode; one table maps domain errors to codes.

No memory logic lives here. ``create_server`` wires health checking, reflection, the token
interceptor (auth.py) and the message-size limits, and binds 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import functools
import logging
import time
from concurrent import futures

import grpc
from google.protobuf.message import DecodeError
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from raremem.proto import memory_pb2 as pb
from raremem.proto import memory_pb2_grpc as pb_grpc
from raremem.proto.tensors import TensorError, from_tensor, optional_tensor, to_tensor
from raremem.proto.types import MAX_MESSAGE_BYTES, STATS_AGE_BINS, STATS_TOP_VALUES
from raremem.server import convert, errors, metrics
from raremem.server.auth import Auth, TokenInterceptor
from raremem.server.service import MemoryService

log = logging.getLogger("raremem.servicer")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Memory"].full_name

_STATUS = (  # first match wins
    (errors.InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (TensorError, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.NotFound, grpc.StatusCode.NOT_FOUND),
    (errors.AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (errors.ResourceExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (errors.FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.Aborted, grpc.StatusCode.ABORTED),
)


def status_for(exc: Exception) -> grpc.StatusCode:
    for kind, code in _STATUS:
        if isinstance(exc, kind):
            return code
    return grpc.StatusCode.INTERNAL


class _Measured:
    """Times one call (or one stream message), counts it under its status code, and says which
    code an error maps to: what every rpc does around its work, written once."""

    def __init__(self, name: str):
        self.name, self.code = name, grpc.StatusCode.OK

    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def failed(self, exc: Exception, what: str) -> grpc.StatusCode:
        self.code = status_for(exc)
        if self.code == grpc.StatusCode.INTERNAL:
            log.exception("%s failed", what)
        return self.code

    def __exit__(self, *exc_info):
        metrics.REQUESTS.labels(self.name, self.code.name).inc()
        metrics.LATENCY.labels(self.name).observe(time.perf_counter() - self.start)


def _rpc(method):
    """Time the call, count it, and turn domain errors into their status codes."""
    name = method.__name__

    @functools.wraps(method)
    def wrapper(self, request, context):
        with _Measured(name) as call:
            try:
                return method(self, request, context)
            except Exception as exc:  # noqa: BLE001 - every error becomes a status
                code = call.failed(exc, name)
                internal = code == grpc.StatusCode.INTERNAL
                context.abort(code, f"internal error: {type(exc).__name__}: {exc}" if internal else str(exc))

    return wrapper


class MemoryServicer(pb_grpc.MemoryServicer):
    def __init__(self, service: MemoryService, auth: Auth | None = None):
        self.service, self.auth = service, auth or Auth()

    def _caller(self, context):
        caller = self.auth.caller(context.invocation_metadata())
        if caller is None:   # the interceptor lets no such call through; this guards direct use
            raise errors.PermissionDenied("missing or wrong bearer token")
        return caller

    @_rpc
    def CreateMemory(self, request, context):
        config = convert.config_from_pb(request.config)
        return convert.info_to_pb(self.service.create(request.name, config, request.exist_ok,
                                                      owner=self._caller(context).owner))

    @_rpc
    def DeleteMemory(self, request, context):
        return pb.DeleteMemoryResponse(deleted=self.service.delete(request.name))

    @_rpc
    def ListMemories(self, request, context):
        return pb.ListMemoriesResponse(memories=[convert.info_to_pb(i) for i in self.service.list()])

    @_rpc
    def GetStats(self, request, context):
        stats = self.service.stats(request.name, request.age_bins or STATS_AGE_BINS,
                                   request.top_values or STATS_TOP_VALUES,
                                   request.with_hash)
        return convert.stats_to_pb(stats)

    def _lookup(self, request: pb.LookupRequest) -> pb.LookupResponse:
        spec = convert.lookup_spec_from_pb(request)
        return convert.lookup_result_to_pb(self.service.lookup(request.name, spec))

    @_rpc
    def Lookup(self, request, context):
        return self._lookup(request)

    def LookupStream(self, requests, context):
        """Lookup per message; a failed message is answered with its error and the stream goes on."""
        for request in requests:
            with _Measured("LookupStream") as call:
                try:
                    if isinstance(request, _Malformed):
                        raise errors.InvalidArgument(f"malformed request bytes: {request.error}")
                    response = self._lookup(request)
                except Exception as exc:  # noqa: BLE001 - every error becomes this message's status
                    code = call.failed(exc, "LookupStream message")
                    response = pb.LookupResponse(error=pb.StreamError(code=code.value[0], message=str(exc)))
            yield response

    @_rpc
    def Write(self, request, context):
        res = self.service.write(request.name, from_tensor(request.keys, "keys"),
                                 optional_tensor(request, "labels"),
                                 optional_tensor(request, "sources"), request.use_recent, request.request_id)
        return pb.WriteResponse(written_slot=to_tensor(res.written_slot),
                                correct=to_tensor(res.correct))

    @_rpc
    def ReadSlots(self, request, context):
        ids = optional_tensor(request, "ids")
        return convert.slots_to_pb(self.service.read_slots(request.name, ids, request.start, request.stop))

    @_rpc
    def Reset(self, request, context):
        caller = self._caller(context)
        return convert.info_to_pb(self.service.reset(request.name, owner=None if caller.admin else caller.owner))

    @_rpc
    def Snapshot(self, request, context):
        paths, nbytes = self.service.snapshot(request.name, request.path)
        return pb.SnapshotResponse(paths=paths, bytes=nbytes)

    @_rpc
    def Restore(self, request, context):
        return convert.info_to_pb(self.service.restore(request.name, request.path))


class _Malformed:
    """Stands in for a request whose bytes did not parse."""

    def __init__(self, error: Exception):
        self.error = error


class MalformedRequestInterceptor(grpc.ServerInterceptor):
    """Bytes that are not a valid request message get INVALID_ARGUMENT with the parser's
    reason (gRPC's own deserialisation failure would answer INTERNAL); on a stream, that one
    message gets the error and the stream goes on."""

    def intercept_service(self, continuation, details):
        handler = continuation(details)
        if handler is None or handler.request_deserializer is None:
            return handler
        parse = handler.request_deserializer

        def lenient(data: bytes):
            try:
                return parse(data)
            except DecodeError as exc:
                return _Malformed(exc)

        if handler.stream_stream is not None:  # the servicer answers _Malformed messages itself
            return grpc.stream_stream_rpc_method_handler(handler.stream_stream, request_deserializer=lenient,
                                                         response_serializer=handler.response_serializer)
        if handler.unary_unary is None:
            return handler
        behaviour = handler.unary_unary

        def call(request, context):
            if isinstance(request, _Malformed):
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"malformed request bytes: {request.error}")
            return behaviour(request, context)

        return grpc.unary_unary_rpc_method_handler(call, request_deserializer=lenient,
                                                   response_serializer=handler.response_serializer)


def create_server(service: MemoryService, address: str = "127.0.0.1:0", *, token: str | list[str] | None = None,
                  admin_token: str | None = None, max_message_bytes: int = MAX_MESSAGE_BYTES,
                  workers: int = 32, tls: tuple[bytes, bytes] | None = None, unix: str | None = None):
    """Build (not start) a server; returns (server, port, health servicer). Port 0 picks one.
    ``unix``: also listen on this Unix-domain socket path (clients dial ``unix://PATH``;
    local trainers skip the TCP stack). It is never served with TLS: the file's permissions
    guard it. ``token``: the user tokens (a list, or one string, comma-separated); auth.py
    says what each token opens."""
    auth = Auth(token, admin_token)
    options = [("grpc.max_receive_message_length", max_message_bytes),
               ("grpc.max_send_message_length", max_message_bytes),
               ("grpc.so_reuseport", 0)]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rpc"),
                         interceptors=[TokenInterceptor(auth, SERVICE_NAME), MalformedRequestInterceptor()],
                         options=options)
    pb_grpc.add_MemoryServicer_to_server(MemoryServicer(service, auth), server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    if tls:
        key, cert = tls
        port = server.add_secure_port(address, grpc.ssl_server_credentials([(key, cert)]))
    else:
        port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"could not bind {address}")
    if unix and server.add_insecure_port(f"unix:{unix}") == 0:
        raise OSError(f"could not bind unix:{unix}")
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return server, port, health_servicer
