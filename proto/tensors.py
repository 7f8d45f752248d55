"""numpy <-> ``raremem.v1.Tensor``: raw little-endian bytes with shape and dtype.

Both the server and the client convert through these functions and nothing else. Decoding
validates everything a peer could get wrong (unknown dtype, negative dims, a byte count that
does not match the shape) and raises ``TensorError`` with a message fit for a user.
"""

from __future__ import annotations

import numpy as np

from raremem.proto import memory_pb2 as pb

_TO_NUMPY = {
    pb.FLOAT32: np.dtype("<f4"),
    pb.INT64: np.dtype("<i8"),
    pb.BOOL: np.dtype("?"),
}
_FROM_NUMPY = {dt: code for code, dt in _TO_NUMPY.items()}


class TensorError(ValueError):
    """A Tensor message that cannot be decoded, or an array that cannot be encoded."""


def to_tensor(array: np.ndarray) -> pb.Tensor:
    """Encode an array of float32, int64 or bool (other widths are not converted silently)."""
    array = np.asarray(array)
    dtype = array.dtype.newbyteorder("<") if array.dtype.byteorder == ">" else array.dtype
    code = _FROM_NUMPY.get(np.dtype(dtype))
    if code is None:
        raise TensorError(f"unsupported dtype {array.dtype}; use float32, int64 or bool")
    data = np.ascontiguousarray(array, dtype=_TO_NUMPY[code]).tobytes()
    return pb.Tensor(dtype=code, shape=array.shape, data=data)


def from_tensor(tensor: pb.Tensor, what: str = "tensor") -> np.ndarray:
    """Decode a Tensor; the array is read-only and shares the message's bytes."""
    dtype = _TO_NUMPY.get(tensor.dtype)
    if dtype is None:
        raise TensorError(f"{what}: dtype code {tensor.dtype} is not FLOAT32, INT64 or BOOL")
    shape = tuple(int(s) for s in tensor.shape)
    if any(s < 0 for s in shape):
        raise TensorError(f"{what}: negative dimension in shape {shape}")
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(tensor.data) != expected:
        raise TensorError(
            f"{what}: {len(tensor.data)} bytes do not fit shape {shape} of "
            f"{pb.DType.Name(tensor.dtype)} ({expected} bytes expected)"
        )
    return np.frombuffer(tensor.data, dtype=dtype).reshape(shape)


def optional_tensor(message, field: str, what: str | None = None) -> np.ndarray | None:
    """Decode ``message.field`` if it was set, else None."""
    if not message.HasField(field):
        return None
    return from_tensor(getattr(message, field), what or field)
