"""Library entry points behind the CLI commands: load, split, score, write a run."""

from __future__ import annotations

from pathlib import Path

from distillrec import runs
from distillrec.data.dataset import Dataset
from distillrec.data.sources import load_dataset  # noqa: F401  (re-exported for older callers)
from distillrec.data.split import Split
from distillrec.errors import DistillrecError

DEFAULT_KS = (10, 20)
#: each evaluated user's test NDCG@10, written beside a run's metrics: the paired tests' input.
PER_USER_FILE = "per_user.parquet"


def prepare(dataset: str, split_name: str, seed: int, *, mapping: dict | None = None,
            **split_params) -> tuple[Dataset, Split]:
    from distillrec.data.splitting import make_seeded_split

    ds = load_dataset(dataset, mapping=mapping)
    return ds, make_seeded_split(ds, split_name, seed, **split_params)


def baseline_scorer(name: str, split: Split, seed: int):
    from distillrec.evaluation.baselines import PopularityScorer, RandomScorer

    if name == "pop":
        return PopularityScorer(split)
    if name == "random":
        return RandomScorer(split.n_items, seed=seed)
    raise DistillrecError(f"unknown baseline {name!r}; expected pop or random")


def genre_matrix(dataset: Dataset):
    """Items' genre multi-hot [n_items, n_genres] for intra-list diversity, or None."""
    import numpy as np

    if "genres" not in dataset.items.columns:
        return None
    genres = dataset.items["genres"].map(lambda g: list(g) if isinstance(g, (list, np.ndarray)) else [])
    vocabulary = sorted({g for row in genres for g in row})
    if not vocabulary:
        return None
    column = {g: j for j, g in enumerate(vocabulary)}
    matrix = np.zeros((dataset.n_items, len(vocabulary)), dtype=np.float32)
    for row, values in enumerate(genres):
        matrix[row, [column[g] for g in values]] = 1.0
    return matrix


def make_evaluator(split: Split, dataset: Dataset, ks=DEFAULT_KS):
    """The evaluator every command shares: accuracy metrics plus coverage, novelty and, when
    items have genres, intra-list diversity."""
    from distillrec.evaluation.evaluator import ACCURACY_METRICS, Evaluator

    genres = genre_matrix(dataset)
    beyond = ("coverage", "novelty") + (("diversity",) if genres is not None else ())
    return Evaluator(split, ks=ks, metrics=ACCURACY_METRICS + beyond, item_features=genres)


def evaluate_scorer(scorer, split: Split, dataset: Dataset, ks=DEFAULT_KS, *, per_user_dir: Path | None = None) -> dict:
    """Validation and test metrics of one scorer, in the metrics.json entry layout
    (per_user_dir: also write each user's test NDCG@10 there)."""
    evaluator = make_evaluator(split, dataset, ks)
    if per_user_dir is not None:
        write_per_user(per_user_dir, evaluator, scorer)
    return {part: evaluator.evaluate(scorer, part=part) for part in ("valid", "test")}


def write_per_user(run_dir: Path, evaluator, test_scorer) -> None:
    import pandas as pd

    from distillrec import artifacts

    users, values = evaluator.per_user(test_scorer, "test", "ndcg@10")
    artifacts.write_parquet(Path(run_dir) / PER_USER_FILE, pd.DataFrame({"user": users, "ndcg@10": values}))


def read_per_user(run_dir: Path):
    """(users, test NDCG@10 values) of a run, or None when it has none."""
    from distillrec import artifacts

    path = Path(run_dir) / PER_USER_FILE
    if not path.exists():
        return None
    frame = artifacts.read_parquet(path)
    return frame["user"].to_numpy(), frame["ndcg@10"].to_numpy()


def evaluate_baseline(model: str, *, dataset: str, split_name: str, seed: int,
                      mapping: dict | None = None, out: Path | None = None) -> tuple[Path, dict]:
    ds, split = prepare(dataset, split_name, seed, mapping=mapping)
    scorer = baseline_scorer(model, split, seed)  # validates the name before any work is written
    results = evaluate_scorer(scorer, split, ds)
    models = {model: runs.model_entry("baseline", 0, results["valid"], results["test"])}
    config = {"command": "evaluate", "model": model, "dataset": dataset, "split": split_name,
              "split_params": split.params, "seed": seed}
    run_dir = runs.new_run_dir(out, f"{model}-{Path(dataset).name}")
    metrics = runs.write_run(run_dir, dataset=ds, split=split, models=models, config=config)
    return run_dir, metrics


def model_scorer(model, split: Split, part: str):
    """A scorer for `part`: the model first sees the history it may use (train for valid;
    train + valid for test; plus revealed cold-user interactions)."""
    import torch

    model.eval()
    model.set_history(split.history(part))

    def scorer(users):
        with torch.no_grad():
            return model.score(users)
    return scorer


