"""The translator: beam search against exhaustive search, the context pass (memory changes,
weights do not), a short training run through a real server, and the evaluation's copy of the
trained memory (the trained snapshot is never written)."""

from __future__ import annotations

import hashlib
import itertools
import json
import math

import numpy as np
import pytest
import torch

from raremem.client import MemoryClient
from raremem.models.memory_layer import make_backend
from raremem.models.seq2seq import AttentionSeq2Seq, Seq2SeqConfig
from raremem.models.checkpoints import parameters_digest
from raremem.models.trainer_memory import memory_server
from raremem.models.translation.beam import beam_search
from raremem.models.translation.data import DEFAULT_DATA, load
from raremem.models.translation.evaluate import WORD, context_pass, rare_recall, word_counts
from raremem.models.translation.subwords import BOS, EOS, PAD
from raremem.models.translation import protocol
from raremem.models.translation.train import TrainConfig, main, train
from reports import translation as report

needs_data = pytest.mark.skipif(not (DEFAULT_DATA / "multi30k").is_dir(), reason="no ../shared/data/translation")


def tiny_model(vocab: int = 6, memory_backend=None, seed: int = 0) -> AttentionSeq2Seq:
    torch.manual_seed(seed)
    cfg = Seq2SeqConfig(src_vocab=vocab, tgt_vocab=vocab, units=8, layers=2, bidirectional_first=True, dropout=0.0,
                        memory_layer=memory_backend is not None, pad=PAD, go=BOS, eos=EOS)
    model = AttentionSeq2Seq(cfg, memory_backend)
    with torch.no_grad():   # sharper outputs, EOS less likely (else "" wins every search), never PAD
        model.out.weight.mul_(3)
        model.out.bias[EOS] -= 1.5
        model.out.bias[PAD] = -100.0
    return model.eval()


def sequence_score(model, src: torch.Tensor, seq: list[int], penalty: float) -> float:
    """Teacher-forced log-probability of ``seq`` (ending in EOS or cut at the length limit),
    divided by GNMT's length penalty: the quantity beam search maximises."""
    out = model(src, torch.tensor([seq]))
    logp = out.logits[0].log_softmax(-1)
    total = sum(logp[t, tok].item() for t, tok in enumerate(seq))
    length = len([t for t in seq if t != EOS]) + 1
    return total / ((5.0 + length) / 6.0) ** penalty


@pytest.mark.parametrize("seed", range(6))   # best = "" (0), = greedy (2), neither
def test_wide_beam_equals_exhaustive_search_and_width_one_is_greedy(seed):
    model = tiny_model(seed=seed)
    src = torch.tensor([[4, 5, 4, EOS]])
    tokens, max_len, penalty = [t for t in range(6) if t != PAD], 3, 0.6
    candidates = [list(p) + [EOS] for n in range(max_len) for p in itertools.product([t for t in tokens if t != EOS], repeat=n)]
    candidates += [list(p) for p in itertools.product(tokens, repeat=max_len) if EOS not in p]   # cut at the limit
    with torch.no_grad():
        best = max(candidates, key=lambda s: sequence_score(model, src, s, penalty))
        found = beam_search(model, src, width=len(tokens) ** max_len, max_len=max_len, length_penalty=penalty)
        greedy = model(src, max_len=max_len).logits.argmax(-1)[0].tolist()
    assert found == [[t for t in best if t != EOS]]
    greedy = greedy[:greedy.index(EOS)] if EOS in greedy else greedy
    assert beam_search(model, src, width=1, max_len=max_len) == [greedy]


def test_beam_rows_do_not_mix():
    """Each sentence's beams stay its own: a batch decodes as its rows alone (equal lengths, so
    padding plays no part)."""
    model = tiny_model(vocab=9, seed=3)
    src = torch.tensor([[4, 5, 6, 7, EOS], [8, 4, 4, 6, EOS], [5, 7, 8, 8, EOS]])
    together = beam_search(model, src, width=3, max_len=6)
    alone = [beam_search(model, src[i:i + 1], width=3, max_len=6)[0] for i in range(3)]
    assert together == alone


def test_rare_recall_counts_clipped_occurrences_of_rare_words():
    counts = word_counts(["ein Hund läuft", "ein Hund", "ein Dackel"])
    result = rare_recall(["ein Dackel Dackel"], ["ein Dackel und ein Pudel Dackel"], counts, at_most=1)
    # rare: Dackel x2, und, Pudel (unseen) -> 4 occurrences; hypothesis has Dackel twice
    assert result == {"rare_words": 4, "rare_recalled": 2, "rare_recall": 0.5}


