"""The Omniglot report reads the test classes' scores only for the checkpoint that validation chose."""

from __future__ import annotations

import json
import shutil

import pytest

from raremem.models.omniglot.evaluate import main as evaluate
from raremem.models.omniglot.train import train
from reports import omniglot as report
from tests.models.omniglot.test_train import pytestmark as needs_omniglot_data, small

pytestmark = [needs_omniglot_data,   # the run below trains on the shared zips
              pytest.mark.skipif(not (report.results_dir() / "omniglot.json").is_file(),
                                 reason="results/omniglot.json (the kept comparisons) not found")]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A 4-step run with two candidates whose validation scores differ: best.pt (its one
    reading, at step 2) and checkpoint.pt (step 4)."""
    tmp = tmp_path_factory.mktemp("omniglot-report")
    train(small(tmp, steps=4, shots=6, eval_every=2, eval_episodes=10), "local")
    out = tmp / "run"
    for name in ("best", "checkpoint"):
        evaluate(["--checkpoint", str(out / f"{name}.pt"), "--classes", "val", "--widths", "5", "--episodes", "20",
                  "--out", str(out / f"val-{name}.json")])
    return out


def chosen_and_other(run) -> tuple[str, str]:
    scores = {name: json.loads((run / f"val-{name}.json").read_text())["5-way"]["accuracy"][1]
              for name in ("best", "checkpoint")}
    chosen = max(scores, key=scores.get)
    return chosen, ({"best", "checkpoint"} - {chosen}).pop()


def test_tested_checkpoint_must_be_the_one_validation_chose(run, tmp_path):
    chosen, other = chosen_and_other(run)
    for name, ok in ((chosen, True), (other, False)):
        folder = tmp_path / name
        shutil.copytree(run, folder)
        evaluate(["--checkpoint", str(folder / f"{name}.pt"), "--widths", "5", "--episodes", "5",
                  "--out", str(folder / "eval.json")])
        if ok:
            loaded = report.load_run(folder)
            assert loaded["eval"]["classes"] == "test" and len(loaded["choices"]) == 2
            assert f"`{name}.pt`" in report.choice(loaded)
        else:
            with pytest.raises(SystemExit, match="validation chose"):
                report.load_run(folder)


def test_a_test_reading_without_a_validation_choice_is_refused(run, tmp_path):
    folder = tmp_path / "unchosen"
    shutil.copytree(run, folder)
    for f in folder.glob("val-*.json"):
        f.unlink()
    evaluate(["--checkpoint", str(folder / "best.pt"), "--widths", "5", "--episodes", "5",
              "--out", str(folder / "eval.json")])
    with pytest.raises(SystemExit, match="no val-"):
        report.load_run(folder)


def test_report_without_a_twenty_way_run_says_so_and_keeps_the_comparisons(run, tmp_path):
    assert report.main(["--five", str(run), "--out", str(tmp_path), "--notes", str(tmp_path / "none.md")]) == 0
    written = json.loads((tmp_path / "omniglot.json").read_text())
    kept = json.loads((report.results_dir() / "omniglot.json").read_text())
    assert written["twenty"] is None and written["five"]["dir"] == str(run)
    assert written["precision"] == kept["precision"] and written["heads"] == kept["heads"]
    assert "20-way model: not trained yet" in (tmp_path / "omniglot.md").read_text()
