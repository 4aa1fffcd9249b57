import json

import pytest
from rich.console import Console

from distillrec import artifacts
from distillrec.errors import ArtifactError
from distillrec.report.compare import compare_runs


def _entry(role: str, ndcg: float, params: int = 1000, latency: float = 0.1) -> dict:
    return {"role": role, "params": params, "latency_ms_per_user": latency,
            "valid": {"ndcg@10": ndcg * 0.9}, "test": {"ndcg@10": ndcg, "hit@10": ndcg * 3}}


def _write_run(directory, models: dict, fingerprint: str = "abc123") -> None:
    """A run directory as runs.write_run leaves it: metrics.json and a manifest hashing it."""
    artifacts.write_json(directory / "metrics.json", {"models": models, "config": {"dataset": "ml-100k"},
                                                      "data_fingerprint": fingerprint})
    artifacts.write_json(directory / "model" / "model.json", {"name": "mf"})
    artifacts.write_manifest(directory, kind="run")


@pytest.fixture
def runs(tmp_path):
    run_a, run_b = tmp_path / "a", tmp_path / "b"
    _write_run(run_a, {"mf": _entry("baseline", 0.20), "teacher": _entry("teacher", 0.25, 10**7, 3.0)})
    _write_run(run_b, {"mf": _entry("baseline", 0.22, latency=0.05), "mf+kd": _entry("distilled", 0.24)})
    return run_a, run_b


def test_models_side_by_side_with_relative_change(runs):
    _, comparison = compare_runs(*runs)
    assert list(comparison["models"]) == ["mf", "teacher", "mf+kd"]  # shared, only in A, only in B
    ndcg = comparison["models"]["mf"]["ndcg@10"]
    assert ndcg["a"] == 0.20 and ndcg["b"] == 0.22
    assert abs(ndcg["change"] - 0.1) < 1e-12
    assert abs(comparison["models"]["mf"]["latency_ms_per_user"]["change"] - (-0.5)) < 1e-12
    assert comparison["models"]["teacher"]["ndcg@10"] == {"a": 0.25, "b": None, "change": None}
    assert comparison["models"]["mf+kd"]["ndcg@10"] == {"a": None, "b": 0.24, "change": None}
    assert comparison["models"]["mf"]["recall@10"] == {"a": None, "b": None, "change": None}
    assert comparison["same_data"] is True and comparison["part"] == "test"


def test_table_shows_dash_for_a_model_missing_on_one_side(runs):
    table, _ = compare_runs(*runs)
    console = Console(width=200, record=True)
    console.print(table)
    lines = console.export_text().splitlines()
    teacher = next(line for line in lines if "teacher" in line)
    assert "0.2500" in teacher and teacher.count("–") == 2  # B and the change
    kd = next(line for line in lines if "mf+kd" in line)
    assert "0.2400" in kd and kd.count("–") == 2
    mf = next(line for line in lines if "mf " in line and "ndcg@10" in line)
    assert "+10.0%" in mf
    changes = list(table.columns[-1].cells)
    latency = next(c for c in changes if str(c) == "−50.0%")
    assert latency.style == "green"  # lower latency is better


def test_different_data_is_flagged(runs, tmp_path):
    run_c = tmp_path / "c"
    _write_run(run_c, {"mf": _entry("baseline", 0.2)}, fingerprint="other")
    table, comparison = compare_runs(runs[0], run_c)
    assert comparison["same_data"] is False
    assert "different data" in str(table.caption)


def test_tampered_run_is_refused(runs):
    run_a, run_b = runs
    metrics = artifacts.read_json(run_b / "metrics.json")
    metrics["models"]["mf"]["test"]["ndcg@10"] = 0.99
    (run_b / "metrics.json").write_text(json.dumps(metrics))
    with pytest.raises(ArtifactError, match="metrics.json: sha256 .* does not match the manifest"):
        compare_runs(run_a, run_b)


def test_directory_without_manifest_or_unhashed_metrics_is_refused(runs, tmp_path):
    with pytest.raises(ArtifactError, match="not a run directory"):
        compare_runs(runs[0], tmp_path / "missing")
    bare = tmp_path / "bare"
    artifacts.write_json(bare / "manifest.json", {"kind": "run", "files": {}})
    artifacts.write_json(bare / "metrics.json", {"models": {}})
    with pytest.raises(ArtifactError, match="does not list metrics.json"):
        compare_runs(runs[0], bare)


def test_runs_with_per_user_values_are_tested_user_by_user(tmp_path):
    import pandas as pd

    directories = []
    for name, values in (("a", [0.0, 0.5, 0.2, 0.1, 0.3]), ("b", [0.1, 0.6, 0.3, 0.1, 0.4])):
        directory = tmp_path / name
        artifacts.write_parquet(directory / "per_user.parquet",
                                pd.DataFrame({"user": range(5), "ndcg@10": values}))
        _write_run(directory, {"sasrec": _entry("baseline", sum(values) / 5)})
        directories.append(directory)
    table, comparison = compare_runs(*directories)
    paired = comparison["paired"]
    assert paired["n_users"] == 5 and abs(paired["base"] - 0.22) < 1e-12 and abs(paired["other"] - 0.30) < 1e-12
    assert abs(paired["lift"] - (0.30 / 0.22 - 1)) < 1e-9 and 0 < paired["wilcoxon_p"] < 1
    assert "paired over 5 users" in table.caption


def test_runs_without_per_user_values_have_no_paired_test(runs):
    table, comparison = compare_runs(*runs)
    assert comparison["paired"] is None and table.caption is None
