"""Message generators for fuzzing the servicer (the suite's fuzz test and ``bench/fuzz.py``)."""

from __future__ import annotations

import grpc
import numpy as np
from hypothesis import strategies as st

from raremem.proto import memory_pb2 as pb

SERVICE = pb.DESCRIPTOR.services_by_name["Memory"]
UNARY = [m for m in SERVICE.methods if not m.client_streaming]
NAMES = st.sampled_from(["fuzz/m", "fuzz/other", "", "../x", "a" * 300, "fuzz/m\x00", "ok-1"])
CLEAR = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
         grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.FAILED_PRECONDITION,
         grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.ABORTED}


def tensors() -> st.SearchStrategy:
    """Tensors that mostly fit (so requests get past decoding) and sometimes do not."""
    shapes = st.lists(st.integers(-2, 9), min_size=0, max_size=3)
    dtypes = st.sampled_from([pb.FLOAT32, pb.INT64, pb.BOOL, pb.DTYPE_UNSPECIFIED, 99])

    @st.composite
    def build(draw):
        shape, dtype = draw(shapes), draw(dtypes)
        size = int(np.prod([max(s, 0) for s in shape])) if shape else 1
        width = {pb.FLOAT32: 4, pb.INT64: 8, pb.BOOL: 1}.get(dtype, 4)
        fit = draw(st.booleans())
        n = size * width if fit else draw(st.integers(0, 64))
        data = draw(st.binary(min_size=n, max_size=n)) if n < 4096 else bytes(n)
        if fit and dtype == pb.FLOAT32 and draw(st.booleans()):    # finite floats, often valid queries
            data = np.random.default_rng(draw(st.integers(0, 99))).standard_normal(size).astype("<f4").tobytes()
        return pb.Tensor(dtype=dtype, shape=shape, data=data)
    return build()


def message(descriptor, depth: int = 0) -> st.SearchStrategy:
    """Any message of ``descriptor``: a random subset of its fields, each of a fitting value."""
    cls = getattr(pb, descriptor.name)
    fields = {}
    for f in descriptor.fields:
        if f.message_type is not None:
            if f.message_type.name == "Tensor":
                value = tensors()
            elif depth < 2:
                value = message(f.message_type, depth + 1)
            else:
                continue
        elif f.type == f.TYPE_STRING:
            value = NAMES if f.name in ("name",) else st.text(max_size=12)
        elif f.type == f.TYPE_BOOL:
            value = st.booleans()
        elif f.type in (f.TYPE_FLOAT, f.TYPE_DOUBLE):
            value = st.floats(allow_nan=True, allow_infinity=True, width=32)
        elif f.type == f.TYPE_ENUM:
            value = st.integers(0, 5)
        elif f.type in (f.TYPE_UINT64, f.TYPE_UINT32):
            value = st.integers(0, 2 ** 31)
        else:
            value = st.integers(-2 ** 31, 2 ** 31 - 1)
        if f.is_repeated:
            value = st.lists(value, max_size=3)
        fields[f.name] = st.one_of(st.none(), value)

    @st.composite
    def build(draw):
        out = cls()
        for name, strategy in fields.items():
            v = draw(strategy)
            if v is None:
                continue
            target = getattr(out, name) if isinstance(v, (list, pb.Tensor)) or hasattr(v, "DESCRIPTOR") else None
            if isinstance(v, list):
                target.extend(v)
            elif hasattr(v, "DESCRIPTOR"):
                target.CopyFrom(v)
            else:
                try:
                    setattr(out, name, v)
                except (ValueError, TypeError):
                    pass
        return out
    return build()