@needs_data
def test_context_pass_changes_memory_but_not_parameters(server, tmp_path):
    from raremem.models.translation.subwords import train as train_subwords

    pairs = load("test_2016_flickr")
    sw = train_subwords(pairs.source + pairs.target, tmp_path / "sp.model", vocab_size=500)
    backend = make_backend(server[0], "translation/ctx", 8, 2048, choose_k=16)
    model = tiny_model(vocab=len(sw), memory_backend=backend)
    before, digest = backend.client.stats("translation/ctx"), parameters_digest(model)
    writes = context_pass(model, sw, pairs.source[:20], pairs.target[:20], passes=3, batch=8)
    after = backend.client.stats("translation/ctx")
    assert parameters_digest(model) == digest
    assert writes == 3 * sum(len(t) + 1 for t in sw.encode(pairs.target[:20]))
    assert before.info.filled == 0 and after.info.filled > 0
    assert after.lookups - before.lookups == writes


@pytest.fixture(scope="module")
def trained_runs(tmp_path_factory):
    """Two short runs (baseline, memory) sharing one small subword model, through a real server."""
    from tests.conftest import running_server

    tmp = tmp_path_factory.mktemp("translation")
    common = dict(spm=str(tmp / "sp.model"), vocab=1000, steps=40, batch=16, units=32, layers=2, dropout=0.0,
                  memory_size=2048, choose_k=16, val_every=20, val_sentences=8, checkpoint_every=1000, threads=2,
                  lr=3e-3)
    summaries = {}
    with running_server(tmp / "server") as (address, _):
        for name, memory in (("baseline", False), ("memory", True)):
            cfg = TrainConfig(memory_layer=memory, server=address, out=str(tmp / name), **common)
            summaries[name] = train(cfg, address)
        with MemoryClient(address) as c:
            stats = c.stats(cfg.memory_name)
            c.snapshot(cfg.memory_name)   # where a spawned server would have put it at the end
    (tmp / "memory" / "memory").mkdir()
    for kept in ("translation", "best"):   # the last memory, and the one beside the best weights
        (tmp / "server" / kept).rename(tmp / "memory" / "memory" / kept)
    return tmp, summaries, stats


@needs_data
def test_short_training_run_through_a_server_lowers_the_loss(trained_runs):
    tmp, summaries, stats = trained_runs
    for name in ("baseline", "memory"):
        rows = [json.loads(line) for line in open(tmp / name / "metrics.jsonl")]
        first, last = np.mean([r["ce"] for r in rows[:5]]), np.mean([r["ce"] for r in rows[-5:]])
        assert summaries[name]["steps"] == 40 and last < first - 0.5, (name, first, last)
        assert [r["step"] for r in rows if "val_bleu" in r] == [20, 40]
        assert all(math.isfinite(r["loss"]) for r in rows)
    assert stats.lookups > 0 and stats.info.filled > 0           # the memory took every target token


@needs_data
def test_evaluation_writes_a_copy_never_the_trained_memory(trained_runs):
    tmp, _, _ = trained_runs
    snapshot = tmp / "memory" / "memory" / "translation" / "gnmt.npz"
    digest = hashlib.sha256(snapshot.read_bytes()).hexdigest()
    args = (tmp / "baseline", tmp / "memory", "test_2016_flickr", 2, 12, 3)
    first = protocol.evaluate_split(*args, models=("baseline",))          # one model now, the other later
    assert set(first["rows"]) == {"GNMT"}
    result = protocol.evaluate_split(*args, models=("memory",), earlier=first)
    assert hashlib.sha256(snapshot.read_bytes()).hexdigest() == digest
    rows = result["rows"]
    assert set(rows) == set(report.PAPER) and rows["GNMT"] == first["rows"]["GNMT"]
    assert rows["GNMT + memory, even-line context"]["full"] is None                # only odd lines are decoded
    even = rows["GNMT + memory, even-line context"]
    assert even["context_lines"] == 6 and even["parameters_unchanged"] and even["context_writes"] > 0
    assert rows["GNMT + memory"]["context_writes"] == 0
    assert all(0 <= r["odd"]["bleu"] <= 100 for r in rows.values())
    assert all(len(h) == 12 for h in result["hypotheses"].values())
    result["examples"] = report.worked_examples(result)
    for e in result["examples"]:                          # a rare word the memory row has and the baseline lacks
        assert all(w in WORD.findall(e["memory"]) and w not in WORD.findall(e["baseline"]) for w in e["rare_words"])
    assert "GNMT" in report.tables([result])


