"""Who may call what: bearer tokens, the admin token, and a memory's owner.

- ``tokens`` (one or more) open the ordinary rpcs; ``admin_token`` opens everything. With
  tokens but no admin token, every token is also an admin (a single-user server); with only an
  admin token, ordinary rpcs are open to anyone. With neither, everything is open.
- A memory's owner is the caller that created it, named by a digest of its token (``""`` for a
  caller without one). The owner may Reset its memory (trainers clear theirs between
  episodes); Reset of another's memory, Restore and DeleteMemory need the admin token.
- Health checks and reflection stay open.

The interceptor decides what it can from the method alone; ownership needs the memory, so the
servicer asks ``Auth.caller`` and the service compares owners.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Iterable

import grpc

ADMIN_METHODS = frozenset({"Restore", "DeleteMemory"})
STREAM_METHODS = frozenset({"LookupStream"})


def owner_of(token: str | None) -> str:
    """The name a token's memories are owned under: a digest, so snapshots never hold a token."""
    return hashlib.sha256(token.encode()).hexdigest()[:16] if token else ""


@dataclass(frozen=True)
class Caller:
    admin: bool      # may call anything on any memory
    owner: str       # owner_of(its token)


class Auth:
    def __init__(self, tokens: str | Iterable[str] | None = None, admin_token: str | None = None):
        if isinstance(tokens, str):
            tokens = tokens.split(",")
        self.tokens = tuple(t for t in (tokens or ()) if t)
        self.admin_token = admin_token or None

    @staticmethod
    def bearer(metadata) -> str | None:
        given = dict(metadata or ()).get("authorization", "")
        return given[7:] if given.startswith("Bearer ") else None

    @staticmethod
    def _matches(given: str | None, token: str) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), token.encode())

    def caller(self, metadata) -> Caller | None:
        """The caller a request's metadata names, or None when its token opens nothing."""
        given = self.bearer(metadata)
        if self.admin_token and self._matches(given, self.admin_token):
            return Caller(admin=True, owner=owner_of(given))
        if any(self._matches(given, t) for t in self.tokens):
            return Caller(admin=not self.admin_token, owner=owner_of(given))
        if self.tokens:
            return None
        return Caller(admin=not self.admin_token, owner="")   # an open server's anonymous caller


class TokenInterceptor(grpc.ServerInterceptor):
    """Refuses, before any decoding, the calls whose token cannot open them at all."""

    def __init__(self, auth: Auth, service_name: str):
        self.auth, self.service_name = auth, service_name

    @staticmethod
    def _deny(code, message, streaming: bool):
        def abort(request, context):
            context.abort(code, message)
        if streaming:
            return grpc.stream_stream_rpc_method_handler(abort)
        return grpc.unary_unary_rpc_method_handler(abort)

    def intercept_service(self, continuation, details):
        service, _, method = details.method.lstrip("/").rpartition("/")
        if service != self.service_name:
            return continuation(details)
        caller = self.auth.caller(details.invocation_metadata)
        streaming = method in STREAM_METHODS
        if caller is None:
            if method in ADMIN_METHODS:
                return self._deny(grpc.StatusCode.UNAUTHENTICATED, f"{method} needs the admin token", streaming)
            return self._deny(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token", streaming)
        if method in ADMIN_METHODS and not caller.admin:
            code = grpc.StatusCode.PERMISSION_DENIED if self.auth.bearer(details.invocation_metadata) \
                else grpc.StatusCode.UNAUTHENTICATED
            return self._deny(code, f"{method} needs the admin token", streaming)
        return continuation(details)
