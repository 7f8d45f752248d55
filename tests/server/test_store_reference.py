"""The in-process store against the independent reference memory (design.md §1, §6)."""

from __future__ import annotations

import numpy as np
import pytest

from raremem.server.config import MemoryConfig
from raremem.server.errors import InvalidArgument
from raremem.server.store import LookupSpec, MemoryStore
from tests.reference_memory import ReferenceMemory
from tests.workloads import clustered_batches

# size, d, k, b, classes, age_noise, correct_in_top, repeated labels
CASES = [
    (64, 16, 8, 8, 200, 8.0, 1, True),      # evicts from the start, labels repeat in a batch
    (256, 32, 32, 16, 600, 0.0, 1, True),   # fills, then evicts; no noise
    (512, 64, 64, 32, 900, 8.0, 3, False),  # larger k, correct within the top 3
    (100, 8, 100, 4, 300, 2.0, 1, True),     # k = size: every filled slot is a neighbour
]


def to_spec(req, **extra):
    return LookupSpec(req["queries"], req["labels"], update=req["update"], use_recent=req["use_recent"],
                      sources=req["sources"], k=req["k"] or 0, return_neighbors=True, **extra)


def padded(lists, k, fill):
    return np.array([x + [fill] * (k - len(x)) for x in lists])


NEAR_TIE = 1e-6  # float32 similarities cannot order slots closer than this


def assert_same_neighbours(ids, sims, outs, k, ctx):
    """Equal lists, except that slots whose reference similarities differ by less than
    NEAR_TIE may trade places (float32 sgemm vs the reference's float64 dot products)."""
    want_ids, want_sims = padded([o["ids"] for o in outs], k, -1), padded([o["sims"] for o in outs], k, -np.inf)
    np.testing.assert_allclose(sims, want_sims, atol=1e-5, err_msg=ctx)
    for i, j in np.argwhere(ids != want_ids):
        ref_sim = dict(zip(outs[i]["ids"], outs[i]["sims"]))
        last = len(outs[i]["ids"]) - 1
        got = ref_sim.get(int(ids[i, j]))
        assert (got is not None and abs(got - want_sims[i, j]) < NEAR_TIE) or (
            got is None and j == last and abs(sims[i, j] - want_sims[i, j]) < NEAR_TIE), \
            f"{ctx}: query {i} rank {j}: slot {ids[i, j]} instead of {want_ids[i, j]}"


def assert_same_answers(res, outs, k, step):
    ctx = f"step {step}"
    assert_same_neighbours(res.neighbors.ids, res.neighbors.similarities, outs, k, ctx)
    np.testing.assert_array_equal(res.result, [o["result"] for o in outs], ctx)
    np.testing.assert_allclose(res.top_weight, [o["top_weight"] for o in outs], atol=1e-4, err_msg=ctx)
    np.testing.assert_array_equal(res.positive_slot, [o["pos"] for o in outs], ctx)
    np.testing.assert_array_equal(res.negative_slot, [o["neg"] for o in outs], ctx)
    np.testing.assert_allclose(res.loss, [o["loss"] for o in outs], atol=1e-5, err_msg=ctx)
    np.testing.assert_allclose(res.positive_key, [o["pos_key"] for o in outs], atol=1e-6, err_msg=ctx)
    np.testing.assert_allclose(res.negative_key, [o["neg_key"] for o in outs], atol=1e-6, err_msg=ctx)
    np.testing.assert_array_equal(res.correct, [o["correct"] for o in outs], ctx)
    np.testing.assert_array_equal(res.written_slot, [o["written"] for o in outs], ctx)
    if res.mean_key is not None:   # asked for with return_weight_terms
        np.testing.assert_allclose(res.top_key, [o["top_key"] for o in outs], atol=1e-6, err_msg=ctx)
        np.testing.assert_allclose(res.mean_key, [o["mean_key"] for o in outs], atol=1e-5, err_msg=ctx)


def assert_same_state(keys, values, ages, sources, recent, ref):
    np.testing.assert_allclose(keys, ref.K, atol=1e-5)
    np.testing.assert_array_equal(values, ref.V)
    np.testing.assert_array_equal(ages, ref.A)
    np.testing.assert_array_equal(sources, ref.S)
    if recent is not None:
        assert recent == ref.recent


@pytest.mark.parametrize("size, d, k, b, classes, noise, top, repeat", CASES)
def test_store_matches_reference(size, d, k, b, classes, noise, top, repeat):
    cfg = MemoryConfig(key_dim=d, size=size, choose_k=k, age_noise=noise, correct_in_top=top, seed=7)
    store = MemoryStore(cfg)
    ref = ReferenceMemory(size, d, k, age_noise=noise, correct_in_top=top, seed=7)
    for step, req in enumerate(clustered_batches(size + d, d, classes, b, 200, repeat_labels=repeat)):
        res = store.lookup(to_spec(req, return_weight_terms=step % 2 == 0))
        assert_same_answers(res, ref.call([dict(req)])[0], k, step)
    assert store.counters.evictions > 0 and store.counters.correct_writes > 0
    assert_same_state(store.keys, store.values, store.ages, store.sources, store.recent, ref)