@needs_data
def test_resume_continues_exactly(trained_runs):
    tmp, _, _ = trained_runs
    common = dict(spm=str(tmp / "sp.model"), vocab=1000, batch=8, units=16, dropout=0.1, val_every=0,
                  checkpoint_every=1000, threads=1, memory_layer=False, server="local")
    straight = train(TrainConfig(out=str(tmp / "straight"), steps=6, **common), "local")
    train(TrainConfig(out=str(tmp / "halves"), steps=3, **common), "local")
    resumed = train(TrainConfig(out=str(tmp / "halves"), steps=6, resume=True, **common), "local")
    assert resumed["steps"] == 6 and resumed["parameters_sha256"] == straight["parameters_sha256"]


def test_a_spawned_server_keeps_the_runs_memory_in_its_data_dir(tmp_path):
    """``memory_server("spawn", dir)``: what one run's server learnt, the next one starts with."""
    keys = np.eye(4, 8, dtype=np.float32)
    with memory_server("spawn", tmp_path / "memory") as address, MemoryClient(address) as c:
        c.create_memory("translation/gnmt", 8, 16)
        c.write("translation/gnmt", keys, np.arange(4))
    assert (tmp_path / "memory" / "translation" / "gnmt.npz").is_file()
    with memory_server("spawn", tmp_path / "memory") as address, MemoryClient(address) as c:
        slots = c.read_slots("translation/gnmt", start=0, stop=16)
        assert sorted(slots["values"][slots["values"] >= 0].tolist()) == [0, 1, 2, 3]


@needs_data
def test_hogwild_replicas_share_one_life_long_memory(trained_runs, server):
    tmp, _, _ = trained_runs
    out = tmp / "hogwild"
    assert main(["--server", server[0], "--hogwild", "2", "--out", str(out), "--spm", str(tmp / "sp.model"),
                 "--vocab", "1000", "--steps", "3", "--batch", "8", "--units", "16", "--memory-size", "1024",
                 "--choose-k", "16", "--val-every", "0"]) == 0
    rows = [json.loads(line) for name in ("metrics.jsonl", "metrics-rank1.jsonl") for line in open(out / name)]
    assert len(rows) == 6
    with MemoryClient(server[0]) as c:
        assert c.stats("translation/gnmt").lookups == sum(r["tokens"] for r in rows)   # every target token, both


@needs_data
@pytest.mark.parametrize("run, rows", [("baseline", ("GNMT", "GNMT + kNN-MT")),
                                       ("memory", ("GNMT + memory", "GNMT + memory, kNN-MT"))])
def test_knn_mt_rows_from_a_trained_run(trained_runs, tmp_path, run, rows):
    """The kNN-MT experiment end to end on a short run, the baseline or the memory model (its
    datastore beside its trained memory): datastore, tuning, test with intervals."""
    from raremem.models.translation.knn import run_experiment

    tmp, _, _ = trained_runs
    r = run_experiment(tmp / run, tmp_path / "knn.json", size=4096, val_lines=8, width=2,
                       grid=((4,), (0.1,), (0.0, 0.5)), nlist=8, nprobe=8, train_limit=150, test_limit=10)
    assert r["datastore_entries"] > 150 and len(r["tuning"]) == 3 and r["memory_model"] == (run == "memory")
    assert r["tuning"][1]["val_bleu"] == r["tuning"][0]["val_bleu"]        # lam 0: the model alone, greedy
    systems = r["test"]["systems"]
    assert set(systems) == set(rows) and "diff_ci95" in systems[rows[1]]
    assert json.loads((tmp_path / "knn.json").read_text())["chosen"] in r["tuning"]


@needs_data
def test_kshot_curve_of_a_run_trained_without_its_words(trained_runs, tmp_path):
    """A short memory run with --hold-out, then its k-shot curve from its own spawned memory."""
    from raremem.models.translation import kshot

    tmp, _, _ = trained_runs
    out = tmp_path / "kshot"
    assert main(["--out", str(out), "--spm", str(tmp / "sp.model"), "--vocab", "1000", "--steps", "6",
                 "--batch", "8", "--units", "16", "--memory-size", "8192", "--choose-k", "16", "--val-every", "0",
                 "--hold-out", "40", "--threads", "1"]) == 0
    assert kshot.main(["--run", str(out), "--evaluations", "1"]) == 0
    r = json.loads((out / "kshot.json").read_text())
    assert r["words"] == 40 and r["episodes"] > 5 and [int(k) for k in r["curve"]] == list(kshot.SHOTS)
    assert r["curve"]["0"]["context_lines"] == 0 and r["curve"]["5"]["context_lines"] == 5 * r["episodes"]
    assert all(c["evaluations"] == r["episodes"] == len(c["outcomes"]) for c in r["curve"].values())
    up = r["rise"]   # 0 against 5 context sentences, on the same evaluation lines
    assert (up["from"], up["to"]) == (0, 5) and up["pairs"] == r["episodes"]
    assert up["gained"] - up["lost"] == r["curve"]["5"]["hits"] - r["curve"]["0"]["hits"]