def evaluate_model(model, split: Split, dataset: Dataset, ks=DEFAULT_KS, *, per_user_dir: Path | None = None) -> dict:
    evaluator = make_evaluator(split, dataset, ks)
    if per_user_dir is not None:
        write_per_user(per_user_dir, evaluator, model_scorer(model, split, "test"))
    return {part: evaluator.evaluate(model_scorer(model, split, part), part=part) for part in ("valid", "test")}


def train_model(model_name: str, *, dataset: str, split_name: str, seed: int, model_params: dict,
                train_params: dict, out: Path | None = None, resume: bool = False,
                progress: bool = True, split_params: dict | None = None, role: str = "baseline") -> tuple[Path, dict]:
    """Load, split, train one model through the one loop, evaluate it, write a run directory."""
    from distillrec.params import check_model_params

    model_cls = registered_model(model_name)  # unknown names fail before any work
    model_params = check_model_params(model_name, model_params)
    train_config = make_train_config(train_params, seed)
    run_dir = runs.new_run_dir(out, f"{model_name}-{Path(dataset).name}")
    if resume and not (run_dir / "checkpoints").exists():
        raise DistillrecError(f"--resume: {run_dir} holds no checkpoints to resume from")
    ds, split = prepare(dataset, split_name, seed, **(split_params or {}))
    config = {"command": "train", "model": model_name, "model_params": model_params, "dataset": dataset,
              "split": split_name, "split_params": split.params, "seed": seed,
              "train": train_config.model_dump(mode="json")}
    metrics = fit_model(model_cls, model_name, ds, split, model_params=model_params, train_config=train_config,
                        run_dir=run_dir, config=config, role=role, resume=resume, progress=progress)
    return run_dir, metrics


def registered_model(name: str):
    import distillrec.students  # noqa: F401  (registers the students)
    from distillrec.students.base import MODELS

    if name not in MODELS:
        import distillrec.teachers.models  # noqa: F401  (teachers load transformers: only when asked)
        import distillrec.teachers.ease  # noqa: F401
        import distillrec.teachers.ensemble  # noqa: F401
    return MODELS.get(name)


def make_train_config(train_params: dict, seed: int):
    """A validated TrainConfig; pydantic's complaint becomes one line naming the option."""
    from pydantic import ValidationError

    from distillrec.train import TrainConfig

    try:
        return TrainConfig(**{"seed": seed, **train_params})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(map(str, first["loc"])) or "train"
        raise DistillrecError(f"training option {where}: {first['msg']}") from None


def fit_model(model_cls, name: str, ds: Dataset, split: Split, *, model_params: dict, train_config,
              run_dir: Path, config: dict, role: str = "baseline", resume: bool = False,
              progress: bool = True, extra_loss=None, model=None, entry_extra: dict | None = None) -> dict:
    """Train (or resume), evaluate, measure cost and write a complete run directory."""
    from distillrec.evaluation.efficiency import model_cost
    from distillrec.train import Trainer, distributed

    if model is None:
        model = model_cls.build(ds, split, seed=train_config.seed, **model_params)
    trainer = Trainer(model, split, train_config, run_dir=run_dir, progress=progress, extra_loss=extra_loss)
    result = trainer.fit(resume=resume)
    if not distributed.is_main():  # under torchrun, rank 0 evaluates and writes the run
        return {}
    results = evaluate_model(model, split, ds, per_user_dir=run_dir)
    cost = model_cost(model, split.n_users)
    history = [{"epoch": r["epoch"], "loss": r["loss"], "train_seconds": r["train_seconds"],
                "valid": {k: v for k, v in r.get("valid", {}).items() if "@" in k}} for r in result.history]
    models = {name: runs.model_entry(
        role, cost["params"], results["valid"], results["test"], size_bytes=cost["size_bytes"],
        latency_ms_per_user=cost["latency_ms_per_user"], train_seconds=result.train_seconds,
        best_epoch=result.best_epoch, epochs_run=len(result.history), history=history,
        **(entry_extra or {}))}
    runs.save_model(run_dir, model_cls_name(model_cls, name), {"seed": train_config.seed, **model_params}, model)
    return runs.write_run(run_dir, dataset=ds, split=split, models=models, config=config, kind="train")


def model_cls_name(model_cls, fallback: str) -> str:
    """The registry name of a model class (run directories rebuild models by it)."""
    from distillrec.students.base import MODELS

    return next((n for n in MODELS.names() if MODELS.get(n) is model_cls), fallback)


def evaluate_run(run_dir: Path) -> dict:
    """Re-score a trained run (hashes verified) and compare with what it recorded."""
    dataset, split, model, metrics = runs.load_run(run_dir)
    name = next(iter(metrics["models"]))
    results = evaluate_model(model, split, dataset)
    entry = dict(metrics["models"][name], valid=results["valid"], test=results["test"])
    return {**metrics, "models": {name: entry}}