def test_merged_requests_match_reference():
    """Several requests in one call: all see the memory before the call; updates in order,
    fresh slots distinct across the call, ages as if run one by one."""
    d, size, k = 16, 48, 8
    store = MemoryStore(MemoryConfig(key_dim=d, size=size, choose_k=k, age_noise=0.0))
    ref = ReferenceMemory(size, d, k, age_noise=0.0)
    gen = clustered_batches(3, d, 80, 6, 240)
    for step in range(60):
        reqs = [next(gen) for _ in range(4)]
        reqs[1]["update"] = False  # a pure lookup in the middle of a merged call
        reqs[1]["sources"] = None
        reqs[1]["use_recent"] = False
        results = store.lookup_many([store.checked(to_spec(r)) for r in reqs])
        outs = ref.call([dict(r) for r in reqs])
        for res, out, req in zip(results, outs, reqs):
            if not req["update"]:
                for o in out:
                    o["written"] = -1
            assert_same_answers(res, out, k, step)
    assert_same_state(store.keys, store.values, store.ages, store.sources, store.recent, ref)


def test_empty_memory_and_inference():
    store = MemoryStore(MemoryConfig(key_dim=4, size=8, choose_k=4))
    q = np.eye(4, dtype=np.float32)[:2]
    res = store.lookup(LookupSpec(q, return_neighbors=True))
    assert (res.result == -1).all() and (res.found == 0).all() and (res.top_weight == 0).all()
    res = store.lookup(LookupSpec(q, np.array([3, 4]), update=False))
    np.testing.assert_allclose(res.loss, [0.1, 0.1], atol=1e-7)  # s_p = s_n = 0: loss = alpha
    assert store.filled == 0 and store.counters.total_writes == 0  # no update without the flag


def test_negative_cosines_pick_the_true_positive():
    """The reference code's pitfall: masking by multiplication picks a wrong positive when all
    true positives have negative cosine. Ours masks with -inf."""
    store = MemoryStore(MemoryConfig(key_dim=2, size=4, choose_k=4, age_noise=0))
    keys = np.array([[-1, 0.1], [0, 1]], np.float32)
    store.lookup(LookupSpec(keys, np.array([5, 6]), update=True))
    res = store.lookup(LookupSpec(np.array([[1, 0]], np.float32), np.array([5])))
    assert res.positive_slot[0] == 0 and res.negative_slot[0] == 1
    s_pos = float(keys[0] @ [1, 0] / np.linalg.norm(keys[0]))
    np.testing.assert_allclose(res.loss, [max(0, 0.0 - s_pos + 0.1)], atol=1e-6)


def test_ties_go_to_the_lower_slot():
    store = MemoryStore(MemoryConfig(key_dim=3, size=6, choose_k=3, age_noise=0))
    e = np.eye(3, dtype=np.float32)
    store.lookup(LookupSpec(np.stack([e[1], e[0], e[0]]), np.array([1, 2, 3]), update=True))
    res = store.lookup(LookupSpec(e[:1], return_neighbors=True))
    assert res.neighbors.ids[0].tolist() == [1, 2, 0]  # slots 1 and 2 tie; 1 first


@pytest.mark.parametrize("correct_in_top", [1, 2])
def test_tied_positives_and_negatives_go_to_the_lower_slot(correct_in_top):
    """Slots 0-3 hold one key: values 7, 5, 5, 7. The positive of label 5 is slot 1 (not 2), the
    negative slot 0 (not 3), as the reference has them; with label 5 counted correct among the
    top two, the query averages into slot 1."""
    store = MemoryStore(MemoryConfig(key_dim=2, size=6, choose_k=4, age_noise=0, correct_in_top=correct_in_top))
    ref = ReferenceMemory(6, 2, choose_k=4, age_noise=0, correct_in_top=correct_in_top)
    key = np.tile(np.array([[0.6, 0.8]], np.float32), (4, 1))
    values = np.array([7, 5, 5, 7])
    store.load(key, values)
    ref.K[:4], ref.V[:4] = key, values
    query = np.array([[0.8, 0.6]], np.float32)
    res = store.lookup(LookupSpec(query, np.array([5]), update=True))
    assert (res.positive_slot[0], res.negative_slot[0]) == (1, 0)
    out = ref.call([{"queries": query, "labels": np.array([5]), "update": correct_in_top > 1}])[0][0]
    assert (out["pos"], out["neg"]) == (1, 0)
    if correct_in_top > 1:   # label 5 is among the top 2 (slots 0, 1): correct, averaged into slot 1
        np.testing.assert_allclose(store.keys[:4], ref.K[:4], atol=1e-6)
        assert not np.allclose(store.keys[1], key[0]) and np.allclose(store.keys[2], key[0])


