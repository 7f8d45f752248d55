from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DTYPE_UNSPECIFIED: _ClassVar[DType]
    FLOAT32: _ClassVar[DType]
    INT64: _ClassVar[DType]
    BOOL: _ClassVar[DType]

class IndexKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INDEX_KIND_UNSPECIFIED: _ClassVar[IndexKind]
    EXACT: _ClassVar[IndexKind]
    IVF: _ClassVar[IndexKind]
    LSH: _ClassVar[IndexKind]
DTYPE_UNSPECIFIED: DType
FLOAT32: DType
INT64: DType
BOOL: DType
INDEX_KIND_UNSPECIFIED: IndexKind
EXACT: IndexKind
IVF: IndexKind
LSH: IndexKind

class Tensor(_message.Message):
    __slots__ = ("dtype", "shape", "data")
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    dtype: DType
    shape: _containers.RepeatedScalarFieldContainer[int]
    data: bytes
    def __init__(self, dtype: _Optional[_Union[DType, str]] = ..., shape: _Optional[_Iterable[int]] = ..., data: _Optional[bytes] = ...) -> None: ...

class MemoryConfig(_message.Message):
    __slots__ = ("key_dim", "size", "choose_k", "alpha", "inverse_temperature", "age_noise", "correct_in_top", "index", "ivf_nlist", "ivf_nprobe", "lsh_tables", "lsh_bits", "lsh_bucket_size", "seed", "device", "append_only", "ivf_retrain", "ivf_rebalance", "device_dtype")
    KEY_DIM_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    CHOOSE_K_FIELD_NUMBER: _ClassVar[int]
    ALPHA_FIELD_NUMBER: _ClassVar[int]
    INVERSE_TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    AGE_NOISE_FIELD_NUMBER: _ClassVar[int]
    CORRECT_IN_TOP_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    IVF_NLIST_FIELD_NUMBER: _ClassVar[int]
    IVF_NPROBE_FIELD_NUMBER: _ClassVar[int]
    LSH_TABLES_FIELD_NUMBER: _ClassVar[int]
    LSH_BITS_FIELD_NUMBER: _ClassVar[int]
    LSH_BUCKET_SIZE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    APPEND_ONLY_FIELD_NUMBER: _ClassVar[int]
    IVF_RETRAIN_FIELD_NUMBER: _ClassVar[int]
    IVF_REBALANCE_FIELD_NUMBER: _ClassVar[int]
    DEVICE_DTYPE_FIELD_NUMBER: _ClassVar[int]
    key_dim: int
    size: int
    choose_k: int
    alpha: float
    inverse_temperature: float
    age_noise: float
    correct_in_top: int
    index: IndexKind
    ivf_nlist: int
    ivf_nprobe: int
    lsh_tables: int
    lsh_bits: int
    lsh_bucket_size: int
    seed: int
    device: str
    append_only: bool
    ivf_retrain: int
    ivf_rebalance: float
    device_dtype: str
    def __init__(self, key_dim: _Optional[int] = ..., size: _Optional[int] = ..., choose_k: _Optional[int] = ..., alpha: _Optional[float] = ..., inverse_temperature: _Optional[float] = ..., age_noise: _Optional[float] = ..., correct_in_top: _Optional[int] = ..., index: _Optional[_Union[IndexKind, str]] = ..., ivf_nlist: _Optional[int] = ..., ivf_nprobe: _Optional[int] = ..., lsh_tables: _Optional[int] = ..., lsh_bits: _Optional[int] = ..., lsh_bucket_size: _Optional[int] = ..., seed: _Optional[int] = ..., device: _Optional[str] = ..., append_only: _Optional[bool] = ..., ivf_retrain: _Optional[int] = ..., ivf_rebalance: _Optional[float] = ..., device_dtype: _Optional[str] = ...) -> None: ...

class MemoryInfo(_message.Message):
    __slots__ = ("name", "config", "filled", "total_writes")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    FILLED_FIELD_NUMBER: _ClassVar[int]
    TOTAL_WRITES_FIELD_NUMBER: _ClassVar[int]
    name: str
    config: MemoryConfig
    filled: int
    total_writes: int
    def __init__(self, name: _Optional[str] = ..., config: _Optional[_Union[MemoryConfig, _Mapping]] = ..., filled: _Optional[int] = ..., total_writes: _Optional[int] = ...) -> None: ...

