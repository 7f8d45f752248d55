"""Nearest-neighbour backends over the store's key array (design.md §1, "Index kinds").

Every index sees the store's ``keys`` array (size, d) and the number ``n`` of filled slots.
Filled slots are always the prefix ``[0, n)``: empty slots are filled in index order and
only a reset empties them again, so searching the prefix keeps empty slots out of every answer.

``search`` returns similarities (float32) and slot ids (int64), both (b, k), in any order;
missing neighbours have id -1. The store sorts and masks; indexes only find candidates.
``on_write(slots, n)`` is called after the store changed those rows of ``keys``; ``n`` is the
number of filled slots after the write.
"""

from __future__ import annotations

import contextlib
import io
import math

import faiss
import numpy as np

from raremem.server.config import MemoryConfig, device_format_error
from raremem.server.errors import InvalidArgument

# design.md §5: faiss-cpu only takes its BLAS path from 1000 queries on; forcing it made exact
# k=256 search 1.5-4x faster at b = 16..256 with identical results.
faiss.cvar.distance_compute_blas_threshold = 1

_threads = 0  # OpenMP threads per FAISS call (0 = the library's default, one per core)


def set_threads(n: int) -> None:
    """FAISS (and the OpenBLAS inside it) use ``n`` OpenMP threads from now on, in every thread.

    OpenMP's thread count is a per-thread setting: ``omp_set_num_threads`` in the main thread
    leaves the threads that actually search (each memory's batcher, gRPC workers) at one per
    core, so every FAISS entry point re-applies it. Measured on 2 cores beside a busy trainer:
    a 32-query lookup with update at 29K slots took 265 ms with two spinning OpenMP threads,
    10 ms with one."""
    global _threads
    _threads = n
    _apply_threads()


def _apply_threads() -> None:
    if _threads and faiss.omp_get_max_threads() != _threads:
        faiss.omp_set_num_threads(_threads)


def _check_faiss_input(queries: np.ndarray, d: int) -> np.ndarray:
    """The one guard at the FAISS boundary: (b, d) float32, C-contiguous; the thread count set."""
    _apply_threads()
    assert queries.ndim == 2 and queries.shape[1] == d, queries.shape
    assert queries.dtype == np.float32 and queries.flags.c_contiguous
    return queries


class ExactIndex:
    """Brute-force inner product with FAISS over the filled prefix; no copy of the keys.

    Exact means the reference's answer, ties included: a searcher keeps any of the slots that
    tie across the cut of the k best (FAISS's CPU heap kept slot 30 before slot 2), so each
    search asks for one neighbour more and finds the rows whose last two tie again, keeping
    the lower slots there (design.md §1). Subclasses search elsewhere through the same steps."""

    sorted = True  # rows come back by decreasing similarity

    def __init__(self, config: MemoryConfig, keys: np.ndarray):
        self.keys = keys

    def search(self, queries: np.ndarray, k: int, n: int, nprobe: int):
        q = self._queries(queries)
        sims, ids = self._top(q, min(k + 1, n), n)                          # (b, k or k + 1)
        if sims.shape[1] > k:
            tied = self._rows(sims[:, k] == sims[:, k - 1])                 # the cut falls inside a tie
            sims, ids = sims[:, :k], ids[:, :k]
            if len(tied):
                sims[tied], ids[tied] = self._settled(q[tied], n, k)
        return self._host(sims, ids)

    def _queries(self, queries: np.ndarray):
        return _check_faiss_input(queries, self.keys.shape[1])

    def _top(self, q, k: int, n: int):
        """(b, k) similarities and slots among the first ``n``, sorted, ties in any order."""
        return faiss.knn(q, self.keys[:n], k, metric=faiss.METRIC_INNER_PRODUCT)

    @staticmethod
    def _rows(mask):
        return np.flatnonzero(mask)

    def _settled(self, q, n: int, k: int):
        """The k best of the first ``n`` slots for a few queries, found again with every tie
        going to the lower slot: all above the k-th similarity, then the lowest of those equal
        to it. (t, k) each, sorted."""
        s = q @ self.keys[:n].T                                             # (t, n)
        kth = -np.partition(-s, k - 1, axis=1)[:, k - 1:k]                  # (t, 1)
        ids = np.empty((len(q), k), np.int64)
        for r in range(len(q)):
            above, equal = np.flatnonzero(s[r] > kth[r]), np.flatnonzero(s[r] == kth[r])
            ids[r] = np.concatenate([above, equal[:k - len(above)]])
        sims = np.take_along_axis(s, ids, 1)
        order = np.lexsort((ids, -sims), axis=1)
        return np.take_along_axis(sims, order, 1), np.take_along_axis(ids, order, 1)

    @staticmethod
    def _host(sims, ids):
        return sims, ids

    def on_write(self, slots: np.ndarray, n: int) -> None:
        pass

    def reset(self) -> None:
        pass

    def nbytes(self) -> int:
        return 0

    def state(self) -> dict[str, np.ndarray]:
        return {}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        pass