def test_recent_is_dropped_when_its_slot_changes_value():
    store = MemoryStore(MemoryConfig(key_dim=2, size=1, choose_k=1, age_noise=0))
    e = np.eye(2, dtype=np.float32)
    store.lookup(LookupSpec(e[:1], np.array([1]), update=True))
    assert store.recent == {1: 0}
    store.lookup(LookupSpec(e[1:], np.array([2]), update=True))  # evicts value 1 from slot 0
    assert store.recent == {2: 0}


def test_age_noise_spreads_evictions_but_keeps_them_old():
    """With noise, evicted slots are not strictly the oldest, yet never young ones."""
    d, size = 8, 256
    store = MemoryStore(MemoryConfig(key_dim=d, size=size, choose_k=4, age_noise=8.0, seed=1))
    rng = np.random.default_rng(0)
    ages_at_eviction = []
    for step in range(120):
        q = rng.standard_normal((8, d)).astype(np.float32)
        if store.filled == size:
            before = store.ages.copy()
        res = store.lookup(LookupSpec(q, rng.integers(0, 10**6, 8), update=True))
        if store.filled == size and step > 40:
            ages_at_eviction += before[res.written_slot].tolist()
    ages = np.array(ages_at_eviction)
    assert ages.min() >= ages.max() - 2 * 8.0  # within the noise band of the oldest
    assert len(np.unique(ages)) > 1            # not always the strict oldest


def test_deterministic_with_seed():
    runs = []
    for _ in range(2):
        store = MemoryStore(MemoryConfig(key_dim=16, size=64, choose_k=8, age_noise=8.0, seed=3))
        for req in clustered_batches(5, 16, 100, 8, 50):
            store.lookup(to_spec(req))
        runs.append(store.state_hash())
    assert runs[0] == runs[1]


def test_state_round_trip_continues_identically():
    cfg = MemoryConfig(key_dim=16, size=64, choose_k=8, age_noise=8.0, seed=3)
    a = MemoryStore(cfg)
    gen = list(clustered_batches(9, 16, 100, 8, 60))
    for req in gen[:30]:
        a.lookup(to_spec(req))
    b = MemoryStore.from_state({k: np.array(v) for k, v in a.state().items()})
    assert a.state_hash() == b.state_hash()
    for req in gen[30:]:
        ra, rb = a.lookup(to_spec(req)), b.lookup(to_spec(req))
        np.testing.assert_array_equal(ra.written_slot, rb.written_slot)
    assert a.state_hash() == b.state_hash()  # the eviction RNG state travelled too


def test_merged_requests_share_one_search():
    """Merging is only worth it if the merged requests cost one search, not one each."""
    store = MemoryStore(MemoryConfig(key_dim=8, size=64, choose_k=8))
    store.lookup(LookupSpec(np.eye(8, dtype=np.float32), np.arange(8), update=True))
    calls = []
    search = store.index.search
    store.index.search = lambda q, k, n, nprobe: calls.append((len(q), k)) or search(q, k, n, nprobe)
    rng = np.random.default_rng(0)
    specs = [LookupSpec(rng.standard_normal((b, 8)).astype(np.float32), k=k, return_neighbors=True)
             for b, k in ((3, 2), (5, 8), (1, 4))]
    results = store.lookup_many([store.checked(s) for s in specs])
    assert calls == [(9, 8)]
    for spec, res in zip(specs, results):  # each answer equals the one it gets alone
        alone = store.lookup(spec)
        np.testing.assert_array_equal(res.neighbors.ids, alone.neighbors.ids)
        np.testing.assert_array_equal(res.result, alone.result)


def test_correct_never_counts_the_recent_candidate():
    """A request k smaller than correct_in_top: the extra recent slot is not a top neighbour."""
    store = MemoryStore(MemoryConfig(key_dim=2, size=4, choose_k=3, correct_in_top=3, age_noise=0))
    e = np.array([[1, 0], [0.6, 0.8]], np.float32)
    store.lookup(LookupSpec(e, np.array([7, 8]), update=True))
    res = store.lookup(LookupSpec(e[:1], np.array([8]), use_recent=True, k=1))
    assert res.positive_slot[0] == 1 and not res.correct[0]  # found via recent, yet not correct


