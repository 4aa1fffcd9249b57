"""The command line as a user meets it: tables, run directories, one-line errors, exit codes."""

import json
import re
import subprocess
import sys

import pytest

from distillrec import experiment

from distillrec.cli import main


def run_cli(*args):
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
        raise SystemExit(0)
    return exit_info.value.code


def test_evaluate_pop_writes_a_run_directory_in_the_shared_shape(tmp_path, capsys):
    out = tmp_path / "pop"
    assert run_cli("evaluate", "--model", "pop", "--dataset", "ml-100k", "--split", "random", "--out", str(out)) == 0
    printed = capsys.readouterr().out
    assert "pop" in printed and "ndcg@10" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    entry = metrics["models"]["pop"]
    assert entry["role"] == "baseline" and entry["params"] == 0
    assert 0.10 < entry["test"]["ndcg@10"] < 0.20 and "recall@10" in entry["test"] and "ndcg@10" in entry["valid"]
    assert entry["test"]["n_users"] > 900
    assert metrics["config"]["split"] == "random" and metrics["config"]["seed"] == 0
    assert "torch" in metrics["versions"] and len(metrics["data_fingerprint"]) == 64
    manifest = json.loads((out / "manifest.json").read_text())
    assert {"metrics.json", "split/train.parquet", "ids/items.parquet"} <= set(manifest["files"])


def test_data_stats_on_a_users_own_csv(tmp_path, capsys):
    path = tmp_path / "logs.csv"
    path.write_text("customer,product,stars\nu1,p1,5\nu1,p2,3\nu2,p1,4\n")
    assert run_cli("data", "stats", str(path), "--map", "user_id=customer,item_id=product,rating=stars") == 0
    printed = capsys.readouterr().out
    assert re.search(r"│ interactions\s+│\s+3 │", printed) and re.search(r"│ users\s+│\s+2 │", printed)


@pytest.mark.parametrize("args, message", [
    (("data", "stats", "ml-10m"), "ml-10m: no such file or folder, and not a built-in dataset"),
    (("evaluate", "--model", "pop", "--run", "x"), "give exactly one of --model"),
    (("evaluate", "--model", "pop", "--keep-seen"), "--keep-seen re-evaluates a trained run"),
    (("data", "stats", "x.csv", "--map", "user_id"), "--map: 'user_id' is not of the form FIELD=COLUMN"),
])
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    assert run_cli(*args) == 2
    err = capsys.readouterr().err
    assert message in " ".join(err.split()) and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_a_bad_file_names_file_line_and_field(tmp_path, capsys):
    path = tmp_path / "logs.csv"
    path.write_text("user_id,item_id,rating\nu1,p1,5\nu1,p2,five\n")
    assert run_cli("data", "stats", str(path)) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "logs.csv" in err and "line 3" in err and "rating" in err


def test_debug_shows_the_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "distillrec", "--debug", "data", "stats", str(tmp_path / "none.csv")],
                            capture_output=True, text=True)
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_python_dash_m_help_works():
    result = subprocess.run([sys.executable, "-m", "distillrec", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "evaluate" in result.stdout and "data" in result.stdout


def test_train_then_evaluate_run_reproduces_the_metrics_and_refuses_tampering(tmp_path, capsys):
    out = tmp_path / "mf"
    assert run_cli("train", "--model", "mf", "--dataset", "ml-100k", "--epochs", "2", "--dim", "16",
                   "--out", str(out)) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    entry = metrics["models"]["mf"]
    assert entry["params"] == (943 + 1682) * 16 and entry["size_bytes"] == entry["params"] * 4
    assert entry["epochs_run"] == 2 and entry["latency_ms_per_user"] > 0
    assert metrics["config"]["train"]["epochs"] == 2 and metrics["config"]["model_params"] == {"dim": 16}
    capsys.readouterr()

    assert run_cli("evaluate", "--run", str(out)) == 0
    assert f"{entry['test']['ndcg@10']:.4f}" in capsys.readouterr().out
    # RecBole's SASRec convention: seen items stay in the ranking, and they crowd out the test items
    kept = experiment.evaluate_run(out, keep_seen=True)["models"]["mf"]["test"]
    assert kept["ndcg@10"] < entry["test"]["ndcg@10"]
    assert run_cli("evaluate", "--run", str(out), "--keep-seen") == 0
    assert "seen items kept" in " ".join(capsys.readouterr().out.split())
    assert json.loads((out / "metrics.json").read_text()) == metrics  # the run's own record stays
    written = json.loads((out / "metrics-keep-seen.json").read_text())
    assert written["models"]["mf"]["test"]["ndcg@10"] == pytest.approx(kept["ndcg@10"])
    assert run_cli("evaluate", "--run", str(out)) == 0  # the extra file does not break verification
    capsys.readouterr()

    weights = out / "model" / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8])  # truncated
    assert run_cli("evaluate", "--run", str(out)) == 2
    assert "weights.safetensors: sha256" in " ".join(capsys.readouterr().err.split())


def test_train_rejects_bad_options_before_writing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert run_cli("train", "--model", "mf", "--lr", "-1") == 2
    assert "training option lr" in capsys.readouterr().err
    assert run_cli("train", "--model", "lightgcn") == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "unknown model 'lightgcn'; expected one of:" in err and "mf, sasrec, two-tower" in err
    assert list(tmp_path.iterdir()) == []
