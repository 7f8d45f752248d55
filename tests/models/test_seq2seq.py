"""The shared attention seq2seq in its GNMT shape (bidirectional first layer) for translation."""

from __future__ import annotations

import pytest
import torch

from raremem.models.memory_layer import make_backend
from raremem.models.neural_gpu.recipes import AlignedTower, Uniformity
from raremem.models.seq2seq import AttentionSeq2Seq, Seq2SeqConfig


def _tower():
    return AlignedTower(20, 16)


@pytest.mark.parametrize("memory", [False, True])
def test_gnmt_shape_gradients_and_memory(memory):
    torch.manual_seed(0)
    cfg = Seq2SeqConfig(src_vocab=50, tgt_vocab=60, units=16, layers=3, bidirectional_first=True, memory_layer=memory,
                        pad=0, go=2, eos=3)
    backend = make_backend("local", "t", 16, 1024, choose_k=8) if memory else None
    model = AttentionSeq2Seq(cfg, backend)
    src = torch.randint(4, 50, (5, 7))
    src[0, 5:] = 0                                       # a shorter sentence, padded
    tgt = torch.randint(4, 60, (5, 6))
    tgt[:, -1] = 3
    tgt[1, 3:] = 0                                       # padded target positions are not memory labels
    if memory:
        model(src, tgt, update=True)                     # fill the memory first
        filled = backend.store.filled
        assert 0 < filled <= 5 * 6 - 3
    out = model(src, tgt, update=memory)
    assert out.logits.shape == (5, 6, 60)
    loss = torch.nn.functional.cross_entropy(out.logits.reshape(-1, 60), tgt.reshape(-1), ignore_index=0)
    (loss + out.memory_loss).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    if memory:
        assert (out.memory_values[1, 3:] == -1).all() and (out.memory_values[0] >= 0).all()
        assert model.memory.query_proj.weight.grad.abs().sum() > 0
    greedy = model(src, max_len=9)
    assert greedy.logits.shape[0] == 5 and greedy.logits.shape[1] <= 9


@pytest.mark.parametrize("options, tower", [({}, None), ({"copy": True}, None), ({}, _tower)])
def test_memory_model_starts_as_its_baseline(options, tower):
    """The read-out's memory part (and the copy gate) starts at zero and the memory layer's
    weights are drawn after the baseline's: at the same seed, the memory model's logits are the
    baseline's exactly, whatever the memory returns."""
    src = torch.randint(1, 20, (3, 7))
    tgt = torch.randint(1, 20, (3, 5))
    torch.manual_seed(4)
    base = AttentionSeq2Seq(Seq2SeqConfig(20, 20, units=16, memory_layer=False, bidirectional_first=True))
    torch.manual_seed(4)
    backend = make_backend("local", "m", 16, 64, choose_k=8)
    mem = AttentionSeq2Seq(Seq2SeqConfig(20, 20, units=16, memory_layer=True, bidirectional_first=True, **options), backend,
                           tower=tower)
    base.eval(), mem.eval()
    mem(src, tgt, update=True)                               # fill the memory: its answers are non-trivial
    assert backend.store.filled > 0
    with torch.no_grad():
        a, b = base(src, tgt).logits, mem(src, tgt).logits
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert (mem.out_mem.weight == 0).all()


def test_the_copy_gate_raises_only_the_memory_values_logit_by_gate_times_weight():
    """With the copy gate's bias at c (weights 0), each position's logits are the model's without
    copy plus c * w_1 at the memory's value v_1 and nothing elsewhere; the gate gets a gradient."""
    torch.manual_seed(0)
    src, tgt = torch.randint(1, 20, (3, 7)), torch.randint(1, 20, (3, 5))
    backend = make_backend("local", "c", 16, 64, choose_k=8)
    model = AttentionSeq2Seq(Seq2SeqConfig(20, 20, units=16, memory_layer=True, copy=True), backend).eval()
    model(src, tgt, update=True)
    with torch.no_grad():
        before = model(src, tgt)
        model.copy_gate.bias.fill_(3.0)
        after = model(src, tgt)
    v = before.memory_values
    assert (v >= 0).all() and torch.equal(v, after.memory_values)
    w = torch.tensor(backend.lookup(model.memory.query(model.states(src, tgt).reshape(-1, 16)).detach().numpy())
                     .top_weight).reshape(3, 5)
    expected = before.logits.scatter_add(-1, v[..., None], 3.0 * w[..., None])
    torch.testing.assert_close(after.logits, expected, rtol=0, atol=1e-5)
    model.train()
    out = model(src, tgt)
    torch.nn.functional.cross_entropy(out.logits.reshape(-1, 20), tgt.reshape(-1)).backward()
    assert model.copy_gate.bias.grad.abs() > 0 and model.copy_gate.weight.grad.abs().sum() > 0