# FAISS's GPU k-selection takes k up to 2048 (GPU_MAX_SELECTION_K, faiss/gpu/utils/DeviceDefs.cuh);
# a larger k goes through torch's topk, which has no such limit.
FAISS_GPU_MAX_K = 2048


def device_unavailable(device: str) -> str:
    """Why a memory cannot live on ``device`` here ("" if it can): checked when a server starts
    and when a memory is created, so a missing GPU is one clear line."""
    if device in ("", "cpu"):
        return ""
    if problem := device_format_error(device):
        return problem
    try:
        import torch  # noqa: PLC0415 - optional dependency
    except ImportError:
        return f"device {device!r} needs torch (pip install 'raremem[gpu]')"
    index = int(device.partition(":")[2] or 0)
    if not torch.cuda.is_available() or index >= torch.cuda.device_count():
        return f"device {device!r}: no such CUDA device here ({torch.cuda.device_count()} visible)"
    return ""


def faiss_has_gpu() -> bool:
    """Whether this FAISS build can search on a GPU (faiss-gpu with a visible device)."""
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


class DeviceExactIndex(ExactIndex):
    """Exact search on a torch device over a mirror of the keys kept there (design.md §1,
    "Index kinds"). Writes update the mirror's rows in place: no rebuild per write, which is
    what FAISS's own GPU indexes cannot do (an added vector cannot be changed, FAISS issues
    #283, #1021). The mirror is a buffer of its own on every device (on the CPU too, where
    ``from_numpy(...).to("cpu")`` would share the store's array and hide a mirror that is not
    kept in step), updated by every write, reset and restore.

    The search is FAISS's GPU brute force (``faiss.knn_gpu`` on the mirror's memory, through
    ``faiss.contrib.torch_utils``) where faiss-gpu is installed, else torch's ``mm + topk``.
    Either asks for one neighbour more than needed: where the last two tie, which slots share
    the cut is the searcher's choice, so those rows are found again by a stable sort of all
    similarities (ties to the lower slot, as the store and the CPU index answer).
    ``device_dtype`` float16 / bfloat16 holds the mirror (and casts the queries) in half
    precision: half the device memory, and similarities rounded to it (bench/gpu_check.py
    measures top-1 agreement against float32).

    torch is imported only when such a memory is created, so the CPU server needs no torch.
    """

    def __init__(self, config: MemoryConfig, keys: np.ndarray):
        import torch  # noqa: PLC0415 - optional dependency

        super().__init__(config, keys)
        self.torch = torch
        self.device = torch.device(config.device)
        if self.device.type == "cuda" and (problem := device_unavailable(config.device)):
            raise InvalidArgument(problem)
        self.dtype = getattr(torch, config.device_dtype)
        self.mirror = torch.from_numpy(keys).to(self.device, self.dtype, copy=True)  # (size, d), never the store's
        self.gpu_resources = None
        if self.device.type == "cuda" and faiss_has_gpu():
            import faiss.contrib.torch_utils  # noqa: F401, PLC0415 - lets faiss.knn_gpu take torch tensors

            self.gpu_resources = faiss.StandardGpuResources()
        self.searcher = "faiss.knn_gpu" if self.gpu_resources is not None else "torch mm + topk"

    def _queries(self, queries: np.ndarray):
        return self.torch.from_numpy(super()._queries(queries)).to(self.device, self.dtype)

    def _top(self, q, k: int, n: int):
        if self.gpu_resources is not None and k <= FAISS_GPU_MAX_K:
            return faiss.knn_gpu(self.gpu_resources, q, self.mirror[:n], k, metric=faiss.METRIC_INNER_PRODUCT,
                                 device=self.device.index or 0)
        sims, ids = self.torch.topk(q @ self.mirror[:n].T, k, dim=1)
        return sims.float(), ids

    @staticmethod
    def _rows(mask):
        return mask.nonzero()[:, 0]

    def _settled(self, q, n: int, k: int):
        # a stable sort keeps equal similarities in slot order: fast enough on a device for
        # the few rows that need it
        sims, ids = self.torch.sort((q @ self.mirror[:n].T).float(), dim=1, descending=True, stable=True)
        return sims[:, :k], ids[:, :k]

    @staticmethod
    def _host(sims, ids):
        return sims.cpu().numpy(), ids.cpu().numpy().astype(np.int64)

    def on_write(self, slots: np.ndarray, n: int) -> None:
        if len(slots):
            idx = self.torch.from_numpy(slots).to(self.device)
            self.mirror[idx] = self.torch.from_numpy(self.keys[slots]).to(self.device, self.dtype)

    def reset(self) -> None:
        self.mirror.zero_()

    def nbytes(self) -> int:
        return self.mirror.numel() * self.mirror.element_size()

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        self.mirror.copy_(self.torch.from_numpy(self.keys))


