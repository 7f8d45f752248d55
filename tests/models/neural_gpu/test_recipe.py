"""The authors' Neural GPU recipe as the trainer's defaults, and the short preset of the task."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from raremem.models.memory_layer import make_backend
from raremem.models.neural_gpu.evaluate import SEEN_BUCKETS, scores
from raremem.models.neural_gpu.model import CGRU, GATE_BIAS, INIT_GAIN, ExtendedNeuralGPU, ModelConfig, cutoff_sigmoid
from raremem.models.neural_gpu.recipes import build_model, uniformity
from raremem.models.neural_gpu.task import DIGITS, MAX_LENGTH, PAD, PRESETS, coverage, make_splits, random_function
from raremem.models.neural_gpu.train import TrainConfig, decay_on_worse, gold_probability, gold_weight


def test_kernels_are_orthogonal_with_the_authors_gain_and_gate_biases_one():
    torch.manual_seed(0)
    model = ExtendedNeuralGPU(ModelConfig(channels=16, memory_layer=False))
    cells = [m for m in model.modules() if isinstance(m, CGRU)]
    assert len(cells) == 4
    for cell in cells:
        for conv in (cell.update, cell.reset, cell.candidate):
            w = conv.weight.detach().reshape(conv.out_channels, -1)           # (out, in * 3 * 3): rows orthogonal
            torch.testing.assert_close(w @ w.T, INIT_GAIN ** 2 * torch.eye(len(w)), atol=1e-4, rtol=0)
        assert (cell.update.bias == GATE_BIAS).all() and (cell.reset.bias == GATE_BIAS).all()
    assert INIT_GAIN == pytest.approx(1.44)
    assert float(cutoff_sigmoid(torch.tensor(GATE_BIAS))) == pytest.approx(0.777, abs=1e-3)
    w = model.out.weight.detach()                                             # (VOCAB, C): rows orthogonal
    torch.testing.assert_close(w @ w.T, INIT_GAIN ** 2 * torch.eye(len(w)), atol=1e-4, rtol=0)


def test_trainer_defaults_are_the_authors():
    cfg = TrainConfig()
    assert (cfg.lr, cfg.adam_eps, cfg.clip, cfg.lr_decay, cfg.dropout) == (5e-4, 1e-3, 4.0, 0.995, 0.1)
    assert (cfg.gold_decay_steps, cfg.gold_floor, cfg.bf16, cfg.memory_size) == (10_000, 0.2, False, 500_000)


def test_state_dropout_scales_with_length():
    model = ExtendedNeuralGPU(ModelConfig(channels=8, memory_layer=False, dropout=0.1)).train()
    s = torch.ones(4000, 8, 1, 1)
    for length in (9, 36):   # p = 0.1 * 3 / sqrt(L): 0.1 and 0.05
        assert float((model._drop(s, length) == 0).float().mean()) == pytest.approx(0.3 / length ** 0.5, abs=0.01)
    assert (model.eval()._drop(s, 9) == s).all()


@pytest.mark.parametrize("step, p", [(0, 1.0), (2_500, 0.75), (5_000, 0.5), (8_000, 0.2), (10_000, 0.2),
                                     (50_000, 0.2)])
def test_gold_schedule(step, p):
    cfg = TrainConfig()
    assert gold_probability(cfg, step) == pytest.approx(p)
    rng = np.random.default_rng(0)
    weights = np.array([gold_weight(cfg, step, rng) for _ in range(4000)])
    assert all(w == 0.0 or w == pytest.approx(p) for w in np.unique(weights))
    assert (weights > 0).mean() == pytest.approx(p, abs=0.03)           # applied with probability p
    assert gold_probability(TrainConfig(memory_layer=False), step) == 0.0  # no memory, no tape blend


def test_lr_decays_only_when_the_window_gets_worse():
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=5e-4)
    cfg = TrainConfig()
    for ce, lr in ((2.0, 5e-4), (1.5, 5e-4), (1.6, 5e-4 * 0.995), (1.7, 5e-4 * 0.995 ** 2), (1.0, 5e-4 * 0.995 ** 2)):
        decay_on_worse(opt, cfg, ce)
        assert opt.param_groups[0]["lr"] == pytest.approx(lr)
    again = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    again.load_state_dict(opt.state_dict())                                # a checkpoint carries the last window
    assert again.param_groups[0]["last_window_ce"] == 1.0


def test_short_preset_is_the_same_task_with_shorter_inputs():
    train, test, f = make_splits(0, preset="short")
    full_train, _, full_f = make_splits(0)
    assert PRESETS["short"] == 16 and len(train) == 40_000 and len(test) == 10_000
    assert np.array_equal(f, full_f) and np.array_equal(f, random_function(0))   # the same f
    for ex in (train, test):
        assert ex.lengths.min() == DIGITS and ex.lengths.max() == 16
        assert ex.inputs.shape == (len(ex), MAX_LENGTH) and (ex.inputs[:, 16:] == PAD).all()
        assert (ex.starts + DIGITS <= ex.lengths).all()
    assert not {r.tobytes() for r in test.inputs} & {r.tobytes() for r in train.inputs}   # distinct inputs
    assert 0.90 < coverage(test, train) < 0.94                                # ~92% of test numbers seen
    assert full_train.lengths.max() == 40
    with pytest.raises(ValueError):
        make_splits(0, preset="tiny")


def test_scores_split_by_how_often_the_number_was_seen():
    """Predictions right exactly for numbers seen 3+ times: the buckets say 0, 0, 0, 100%."""
    train, test, _ = make_splits(0, n_test=600, preset="short")
    seen = np.bincount(train.numbers, minlength=16001)[test.numbers]
    preds = np.where((seen >= 3)[:, None], test.targets, PAD)
    values = np.full_like(preds, -1)
    r = scores(preds, values, test, train)
    by = r["by_times_seen"]
    assert list(by) == list(SEEN_BUCKETS) and sum(b["examples"] for b in by.values()) == len(test)
    assert [by[b]["fully_correct"] for b in ("0", "1", "2")] == [0.0, 0.0, 0.0] and by[">=3"]["fully_correct"] == 1.0
    assert r["fully_correct"] == pytest.approx((seen >= 3).mean()) and "memory_run_correct" not in r
    assert r["fully_correct_seen"] == pytest.approx((seen >= 3).sum() / (seen >= 1).sum())


def test_fixed_query_control_remembers_every_run_it_wrote():
    """With fixed (number, digit) queries the memory path is exact on a small batch: after one
    pass that writes it, the memory alone returns every later symbol of those examples. (In 8
    dimensions random keys collide, and the paper's rule then averages a query into another
    number's key that happens to hold the right digit; at the model's 32 they do not here.)"""
    torch.manual_seed(0)
    backend = make_backend("local", "c", 32, 4096, choose_k=4, age_noise=0.0)
    model = build_model(ModelConfig(channels=32, height=2, nconv=1), {"fixed_queries": True}, backend)
    train, _, _ = make_splits(0, n_train=64, n_test=8, preset="short")
    idx = np.argsort(train.lengths)[-12:]
    length = int(train.lengths[idx].max())
    inputs, targets = (torch.from_numpy(a[idx, :length]) for a in (train.inputs, train.targets))
    extra = {"numbers": torch.from_numpy(train.numbers[idx]), "starts": torch.from_numpy(train.starts[idx])}
    model(inputs, targets, update=True, **extra)                             # write every column once
    with torch.no_grad():
        out = model(inputs, targets, update=False, **extra)
    inside = torch.arange(length)[None] < torch.from_numpy(train.lengths[idx])[:, None]
    inside[:, 0] = False                                                     # column 0 is never queried
    assert (out.memory_values[inside] == targets[inside]).all()
    assert not model.memory.query_proj.weight.requires_grad
    with pytest.raises(ValueError, match="numbers and starts"):
        model(inputs, targets)
    with pytest.raises(ValueError, match="fixed-queries"):
        TrainConfig(fixed_queries=True, memory_layer=False).validate()


@pytest.mark.parametrize("weight_grad", [True, False])
def test_decoder_loss_reaches_the_queries_only_through_w1_when_asked(weight_grad):
    """The decoder's cross-entropy reaches the query projection through w_1 of the suggestion
    on the tape; with weight_grad off it does not (the memory loss still does)."""
    torch.manual_seed(0)
    train, _, _ = make_splits(0, n_train=64, n_test=8, preset="short")
    model = build_model(ModelConfig(channels=8, dropout=0.0), {"weight_grad": weight_grad},
                        make_backend("local", "m", 8, 4096, choose_k=8))
    inputs, targets = torch.from_numpy(train.inputs[:32, :12]), torch.from_numpy(train.targets[:32, :12])
    for _ in range(3):   # fill the memory, so suggestions exist
        model(inputs, targets, update=True)
    out = model(inputs, targets, update=False)
    ce = torch.nn.functional.cross_entropy(out.logits.reshape(-1, out.logits.shape[-1]), targets.reshape(-1),
                                           ignore_index=PAD)
    ce.backward()
    grad = model.memory.query_proj.weight.grad
    assert (grad is not None and grad.abs().sum() > 0) == weight_grad


@pytest.mark.parametrize("query_grad", [True, False])
def test_the_memory_loss_reaches_the_network_only_when_asked(query_grad):
    """With query_grad off the memory loss trains the query projection and nothing else."""
    torch.manual_seed(0)
    train, _, _ = make_splits(0, n_train=64, n_test=8, preset="short")
    model = build_model(ModelConfig(channels=8, dropout=0.0), {"query_grad": query_grad},
                        make_backend("local", "m", 8, 4096, choose_k=8))
    inputs, targets = torch.from_numpy(train.inputs[:32, :12]), torch.from_numpy(train.targets[:32, :12])
    for _ in range(3):
        model(inputs, targets, update=True)
    model(inputs, targets, update=False).memory_loss.backward()
    assert model.memory.query_proj.weight.grad.abs().sum() > 0
    reached = model.encoder[0].candidate.weight.grad
    assert (reached is not None and reached.abs().sum() > 0) == query_grad


def _filled(**settings):
    """A small Neural GPU + memory with the query ``settings``, whose memory holds a few
    batches, and that batch."""
    torch.manual_seed(0)
    train, _, _ = make_splits(0, n_train=64, n_test=8, preset="short")
    model = build_model(ModelConfig(channels=8, dropout=0.0), settings, make_backend("local", "m", 8, 4096, choose_k=8))
    inputs, targets = torch.from_numpy(train.inputs[:32, :12]), torch.from_numpy(train.targets[:32, :12])
    for _ in range(3):
        model(inputs, targets, update=True)
    return model, inputs, targets


def _reached(module: torch.nn.Module) -> bool:
    return any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())


def test_the_key_tower_learns_from_the_memory_only():
    """Queries from the tower: the memory loss trains the tower and not the encoder; the
    cross-entropy reaches the encoder and (with w_1's gradient off) not the tower."""
    model, inputs, targets = _filled(query_from="tower", weight_grad=False)
    out = model(inputs, targets, update=False)
    out.memory_loss.backward()
    assert _reached(model.queries) and model.memory.query_proj.weight.grad.abs().sum() > 0
    assert not _reached(model.encoder) and not _reached(model.decoder)
    model.zero_grad(set_to_none=True)
    out = model(inputs, targets, update=False)
    torch.nn.functional.cross_entropy(out.logits.reshape(-1, out.logits.shape[-1]), targets.reshape(-1),
                                      ignore_index=PAD).backward()
    assert _reached(model.encoder) and _reached(model.decoder)
    assert not _reached(model.queries)


def test_queries_from_the_encoder_skip_the_decoder():
    """Queries from the encoder's final state: the memory loss reaches the encoder, never the
    decoder's cells (which run after the state the query reads)."""
    model, inputs, targets = _filled(query_from="encoder")
    model(inputs, targets, update=False).memory_loss.backward()
    assert _reached(model.encoder) and not _reached(model.decoder)


def test_query_sources_are_checked():
    with pytest.raises(ValueError, match="query_from for ngpu is one of"):
        build_model(ModelConfig(channels=8), {"query_from": "decoder"})
    with pytest.raises(ValueError, match="needs the memory layer"):
        build_model(ModelConfig(channels=8, memory_layer=False), {"query_from": "tower"})
    with pytest.raises(ValueError, match="seq2seq's queries take no"):
        build_model(ModelConfig(arch="seq2seq", units=8), {"weight_grad": False})
    with pytest.raises(ValueError, match="--query-from"):
        TrainConfig(arch="seq2seq", query_from="encoder").validate()
    with pytest.raises(ValueError, match="--query-from"):   # the Neural GPU has no twin of the tower
        TrainConfig(arch="ngpu", query_from="tower", memory_layer=False).validate()
    with pytest.raises(ValueError, match="--leave-one-out"):
        TrainConfig(arch="seq2seq", query_from="tower", memory_layer=False, leave_one_out=True).validate()
    TrainConfig(arch="seq2seq", query_from="tower", memory_layer=False).validate()   # seq2seq's fair twin


def test_held_queries_get_no_gradient_until_released():
    """A held memory layer: no loss reaches the tower or the projection until released."""
    model, inputs, targets = _filled(query_from="tower")
    model.memory.hold(True)
    out = model(inputs, targets, update=False)
    (out.memory_loss + out.logits.sum()).backward()
    assert not _reached(model.queries) and model.memory.query_proj.weight.grad is None
    model.zero_grad(set_to_none=True)
    model.memory.hold(False)
    model(inputs, targets, update=False).memory_loss.backward()
    assert _reached(model.queries) and model.memory.query_proj.weight.grad.abs().sum() > 0


def test_leave_one_out_skips_the_examples_own_slots():
    """An example alone in memory finds its own keys, and with leave-one-out nothing."""
    torch.manual_seed(0)
    train, _, _ = make_splits(0, n_train=64, n_test=8, preset="short")
    model = ExtendedNeuralGPU(ModelConfig(channels=8, dropout=0.0), make_backend("local", "m", 8, 4096, choose_k=8))
    inputs, targets = torch.from_numpy(train.inputs[:1, :12]), torch.from_numpy(train.targets[:1, :12])
    source = torch.tensor([7])
    model(inputs, targets, update=True, sources=source)
    with torch.no_grad():
        found = model(inputs, targets, sources=source).memory_values
        skipped = model(inputs, targets, sources=source, leave_one_out=True).memory_values
    length = int((inputs != PAD).sum())
    assert (found[0, 1:length] >= 0).all() and (skipped[0, 1:length] == -1).all()


def test_uniformity_is_zero_when_queries_are_alike_and_falls_as_they_spread():
    torch.manual_seed(0)
    alike = torch.nn.functional.normalize(torch.ones(16, 32) + 1e-4 * torch.randn(16, 32), dim=-1)
    spread = torch.nn.functional.normalize(torch.randn(4096, 32), dim=-1)
    assert float(uniformity(alike)) == pytest.approx(0.0, abs=1e-3)
    # random unit rows: |q_i - q_j|^2 = 2 - 2c, c ~ N(0, 1/d), so log E exp(-2(2 - 2c)) = -4 + 8/d
    assert float(uniformity(spread)) == pytest.approx(-4.0 + 8 / 32, abs=0.05)
    q = torch.nn.functional.normalize(torch.ones(16, 32) + 0.05 * torch.randn(16, 32), dim=-1).requires_grad_(True)
    before = uniformity(q)
    before.backward()   # a step down its gradient moves nearly alike queries apart
    after = uniformity(torch.nn.functional.normalize(q.detach() - 5 * q.grad, dim=-1))
    assert float(after) < float(before) - 0.01


def test_the_uniformity_term_enters_the_memory_loss_only_when_weighted():
    losses = {}
    for weight in (0.0, 0.5):
        model, inputs, targets = _filled(query_from="tower", query_uniformity=weight)
        losses[weight] = model(inputs, targets, update=False).memory_loss.item()
        with torch.no_grad():   # decoding asks for no gradient: no term
            assert float(model(inputs, targets, update=False).memory_loss) == pytest.approx(losses[0.0] if weight else
                                                                                              losses[weight])
    assert losses[0.5] < losses[0.0]   # the term is negative for queries not all alike
    with pytest.raises(ValueError, match="--query-uniformity"):
        TrainConfig(query_uniformity=0.1, memory_layer=False).validate()
    # the seq2seq + memory row takes them too, but has no encoder queries
    TrainConfig(arch="seq2seq", query_uniformity=0.1, query_from="tower", query_warmup=10).validate()
    with pytest.raises(ValueError, match="--query-from"):
        TrainConfig(arch="seq2seq", query_from="encoder").validate()


@pytest.mark.parametrize("arch, flags", [("seq2seq", ["--no-weight-grad"]), ("seq2seq", ["--no-query-grad"]),
                                         ("seq2seq", ["--channels", "16"]), ("ngpu", ["--units", "64"])])
def test_flags_of_the_other_architecture_are_refused(arch, flags, capsys):
    from raremem.models.flags import parse_config

    with pytest.raises(SystemExit) as exit_:
        parse_config(TrainConfig, ["--arch", arch, *flags])
    said = capsys.readouterr().err.strip().splitlines()[-1]
    assert exit_.value.code == 2 and flags[0] in said and f"--arch {arch}" in said
    parse_config(TrainConfig, ["--arch", "ngpu" if arch == "seq2seq" else "seq2seq", *flags])   # the other takes them


def test_a_named_recipe_is_the_settings_it_names_and_refuses_others(capsys):
    from raremem.models.flags import parse_config
    from raremem.models.neural_gpu.recipes import RECIPES, SETTINGS

    for name, recipe in RECIPES.items():
        assert recipe.why and recipe.measured and set(recipe.settings) <= set(SETTINGS)
        for arch in recipe.archs:
            cfg = parse_config(TrainConfig, ["--arch", arch, "--recipe", name])
            assert all(getattr(cfg, k) == v for k, v in recipe.settings.items()) and cfg.recipe == name
    # the command of an earlier row, by its flags and by its recipe: one config but for the name
    flags = "--arch ngpu --preset short --query-from tower --query-warmup 1500 --leave-one-out --query-uniformity 0.1"
    by_flags = parse_config(TrainConfig, flags.split())
    by_name = parse_config(TrainConfig, ["--arch", "ngpu", "--preset", "short", "--recipe", "tower-uniform"])
    assert dataclasses.replace(by_name, recipe="", out=by_flags.out) == by_flags
    twin = parse_config(TrainConfig, ["--arch", "seq2seq", "--no-memory-layer", "--recipe", "tower"])
    assert twin.query_from == "tower" and not twin.memory_layer          # seq2seq's fair twin
    for argv, said in ((["--recipe", "tower", "--query-uniformity", "0.2"], "drop --query-uniformity"),
                       (["--recipe", "shiny"], "--recipe is one of"),
                       (["--arch", "seq2seq", "--recipe", "fixed-queries"], "for --arch ngpu"),
                       (["--arch", "seq2seq", "--no-memory-layer", "--recipe", "tower-uniform"], "learned queries")):
        with pytest.raises(SystemExit) as exit_:
            parse_config(TrainConfig, argv)
        assert exit_.value.code == 2 and said in capsys.readouterr().err


@pytest.mark.parametrize("arch, legacy", [
    ("ngpu", {"queries.embed.": "tower_embed.", "queries.cells.": "tower."}),
    ("seq2seq", {"tower.embed.": "tower_embed.", "tower.lstm.": "tower."})])
def test_checkpoints_from_before_the_query_paths_moved_still_load(arch, legacy):
    """The key tower's weights were saved on the model itself (``tower_embed.*``, ``tower.*``);
    such a checkpoint loads into today's model with every tower weight where it belongs."""
    torch.manual_seed(0)
    mc = ModelConfig(arch=arch, channels=8, units=16)
    saved = build_model(mc, {"query_from": "tower"}, make_backend("local", "m", mc.key_dim, 64)).state_dict()
    old = {}
    for key, value in saved.items():
        prefix = next((p for p in legacy if key.startswith(p)), None)
        old[key if prefix is None else legacy[prefix] + key[len(prefix):]] = value
    assert set(old) != set(saved) and not any(k.startswith(tuple(legacy)) for k in old)
    torch.manual_seed(1)
    fresh = build_model(mc, {"query_from": "tower"}, make_backend("local", "n", mc.key_dim, 64))
    fresh.load_state_dict(old)
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in saved.items())
