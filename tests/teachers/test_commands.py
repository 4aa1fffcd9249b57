"""`distillrec teacher encode | fit | extract` end to end on ML-100K at a tiny size."""

from __future__ import annotations

import json

import pytest

from distillrec import artifacts
from distillrec.cli import main
from distillrec.distill.runner import load_teacher

TINY = ["--param", "dim=16", "--param", "hidden=32", "--param", "heads=1", "--param", "max_history=20",
        "--epochs", "1", "--batch-size", "2048", "--lr", "0.01"]


def run_cli(*args) -> int:
    with pytest.raises(SystemExit) as exit_info:
        main([str(arg) for arg in args])
        raise SystemExit(0)
    return exit_info.value.code


def test_encode_writes_embeddings_and_hits_the_cache(tmp_path, capsys):
    # The user's embedding cache: a miss on a fresh machine, a hit after any earlier run.
    assert run_cli("teacher", "encode", "--dataset", "ml-100k", "--out", tmp_path / "first", "--users") == 0
    first = artifacts.read_json(tmp_path / "first" / "encode.json")
    assert first["parts"]["item"]["n"] == 1682 and first["parts"]["user"]["n"] == 943
    tensors = artifacts.read_tensors(tmp_path / "first" / "embeddings.safetensors")
    assert tuple(tensors["item"].shape) == (1682, 384) and tuple(tensors["user"].shape) == (943, 384)
    artifacts.verify_manifest(tmp_path / "first")

    assert run_cli("teacher", "encode", "--dataset", "ml-100k", "--out", tmp_path / "second") == 0
    second = artifacts.read_json(tmp_path / "second" / "encode.json")
    assert second["parts"]["item"]["cache_hit"]
    assert "cache hit" in capsys.readouterr().out
    assert artifacts.read_tensors(tmp_path / "second" / "embeddings.safetensors")["item"].equal(tensors["item"])


def test_encode_refuses_a_missing_model_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    assert run_cli("teacher", "encode", "--model", tmp_path / "no-such-model", "--out", out) == 2
    assert "no-such-model" in capsys.readouterr().err
    assert not out.exists()


def test_encode_refuses_a_template_with_an_unknown_column(tmp_path, capsys):
    out = tmp_path / "out"
    assert run_cli("teacher", "encode", "--item-template", "{title} by {director}", "--out", out) == 2
    assert "director" in capsys.readouterr().err
    assert not out.exists()


def test_fit_then_extract_gives_a_teacher_run_students_can_distill_from(tmp_path, capsys):
    run = tmp_path / "teacher"
    assert run_cli("teacher", "fit", "--dataset", "ml-100k", "--split", "random", *TINY, "--no-extract",
                   "--out", run) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["models"]["lm-teacher"]["role"] == "teacher"
    assert not (run / "knowledge").exists()

    assert run_cli("teacher", "extract", run, "--top-k", "30", "--knn", "5") == 0
    assert "top_k" in capsys.readouterr().out
    artifacts.verify_manifest(run)  # the run's manifest now covers knowledge/ too
    teacher = load_teacher(run)
    assert tuple(teacher.knowledge.tensors["top_items"].shape) == (943, 30)

    assert run_cli("teacher", "extract", run) == 2  # never overwrites existing knowledge
    assert "already exists" in capsys.readouterr().err


def test_extract_refuses_a_student_run(tmp_path, capsys):
    run = tmp_path / "mf"
    assert run_cli("train", "--model", "mf", "--dim", "4", "--epochs", "1", "--out", run) == 0
    assert run_cli("teacher", "extract", run) == 2
    assert "not a fitted teacher run" in capsys.readouterr().err
    assert not (run / "knowledge").exists()


def test_a_sequential_teacher_fits_on_loo_and_a_gru4rec_distills_from_it(tmp_path):
    run = tmp_path / "seq-teacher"
    tiny = ["--param", "dim=16", "--param", "n_layers=1", "--param", "n_heads=1", "--param", "max_len=10",
            "--param", "adapter_hidden=32", "--epochs", "1"]
    assert run_cli("teacher", "fit", "--model", "lm-seq-teacher", "--split", "loo", *tiny, "--top-k", "20",
                   "--out", run) == 0
    teacher = load_teacher(run)
    assert tuple(teacher.knowledge.tensors["top_items"].shape) == (943, 20)
    assert tuple(teacher.knowledge.tensors["text"].shape) == (1682, 384)
    student = tmp_path / "gru4rec-kd"
    assert run_cli("distill", "--teacher", run, "--student", "gru4rec", "--dim", "8", "--epochs", "1",
                   "--param", "max_len=10", "--kd", '{"ranking-distillation": {"weight": 0.3, "k": 10, '
                   '"weighting": "dllm2rec"}}', "--init", "pca", "--out", student) == 0
    metrics = json.loads((student / "metrics.json").read_text())
    assert metrics["models"]["gru4rec"]["test"]["ndcg@10"] > 0
    # Per-step ranking distillation: the teacher's per-step rankings come from its run on demand.
    stepped = tmp_path / "sasrec-step-kd"
    assert run_cli("distill", "--teacher", run, "--student", "sasrec", "--dim", "8", "--epochs", "1",
                   "--param", "max_len=10", "--kd", '{"step-ranking-distillation": {"weight": 0.3, "k": 5}}',
                   "--out", stepped) == 0
    history = json.loads((stepped / "train.json").read_text())["history"]
    assert history[0]["losses"]["kd/step-ranking-distillation"] > 0
    assert "step_top_items" not in load_teacher(run).knowledge.tensors  # computed, not written into the run


def test_fit_refuses_an_unknown_teacher_model(tmp_path, capsys):
    out = tmp_path / "out"
    assert run_cli("teacher", "fit", "--model", "no-such-teacher", "--out", out) == 2
    assert "no-such-teacher" in capsys.readouterr().err
    assert not out.exists()
