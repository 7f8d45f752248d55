"""The committed stubs are exactly what the pinned protoc generates, and tensors round-trip."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

from raremem.proto import generate
from raremem.proto import memory_pb2 as pb
from raremem.proto.tensors import TensorError, from_tensor, to_tensor


def test_generated_code_is_up_to_date(tmp_path):
    generate.generate(tmp_path)
    for name in generate.GENERATED:
        fresh = (tmp_path / name).read_text()
        committed = (generate.HERE / name).read_text()
        assert fresh == committed, f"proto/{name} is stale: run `python -m raremem.proto.generate`"


def test_stubs_register_a_name_of_their_own():
    """The pool holds one file per name: a generic ``memory.proto`` would clash with others'."""
    assert pb.DESCRIPTOR.name == "raremem/proto/memory.proto"
    assert pb.DESCRIPTOR.package == "raremem.v1"


@pytest.mark.parametrize("array", [
    np.arange(12, dtype=np.float32).reshape(3, 4),
    np.array([-1, 0, 2**62], dtype=np.int64),
    np.array([[True, False]]),
    np.zeros((0, 128), np.float32),
    np.asfortranarray(np.ones((3, 2), np.float32)),
    np.arange(4, dtype=">i8"),
])
def test_tensor_round_trip(array):
    msg = pb.Tensor.FromString(to_tensor(array).SerializeToString())
    out = from_tensor(msg)
    assert out.shape == array.shape and out.dtype.kind == array.dtype.kind
    np.testing.assert_array_equal(out, array)


def test_every_message_with_tensors_round_trips():
    rng = np.random.default_rng(0)
    q, ids = rng.standard_normal((5, 8)).astype(np.float32), np.arange(5, dtype=np.int64)
    msg = pb.LookupResponse(result=to_tensor(ids), positive_key=to_tensor(q),
                            neighbors=pb.Neighbors(ids=to_tensor(ids[:, None])))
    back = pb.LookupResponse.FromString(msg.SerializeToString())
    np.testing.assert_array_equal(from_tensor(back.positive_key), q)
    np.testing.assert_array_equal(from_tensor(back.neighbors.ids), ids[:, None])


@pytest.mark.parametrize("tensor, match", [
    (pb.Tensor(dtype=pb.FLOAT32, shape=[2, 3], data=b"\0" * 23), "do not fit shape"),
    (pb.Tensor(dtype=pb.DTYPE_UNSPECIFIED, shape=[1], data=b"\0" * 4), "dtype code"),
    (pb.Tensor(dtype=pb.INT64, shape=[-1], data=b""), "negative dimension"),
])
def test_malformed_tensors_are_refused(tensor, match):
    with pytest.raises(TensorError, match=match):
        from_tensor(tensor)


def test_unsupported_dtype_is_refused():
    with pytest.raises(TensorError, match="unsupported dtype"):
        to_tensor(np.zeros(3, np.float64))


@settings(max_examples=200, deadline=None)
@given(arrays(st.sampled_from([np.float32, np.int64, np.bool_]),
              array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=6)))
def test_any_array_round_trips(array):
    out = from_tensor(pb.Tensor.FromString(to_tensor(array).SerializeToString()))
    assert out.shape == array.shape and out.dtype == array.dtype
    np.testing.assert_array_equal(out, array)  # NaNs compare equal here


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64), st.lists(st.integers(-3, 10), max_size=3), st.integers(0, 4))
def test_arbitrary_tensor_messages_decode_or_raise_tensor_error(data, shape, dtype):
    try:
        out = from_tensor(pb.Tensor(dtype=dtype, shape=shape, data=data))
    except TensorError:
        return
    assert out.nbytes == len(data)


def test_the_contract_states_the_memory_defaults_the_server_applies():
    """memory.proto's bracketed defaults are the ones server/config.py defines (defined there
    once; the contract only states them), and the trainers start from the same ones."""
    import re
    from pathlib import Path

    from raremem.models.flags import TrainerFlags
    from raremem.server.config import MemoryConfig

    text = (Path(__file__).resolve().parents[2] / "proto" / "memory.proto").read_text()
    block = text[text.index("message MemoryConfig {"):text.index("// What a server says about one memory.")]
    stated = dict(re.findall(r"optional \w+ (\w+) = \d+;\s+//[^\[\n]*\[([-\d.]+)\]", block))
    assert {"alpha", "inverse_temperature", "age_noise", "correct_in_top", "ivf_nprobe", "lsh_tables",
            "lsh_bucket_size", "seed"} <= set(stated)
    for name, value in stated.items():
        assert float(value) == float(getattr(MemoryConfig, name)), name
    assert MemoryConfig(key_dim=4, size=1000).resolved().choose_k == 256 and "min(256, size)" in block
    flags = TrainerFlags()
    assert (flags.alpha, flags.age_noise, flags.memory_index) == (MemoryConfig.alpha, MemoryConfig.age_noise,
                                                                  MemoryConfig.index)
    assert flags.choose_k == 0   # 0: the memory's own default
