"""The three teacher steps as library calls, each writing one run directory with a manifest:
encode (text embeddings of items and users), fit (the LM-enhanced teacher recommender through
the one training loop) and extract (its Knowledge, into the fitted run's `knowledge/`).

`distillrec teacher encode|fit|extract` are thin wrappers over these.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from distillrec import artifacts, experiment, runs
from distillrec.data.sources import load_dataset
from distillrec.errors import ArtifactError, DistillrecError
from distillrec.teachers.templates import DEFAULT_ITEM_TEMPLATE, DEFAULT_USER_TEMPLATE

TEACHER_MODEL = "lm-teacher"


def _fresh_directory(out: Path) -> None:
    """Refuse to overwrite a non-empty directory (before any work is done)."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DistillrecError(f"{out}: already exists and is not empty; choose a new --out directory")


def encode_dataset(dataset: str, out: str | os.PathLike, *, model: str | None = None, pooling: str | None = None,
                   item_template: str = DEFAULT_ITEM_TEMPLATE, user_template: str | None = None,
                   batch_size: int = 64, cache_dir: str | os.PathLike | None = None,
                   progress: bool = True) -> dict[str, Any]:
    """Encode every item (and, with `user_template`, every user) of `dataset` with a Hugging
    Face encoder and write `out/`: embeddings.safetensors, texts/*.parquet (the rendered
    sentences), ids/, encode.json (model, templates, timings, throughput) and manifest.json.

    The directory appears whole or not at all; a bad model path or template fails first."""
    from distillrec.teachers.cache import encode_cached
    from distillrec.teachers.encoders import TextEncoder
    from distillrec.teachers.templates import TextTemplate

    out = Path(out)
    _fresh_directory(out)
    ds = load_dataset(dataset)
    encoder = TextEncoder(model, pooling=pooling)  # a missing or unreadable model fails here
    parts = {"item": (TextTemplate(item_template).render(ds.items, "item"), item_template, ds.item_ids)}
    if user_template is not None:
        parts["user"] = (TextTemplate(user_template).render(ds.users, "user"), user_template, ds.user_ids)

    tensors, stats, tables = {}, {}, {}
    for name, (texts, template, ids) in parts.items():
        embeddings, info = encode_cached(encoder, texts, cache_dir, template=template, batch_size=batch_size,
                                         progress=progress)
        tensors[name] = embeddings
        stats[name] = {"n": len(texts), "template": template, "cache_hit": info.hit, "cache_key": info.key,
                       "seconds": info.seconds, "per_second": len(texts) / max(info.seconds, 1e-9)}
        tables[name] = pd.DataFrame({f"{name}_id": pd.Series(ids).astype(str), "text": texts})

    record = {"dataset": dataset, "data_fingerprint": ds.fingerprint, "encoder": encoder.identity(),
              "dim": encoder.dim, "lm_parameters": encoder.num_parameters, "parts": stats}
    with artifacts.atomic_directory(out) as tmp:
        artifacts.write_tensors(tmp / "embeddings.safetensors", tensors)
        for name, table in tables.items():
            artifacts.write_parquet(tmp / "texts" / f"{name}s.parquet", table)
        runs.write_id_maps(tmp, ds)
        artifacts.write_json(tmp / "encode.json", record)
        artifacts.write_manifest(tmp, kind="embeddings", extra={"data_fingerprint": ds.fingerprint})
    return record


def fit_teacher(*, model: str = TEACHER_MODEL, dataset: str, split_name: str, seed: int, model_params: dict, train_params: dict,
                out: str | os.PathLike | None, resume: bool = False, progress: bool = True) -> tuple[Path, dict]:
    """Fit a teacher (`model`, the LM-enhanced one by default) on the split's training part
    through the one loop and write a run directory whose model has role "teacher"
    (metrics.json in the shared shape)."""
    return experiment.train_model(model, dataset=dataset, split_name=split_name, seed=seed,
                                  model_params=model_params, train_params=train_params, out=out, resume=resume,
                                  progress=progress, role="teacher")


def extract(run_dir: str | os.PathLike, *, top_k: int = 100, knn: int = 20, importance: bool = False,
            seed: int = 0, step_top_k: int | None = None) -> dict[str, Any]:
    """Extract a fitted teacher run's Knowledge into `run_dir/knowledge` and re-seal the run's
    manifest so it covers the new files. Returns the knowledge's info (timings included)."""
    from distillrec.teachers.knowledge import extract_knowledge

    run_dir = Path(run_dir)
    target = run_dir / "knowledge"
    if target.exists():
        raise DistillrecError(f"{target}: already exists; remove it to extract again")
    dataset, split, model, metrics = runs.load_run(run_dir)  # verifies every file's hash
    roles = {entry.get("role") for entry in metrics["models"].values()}
    if "teacher" not in roles or not hasattr(model, "text_embeddings"):
        raise DistillrecError(f"{run_dir}: not a fitted teacher run (roles {sorted(map(str, roles))}); "
                              "fit one with `distillrec teacher fit`")
    knowledge = extract_knowledge(model, split, dataset, top_k=top_k, knn=knn, importance=importance, seed=seed,
                                  step_top_k=step_top_k)
    knowledge.save(target)
    manifest = artifacts.read_json(run_dir / artifacts.MANIFEST)
    try:
        artifacts.write_manifest(run_dir, kind=manifest.get("kind", "run"),
                                 extra={k: v for k, v in manifest.items() if k not in ("kind", "versions", "files")})
    except OSError as exc:  # keep the run consistent: without a sealed manifest, no knowledge
        import shutil
        shutil.rmtree(target, ignore_errors=True)
        raise ArtifactError(f"{run_dir}: could not update the manifest ({exc})") from None
    return knowledge.info

