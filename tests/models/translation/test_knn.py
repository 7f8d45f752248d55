"""kNN-MT from the service: the datastore holds the baseline's teacher-forced states, lam = 0
decodes as the baseline, and lam = 1 with k = 1 reproduces a stored target word for word."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from raremem.models.translation.beam import beam_search
from raremem.models.translation.data import DEFAULT_DATA, load
from raremem.models.translation.evaluate import pad_batch, translate
from raremem.models.translation.knn import CONTEXT, ContextStore, KNNDecoder, build_datastore
from raremem.models.translation.subwords import EOS
from tests.models.translation.test_translator import tiny_model

pytestmark = pytest.mark.skipif(not (DEFAULT_DATA / "multi30k").is_dir(), reason="no ../shared/data/translation")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from raremem.models.translation.subwords import train as train_subwords

    pairs = load("test_2016_flickr")
    sw = train_subwords(pairs.source + pairs.target, tmp_path_factory.mktemp("sp") / "sp.model", vocab_size=500)
    return sw, pairs.source[:40], pairs.target[:40]


def test_the_datastore_holds_every_target_position(client, corpus):
    sw, src, tgt = corpus
    model = tiny_model(vocab=len(sw))
    n = sum(len(t) + 1 for t in sw.encode(tgt))
    client.create_memory("knn/store", 8, n + 10, append_only=True, choose_k=4)
    assert build_datastore(model, sw, src, tgt, client, "knn/store", lines=list(range(100, 140)), batch=16) == n
    slots = client.read_slots("knn/store", start=0, stop=n + 10)
    assert (slots["values"][:n] >= 0).all() and (slots["values"][n:] == -1).all()   # append-only: one slot each
    # line 100's keys are the model's states for it, its values its target tokens
    ids = sw.encode([tgt[0]])[0] + [EOS]
    mine = slots["sources"][:n] == 100
    assert sorted(slots["values"][:n][mine].tolist()) == sorted(ids)
    with torch.no_grad():
        att = model.states(pad_batch([sw.encode([src[0]])[0] + [EOS]]), torch.tensor([ids]))[0].numpy()
    att /= np.linalg.norm(att, axis=1, keepdims=True)
    stored = slots["keys"][:n][mine]          # (len, 8) unit rows, order of writing
    sims = stored @ att.T                     # each stored key is its position's state (batch padding
    assert (sims.max(1) > 0.999).all()        # moves the encoder's backward pass a little)
    assert [ids[j] for j in sims.argmax(1)] == slots["values"][:n][mine].tolist()


def test_lambda_zero_is_the_baseline_and_lambda_one_copies_the_store(client, corpus):
    sw, src, tgt = corpus
    model = tiny_model(vocab=len(sw))
    client.create_memory("knn/copy", 8, 4096, append_only=True, choose_k=4)
    build_datastore(model, sw, src, tgt, client, "knn/copy", batch=16)
    s = pad_batch([sw.encode([src[3]])[0] + [EOS]])
    base = KNNDecoder(model, client, "knn/copy", lam=0.0)
    assert beam_search(base, s, 3, 20) == beam_search(model, s, 3, 20)
    assert translate(base, sw, src[:6], width=1) == translate(model, sw, src[:6], width=1)
    copy = KNNDecoder(model, client, "knn/copy", k=1, lam=1.0)
    # each step's state is the stored state of the same prefix, so its neighbour names the next word
    assert translate(copy, sw, src[:8], width=1) == tgt[:8]
    assert translate(copy, sw, src[:4], width=4) == tgt[:4]


def test_two_datastores_pool_like_one_that_holds_both(client, corpus):
    """The training datastore plus a context one (``ContextStore``) give the kNN distribution of
    a single datastore holding both; emptying the context store gives the training one's."""
    sw, src, tgt = corpus
    model = tiny_model(vocab=len(sw))
    store = ContextStore(model, sw, client, size=2048)
    assert store.learn(src, tgt) == sum(len(t) + 1 for t in sw.encode(tgt))
    store.fresh()
    assert client.stats(CONTEXT).info.filled == 0
    # random unit keys (an untrained model's states nearly tie, and a tie at the k-th neighbour
    # is broken differently by different stores)
    rng = np.random.default_rng(0)
    keys = rng.standard_normal((700, 8)).astype(np.float32)
    keys /= np.linalg.norm(keys, axis=1, keepdims=True)
    values = rng.integers(0, len(sw), 700)
    client.create_memory("knn/first", 8, 1024, append_only=True, choose_k=8)
    client.create_memory("knn/both", 8, 1024, append_only=True, choose_k=8)
    client.write("knn/first", keys[:500], values[:500])
    client.write(CONTEXT, keys[500:], values[500:])
    client.write("knn/both", keys, values)
    queries = torch.from_numpy(rng.standard_normal((64, 8)).astype(np.float32))
    pooled = KNNDecoder(model, client, ("knn/first", CONTEXT), k=8, temperature=0.1)
    single = KNNDecoder(model, client, "knn/both", k=8, temperature=0.1)
    torch.testing.assert_close(pooled.knn_probs(queries), single.knn_probs(queries))
    store.fresh()
    alone = KNNDecoder(model, client, "knn/first", k=8, temperature=0.1)
    torch.testing.assert_close(pooled.knn_probs(queries), alone.knn_probs(queries))


