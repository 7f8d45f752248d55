"""raremem-admin against a live server: tables, --json, and one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from raremem.client.admin import main
from tests.workloads import clustered_batches


def run(capsys, address, *argv):
    code = main(["--server", address, *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def filled(client, server):
    client.create_memory("demo/m", 16, 64, choose_k=8)
    for req in clustered_batches(0, 16, 40, 8, 20):
        client.lookup("demo/m", req["queries"], req["labels"], update=True, sources=req["sources"])
    return server[0], client.stats("demo/m").info.filled


def test_list_and_stats(capsys, filled):
    filled, n = filled
    code, out, _ = run(capsys, filled, "--json", "list")
    assert code == 0 and json.loads(out)[0]["name"] == "demo/m"
    code, out, _ = run(capsys, filled, "--json", "stats", "demo/m", "--hash")
    stats = json.loads(out)
    assert stats["info"]["filled"] == n and len(stats["state_hash"]) == 64
    assert sum(stats["age_counts"]) == n and sum(stats["top_value_counts"]) <= n
    code, out, _ = run(capsys, filled, "stats", "demo/m")
    assert code == 0 and "age histogram" in out and f"{n} / 64" in out


def test_show_nearest_explain(capsys, filled, client, tmp_path):
    filled, _ = filled
    code, out, _ = run(capsys, filled, "--json", "show", "demo/m", "--slots", "0:5")
    slots = json.loads(out)
    assert slots["ids"] == [0, 1, 2, 3, 4] and all(v >= 0 for v in slots["values"])
    key = client.read_slots("demo/m", ids=[3])["keys"][0]
    np.save(tmp_path / "q.npy", key)
    code, out, _ = run(capsys, filled, "--json", "nearest", "demo/m", "--query", str(tmp_path / "q.npy"), "-k", "3")
    near = json.loads(out)
    assert near["ids"][0][0] == 3 and near["similarities"][0][0] == pytest.approx(1.0, abs=1e-5)
    code, out, _ = run(capsys, filled, "--json", "explain", "demo/m", "--query", str(tmp_path / "q.npy"))
    why = json.loads(out)[0]
    assert why["answer"] == slots["values"][3]
    assert slots["sources"][3] in [s["source"] for s in why["sources"]]
    code, out, _ = run(capsys, filled, "explain", "demo/m", "--query", str(tmp_path / "q.npy"))
    assert code == 0 and "explain demo/m" in out


def test_snapshot_restore_reset_delete(capsys, filled):
    filled, n = filled
    assert run(capsys, filled, "snapshot", "demo/m")[0] == 0
    code, out, _ = run(capsys, filled, "--json", "reset", "demo/m")
    assert json.loads(out)["filled"] == 0
    code, out, _ = run(capsys, filled, "--json", "restore", "demo/m")
    assert json.loads(out)["filled"] == n
    assert run(capsys, filled, "delete", "demo/m")[0] == 0
    assert json.loads(run(capsys, filled, "--json", "list")[1]) == []


def test_create(capsys, server):
    code, out, _ = run(capsys, server[0], "--json", "create", "new", "--key-dim", "8", "--size", "32",
                       "--index", "lsh", "-k", "4")
    assert code == 0 and json.loads(out)["config"]["index"] == "lsh"
    assert json.loads(out)["config"]["append_only"] is False
    code, out, _ = run(capsys, server[0], "--json", "create", "store", "--key-dim", "8", "--size", "32",
                       "--append-only")
    assert code == 0 and json.loads(out)["config"]["append_only"] is True
    code, out, _ = run(capsys, server[0], "stats", "store")
    assert "append-only" in out


@pytest.mark.parametrize("argv, words", [
    (["stats", "nope"], "NOT_FOUND: no memory named 'nope'"),
    (["show", "demo/m", "--slots", "0:999"], "INVALID_ARGUMENT"),
    (["nearest", "demo/m", "--query", "/nonexistent.npy"], "error: "),
])
def test_errors_are_one_line(capsys, filled, argv, words):
    code, out, err = run(capsys, filled[0], *argv)
    assert code == 1 and words in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_unreachable_server(capsys):
    code, _, err = run(capsys, "127.0.0.1:1", "--timeout", "2", "list")
    assert code == 1 and "cannot reach a raremem server at 127.0.0.1:1" in err


def test_health_for_container_checks(capsys, server, tmp_path):
    code, out, _ = run(capsys, server[0], "health")
    assert code == 0 and "SERVING" in out
    from tests.conftest import running_server  # a server with tokens: health stays open

    with running_server(tmp_path / "tok", token="t", admin_token="a") as (address, _):
        code, out, _ = run(capsys, address, "--token", "", "health")
        assert code == 0 and "SERVING" in out
    code, _, err = run(capsys, "127.0.0.1:1", "--timeout", "2", "health")
    assert code == 1 and "UNAVAILABLE" in err