def test_the_uniformity_term_adds_the_weighted_spread_of_the_queries_to_the_memory_loss():
    """With the uniformity term at weight w the memory loss is the margin loss plus w times
    log mean exp(-2 |q_i - q_j|^2) over the unit queries asked (computed here by hand);
    without gradients (decoding) the term is left out."""
    torch.manual_seed(0)
    src, tgt = torch.randint(1, 20, (3, 7)), torch.randint(1, 20, (3, 5))
    losses = {}
    for w in (0.0, 0.5):
        torch.manual_seed(1)
        backend = make_backend("local", f"u{w}", 16, 64, choose_k=8)
        model = AttentionSeq2Seq(Seq2SeqConfig(20, 20, units=16, memory_layer=True, dropout=0.0), backend).eval()
        model.query_penalty = Uniformity(w) if w else None
        with torch.no_grad():
            model(src, tgt, update=True)
        losses[w] = model(src, tgt).memory_loss
        with torch.no_grad():
            assert float(model(src, tgt).memory_loss) == pytest.approx(float(losses[0.0] if w else losses[w]), abs=1e-6)
    with torch.no_grad():
        q = torch.nn.functional.normalize(model.memory.query_proj(model.states(src, tgt).reshape(-1, 16)), dim=-1)
    d2 = ((q[:, None] - q[None]) ** 2).sum(-1)
    pairs = d2[torch.triu_indices(15, 15, offset=1).unbind()]
    expected = float(losses[0.0]) + 0.5 * float(torch.log(torch.exp(-2 * pairs).mean()))
    assert float(losses[0.5]) == pytest.approx(expected, abs=1e-4)
    losses[0.5].backward()
    assert model.memory.query_proj.weight.grad.abs().sum() > 0


def _reached(module: torch.nn.Module) -> bool:
    return any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())


def test_a_key_tower_learns_from_the_memory_only_and_holds_still_while_frozen():
    """Queries from the key tower: output position t asks with the tower's state at source
    position t (the last one past the source's end), teacher-forced and step by step alike; the
    memory loss trains the tower and the query projection, not the encoder, the decoder or the
    attention; the cross-entropy reaches the encoder and not the tower (the read-out's memory
    part starts at zero). Frozen, nothing reaches them."""
    torch.manual_seed(0)
    src, tgt = torch.randint(1, 20, (4, 7)), torch.randint(1, 20, (4, 9))
    backend = make_backend("local", "k", 16, 256, choose_k=8)
    model = AttentionSeq2Seq(Seq2SeqConfig(20, 20, units=16, memory_layer=True, dropout=0.0), backend, tower=_tower)
    asked = []
    hook = model.memory.query_proj.register_forward_hook(lambda _m, args, _out: asked.append(args[0].detach()))
    with torch.no_grad():
        model(src, tgt, update=True)
        model(src, max_len=9)
    hook.remove()
    with torch.no_grad():
        tower = model.tower(src)                                             # (4, 7, 16)
    want = tower[:, [0, 1, 2, 3, 4, 5, 6, 6, 6]]                             # (4, 9, 16)
    torch.testing.assert_close(asked[0], want.reshape(-1, 16))
    torch.testing.assert_close(torch.stack(asked[1:], 1), want)
    model(src, tgt).memory_loss.backward()
    assert _reached(model.tower.embed) and _reached(model.tower.lstm) and _reached(model.memory)
    assert not any(_reached(m) for m in (model.encoder, model.decoder, model.embed_in, model.att_q, model.att_k))
    model.zero_grad(set_to_none=True)
    out = model(src, tgt)
    torch.nn.functional.cross_entropy(out.logits.reshape(-1, 20), tgt.reshape(-1)).backward()
    assert _reached(model.encoder) and _reached(model.decoder) and not _reached(model.tower)
    model.zero_grad(set_to_none=True)
    model.memory.hold(True)
    assert not model(src, tgt).memory_loss.requires_grad   # no parameter behind the queries while held
    model.memory.hold(False)
    assert model(src, tgt).memory_loss.requires_grad


def test_the_fair_twin_reads_the_aligned_tower_in_its_attention_vector():
    """Without memory, the aligned tower feeds its state at source position t into
    a_t = tanh(W [h_t; c_t; k_t]), teacher-forced and step by step alike (the same alignment the
    memory row's queries get), and the cross-entropy trains the tower."""
    torch.manual_seed(0)
    src, tgt = torch.randint(1, 20, (4, 7)), torch.randint(1, 20, (4, 9))
    model = AttentionSeq2Seq(Seq2SeqConfig(20, 20, units=16, memory_layer=False, dropout=0.0), tower=_tower)
    model.eval()
    seen = []
    hook = model.combine.register_forward_hook(lambda _m, args, _out: seen.append(args[0][..., 32:].detach()))
    with torch.no_grad():
        forced = model(src, tgt).logits
        ctx = model.start(src)
        prev, stepped = torch.full((4, 1), model.go), []
        for t in range(9):   # fed the gold symbols, step by step gives the teacher-forced logits
            stepped.append(model.step(prev, ctx, torch.ones(4, dtype=torch.bool))[0])
            prev = tgt[:, t:t + 1]
    hook.remove()
    torch.testing.assert_close(torch.cat(stepped, 1), forced)
    with torch.no_grad():
        tower = model.tower(src)                                             # (4, 7, 16)
    want = tower[:, [0, 1, 2, 3, 4, 5, 6, 6, 6]]                             # (4, 9, 16)
    torch.testing.assert_close(seen[0], want)
    torch.testing.assert_close(torch.cat(seen[1:], 1), want)
    out = model(src, tgt)
    torch.nn.functional.cross_entropy(out.logits.reshape(-1, 20), tgt.reshape(-1)).backward()
    assert _reached(model.tower.embed) and _reached(model.tower.lstm)