def test_a_memory_model_reads_its_own_memory_like_knn_mt(server, corpus):
    """Without a client the decoder reads the memory model's own memory: lam = 0 decodes as the
    memory model, and after one context pass over a (source, reference) line, lam = 1 with
    k = 1 gives back the reference word for word (each step's query finds what the pass wrote).
    One line at a time: across lines an untrained model's queries nearly tie, and the memory's
    averaging of same-valued keys moves them."""
    from raremem.models.memory_layer import make_backend
    from raremem.models.translation.evaluate import context_pass

    sw, src, tgt = corpus
    backend = make_backend(server[0], "knn/own", 8, 4096, choose_k=16)
    model = tiny_model(vocab=len(sw), memory_backend=backend)
    with pytest.raises(ValueError, match="client"):
        KNNDecoder(tiny_model(vocab=len(sw)))
    context_pass(model, sw, src[8:20], tgt[8:20], passes=1)      # a memory that is not empty
    base = KNNDecoder(model, lam=0.0)
    assert base.own and base.names == ()
    s = pad_batch([sw.encode([src[3]])[0] + [EOS]])
    assert beam_search(base, s, 3, 20) == beam_search(model, s, 3, 20)
    assert translate(base, sw, src[:6], width=1) == translate(model, sw, src[:6], width=1)
    copy = KNNDecoder(model, k=1, lam=1.0)
    for i in range(6):
        backend.reset()
        assert translate(copy, sw, src[i:i + 1], width=1) != tgt[i:i + 1]   # not in memory
        context_pass(model, sw, src[i:i + 1], tgt[i:i + 1], passes=1)
        assert translate(copy, sw, src[i:i + 1], width=1) == tgt[i:i + 1]


def test_a_memory_model_reads_a_datastore_of_its_states(server, client, corpus):
    """Given a client, a memory model's decoder reads a datastore of its unprojected attention
    vectors, its own memory still inside p_model: lam = 0 decodes as the memory model, and
    lam = 1 with k = 1 gives back the stored targets word for word (its states are the keys)."""
    from raremem.models.memory_layer import make_backend
    from raremem.models.translation.evaluate import context_pass

    sw, src, tgt = corpus
    model = tiny_model(vocab=len(sw), memory_backend=make_backend(server[0], "knn/mem", 8, 4096, choose_k=16))
    context_pass(model, sw, src[8:20], tgt[8:20], passes=1)      # its memory is not empty
    client.create_memory("knn/states", 8, 4096, append_only=True, choose_k=4)
    build_datastore(model, sw, src, tgt, client, "knn/states", batch=16)
    before = client.stats("knn/mem").lookups
    base = KNNDecoder(model, client, "knn/states", lam=0.0)
    assert base.names == ("knn/states",) and not base.own
    assert translate(base, sw, src[:6], width=1) == translate(model, sw, src[:6], width=1)
    assert client.stats("knn/mem").lookups > before               # p_model read the model's memory
    copy = KNNDecoder(model, client, "knn/states", k=1, lam=1.0)
    assert translate(copy, sw, src[:8], width=1) == tgt[:8]
