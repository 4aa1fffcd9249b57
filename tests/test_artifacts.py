import json

import pandas as pd
import pytest
import torch

from distillrec import artifacts
from distillrec.errors import ArtifactError


def test_atomic_write_leaves_nothing_when_the_block_fails(tmp_path):
    target = tmp_path / "out.json"
    with pytest.raises(RuntimeError):
        with artifacts.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_replaces_existing_file(tmp_path):
    target = tmp_path / "out.json"
    artifacts.write_json(target, {"a": 1})
    artifacts.write_json(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_tensors_and_parquet_round_trip(tmp_path):
    tensors = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3)}
    artifacts.write_tensors(tmp_path / "w.safetensors", tensors)
    assert torch.equal(artifacts.read_tensors(tmp_path / "w.safetensors")["w"], tensors["w"])
    frame = pd.DataFrame({"user": [0, 1], "item": [3, 4]})
    artifacts.write_parquet(tmp_path / "t.parquet", frame)
    pd.testing.assert_frame_equal(artifacts.read_parquet(tmp_path / "t.parquet"), frame)


def test_manifest_detects_a_modified_file(tmp_path):
    artifacts.write_json(tmp_path / "metrics.json", {"ndcg@10": 0.3})
    artifacts.write_tensors(tmp_path / "model.safetensors", {"w": torch.ones(3)})
    manifest = artifacts.write_manifest(tmp_path, kind="test")
    assert set(manifest["files"]) == {"metrics.json", "model.safetensors"}
    artifacts.verify_manifest(tmp_path)

    (tmp_path / "metrics.json").write_text('{"ndcg@10": 0.9}')
    with pytest.raises(ArtifactError, match="metrics.json: sha256 .* does not match"):
        artifacts.verify_manifest(tmp_path)


def test_manifest_detects_a_missing_file(tmp_path):
    artifacts.write_json(tmp_path / "a.json", {})
    artifacts.write_manifest(tmp_path, kind="test")
    (tmp_path / "a.json").unlink()
    with pytest.raises(ArtifactError, match="a.json: listed in manifest.json but missing"):
        artifacts.verify_manifest(tmp_path)


def test_corrupt_safetensors_is_a_clear_error(tmp_path):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(b"\x00\x01not a tensor file")
    with pytest.raises(ArtifactError, match="bad.safetensors: not a valid safetensors file"):
        artifacts.read_tensors(path)
