"""Index kinds between their names (``types.INDEX_KINDS``) and the wire's ``IndexKind`` enum,
for both sides: one table."""

from __future__ import annotations

from raremem.proto import memory_pb2 as pb
from raremem.proto.types import INDEX_KINDS

TO_PB = {kind: pb.IndexKind.Value(kind.upper()) for kind in INDEX_KINDS}
FROM_PB = {v: k for k, v in TO_PB.items()} | {pb.INDEX_KIND_UNSPECIFIED: "exact"}   # unset: the default
