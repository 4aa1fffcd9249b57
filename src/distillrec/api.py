"""The Python API: data, split, fit (with or without a teacher), evaluate, recommend, save and load in memory.

Every function returns in-memory objects; only `save` writes. The CLI's commands run the
same library functions and also write run directories.

    import distillrec as dr
    data = dr.load_data("ml-100k")
    split = dr.split(data, "random", seed=0)
    teacher = dr.fit("ease", data, split)
    student = dr.fit("mf", data, split, teacher=teacher, kd={"ranking": 0.5}, train={"epochs": 5})
    dr.evaluate(student, data, split)["test"]["ndcg@10"]
    student.recommend("42", k=10)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from distillrec.data.dataset import Dataset
from distillrec.data.sources import load_dataset
from distillrec.data.split import Split


def load_data(name_or_path: str | Path, *, mapping: Mapping[str, str] | None = None, **options) -> Dataset:
    """A built-in dataset ("ml-100k", "ml-1m") or own files (`mapping`: our column -> yours)."""
    return load_dataset(name_or_path, mapping=mapping, **options)


def split(dataset: Dataset, name: str = "random", seed: int = 0, **params) -> Split:
    """Train / valid / test by a registered protocol ("random", "temporal", "loo", ...)."""
    from distillrec.data.splitting import make_seeded_split

    return make_seeded_split(dataset, name, seed, **params)


def fit(model: str, dataset: Dataset, split: Split, *, teacher=None, kd: Mapping[str, Any] | None = None,
        weighting: str = "fixed", seed: int = 0, train: Mapping[str, Any] | None = None,
        progress: bool = False, **params):
    """A registered model (student or teacher) built and trained on `split`, early-stopped on
    validation, bound to the data's ids with every split's interactions as history.
    With a fitted `teacher` and distillation terms `kd` (e.g. {"ranking": 0.5, "feature": 1.0})
    the model trains on its own loss plus those terms, read from the teacher on this split."""
    from distillrec.params import make_train_config
    from distillrec.distill.objective import normalise_spec
    from distillrec.errors import DistillrecError
    from distillrec.params import check_kd, check_model_params
    from distillrec.students.base import IdMaps, model_class
    from distillrec.train import Trainer

    cls = model_class(model)
    params = check_model_params(model, params)
    if (teacher is None) != (not kd):
        raise DistillrecError("distillation needs both a fitted teacher and kd terms (or neither)")
    spec = normalise_spec(check_kd(dict(kd))) if kd else None
    train_config = make_train_config(dict(train or {}), seed)
    fitted = cls.build(dataset, split, seed=seed, **params)
    objective = _distillation(teacher, spec, fitted, dataset, split, weighting, seed) if spec else None
    Trainer(fitted, split, train_config, progress=progress, extra_loss=objective).fit()
    # What `save` records: the data, how to rebuild the model, and its role in a run.
    fitted.data, fitted.build_params = (dataset, split), {"seed": seed, **params}
    fitted.role = "distilled" if spec else "baseline"
    return fitted.bind(IdMaps.of(dataset), split.history("all")).eval()


def _distillation(teacher, spec, student, dataset: Dataset, split: Split, weighting: str, seed: int):
    """The student's DistillObjective over the teacher's knowledge (which sees training data only)."""
    from distillrec.distill.objective import DistillObjective
    from distillrec.teachers.knowledge import extract_knowledge

    knowledge = extract_knowledge(teacher, split, dataset, importance=False, seed=seed)
    teacher.set_history(split.history("all"))  # extraction left it at the validation view
    return DistillObjective(spec, knowledge, student, weighting=weighting, seed=seed)


def evaluate(model, dataset: Dataset, split: Split) -> dict[str, dict[str, float]]:
    """{"valid": {metric@k: value}, "test": {...}}: full ranking, seen items masked (RecBole's
    conventions). The model's history is restored afterwards."""
    from distillrec.evaluation.scoring import evaluate_model

    try:
        return evaluate_model(model, split, dataset)
    finally:
        model.set_history(split.history("all"))


def save(model, directory: str | Path) -> Path:
    """A run directory (weights, ids, split, manifest with hashes) that `load` reads back."""
    from distillrec import runs
    from distillrec.students.base import registered_name

    dataset, split = model.data
    directory = Path(directory)
    name = registered_name(type(model), type(model).__name__)
    runs.save_model(directory, name, dict(model.build_params), model)
    entry = runs.model_entry(model.role, model.num_parameters(), None, None)
    runs.write_run(directory, dataset=dataset, split=split, models={name: entry},
                   config={"command": "python api", "model": name, "model_params": dict(model.build_params),
                           "dataset": dataset.name, "split": split.name, "split_params": split.params},
                   kind="train")
    return directory


def load(path: str | Path):
    """A model saved by `save`, `distillrec train` / `distill` / `run`, or a bundle (hashes checked)."""
    from distillrec.runs import load_model

    return load_model(path)