WARM_ITERATIONS = 5   # k-means rounds of a refit that starts from the last centroids
# From this many lists on (what a multi-million-slot memory needs for its top-1 to come near
# exact's), a fit is FAISS's two-level k-means (sqrt(nlist) coarse clusters, each split into its
# share of the lists): one k-means of 39 * nlist points against nlist centroids costs O(nlist^2)
# (65,536 lists: ~40 TFLOP a round), the two-level one O(nlist^1.5).
# Keys and queries both find their lists by a flat scan of the centroids (one sgemm for a whole
# batch). An HNSW graph over the centroids lost lists for the batches memories serve: at 1M
# slots, 16,384 lists, the flat scan finds 256 queries' lists in 24-27 ms with top-1 0.965-0.992
# against exact (nprobe 4-64); at 4M slots, 65,536 lists, the flat scan takes 85-92 ms (top-1
# 0.883-0.945) and a graph at efSearch 128 74-76 ms (top-1 0.867-0.926) (bench_scale.md).
MANY_LISTS = 8192


def two_level_centroids(sample: np.ndarray, nlist: int, seed: int) -> np.ndarray:
    """(nlist, d) spherical centroids of ``sample`` (n, d) by FAISS's two-level clustering."""
    with contextlib.redirect_stdout(io.StringIO()):   # it prints a note about scipy on import
        from faiss.contrib.clustering import two_level_clustering  # noqa: PLC0415
    # a fit samples 39 keys a list, so some coarse clusters get a few fewer than FAISS's 39 a
    # centroid and each would print a warning: 16 is still plenty for a list's centroid
    centroids, _ = two_level_clustering(sample, int(math.sqrt(nlist)), nlist, spherical=True, seed=seed,
                                        min_points_per_centroid=16)
    return np.ascontiguousarray(centroids, dtype=np.float32)