@needs_data
def test_paired_rare_words_on_a_trained_memory_run(trained_runs):
    from raremem.models.translation import oneshot

    tmp, _, _ = trained_runs
    assert oneshot.main(["--run", str(tmp / "memory"), "--limit", "12", "--ranks"]) == 0
    r = json.loads((tmp / "memory" / "oneshot.json").read_text())
    n = r["gained"] + r["lost"]   # McNemar's one-sided p from the discordant pairs it counted
    assert r["pairs"] == 12 and r["groups"] >= 1
    assert r["p_one_sided"] == pytest.approx(sum(math.comb(n, i) for i in range(r["gained"], n + 1)) / 2 ** n if n else 1)
    assert r["gained"] - r["lost"] == r["hits_with"] - r["hits_without"]
    ranks = r["lookup_ranks"]
    assert len(ranks["ranks_without"]) == len(ranks["ranks_with"]) == 12
    assert all(x is None or 0 <= x < ranks["k"] for x in ranks["ranks_without"] + ranks["ranks_with"])
    assert ranks["with_top1"] <= ranks["with_top8"] <= ranks[f"with_top{ranks['k']}"] <= 1


@needs_data
def test_the_report_from_the_short_runs(trained_runs, tmp_path, monkeypatch):
    """results/translation.md from an evaluated split: Table 3 rows, intervals, training."""
    tmp, _, _ = trained_runs
    part = protocol.evaluate_split(tmp / "baseline", tmp / "memory", "test_2016_flickr", 2, 12, 3)
    (tmp / "eval-test_2016_flickr.json").write_text(json.dumps(part))
    monkeypatch.setenv("RAREMEM_RESULTS", str(tmp_path))
    assert report.main(["--baseline", str(tmp / "baseline"), "--memory-run", str(tmp / "memory"),
                        "--splits", "test_2016_flickr"]) == 0
    md = (tmp_path / "translation.md").read_text()
    assert "## Intervals" in md and "| test_2016_flickr | odd | GNMT + memory, even-line context |" in md
    out = json.loads((tmp_path / "translation.json").read_text())
    ci = out["evaluations"][0]["intervals"]["full"]["systems"]["GNMT + memory"]
    assert ci["ci95"][0] <= ci["bleu"] <= ci["ci95"][1] and "p_not_better" in ci


@needs_data
def test_a_memory_run_read_like_knn_mt_and_its_one_shot_pairs(trained_runs, tmp_path):
    """``knn --memory``: the short memory run read from its own memory, tuned on val, test with
    intervals; then the paired rare words decoded that way (``oneshot --mix``)."""
    from raremem.models.translation import oneshot
    from raremem.models.translation.knn import memory_experiment

    tmp, _, _ = trained_runs
    r = memory_experiment(tmp / "memory", tmp_path / "mix.json", best=False, val_lines=8, width=2,
                          grid=((4,), (0.1,), (0.0, 0.5)), test_limit=10)
    assert r["memory_steps"] == 40 and len(r["tuning"]) == 3
    assert r["tuning"][1]["val_bleu"] == r["tuning"][0]["val_bleu"]        # lam 0: the memory model
    assert set(r["test"]["systems"]) == {"GNMT + memory", "GNMT + memory, kNN read"}
    assert oneshot.main(["--run", str(tmp / "memory"), "--limit", "12", "--mix", str(tmp_path / "mix.json")]) == 0
    o = json.loads((tmp / "memory" / "oneshot-mix.json").read_text())
    assert o["pairs"] == 12 and o["mix"] == {k: r["chosen"][k] for k in ("k", "temperature", "lam")}
    with pytest.raises(ValueError, match="datastore"):   # a datastore's tuning is not a memory model's
        (tmp_path / "base.json").write_text(json.dumps({"chosen": r["chosen"]}))
        oneshot.main(["--run", str(tmp / "memory"), "--limit", "2", "--mix", str(tmp_path / "base.json")])
