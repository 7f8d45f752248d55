"""Index kinds: the device index agrees with the reference and with FAISS on the CPU (ties and
all); IVF and LSH recall on clustered keys."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from bench.recall import clustered_memory, recall
from raremem.server.config import MemoryConfig
from raremem.server.errors import InvalidArgument
from raremem.server.indexes import DeviceExactIndex, ExactIndex
from raremem.server.store import LookupSpec, MemoryStore
from tests.reference_memory import ReferenceMemory
from tests.server.test_store_reference import assert_same_answers, assert_same_state, to_spec
from tests.workloads import clustered_batches

torch = pytest.importorskip("torch")


def torch_store(cfg: MemoryConfig, device: str, dtype: str = "float32") -> MemoryStore:
    """A store whose index is the device index on ``device`` (the CPU too: the same code)."""
    store = MemoryStore(cfg)
    assert isinstance(store.index, ExactIndex) and not isinstance(store.index, DeviceExactIndex)
    store.index = DeviceExactIndex(dataclasses.replace(store.config, device=device, device_dtype=dtype), store.keys)
    return store


DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device")])]


@pytest.mark.parametrize("device", DEVICES)
def test_torch_exact_matches_reference(device):
    cfg = MemoryConfig(key_dim=32, size=128, choose_k=16, age_noise=8.0, seed=2)
    store, ref = torch_store(cfg, device), ReferenceMemory(128, 32, 16, age_noise=8.0, seed=2)
    for step, req in enumerate(clustered_batches(4, 32, 400, 16, 200)):
        assert_same_answers(store.lookup(to_spec(req)), ref.call([dict(req)])[0], 16, step)
    assert_same_state(store.keys, store.values, store.ages, store.sources, store.recent, ref)
    store.reset()
    assert store.lookup(LookupSpec(np.ones((1, 32), np.float32))).result[0] == -1


@pytest.mark.parametrize("device", DEVICES)
def test_the_device_mirror_follows_every_write_reset_and_restore(device):
    """The mirror is a buffer of its own (on the CPU too): the store's keys and it must agree
    after every update, a reset and a restore (a no-op on_write, reset or load_state fails here)."""
    cfg = MemoryConfig(key_dim=16, size=64, choose_k=8, age_noise=8.0, seed=1)
    store = torch_store(cfg, device)
    mirror = store.index.mirror
    assert mirror.data_ptr() != torch.from_numpy(store.keys).data_ptr()

    def in_step(s):
        assert torch.equal(s.index.mirror.cpu(), torch.from_numpy(s.keys)), "the device mirror fell behind the keys"

    for req in clustered_batches(3, 16, 150, 8, 40):
        store.lookup(to_spec(req))
        in_step(store)
    state = {k: np.array(v) for k, v in store.state().items()}
    store.reset()
    in_step(store)
    restored = torch_store(cfg, device)
    restored.load_state(state)
    in_step(restored)
    q = state["keys"][:5]
    assert restored.lookup(LookupSpec(q, k=1, return_neighbors=True)).neighbors.ids[:, 0].tolist() == list(range(5))


@pytest.mark.parametrize("device", DEVICES)
def test_ties_at_the_cut_go_to_the_lower_slot_as_faiss_on_the_cpu_answers(device):
    """Keys of four distinct values, so lists of neighbours end inside a tie: both exact
    indexes keep the lower slots there, as the reference does (FAISS's CPU heap and torch's
    topk each keep any)."""
    cfg = MemoryConfig(key_dim=8, size=64, choose_k=6, age_noise=0.0, seed=3)
    rng = np.random.default_rng(0)
    distinct = rng.standard_normal((4, 8)).astype(np.float32)
    distinct /= np.linalg.norm(distinct, axis=1, keepdims=True)
    cpu, on_device = MemoryStore(cfg), torch_store(cfg, device)
    for store in (cpu, on_device):   # fill every slot with one of the four keys
        store.lookup(LookupSpec(distinct[np.arange(64) % 4], labels=np.arange(64), update=True, use_recent=False))
    assert cpu.filled == on_device.filled == 64
    q = distinct[[0, 1, 2, 3, 0]] + 0.01 * rng.standard_normal((5, 8)).astype(np.float32)
    for k in (1, 6, 17, 64):
        a = cpu.lookup(LookupSpec(q, k=k, return_neighbors=True)).neighbors
        b = on_device.lookup(LookupSpec(q, k=k, return_neighbors=True)).neighbors
        sims = q @ cpu.keys.T
        want = np.stack([np.lexsort((np.arange(64), -row))[:k] for row in sims])   # the reference's rule
        np.testing.assert_array_equal(a.ids, want, err_msg=f"FAISS on the CPU, k={k}")
        np.testing.assert_array_equal(b.ids, want, err_msg=f"the device index, k={k}")
        np.testing.assert_allclose(a.similarities, b.similarities, rtol=1e-6, atol=1e-6)


def test_k_above_the_filled_count_and_an_empty_memory():
    store = torch_store(MemoryConfig(key_dim=4, size=32, choose_k=8), "cpu")
    q = np.eye(4, dtype=np.float32)
    assert (store.lookup(LookupSpec(q, return_neighbors=True)).neighbors.ids == -1).all()
    store.lookup(LookupSpec(q[:3], labels=np.arange(3), update=True))
    ids = store.lookup(LookupSpec(q, k=8, return_neighbors=True)).neighbors.ids
    assert (ids[:, :3] >= 0).all() and (ids[:, 3:] == -1).all()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_keys_halve_the_mirror_and_keep_the_nearest_key(dtype, device):
    cfg = MemoryConfig(key_dim=32, size=512, choose_k=8)
    full, half = torch_store(cfg, device), torch_store(cfg, device, dtype)
    keys = np.random.default_rng(1).standard_normal((512, 32)).astype(np.float32)
    for store in (full, half):
        store.lookup(LookupSpec(keys, labels=np.arange(512), update=True))
    assert half.index.nbytes() * 2 == full.index.nbytes()
    q = keys[:100] + 0.05 * np.random.default_rng(2).standard_normal((100, 32)).astype(np.float32)
    top = [s.lookup(LookupSpec(q, k=1)).result for s in (full, half)]
    assert (top[0] == top[1]).mean() >= 0.95 and (top[0] == np.arange(100)).all()


def test_a_device_that_is_not_here_is_one_clear_error():
    from raremem.server.indexes import device_unavailable

    assert device_unavailable("") == device_unavailable("cpu") == ""
    assert "cuda:N" in device_unavailable("gpu0")
    if not torch.cuda.is_available():
        assert "no such CUDA device" in device_unavailable("cuda")
        with pytest.raises(InvalidArgument, match="no such CUDA device"):
            MemoryStore(MemoryConfig(key_dim=4, size=8, device="cuda:0"))
    with pytest.raises(InvalidArgument, match="needs a device"):
        MemoryConfig(key_dim=4, size=8, device_dtype="float16").resolved()


def test_ivf_recall_on_clustered_keys():
    store, queries = clustered_memory("ivf", ivf_nlist=128)
    assert store.index.trained and store.index.present.sum() == store.filled
    rows = {nprobe: recall(store, queries, nprobe=nprobe)[:2] for nprobe in (1, 8, 32)}
    print("\nivf (nlist 128) nprobe -> (top-1 agreement, recall@32):", rows)
    assert rows[32][0] >= 0.97 and rows[32][1] >= 0.9
    assert rows[1][1] <= rows[8][1] <= rows[32][1]  # more lists visited, more found


def test_lsh_recall_on_clustered_keys():
    store, queries = clustered_memory("lsh", lsh_tables=16, lsh_bits=8, lsh_bucket_size=64)
    top1, rec, _ = recall(store, queries)
    print(f"\nlsh (16 tables x 8 bits, buckets of 64): top-1 agreement {top1:.3f}, recall@32 {rec:.3f}")
    assert top1 >= 0.5 and rec >= 0.3
    found = store.lookup(LookupSpec(queries, k=32)).found
    assert (found <= 32).all() and found.mean() > 16  # it says how many it found


@pytest.mark.parametrize("kind", ["ivf", "lsh"])
def test_approximate_kinds_keep_the_update_rule(kind):
    """Same writes as exact on a workload where every neighbour is found: same state."""
    opts = dict(ivf_nlist=1, ivf_nprobe=1) if kind == "ivf" else dict(lsh_tables=4, lsh_bits=1, lsh_bucket_size=64)
    cfg = MemoryConfig(key_dim=16, size=64, choose_k=8, age_noise=0.0, index=kind, **opts)
    approx, exact = MemoryStore(cfg), MemoryStore(dataclasses.replace(cfg, index="exact"))
    for req in clustered_batches(8, 16, 150, 8, 120):
        a, e = approx.lookup(to_spec(req)), exact.lookup(to_spec(req))
        np.testing.assert_array_equal(a.written_slot, e.written_slot)
    np.testing.assert_array_equal(approx.values, exact.values)
    np.testing.assert_allclose(approx.keys, exact.keys, atol=1e-6)


def test_thread_count_reaches_every_searching_thread():
    """OpenMP's thread count is per thread: a count set once must still hold in a thread
    started later (a memory's batcher), or its searches spin teams of one per core."""
    import threading

    import faiss

    from raremem.server import indexes

    store = MemoryStore(MemoryConfig(key_dim=8, size=64, choose_k=4))
    rng = np.random.default_rng(0)
    store.lookup(LookupSpec(rng.standard_normal((16, 8)).astype(np.float32), np.arange(16), update=True))
    seen = {}

    def search():
        seen["before"] = faiss.omp_get_max_threads()
        store.lookup(LookupSpec(rng.standard_normal((4, 8)).astype(np.float32)))
        seen["after"] = faiss.omp_get_max_threads()

    default = faiss.omp_get_max_threads()
    indexes.set_threads(1)
    try:
        t = threading.Thread(target=search)
        t.start()
        t.join()
    finally:
        indexes.set_threads(0)
        faiss.omp_set_num_threads(default)
    assert seen["after"] == 1
    if default > 1:   # a new thread starts from the library's default, not the setting
        assert seen["before"] == default


def test_ivf_refits_its_quantizer_as_keys_drift():
    """Keys first around one set of centres, then rewritten around another (a model that kept
    training): the quantizer fitted to the first keys loses recall on the second; with
    ivf_retrain it is fitted again and recall comes back. The fit count survives a snapshot."""
    d, n, nlist = 32, 4096, 32
    rng = np.random.default_rng(5)

    def around(centres, m):
        x = centres[rng.integers(0, len(centres), m)] + 0.3 * rng.standard_normal((m, d)).astype(np.float32)
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    first, later = (rng.standard_normal((64, d)).astype(np.float32) for _ in range(2))
    keys_a, keys_b, queries = around(first, n), around(later, n), around(later, 300)
    results = {}
    for retrain in (0, n):
        store = MemoryStore(MemoryConfig(key_dim=d, size=n, choose_k=16, index="ivf", ivf_nlist=nlist,
                                         ivf_nprobe=2, ivf_retrain=retrain, seed=1))
        store.load(keys_a, np.arange(n))
        for i in range(0, n, 512):   # rewrite every slot, as fresh writes into the oldest would
            store.keys[i:i + 512] = keys_b[i:i + 512]
            store.index.on_write(np.arange(i, i + 512), n)
        results[retrain] = recall(store, queries, k=16)[1]
        if retrain:
            assert store.index.trainings == 2   # the first fit, then one after n writes
            again = MemoryStore.from_state(store.state())
            assert (again.index.written, again.index.trainings) == (store.index.written, 2)
    assert results[n] > results[0] + 0.1, results
    assert results[n] > 0.8


def test_a_scheduled_refit_starts_from_the_last_centroids():
    """Keys that drift a little between scheduled refits: the refit's k-means starts from the
    current centroids (each new centroid is nearest its own old one, where a fit from scratch
    numbers them anew) and its lists answer as well as a fit from scratch."""
    d, n, nlist = 32, 4096, 32
    rng = np.random.default_rng(6)

    def around(centres, m):
        x = centres[rng.integers(0, len(centres), m)] + 0.3 * rng.standard_normal((m, d)).astype(np.float32)
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    first = rng.standard_normal((64, d)).astype(np.float32)
    later = first + 0.3 * rng.standard_normal((64, d)).astype(np.float32)
    store = MemoryStore(MemoryConfig(key_dim=d, size=n, choose_k=16, index="ivf", ivf_nlist=nlist,
                                     ivf_nprobe=2, ivf_retrain=n, seed=1))
    store.load(around(first, n), np.arange(n))
    old = store.index.quantizer.reconstruct_n(0, nlist)                       # (nlist, d)
    store.keys[:] = around(later, n)
    store.index.on_write(np.arange(n), n)
    assert store.index.trainings == 2
    cold = MemoryStore.from_state(store.state())
    cold.index._fit(n, warm=False)
    warm_c, cold_c = (s.index.quantizer.reconstruct_n(0, nlist) for s in (store, cold))
    assert (np.argmax(warm_c @ old.T, 1) == np.arange(nlist)).mean() > 0.9
    assert (np.argmax(cold_c @ old.T, 1) == np.arange(nlist)).mean() < 0.3
    queries = around(later, 300)
    assert recall(store, queries, k=16)[1] >= recall(cold, queries, k=16)[1] - 0.03


def test_ivf_refits_when_its_lists_grow_lopsided():
    """Keys rewritten, batch after batch, into a small region of the space (a young model's
    states, all alike, then spreading): without ivf_rebalance they pile into a few lists; with
    it the quantizer is fitted again as soon as the imbalance factor passes F times its value
    after the last fit (never sooner than 39 * nlist / 8 writes later), which keeps the lists even.
    The value after the last fit survives a snapshot."""
    d, n, nlist = 16, 4096, 16
    rng = np.random.default_rng(2)

    def unit(x):
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    spread = unit(rng.standard_normal((n, d)))
    centre = unit(rng.standard_normal((1, d)))
    tight = unit(centre + 0.05 * rng.standard_normal((n, d)))
    ends = {}
    for factor in (0.0, 2.0):
        store = MemoryStore(MemoryConfig(key_dim=d, size=n, choose_k=8, index="ivf", ivf_nlist=nlist,
                                         ivf_nprobe=2, ivf_rebalance=factor, seed=1))
        store.load(spread, np.arange(n))
        assert store.index.trainings == 1
        fitted = store.index.fit_imbalance
        for i in range(0, n, 256):
            store.keys[i:i + 256] = tight[i:i + 256]
            store.index.on_write(np.arange(i, i + 256), n)
            if factor:   # between fits the lists never get much worse than F times the fit
                assert store.index.imbalance() <= factor * store.index.fit_imbalance * 1.5
        ends[factor] = (store.index.trainings, store.index.imbalance())
        if factor:
            again = MemoryStore.from_state(store.state())
            assert again.index.fit_imbalance == store.index.fit_imbalance
            assert again.index.fit_imbalance != fitted
    assert ends[0.0][0] == 1 and ends[2.0][0] > 1, ends
    assert ends[2.0][1] < ends[0.0][1] / 2, ends
    with pytest.raises(InvalidArgument, match="ivf_rebalance"):
        MemoryConfig(key_dim=d, size=n, index="ivf", ivf_rebalance=0.5).resolved()


def test_many_lists_are_fitted_by_two_level_k_means(monkeypatch):
    """From MANY_LISTS lists on (here from 64, to keep it small), the quantizer's centroids come
    from the two-level k-means: all nlist centroids, unit rows; every key in the list of its
    exactly nearest centroid; search agrees with exact as well as a one-level fit does; a
    snapshot keeps them, and a memory restored from it refits."""
    from raremem.server import indexes

    def fitted(threshold):
        monkeypatch.setattr(indexes, "MANY_LISTS", threshold)
        return clustered_memory("ivf", ivf_nlist=256)

    one, queries = fitted(1 << 30)
    two, _ = fitted(64)
    c = two.index.quantizer.reconstruct_n(0, 256)
    assert two.index.trained and two.index.quantizer.ntotal == 256
    keys = two.keys[:two.filled]
    nearest = np.argmax(keys @ c.T, axis=1)   # (n,) each key's exactly nearest centroid
    from faiss.contrib.inspect_tools import get_invlist
    held = np.empty(len(keys), np.int64)   # (n,) the list each key is in
    for j in range(256):
        held[get_invlist(two.index.index.invlists, j)[0]] = j
    assert (held == nearest).mean() > 0.999   # (ties within float rounding aside)
    np.testing.assert_allclose(np.linalg.norm(c, axis=1), 1, atol=1e-4)
    assert not np.allclose(c, one.index.quantizer.reconstruct_n(0, 256))
    got, want = recall(two, queries, nprobe=8)[:2], recall(one, queries, nprobe=8)[:2]
    print("\nnlist 256, nprobe 8 (top-1, recall@32): two-level", got, "one-level", want)
    assert got[0] >= want[0] - 0.03 and got[1] >= want[1] - 0.05
    for fitted_store in (two, one):
        back = MemoryStore.from_state(fitted_store.state())
        np.testing.assert_array_equal(back.lookup(LookupSpec(queries)).result,
                                      fitted_store.lookup(LookupSpec(queries)).result)
        back.index._fit(back.filled, warm=True)   # a scheduled refit of a restored memory (warm when one-level)
        assert recall(back, queries, nprobe=8)[0] >= recall(fitted_store, queries, nprobe=8)[0] - 0.03


def test_faiss_gpu_search_is_asked_only_for_k_it_can_select(monkeypatch):
    """Where faiss-gpu is installed the device index searches with faiss.knn_gpu, which selects
    at most 2,048 neighbours; a larger k goes through torch's topk. (A stand-in for knn_gpu
    here, answering as torch does, records what it was asked.)"""
    import faiss

    from raremem.server import indexes

    asked = []

    def knn_gpu(res, q, keys, k, metric, device):
        asked.append(k)
        assert metric == faiss.METRIC_INNER_PRODUCT and k <= indexes.FAISS_GPU_MAX_K
        return torch.topk(q @ keys.T, k, dim=1)

    monkeypatch.setattr(faiss, "knn_gpu", knn_gpu, raising=False)
    cfg = MemoryConfig(key_dim=8, size=4096, choose_k=8)
    store = torch_store(cfg, "cpu")
    store.index.gpu_resources = object()
    keys = np.random.default_rng(3).standard_normal((4096, 8)).astype(np.float32)
    store.lookup(LookupSpec(keys, labels=np.arange(4096), update=True))
    q = keys[:3] / np.linalg.norm(keys[:3], axis=1, keepdims=True)
    near = store.lookup(LookupSpec(q, k=100, return_neighbors=True)).neighbors.ids
    far = store.lookup(LookupSpec(q, k=3000, return_neighbors=True)).neighbors.ids
    assert asked == [101] and (near[:, 0] == np.arange(3)).all() and (far[:, :100] == near).all()