class IVFIndex:
    """FAISS IVF-Flat (inner product) with a hashtable direct map, so rewritten keys move
    between lists in place (``update_vectors``). Until enough keys exist to train the coarse
    quantizer (39 per list, FAISS's own minimum), it answers exactly over the prefix.

    A learned memory's keys drift as the model trains: centroids fitted to the first keys stop
    splitting the later ones evenly, lists grow lopsided and recall falls. With ``ivf_retrain``
    = R > 0, every R slot writes the quantizer is fitted again, on a seeded uniform sample of
    the current keys, and every filled slot re-added (one k-means of ``39 * nlist`` points and
    one assignment of the memory; bench/scale.py measures recall before and after).

    Drift also costs time: keys that pile into a few lists make every search scan them (a
    translation model's first keys, fitted at 80K slots, made a search of 1,000 queries take
    4.1 s against 43 ms for a fit to the newest keys). With ``ivf_rebalance`` = F > 1 the
    quantizer is fitted again when the lists' imbalance factor exceeds F times its value just
    after the last fit, at most once per ``nlist * 39 / 8`` slot writes (a young model's keys can
    make the lists 100x more lopsided within one fit's worth of writes).

    From ``MANY_LISTS`` lists on every fit is a two-level k-means, cold (a list per ~64 keys is
    what a multi-million-slot memory needs to come near exact's top-1: see above).

    A scheduled refit starts k-means from the current centroids and runs ``WARM_ITERATIONS``
    rounds instead of FAISS's 10 from a random start: between refits keys drift, so the old
    centroids are a near solution (on drifting clustered keys, 100K x 128, nlist 512: top-1
    0.993 at nprobe 4 against 0.995 for a cold fit, in half the k-means time). A refit for
    imbalance starts cold: lopsided lists mean the keys left the centroids' regions (a dense
    new cluster inside one list stays in that list under a warm start)."""

    sorted = True

    def __init__(self, config: MemoryConfig, keys: np.ndarray):
        self.keys = keys
        self.nlist = config.ivf_nlist
        self.default_nprobe = config.ivf_nprobe
        self.train_size = min(keys.shape[0], 39 * self.nlist)
        self.retrain_every, self.seed = config.ivf_retrain, config.seed
        self.rebalance = config.ivf_rebalance
        self.exact = ExactIndex(config, keys)
        self.reset()

    def _new_index(self) -> None:
        d = self.keys.shape[1]
        self.quantizer = faiss.IndexFlatIP(d)   # a key's list and a query's nprobe lists: the exactly nearest
        self.index = faiss.IndexIVFFlat(self.quantizer, d, self.nlist, faiss.METRIC_INNER_PRODUCT)
        self.index.cp.spherical = True  # keys are unit vectors: spherical k-means centroids
        self.index.set_direct_map_type(faiss.DirectMap.Hashtable)
        self.present = np.zeros(self.keys.shape[0], dtype=bool)  # slot is in the index

    def _fit(self, n: int, warm: bool = False) -> None:
        """Fit the quantizer to the filled prefix (a sample of it) and index all of it;
        ``warm``: k-means from the current centroids."""
        _apply_threads()
        two_level = self.nlist >= MANY_LISTS   # always cold
        start = self.quantizer.reconstruct_n(0, self.nlist) if warm and self.trained and not two_level else None  # (nlist, d)
        if self.trained:
            self._new_index()
        rng = np.random.default_rng([self.seed, 0x1F, self.trainings])
        sample = np.sort(rng.choice(n, size=self.train_size, replace=False)) if n > self.train_size else np.arange(n)
        sample = np.ascontiguousarray(self.keys[sample])
        if two_level:
            self.quantizer.add(two_level_centroids(sample, self.nlist, int(self.seed) + self.trainings))
            self.index.is_trained = True
        elif start is None:
            self.index.train(sample)
        else:   # warm: k-means from the last centroids, into the new quantizer
            cp = faiss.ClusteringParameters()
            cp.niter, cp.spherical, cp.seed = WARM_ITERATIONS, True, int(self.seed) + self.trainings
            kmeans = faiss.Clustering(self.keys.shape[1], self.nlist, cp)
            faiss.copy_array_to_vector(start.ravel(), kmeans.centroids)
            kmeans.train(sample, self.quantizer)
            self.index.is_trained = True
        self.index.add_with_ids(self.keys[:n], np.arange(n, dtype=np.int64))
        self.present[:n] = True
        self.written, self.trainings = 0, self.trainings + 1
        self.fit_imbalance = self.imbalance()

    def imbalance(self) -> float:
        """FAISS's imbalance factor of the lists (1 = every list the same size)."""
        return float(self.index.invlists.imbalance_factor()) if self.index.ntotal else 1.0

    def _lopsided(self) -> bool:
        return bool(self.rebalance) and self.written >= self.train_size // 8 \
            and self.imbalance() > self.rebalance * self.fit_imbalance

    @property
    def trained(self) -> bool:
        return self.index.is_trained

    def search(self, queries: np.ndarray, k: int, n: int, nprobe: int):
        if not self.trained:
            return self.exact.search(queries, k, n, nprobe)
        nprobe = min(nprobe or self.default_nprobe, self.nlist)
        queries = _check_faiss_input(queries, self.keys.shape[1])
        return self.index.search(queries, k, params=faiss.SearchParametersIVF(nprobe=nprobe))

    def on_write(self, slots: np.ndarray, n: int) -> None:
        if not self.trained:
            if n >= self.train_size:  # enough keys: train, then index the whole prefix
                self._fit(n)
            return
        self.written += len(slots)
        lopsided = self._lopsided()
        if lopsided or (self.retrain_every and self.written >= self.retrain_every):
            self._fit(n, warm=not lopsided)   # the keys written now are in the prefix and get indexed with it
            return
        _apply_threads()
        slots = np.unique(slots)
        old, new = slots[self.present[slots]], slots[~self.present[slots]]
        if len(old):
            self.index.update_vectors(old, np.ascontiguousarray(self.keys[old]))
        if len(new):
            self.index.add_with_ids(np.ascontiguousarray(self.keys[new]), new)
            self.present[new] = True

    def reset(self) -> None:
        self._new_index()
        self.written = 0      # slot writes since the quantizer was last fitted
        self.trainings = 0    # fits so far (seeds the next fit's sample)
        self.fit_imbalance = 1.0   # the lists' imbalance factor just after the last fit

    def nbytes(self) -> int:
        return int(self.present.sum()) * (self.keys.shape[1] * 4 + 8) + self.nlist * self.keys.shape[1] * 4

    def state(self) -> dict[str, np.ndarray]:
        return {"ivf_index": faiss.serialize_index(self.index), "ivf_present": self.present,
                "ivf_counts": np.array([self.written, self.trainings], np.int64),
                "ivf_fit_imbalance": np.array(self.fit_imbalance, np.float64)}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        self.index = faiss.deserialize_index(np.asarray(state["ivf_index"], dtype=np.uint8))
        self.quantizer = faiss.downcast_index(self.index.quantizer)   # what a warm refit starts from
        self.present = np.array(state["ivf_present"], dtype=bool)
        if "ivf_counts" in state:   # snapshots from before re-training have none: start counting
            self.written, self.trainings = (int(x) for x in state["ivf_counts"])
        # older snapshots kept no imbalance: count from the lists as they are
        self.fit_imbalance = float(state["ivf_fit_imbalance"]) if "ivf_fit_imbalance" in state else self.imbalance()


