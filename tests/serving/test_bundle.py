import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from distillrec import artifacts, runs
from distillrec.errors import ArtifactError, DistillrecError
from distillrec.serving.bundle import default_model, export_bundle, load_bundle, resolve_model_dir


@pytest.mark.parametrize("name", ["mf", "two-tower", "content"])
def test_round_trip_scores_ids_and_manifest(pipeline_run, content_run, bundles, name):
    bundle = load_bundle(bundles[name])
    run = content_run if name == "content" else pipeline_run / "students" / name
    dataset, split, model, metrics = runs.load_run(run)
    model.set_history(bundle.seen)  # serving pools every known interaction (content student)
    users = torch.arange(0, split.n_users, 97)
    with torch.no_grad():
        expected = model.score(users).numpy()
    np.testing.assert_allclose(bundle.user_vectors[users.numpy()] @ bundle.item_vectors.T, expected, atol=1e-5)
    with torch.no_grad():  # the PyTorch module rebuilt from the bundle alone scores the same
        np.testing.assert_allclose(bundle.load_model().score(users).numpy(), expected, atol=1e-5)
    assert list(bundle.user_ids) == list(dataset.user_ids) and list(bundle.item_ids) == list(dataset.item_ids)
    assert bundle.items.loc[bundle.items["item_id"] == "50", "title"].item() == "Star Wars"
    seen = bundle.seen[bundle.seen["user"] == 0]["item"].to_numpy()
    everything = [part[part["user"] == 0]["item"] for part in (split.train, split.valid, split.test)]
    assert sorted(seen) == sorted(np.concatenate(everything))
    manifest = bundle.manifest
    assert manifest["kind"] == "bundle" and manifest["model"]["name"] == name
    assert manifest["metrics"]["test"]["ndcg@10"] == metrics["models"][name]["test"]["ndcg@10"]
    assert "torch" in manifest["versions"] and len(manifest["data_fingerprint"]) == 64
    assert {"model/weights.safetensors", "onnx/user_tower.onnx", "ids/items.parquet"} <= set(manifest["files"])


@pytest.mark.parametrize("damage", ["modify", "truncate", "delete"])
def test_a_tampered_or_truncated_file_is_refused(bundles, tmp_path, damage):
    copy = tmp_path / "bundle"
    shutil.copytree(bundles["mf"], copy)
    target = copy / "model" / "weights.safetensors"
    data = target.read_bytes()
    if damage == "modify":
        target.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    elif damage == "truncate":
        target.write_bytes(data[: len(data) // 2])
    else:
        target.unlink()
    with pytest.raises(ArtifactError, match="weights.safetensors"):
        load_bundle(copy)


def test_the_cli_refuses_a_tampered_bundle_in_one_line(bundles, tmp_path):
    copy = tmp_path / "bundle"
    shutil.copytree(bundles["mf"], copy)
    with open(copy / "onnx" / "user_tower.onnx", "ab") as handle:
        handle.write(b"\0")
    done = subprocess.run([sys.executable, "-m", "distillrec", "serve", str(copy), "--port", "1"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "user_tower.onnx: sha256" in done.stderr and "does not match the manifest" in done.stderr
    assert "Traceback" not in done.stderr


def test_default_model_of_a_run_output_is_the_best_student_on_validation(pipeline_run):
    metrics = artifacts.read_json(pipeline_run / "metrics.json")
    best = max(("mf", "two-tower"), key=lambda n: metrics["models"][n]["valid"]["ndcg@10"])
    directory, name = resolve_model_dir(pipeline_run)
    assert name == best and directory == pipeline_run / "students" / best
    assert resolve_model_dir(pipeline_run / "students" / "mf") == (pipeline_run / "students" / "mf", "mf")


def test_bad_export_requests_fail_before_writing(pipeline_run, bundles, tmp_path):
    with pytest.raises(DistillrecError, match="already exists"):
        export_bundle(pipeline_run, bundles["mf"])
    with pytest.raises(DistillrecError, match="expected one of mf, two-tower"):
        export_bundle(pipeline_run, tmp_path / "x", model="sasrec")
    with pytest.raises(ArtifactError, match="not a run directory"):
        export_bundle(tmp_path, tmp_path / "y")
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_a_bundle_whose_manifest_is_not_a_bundle_is_refused(bundles, tmp_path):
    copy = tmp_path / "bundle"
    shutil.copytree(bundles["mf"], copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    artifacts.write_json(copy / "manifest.json", {**manifest, "kind": "train"})
    with pytest.raises(ArtifactError, match="expected kind 'bundle'"):
        load_bundle(copy)


def test_cli_export_writes_a_loadable_bundle_and_reports_bad_input_in_one_line(pipeline_run, tmp_path, capsys):
    from distillrec.cli import main

    def run_cli(*args):
        with pytest.raises(SystemExit) as exit_info:
            main(list(args))
            raise SystemExit(0)
        return exit_info.value.code

    assert run_cli("export", str(pipeline_run), "--out", str(tmp_path / "b"), "--model", "mf") == 0
    assert load_bundle(tmp_path / "b").model_name == "mf"
    assert run_cli("export", str(pipeline_run), "--out", str(tmp_path / "c"), "--model", "nope") == 2
    err = capsys.readouterr().err
    assert "--model 'nope': not a student of" in " ".join(err.split()) and "Traceback" not in err
    assert not (tmp_path / "c").exists()


def test_the_default_prefers_a_distilled_student_even_over_a_better_plain_one():
    models = {"mf": {"valid": {"ndcg@10": 0.30}}, "mf-kd": {"valid": {"ndcg@10": 0.25}},
              "mf-kd2": {"valid": {"ndcg@10": 0.28}}}
    assert default_model({"mf": "student", "mf-kd": "distilled", "mf-kd2": "distilled"}, models) == "mf-kd2"
    assert default_model({"mf": "student", "mf-kd": "student"}, models) == "mf"