class CreateMemoryRequest(_message.Message):
    __slots__ = ("name", "config", "exist_ok")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    EXIST_OK_FIELD_NUMBER: _ClassVar[int]
    name: str
    config: MemoryConfig
    exist_ok: bool
    def __init__(self, name: _Optional[str] = ..., config: _Optional[_Union[MemoryConfig, _Mapping]] = ..., exist_ok: _Optional[bool] = ...) -> None: ...

class MemoryName(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteMemoryResponse(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: bool
    def __init__(self, deleted: _Optional[bool] = ...) -> None: ...

class ListMemoriesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListMemoriesResponse(_message.Message):
    __slots__ = ("memories",)
    MEMORIES_FIELD_NUMBER: _ClassVar[int]
    memories: _containers.RepeatedCompositeFieldContainer[MemoryInfo]
    def __init__(self, memories: _Optional[_Iterable[_Union[MemoryInfo, _Mapping]]] = ...) -> None: ...

class GetStatsRequest(_message.Message):
    __slots__ = ("name", "age_bins", "top_values", "with_hash")
    NAME_FIELD_NUMBER: _ClassVar[int]
    AGE_BINS_FIELD_NUMBER: _ClassVar[int]
    TOP_VALUES_FIELD_NUMBER: _ClassVar[int]
    WITH_HASH_FIELD_NUMBER: _ClassVar[int]
    name: str
    age_bins: int
    top_values: int
    with_hash: bool
    def __init__(self, name: _Optional[str] = ..., age_bins: _Optional[int] = ..., top_values: _Optional[int] = ..., with_hash: _Optional[bool] = ...) -> None: ...

class Stats(_message.Message):
    __slots__ = ("info", "age_bin_edges", "age_counts", "top_values", "top_value_counts", "distinct_values", "bytes", "lookups", "correct_writes", "fresh_writes", "evictions", "writes_since_snapshot", "last_snapshot_unix", "writes_lost_at_restore", "state_hash", "unread_evictions", "wal_unsynced")
    INFO_FIELD_NUMBER: _ClassVar[int]
    AGE_BIN_EDGES_FIELD_NUMBER: _ClassVar[int]
    AGE_COUNTS_FIELD_NUMBER: _ClassVar[int]
    TOP_VALUES_FIELD_NUMBER: _ClassVar[int]
    TOP_VALUE_COUNTS_FIELD_NUMBER: _ClassVar[int]
    DISTINCT_VALUES_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    LOOKUPS_FIELD_NUMBER: _ClassVar[int]
    CORRECT_WRITES_FIELD_NUMBER: _ClassVar[int]
    FRESH_WRITES_FIELD_NUMBER: _ClassVar[int]
    EVICTIONS_FIELD_NUMBER: _ClassVar[int]
    WRITES_SINCE_SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    LAST_SNAPSHOT_UNIX_FIELD_NUMBER: _ClassVar[int]
    WRITES_LOST_AT_RESTORE_FIELD_NUMBER: _ClassVar[int]
    STATE_HASH_FIELD_NUMBER: _ClassVar[int]
    UNREAD_EVICTIONS_FIELD_NUMBER: _ClassVar[int]
    WAL_UNSYNCED_FIELD_NUMBER: _ClassVar[int]
    info: MemoryInfo
    age_bin_edges: Tensor
    age_counts: Tensor
    top_values: Tensor
    top_value_counts: Tensor
    distinct_values: int
    bytes: int
    lookups: int
    correct_writes: int
    fresh_writes: int
    evictions: int
    writes_since_snapshot: int
    last_snapshot_unix: float
    writes_lost_at_restore: int
    state_hash: str
    unread_evictions: int
    wal_unsynced: int
    def __init__(self, info: _Optional[_Union[MemoryInfo, _Mapping]] = ..., age_bin_edges: _Optional[_Union[Tensor, _Mapping]] = ..., age_counts: _Optional[_Union[Tensor, _Mapping]] = ..., top_values: _Optional[_Union[Tensor, _Mapping]] = ..., top_value_counts: _Optional[_Union[Tensor, _Mapping]] = ..., distinct_values: _Optional[int] = ..., bytes: _Optional[int] = ..., lookups: _Optional[int] = ..., correct_writes: _Optional[int] = ..., fresh_writes: _Optional[int] = ..., evictions: _Optional[int] = ..., writes_since_snapshot: _Optional[int] = ..., last_snapshot_unix: _Optional[float] = ..., writes_lost_at_restore: _Optional[int] = ..., state_hash: _Optional[str] = ..., unread_evictions: _Optional[int] = ..., wal_unsynced: _Optional[int] = ...) -> None: ...

class LookupRequest(_message.Message):
    __slots__ = ("name", "queries", "labels", "update", "use_recent", "sources", "k", "nprobe", "return_weight_terms", "return_neighbors", "return_neighbor_keys", "leave_one_out", "request_id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    QUERIES_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    UPDATE_FIELD_NUMBER: _ClassVar[int]
    USE_RECENT_FIELD_NUMBER: _ClassVar[int]
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    NPROBE_FIELD_NUMBER: _ClassVar[int]
    RETURN_WEIGHT_TERMS_FIELD_NUMBER: _ClassVar[int]
    RETURN_NEIGHBORS_FIELD_NUMBER: _ClassVar[int]
    RETURN_NEIGHBOR_KEYS_FIELD_NUMBER: _ClassVar[int]
    LEAVE_ONE_OUT_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    queries: Tensor
    labels: Tensor
    update: bool
    use_recent: bool
    sources: Tensor
    k: int
    nprobe: int
    return_weight_terms: bool
    return_neighbors: bool
    return_neighbor_keys: bool
    leave_one_out: bool
    request_id: str
    def __init__(self, name: _Optional[str] = ..., queries: _Optional[_Union[Tensor, _Mapping]] = ..., labels: _Optional[_Union[Tensor, _Mapping]] = ..., update: _Optional[bool] = ..., use_recent: _Optional[bool] = ..., sources: _Optional[_Union[Tensor, _Mapping]] = ..., k: _Optional[int] = ..., nprobe: _Optional[int] = ..., return_weight_terms: _Optional[bool] = ..., return_neighbors: _Optional[bool] = ..., return_neighbor_keys: _Optional[bool] = ..., leave_one_out: _Optional[bool] = ..., request_id: _Optional[str] = ...) -> None: ...

class Neighbors(_message.Message):
    __slots__ = ("ids", "similarities", "weights", "values", "sources", "keys")
    IDS_FIELD_NUMBER: _ClassVar[int]
    SIMILARITIES_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    ids: Tensor
    similarities: Tensor
    weights: Tensor
    values: Tensor
    sources: Tensor
    keys: Tensor
    def __init__(self, ids: _Optional[_Union[Tensor, _Mapping]] = ..., similarities: _Optional[_Union[Tensor, _Mapping]] = ..., weights: _Optional[_Union[Tensor, _Mapping]] = ..., values: _Optional[_Union[Tensor, _Mapping]] = ..., sources: _Optional[_Union[Tensor, _Mapping]] = ..., keys: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...

class LookupResponse(_message.Message):
    __slots__ = ("result", "found", "top_weight", "top_similarity", "positive_key", "negative_key", "positive_slot", "negative_slot", "loss", "correct", "written_slot", "top_key", "mean_key", "neighbors", "error")
    RESULT_FIELD_NUMBER: _ClassVar[int]
    FOUND_FIELD_NUMBER: _ClassVar[int]
    TOP_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    TOP_SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    POSITIVE_KEY_FIELD_NUMBER: _ClassVar[int]
    NEGATIVE_KEY_FIELD_NUMBER: _ClassVar[int]
    POSITIVE_SLOT_FIELD_NUMBER: _ClassVar[int]
    NEGATIVE_SLOT_FIELD_NUMBER: _ClassVar[int]
    LOSS_FIELD_NUMBER: _ClassVar[int]
    CORRECT_FIELD_NUMBER: _ClassVar[int]
    WRITTEN_SLOT_FIELD_NUMBER: _ClassVar[int]
    TOP_KEY_FIELD_NUMBER: _ClassVar[int]
    MEAN_KEY_FIELD_NUMBER: _ClassVar[int]
    NEIGHBORS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    result: Tensor
    found: Tensor
    top_weight: Tensor
    top_similarity: Tensor
    positive_key: Tensor
    negative_key: Tensor
    positive_slot: Tensor
    negative_slot: Tensor
    loss: Tensor
    correct: Tensor
    written_slot: Tensor
    top_key: Tensor
    mean_key: Tensor
    neighbors: Neighbors
    error: StreamError
    def __init__(self, result: _Optional[_Union[Tensor, _Mapping]] = ..., found: _Optional[_Union[Tensor, _Mapping]] = ..., top_weight: _Optional[_Union[Tensor, _Mapping]] = ..., top_similarity: _Optional[_Union[Tensor, _Mapping]] = ..., positive_key: _Optional[_Union[Tensor, _Mapping]] = ..., negative_key: _Optional[_Union[Tensor, _Mapping]] = ..., positive_slot: _Optional[_Union[Tensor, _Mapping]] = ..., negative_slot: _Optional[_Union[Tensor, _Mapping]] = ..., loss: _Optional[_Union[Tensor, _Mapping]] = ..., correct: _Optional[_Union[Tensor, _Mapping]] = ..., written_slot: _Optional[_Union[Tensor, _Mapping]] = ..., top_key: _Optional[_Union[Tensor, _Mapping]] = ..., mean_key: _Optional[_Union[Tensor, _Mapping]] = ..., neighbors: _Optional[_Union[Neighbors, _Mapping]] = ..., error: _Optional[_Union[StreamError, _Mapping]] = ...) -> None: ...

class StreamError(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class WriteRequest(_message.Message):
    __slots__ = ("name", "keys", "labels", "sources", "use_recent", "request_id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    USE_RECENT_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    keys: Tensor
    labels: Tensor
    sources: Tensor
    use_recent: bool
    request_id: str
    def __init__(self, name: _Optional[str] = ..., keys: _Optional[_Union[Tensor, _Mapping]] = ..., labels: _Optional[_Union[Tensor, _Mapping]] = ..., sources: _Optional[_Union[Tensor, _Mapping]] = ..., use_recent: _Optional[bool] = ..., request_id: _Optional[str] = ...) -> None: ...

class WriteResponse(_message.Message):
    __slots__ = ("written_slot", "correct")
    WRITTEN_SLOT_FIELD_NUMBER: _ClassVar[int]
    CORRECT_FIELD_NUMBER: _ClassVar[int]
    written_slot: Tensor
    correct: Tensor
    def __init__(self, written_slot: _Optional[_Union[Tensor, _Mapping]] = ..., correct: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...

class ReadSlotsRequest(_message.Message):
    __slots__ = ("name", "ids", "start", "stop")
    NAME_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    name: str
    ids: Tensor
    start: int
    stop: int
    def __init__(self, name: _Optional[str] = ..., ids: _Optional[_Union[Tensor, _Mapping]] = ..., start: _Optional[int] = ..., stop: _Optional[int] = ...) -> None: ...

class ReadSlotsResponse(_message.Message):
    __slots__ = ("ids", "keys", "values", "ages", "sources")
    IDS_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    AGES_FIELD_NUMBER: _ClassVar[int]
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    ids: Tensor
    keys: Tensor
    values: Tensor
    ages: Tensor
    sources: Tensor
    def __init__(self, ids: _Optional[_Union[Tensor, _Mapping]] = ..., keys: _Optional[_Union[Tensor, _Mapping]] = ..., values: _Optional[_Union[Tensor, _Mapping]] = ..., ages: _Optional[_Union[Tensor, _Mapping]] = ..., sources: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...

class SnapshotRequest(_message.Message):
    __slots__ = ("name", "path")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    name: str
    path: str
    def __init__(self, name: _Optional[str] = ..., path: _Optional[str] = ...) -> None: ...

class SnapshotResponse(_message.Message):
    __slots__ = ("paths", "bytes")
    PATHS_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    paths: _containers.RepeatedScalarFieldContainer[str]
    bytes: int
    def __init__(self, paths: _Optional[_Iterable[str]] = ..., bytes: _Optional[int] = ...) -> None: ...

class RestoreRequest(_message.Message):
    __slots__ = ("name", "path")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    name: str
    path: str
    def __init__(self, name: _Optional[str] = ..., path: _Optional[str] = ...) -> None: ...