class LSHIndex:
    """The paper's random-hyperplane LSH: ``tables`` hash tables of ``2**bits`` buckets, each
    bucket a ring of ``bucket_size`` slot ids (the newest write replaces the oldest entry).
    The candidates of a query are the union of its buckets; every write re-hashes the slot.
    Stale entries (a slot whose key moved to another bucket) stay until pushed out; they are
    still real slots, scored with their current keys, so they cost recall, never correctness."""

    sorted = False

    def __init__(self, config: MemoryConfig, keys: np.ndarray):
        self.keys = keys
        self.tables, self.bits, self.bucket = config.lsh_tables, config.lsh_bits, config.lsh_bucket_size
        rng = np.random.default_rng([config.seed, 0x15A])
        d = keys.shape[1]
        self.planes = rng.standard_normal((d, self.tables * self.bits)).astype(np.float32)
        self.powers = (1 << np.arange(self.bits, dtype=np.int64))  # (bits,)
        self.reset()

    def reset(self) -> None:
        n_buckets = 1 << self.bits
        self.buckets = np.full((self.tables, n_buckets, self.bucket), -1, dtype=np.int32)
        self.cursor = np.zeros((self.tables, n_buckets), dtype=np.int64)

    def _codes(self, x: np.ndarray) -> np.ndarray:
        """Bucket of each row in each table: (m, tables) int64."""
        signs = (x @ self.planes > 0).reshape(len(x), self.tables, self.bits)
        return signs.astype(np.int64) @ self.powers

    def search(self, queries: np.ndarray, k: int, n: int, nprobe: int):
        b = len(queries)
        codes = self._codes(queries)                                    # (b, T)
        cand = self.buckets[np.arange(self.tables), codes].reshape(b, -1).astype(np.int64)
        cand.sort(axis=1)                                               # (b, T * bucket)
        dup = np.zeros_like(cand, dtype=bool)
        dup[:, 1:] = cand[:, 1:] == cand[:, :-1]
        cand[dup | (cand >= n)] = -1
        sims = np.einsum("bd,bcd->bc", queries, self.keys[np.maximum(cand, 0)])
        sims[cand < 0] = -np.inf
        width = cand.shape[1]
        if k < width:
            top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
            return np.take_along_axis(sims, top, 1), np.take_along_axis(cand, top, 1)
        pad = k - width
        return (np.pad(sims, ((0, 0), (0, pad)), constant_values=-np.inf),
                np.pad(cand, ((0, 0), (0, pad)), constant_values=-1))

    def on_write(self, slots: np.ndarray, n: int) -> None:
        codes = self._codes(self.keys[slots])                           # (m, T)
        for t in range(self.tables):
            code = codes[:, t]
            order = np.argsort(code, kind="stable")                     # writes in order, grouped
            code, slot = code[order], slots[order]
            starts = np.flatnonzero(np.r_[True, code[1:] != code[:-1]])
            counts = np.diff(np.r_[starts, len(code)])
            rank = np.arange(len(code)) - np.repeat(starts, counts)
            count = np.repeat(counts, counts)
            keep = rank >= count - self.bucket                          # a ring keeps the newest
            pos = (self.cursor[t, code] + rank) % self.bucket
            self.buckets[t, code[keep], pos[keep]] = slot[keep]
            self.cursor[t, code[starts]] = (self.cursor[t, code[starts]] + counts) % self.bucket

    def nbytes(self) -> int:
        return self.buckets.nbytes + self.cursor.nbytes + self.planes.nbytes

    def state(self) -> dict[str, np.ndarray]:
        return {"lsh_buckets": self.buckets, "lsh_cursor": self.cursor}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        self.buckets = np.array(state["lsh_buckets"], dtype=np.int32)
        self.cursor = np.array(state["lsh_cursor"], dtype=np.int64)


def make_index(config: MemoryConfig, keys: np.ndarray):
    if config.index == "ivf":
        return IVFIndex(config, keys)
    if config.index == "lsh":
        return LSHIndex(config, keys)
    if config.device and config.device != "cpu":
        return DeviceExactIndex(config, keys)
    return ExactIndex(config, keys)
