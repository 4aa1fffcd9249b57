"""`distillrec tune` and `distillrec run --trials/--seeds` as a user meets them."""

import json

import numpy as np
import pytest



def test_tune_help_says_it_selects_on_validation(capsys, run_cli):
    assert run_cli("tune", "--help") == 0
    printed = " ".join(capsys.readouterr().out.split())
    assert "validation" in printed and "--trials" in printed and "--seeds" in printed


def test_run_help_lists_trials_and_seeds(capsys, run_cli):
    assert run_cli("run", "--help") == 0
    printed = " ".join(capsys.readouterr().out.split())
    assert "--trials" in printed and "--seeds" in printed


@pytest.mark.parametrize("args, message", [
    (("run", "--seeds", "0,0"), "seeds must be distinct, got [0, 0]"),
    (("tune", "--seeds", "2,1,2"), "seeds must be distinct, got [2, 1, 2]"),
    (("run", "--seeds", "0,x"), "--seeds: '0,x' is not a comma-separated list of integers"),
    (("run", "--seeds", "-1"), "seeds.0"),
    # usage errors (typer's vendored click) too
    (("run", "--trials", "0"), "Invalid value for '--trials'"),
    (("tune", "--trials", "0"), "Invalid value for '--trials'"),
    (("tune", "--trials", "many"), "Invalid value for '--trials'"),
    (("tune", "--budget", "3"), "No such option: --budget"),
])
def test_bad_options_are_one_line_exit_2_and_nothing_written(tmp_path, monkeypatch, capsys, args, message, run_cli):
    monkeypatch.chdir(tmp_path)
    assert run_cli(*args) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert message in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_tune_adds_a_tune_section_with_the_given_budget(tmp_path, capsys, run_cli):
    rng = np.random.default_rng(0)
    rows = [f"u{u},i{i},5,{t}" for u in range(60) for t, i in
            enumerate(rng.choice(np.arange(u % 3, 45, 3), 12, replace=False))]
    (tmp_path / "logs.csv").write_text("user_id,item_id,rating,timestamp\n" + "\n".join(rows) + "\n")
    (tmp_path / "tiny.yaml").write_text(
        f"name: tiny\ndata: {{dataset: {tmp_path / 'logs.csv'}}}\nteacher: null\nbaselines: []\n"
        "students:\n  - {name: mf, params: {dim: 8}, train: {epochs: 2}}\n")
    out = tmp_path / "run"
    assert run_cli("tune", str(tmp_path / "tiny.yaml"), "--trials", "2", "--out", str(out)) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["tune"]["trials"] == 2
    tuning = metrics["models"]["mf"]["tuning"]
    assert tuning["trials"] == 2 and tuning["finished"] + tuning["pruned"] == 2
    assert (out / "tuning" / "mf" / "study.db").exists()
    assert "train.lr" in tuning["selected"]
    assert "tune:" in (out / "config.yaml").read_text()
