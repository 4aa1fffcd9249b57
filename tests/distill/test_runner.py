"""Distilled students and the ablation, end to end on ML-100K at a tiny size (a small LMTeacher
fitted for one epoch, students trained for one or two epochs)."""

from __future__ import annotations

import json

import pytest

from distillrec.cli import main
from distillrec.distill.runner import BASELINE, ablate, load_teacher
from distillrec.errors import DistillrecError
from distillrec.experiment import fit_model, prepare
from distillrec.params import make_train_config
from distillrec.teachers.knowledge import extract_knowledge
from distillrec.teachers.models import LMTeacher

TEACHER = {"dim": 16, "hidden": 32, "heads": 1, "max_history": 20}


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory):
    """A teacher run directory as the teacher CLI leaves it: a run with role "teacher" plus knowledge/."""
    run_dir = tmp_path_factory.mktemp("teacher") / "run"
    dataset, split = prepare("ml-100k", "random", 0)
    model = LMTeacher.build(dataset, split, **TEACHER)
    config = make_train_config({"epochs": 1, "batch_size": 2048, "lr": 1e-2}, 0)
    fit_model(LMTeacher, "lm-teacher", dataset, split, model_params=TEACHER, train_config=config, run_dir=run_dir,
              config={"command": "teacher", "dataset": "ml-100k", "split": "random", "seed": 0}, role="teacher",
              progress=False, model=model)
    extract_knowledge(model, split, dataset, top_k=30, knn=10, importance=False).save(run_dir / "knowledge")
    return run_dir


def run_cli(*args) -> int:
    with pytest.raises(SystemExit) as exit_info:
        main([str(arg) for arg in args])
        raise SystemExit(0)
    return exit_info.value.code


def test_ablate_writes_the_method_table_and_the_size_curve(teacher_run, tmp_path):
    out = tmp_path / "ablation"
    report = ablate(teacher_run, "mf", ["feature", "ranking=0.5"], seeds=(0,), dims=(4, 8),
                    train_params={"epochs": 2}, out=out)
    labels = [(row["label"], row["dim"]) for row in report["results"]]
    combined = "feature + ranking-distillation" if report["results"][1]["valid_mean"] >= report["results"][2][
        "valid_mean"] else "ranking-distillation + feature"
    assert labels[:4] == [(BASELINE, 8), ("feature", 8), ("ranking-distillation", 8), (combined, 8)]
    assert set(labels[4:]) == {(BASELINE, 4), (report["best"], 4)}
    by_label = {(row["label"], row["dim"]): row for row in report["results"]}
    assert by_label[(BASELINE, 8)]["lift"] == 0.0 and by_label[(BASELINE, 8)]["kd"] == {}
    assert by_label[("ranking-distillation", 8)]["kd"]["ranking-distillation"]["weight"] == 0.5
    assert by_label[(combined, 8)]["kd"].keys() == {"feature", "ranking-distillation"}
    ranking = by_label[("ranking-distillation", 8)]
    assert ranking["lift"] == pytest.approx(ranking["test_mean"] / by_label[(BASELINE, 8)]["test_mean"] - 1)
    assert by_label[(BASELINE, 4)]["params"] < by_label[(BASELINE, 8)]["params"]

    saved = json.loads((out / "ablation.json").read_text())
    assert saved["best"] == report["best"] and len(saved["results"]) == 6
    markdown = (out / "ablation.md").read_text()
    assert "| method | valid NDCG@10 | test NDCG@10 | test Recall@10 | lift |" in markdown
    assert f"| {BASELINE} |" in markdown and "## Accuracy versus size" in markdown
    run = json.loads((out / "runs" / "ranking-distillation-d8-s0" / "metrics.json").read_text())
    assert run["models"]["mf"]["role"] == "distilled" and run["config"]["kd"] == ranking["kd"]

    # A second call reuses the finished runs instead of training again.
    again = ablate(teacher_run, "mf", ["feature", "ranking=0.5"], seeds=(0,), dims=(4, 8),
                   train_params={"epochs": 2}, out=out)
    assert [row["test_mean"] for row in again["results"]] == [row["test_mean"] for row in report["results"]]

    # Two worker processes train the same seeded students: the same table, row for row.
    parallel = ablate(teacher_run, "mf", ["feature", "ranking=0.5"], seeds=(0,), dims=(4, 8),
                      train_params={"epochs": 2}, out=tmp_path / "parallel", jobs=2)
    assert [(row["label"], row["dim"], row["test_mean"]) for row in parallel["results"]] == [
        (row["label"], row["dim"], row["test_mean"]) for row in report["results"]]


def test_distill_resume_continues_the_interrupted_run_exactly(teacher_run, tmp_path, capsys, monkeypatch,
                                                              single_thread):
    # Exact equality needs one fixed thread count in every call (each CLI call applies the
    # process's setting); two threads' reductions left the 7th digit to chance in CI once.
    monkeypatch.setenv("DISTILLREC_THREADS", "1")
    common = ["distill", "--teacher", teacher_run, "--kd", "feature=1.0,ranking=0.5", "--dim", 8]
    assert run_cli(*common, "--epochs", 2, "--out", tmp_path / "resumed") == 0
    assert run_cli(*common, "--epochs", 3, "--out", tmp_path / "resumed", "--resume") == 0
    assert run_cli(*common, "--epochs", 3, "--out", tmp_path / "straight") == 0
    resumed, straight = (json.loads((tmp_path / name / "train.json").read_text())["history"]
                         for name in ("resumed", "straight"))
    assert len(resumed) == 3
    assert [epoch["losses"] for epoch in resumed] == [epoch["losses"] for epoch in straight]
    assert run_cli("distill", "--teacher", teacher_run, "--resume") == 2  # no --out: nothing to resume
    assert "resume needs the run directory" in capsys.readouterr().err


def test_distill_command_end_to_end(teacher_run, tmp_path, capsys):
    out = tmp_path / "distilled"
    assert run_cli("distill", "--teacher", teacher_run, "--student", "mf", "--kd", "feature=1.0,ranking=0.5",
                   "--init", "pca", "--dim", 8, "--epochs", 1, "--out", out) == 0
    assert "ndcg@10" in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    entry = metrics["models"]["mf"]
    assert entry["role"] == "distilled" and entry["init"]["method"] == "pca"
    assert entry["params"] == 8 * (943 + 1682) and entry["size_bytes"] > 0 and entry["latency_ms_per_user"] > 0
    assert metrics["config"]["kd"] == {"feature": {"weight": 1.0}, "ranking-distillation": {"weight": 0.5}}
    assert {"kd/feature", "kd/ranking-distillation"} <= set(json.loads((out / "train.json").read_text())
                                                            ["history"][0]["losses"])
    # A distilled run is an ordinary run directory: it re-evaluates to the same numbers.
    assert run_cli("evaluate", "--run", out) == 0
    # ... but it is not a teacher.
    with pytest.raises(DistillrecError, match="not a teacher run"):
        load_teacher(out)


@pytest.mark.parametrize("kd, message", [
    ("feature=1.0,distance=2", "unknown distillation method 'distance'; expected one of: contrastive, feature,"),
    ("feature:1.0", "--kd: 'feature:1.0' is not of the form METHOD=WEIGHT"),
])
def test_distill_command_rejects_a_bad_spec_in_one_line_and_writes_nothing(teacher_run, tmp_path, capsys, kd, message):
    out = tmp_path / "never"
    assert run_cli("distill", "--teacher", teacher_run, "--kd", kd, "--out", out) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert message in err and "Traceback" not in err
    assert not out.exists()