def test_statistics_describe_the_contents():
    """The store's own statistics agree with the reference memory's arrays after a seeded run."""
    size, d, k = 96, 16, 8
    store = MemoryStore(MemoryConfig(key_dim=d, size=size, choose_k=k, seed=3))
    ref = ReferenceMemory(size, d, k, seed=3)
    for req in clustered_batches(size + d, d, 30, 8, 40):
        store.lookup(to_spec(req))
        ref.call([dict(req)])
    s = store.statistics(age_bins=5, top_values=4)
    filled = ref.V[ref.V != -1]
    values, counts = np.unique(filled, return_counts=True)
    order = np.lexsort((values, -counts))[:4]            # most frequent first, ties to the lower value
    np.testing.assert_array_equal(s["top_values"], values[order])
    np.testing.assert_array_equal(s["top_value_counts"], counts[order])
    assert s["distinct_values"] == len(values) and s["age_counts"].sum() == len(filled)
    assert s["age_bin_edges"][0] == ref.A[ref.V != -1].min() and s["age_bin_edges"][-1] == ref.A[ref.V != -1].max()
    assert s["lookups"] == 40 * 8 and s["fresh_writes"] + s["correct_writes"] == 40 * 8


def test_bulk_load_replaces_the_contents_and_rejects_bad_input():
    store = MemoryStore(MemoryConfig(key_dim=4, size=8, choose_k=4))
    keys = np.arange(20, dtype=np.float32).reshape(5, 4) + 1
    store.load(keys, np.arange(5))
    assert store.filled == 5 and (store.values[5:] == -1).all()
    np.testing.assert_allclose(np.linalg.norm(store.keys[:5], axis=1), 1, atol=1e-6)
    res = store.lookup(LookupSpec(keys[3:4].copy(), k=1, return_neighbors=True))
    assert res.result[0] == 3                             # each key answers its own query
    before = store.state_hash()
    for bad_keys, bad_values in ((keys[:, :3], np.arange(5)), (np.ones((9, 4), np.float32), np.arange(9)),
                                 (keys, -np.ones(5, np.int64))):
        with pytest.raises(InvalidArgument):
            store.load(bad_keys, bad_values)
        assert store.state_hash() == before               # nothing lost


@pytest.mark.parametrize("noise", [0.0, 8.0])
def test_leave_one_out_matches_reference(noise):
    """Lookups that skip their own source's slots (sources recur, as training sentences do
    each epoch): answers, loss terms and the memory after seeded updates agree with the reference."""
    size, d, k = 64, 16, 8
    store = MemoryStore(MemoryConfig(key_dim=d, size=size, choose_k=k, age_noise=noise, seed=5))
    ref = ReferenceMemory(size, d, k, age_noise=noise, seed=5)
    skipped = 0
    for step, req in enumerate(clustered_batches(9, d, 90, 6, 150)):
        req = dict(req, sources=((np.arange(6) + step) % 11).astype(np.int64))     # 11 recurring sources
        sources_before = store.sources.copy()                                       # lookups see these
        res = store.lookup(to_spec(req, leave_one_out=True))
        outs = ref.call([dict(req, leave_one_out=True)])[0]
        assert_same_answers(res, outs, k, step)
        own = sources_before[np.maximum(res.neighbors.ids, 0)] == req["sources"][:, None]
        assert not (own & (res.neighbors.ids >= 0)).any()                           # never its own source
        skipped += int((sources_before[:store.filled] == req["sources"][0]).sum())
    assert skipped > 0 and store.counters.evictions > 0
    assert_same_state(store.keys, store.values, store.ages, store.sources, store.recent, ref)
    with pytest.raises(InvalidArgument, match="leave_one_out needs sources"):
        store.lookup(LookupSpec(np.ones((1, d), np.float32), leave_one_out=True))
    inference = store.lookup(LookupSpec(np.ones((1, d), np.float32), sources=np.array([3]), leave_one_out=True))
    assert inference.written_slot is None                                            # no labels: no update


def test_append_only_matches_reference():
    """Every labelled write takes a fresh slot, keys as given: the memory fills in index order
    with no averaging, then evicts the oldest."""
    size, d, k = 48, 8, 4
    store = MemoryStore(MemoryConfig(key_dim=d, size=size, choose_k=k, age_noise=0.0, append_only=True))
    ref = ReferenceMemory(size, d, k, age_noise=0.0, append_only=True)
    for step, req in enumerate(clustered_batches(4, d, 5, 4, 30)):
        res = store.lookup(to_spec(req))
        assert_same_answers(res, ref.call([dict(req)])[0], k, step)
        if step < size // 4:                                                        # still room: no eviction
            assert store.filled == 4 * (step + 1) and store.counters.evictions == 0
            assert res.written_slot.tolist() == list(range(4 * step, 4 * step + 4))
    assert store.counters.correct_writes == 0 and store.counters.evictions == 30 * 4 - size
    assert res.correct.any()                                                        # correct, yet not averaged
    assert_same_state(store.keys, store.values, store.ages, store.sources, store.recent, ref)
