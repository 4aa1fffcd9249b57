"""Run directories: what every command leaves behind, in one shape.

A run directory holds `metrics.json` ({"models": {NAME: {"role", "params", "valid", "test"}},
"config", "versions", "data_fingerprint"}), the split (Parquet), id maps (Parquet), model
weights (safetensors) and `manifest.json` with the sha256 of every file.
"""

from __future__ import annotations

import time
from pathlib import Path

from distillrec import artifacts
from distillrec.data.dataset import Dataset
from distillrec.data.split import Split

ROLES = ("baseline", "teacher", "distilled")


def new_run_dir(out: str | Path | None, label: str, base: str | Path = "runs") -> Path:
    """The user's --out, or a fresh runs/<timestamp>-<label> directory (not yet created)."""
    if out is not None:
        return Path(out)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = Path(base) / f"{stamp}-{label}"
    suffix = 1
    while path.exists():
        suffix += 1
        path = Path(base) / f"{stamp}-{label}-{suffix}"
    return path


def model_entry(role: str, params: int, valid: dict | None, test: dict | None, **extra) -> dict:
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, not {role!r}")
    return {"role": role, "params": int(params), "valid": valid or {}, "test": test or {}, **extra}


def write_id_maps(run_dir: Path, dataset: Dataset) -> None:
    """Index -> source id for users and items, so the run can be read without the source data."""
    import pandas as pd

    artifacts.write_parquet(run_dir / "ids" / "users.parquet",
                            pd.DataFrame({"user_id": dataset.user_ids.astype(str)}))
    artifacts.write_parquet(run_dir / "ids" / "items.parquet",
                            pd.DataFrame({"item_id": dataset.item_ids.astype(str)}))


def write_run(run_dir: Path, *, dataset: Dataset, split: Split, models: dict, config: dict,
              kind: str = "run") -> dict:
    """Write split, id maps, metrics.json and the manifest. Call only after all work succeeded,
    so a failed command leaves nothing behind."""
    run_dir.mkdir(parents=True, exist_ok=True)
    split.save(run_dir / "split")
    write_id_maps(run_dir, dataset)
    metrics = {"models": models, "config": config, "versions": artifacts.package_versions(),
               "data_fingerprint": dataset.fingerprint}
    artifacts.write_json(run_dir / "metrics.json", metrics)
    artifacts.write_manifest(run_dir, kind=kind, extra={"config": config,
                                                        "data_fingerprint": dataset.fingerprint})
    return metrics


def save_model(run_dir: Path, name: str, params: dict, model) -> None:
    """Weights (safetensors) and what is needed to rebuild the model (model.json: its
    registry name, params and `saved_state`, which lets a bundle rebuild it without data)."""
    artifacts.write_tensors(run_dir / "model" / "weights.safetensors", model.state_dict())
    artifacts.write_json(run_dir / "model" / "model.json", {"name": name, "params": params,
                                                            "state": model.saved_state()})


def load_model(path: str | Path, *, dataset: Dataset | None = None, split: Split | None = None):
    """The one way to rebuild a trained model: from a run directory (`distillrec train`,
    `distill`, a pipeline stage, `distillrec.save`) or a bundle, every file's sha256 checked
    first. A run's model is built on its data (`dataset` / `split` when the caller holds them,
    else the run's own, fingerprint-checked); a bundle's from its weights alone (`restore`).
    The model comes back in eval mode, bound to its id maps, with everything it was trained
    and evaluated on as history (so `recommend` leaves out what each user has seen)."""
    from distillrec.errors import ArtifactError
    from distillrec.students.base import IdMaps, model_class

    path = Path(path)
    if not (path / artifacts.MANIFEST).exists():
        raise ArtifactError(f"{path}: not a run directory or bundle (no {artifacts.MANIFEST})")
    manifest = artifacts.verify_manifest(path)
    if not (path / "model" / "model.json").exists():
        raise ArtifactError(f"{path}: holds no trained model (only baselines); nothing to load")
    spec = artifacts.read_json(path / "model" / "model.json")
    tensors = artifacts.read_tensors(path / "model" / "weights.safetensors")
    cls = model_class(spec["name"])
    if manifest.get("kind") == "bundle":
        model = cls.restore(spec["params"], tensors, spec.get("state", {}))
        ids = IdMaps(*(artifacts.read_parquet(path / "ids" / f"{side}s.parquet")[f"{side}_id"].to_numpy()
                       for side in ("user", "item")))
        history = artifacts.read_parquet(path / "seen.parquet")
    else:
        if dataset is None or split is None:
            dataset, split, _ = load_run_data(path)
        model = cls.build(dataset, split, **spec["params"])
        model.load_state_dict(tensors)
        ids, history = IdMaps.of(dataset), split.history("all")
        model.data = (dataset, split)  # what `distillrec.save` and `evaluate` reuse
    return model.bind(ids, history).eval()


def load_run_data(run_dir: Path):
    """A run's data, verified against its manifest: (dataset, split, metrics).

    The dataset is reloaded from the recorded config and must have the recorded fingerprint,
    so a run is never re-scored (or distilled from) on different data by accident."""
    from distillrec.data.sources import load_dataset
    from distillrec.errors import ArtifactError

    run_dir = Path(run_dir)
    if not (run_dir / artifacts.MANIFEST).exists():
        raise ArtifactError(f"{run_dir}: not a run directory (no {artifacts.MANIFEST})")
    artifacts.verify_manifest(run_dir)
    metrics = artifacts.read_json(run_dir / "metrics.json")
    config = metrics["config"]
    dataset = load_dataset(config["dataset"], **config.get("data", {}))
    if dataset.fingerprint != metrics["data_fingerprint"]:
        raise ArtifactError(f"{run_dir}: the dataset {config['dataset']!r} now has fingerprint "
                            f"{dataset.fingerprint[:12]}…, the run was trained on {metrics['data_fingerprint'][:12]}…")
    return dataset, Split.load(run_dir / "split"), metrics


def load_run(run_dir: Path):
    """A trained run, verified against its manifest: (dataset, split, model, metrics)."""
    from distillrec.errors import ArtifactError

    run_dir = Path(run_dir)
    if (run_dir / artifacts.MANIFEST).exists() and not (run_dir / "model" / "model.json").exists():
        raise ArtifactError(f"{run_dir}: holds no trained model (only baselines); nothing to re-evaluate")
    dataset, split, metrics = load_run_data(run_dir)
    return dataset, split, load_model(run_dir, dataset=dataset, split=split), metrics
