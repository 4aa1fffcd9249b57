"""The shippable student: a self-describing, hash-verified bundle directory.

```
BUNDLE/
  manifest.json            kind "bundle", format, model (name, params, serving: what the service
                           needs to know, from `Recommender.serving_spec`), metrics, config,
                           versions, data fingerprint, source run, ONNX inputs, sha256 of every file
  model/model.json, model/weights.safetensors   the student, loadable in PyTorch without its
                           data (`distillrec.load_model(bundle)`: `Recommender.restore`)
  vectors.safetensors      serving vectors: "user" [n_users, d], "item" [n_items, d];
                           score(user, item) = user · item, equal to the model's score;
                           content student: also "item_raw", the item tower's output that
                           its user tower pools over a history
  ids/users.parquet, ids/items.parquet          index -> id as in the source data
  items.parquet            item metadata to serve (title, year, genres where the data has them)
  users.parquet            user attributes (the features the two-tower student reads)
  seen.parquet             every (user, item) of the run's data: what `exclude_seen` hides
  encoders.json            feature towers: fitted feature vocabularies and buckets
  onnx/user_tower.onnx, onnx/item_tower.onnx    the scoring towers (see serving/export.py)
```

`export_bundle` builds it from a run directory (`distillrec train` / `distill`, or one stage of
`distillrec run`); `load_bundle` refuses it when any file is missing, modified or truncated.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from distillrec import artifacts, runs
from distillrec.errors import ArtifactError, DistillrecError

KIND = "bundle"
FORMAT = 2  # 2: the manifest's model.serving replaces decisions by model name
SELECT_METRIC = "ndcg@10"  # picks the default model of a `distillrec run` output, on validation
_ITEM_COLUMNS = ("title", "year", "genres")


@dataclass
class Bundle:
    path: Path
    manifest: dict
    user_ids: np.ndarray          # index -> raw id (str)
    item_ids: np.ndarray
    user_vectors: np.ndarray      # [n_users, d] float32, serving space
    item_vectors: np.ndarray      # [n_items, d]
    items: pd.DataFrame           # item_id + metadata, index order
    users: pd.DataFrame           # user_id + attributes, index order
    seen: pd.DataFrame            # user, item (indices)
    encoders: dict | None         # {"user": FeatureEncoder dict, "item": ...} (two-tower, content)
    item_raw: np.ndarray | None = None  # content student: item tower outputs its user tower pools

    @property
    def model_name(self) -> str:
        return self.manifest["model"]["name"]

    def onnx_path(self, graph: str) -> Path:
        return self.path / "onnx" / f"{graph}.onnx"

    def onnx_inputs(self, graph: str) -> list[str]:
        return self.manifest["onnx"][graph]

    def load_model(self):
        """The student as a PyTorch module, rebuilt from the bundle alone (hashes checked)."""
        from distillrec.runs import load_model

        return load_model(self.path)


def resolve_model_dir(run: Path, model: str | None = None) -> tuple[Path, str]:
    """(directory of the trained model, its name) inside a run directory.

    A `distillrec train`/`distill` run holds one model; a `distillrec run` output holds one per
    stage, and `model` picks it by name (default: the distilled student with the best
    validation NDCG@10, else the best plain student)."""
    run = Path(run)
    if (run / "model" / "model.json").exists():
        metrics = artifacts.read_json(run / "metrics.json")
        names = list(metrics.get("models", {}))
        if model is not None and model not in names:
            raise DistillrecError(f"--model {model!r}: {run} holds only {', '.join(names) or 'no model'}")
        return run, model or (names[0] if names else run.name)
    if not (run / "metrics.json").exists():
        raise ArtifactError(f"{run}: not a run directory (no metrics.json); give a directory written by "
                            "`distillrec train`, `distillrec distill` or `distillrec run`")
    metrics = artifacts.read_json(run / "metrics.json")
    candidates = {}
    for stage in metrics.get("stages", {}):
        # Stage directories by their pipeline layout, not the recorded paths: a run directory
        # may have been moved or recorded relative to another working directory.
        role, _, name = stage.partition(" ")
        directory = run / {"student": "students", "distilled": "distilled"}.get(role, "-") / name
        if role in ("student", "distilled") and (directory / "model" / "model.json").exists():
            candidates[name] = (role, directory)
    if not candidates:
        raise ArtifactError(f"{run}: no trained student in this run (stages: {', '.join(metrics.get('stages', {})) or 'none'})")
    if model is not None:
        if model not in candidates:
            raise DistillrecError(f"--model {model!r}: not a student of {run}; expected one of {', '.join(sorted(candidates))}")
        return candidates[model][1], model
    best = default_model({n: role for n, (role, _) in candidates.items()}, metrics["models"])
    return candidates[best][1], best


def default_model(roles: dict[str, str], models: dict[str, dict]) -> str:
    """The distilled student with the best validation NDCG@10, else the best plain student
    (ties: the later name, so the choice never depends on dict order)."""
    distilled = [name for name, role in roles.items() if role == "distilled"]
    pool = distilled or list(roles)
    return max(pool, key=lambda n: (models.get(n, {}).get("valid", {}).get(SELECT_METRIC, float("-inf")), n))


def export_bundle(run: str | Path, out: str | Path, *, model: str | None = None) -> Path:
    """Write a bundle for one trained student of `run`. Everything is checked (run hashes,
    model kind, `out` free) before anything is written, and the bundle appears atomically."""
    import torch

    from distillrec.serving.export import export_towers

    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DistillrecError(f"--out {out}: already exists; give a new directory")
    model_dir, name = resolve_model_dir(Path(run), model)
    spec = artifacts.read_json(model_dir / "model" / "model.json")
    dataset, split, student, metrics = runs.load_run(model_dir)
    graphs = student.export_graphs()  # a model without tower graphs says so here, before any write
    entry = metrics["models"].get(name) or next(iter(metrics["models"].values()))
    seen = _seen(split)
    student.set_history(seen)  # serving knows every interaction of the run (history models pool them)
    vectors = student.serving_vectors()
    state = student.saved_state()
    if out.exists():
        out.rmdir()  # an empty directory the user made: the atomic rename needs the name free
    with artifacts.atomic_directory(out) as tmp:
        artifacts.write_tensors(tmp / "model" / "weights.safetensors", student.state_dict())
        artifacts.write_json(tmp / "model" / "model.json", {**spec, "state": state})
        artifacts.write_tensors(tmp / "vectors.safetensors", vectors)
        runs.write_id_maps(tmp, dataset)
        artifacts.write_parquet(tmp / "items.parquet", _item_table(dataset.items))
        artifacts.write_parquet(tmp / "users.parquet", _user_table(dataset.users))
        artifacts.write_parquet(tmp / "seen.parquet", seen)
        if "encoders" in state:  # feature towers: the service encodes raw attributes with them
            artifacts.write_json(tmp / "encoders.json", state["encoders"])
        del graphs  # exported below from the model itself
        onnx_inputs = export_towers(student, tmp / "onnx")
        artifacts.write_manifest(tmp, kind=KIND, extra={
            "format": FORMAT,
            "model": {"name": spec["name"], "label": name, "params": spec["params"],
                      "serving": student.serving_spec(), "dim": int(vectors["item"].shape[1]),
                      "n_users": split.n_users, "n_items": split.n_items},
            "metrics": {part: entry.get(part, {}) for part in ("valid", "test")},
            "config": metrics.get("config", {}), "data_fingerprint": metrics.get("data_fingerprint"),
            "source_run": str(model_dir), "onnx": onnx_inputs})
    return out


def load_bundle(path: str | Path) -> Bundle:
    """A bundle, every file's sha256 checked against the manifest first."""
    path = Path(path)
    if not (path / artifacts.MANIFEST).exists():
        raise ArtifactError(f"{path}: not a bundle (no {artifacts.MANIFEST}); make one with `distillrec export`")
    manifest = artifacts.verify_manifest(path)
    if manifest.get("kind") != KIND or manifest.get("format") != FORMAT:
        raise ArtifactError(f"{path}: manifest kind {manifest.get('kind')!r} format {manifest.get('format')!r}, "
                            f"expected kind {KIND!r} format {FORMAT}")
    required = ["model/weights.safetensors", "vectors.safetensors", "ids/users.parquet", "ids/items.parquet",
                "items.parquet", "users.parquet", "seen.parquet", "onnx/user_tower.onnx", "onnx/item_tower.onnx"]
    missing = [name for name in required if name not in manifest["files"]]
    if missing:
        raise ArtifactError(f"{path}: the manifest does not list {', '.join(missing)}")
    tensors = artifacts.read_tensors(path / "vectors.safetensors")
    encoders = artifacts.read_json(path / "encoders.json") if "encoders.json" in manifest["files"] else None
    return Bundle(path=path, manifest=manifest,
                  user_ids=artifacts.read_parquet(path / "ids" / "users.parquet")["user_id"].to_numpy(),
                  item_ids=artifacts.read_parquet(path / "ids" / "items.parquet")["item_id"].to_numpy(),
                  user_vectors=tensors["user"].numpy(), item_vectors=tensors["item"].numpy(),
                  item_raw=tensors["item_raw"].numpy() if "item_raw" in tensors else None,
                  items=artifacts.read_parquet(path / "items.parquet"),
                  users=artifacts.read_parquet(path / "users.parquet"),
                  seen=artifacts.read_parquet(path / "seen.parquet"), encoders=encoders)


def _item_table(items: pd.DataFrame) -> pd.DataFrame:
    columns = ["item_id"] + [c for c in _ITEM_COLUMNS if c in items.columns]
    table = items[columns].copy()
    table["item_id"] = table["item_id"].astype(str)
    if "genres" in table:  # one list type for Parquet, whatever the reader gave
        table["genres"] = table["genres"].map(lambda g: [str(x) for x in g] if isinstance(g, (list, np.ndarray)) else [])
    return table


def _user_table(users: pd.DataFrame) -> pd.DataFrame:
    table = users.drop(columns=[c for c in ("zip",) if c in users.columns]).copy()  # not a feature; personal
    table["user_id"] = table["user_id"].astype(str)
    return table


def _seen(split) -> pd.DataFrame:
    """Every (user, item, timestamp) of the run, once: what serving excludes and pools."""
    seen = split.history("all")[["user", "item", "timestamp"]]
    seen = seen.drop_duplicates(["user", "item"]).sort_values(["user", "item"]).reset_index(drop=True)
    return seen.astype(np.int64)
