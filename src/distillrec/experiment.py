"""The commands behind `distillrec train` / `evaluate`: load and split, fit one model through the
one Trainer, score it, write a complete run directory. Commands build on it (cli, pipeline, the
distillation runner, teacher commands, scenarios); the layers below (models, training,
evaluation, tuning, params) never import it."""

from __future__ import annotations

from pathlib import Path

from distillrec import runs
from distillrec.data.dataset import Dataset
from distillrec.data.sources import load_dataset
from distillrec.data.split import Split
from distillrec.errors import DistillrecError
from distillrec.evaluation.scoring import baseline_scorer, evaluate_model, evaluate_scorer
from distillrec.students.base import model_class, registered_name


def prepare(dataset: str, split_name: str, seed: int, *, mapping: dict | None = None,
            **split_params) -> tuple[Dataset, Split]:
    from distillrec.data.splitting import make_seeded_split

    ds = load_dataset(dataset, mapping=mapping)
    return ds, make_seeded_split(ds, split_name, seed, **split_params)


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


def train_model(model_name: str, *, dataset: str, split_name: str, seed: int, model_params: dict,
                train_params: dict, out: Path | None = None, resume: bool = False,
                progress: bool = True, split_params: dict | None = None, role: str = "baseline") -> tuple[Path, dict]:
    """Load, split, train one model through the one loop, evaluate it, write a run directory."""
    from distillrec.params import check_model_params, make_train_config

    model_cls = model_class(model_name)  # unknown names fail before any work
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
    runs.save_model(run_dir, registered_name(model_cls, name), {"seed": train_config.seed, **model_params}, model)
    return runs.write_run(run_dir, dataset=ds, split=split, models=models, config=config, kind="train")


def evaluate_run(run_dir: Path, *, keep_seen: bool = False) -> dict:
    """Re-score a trained run (hashes verified) and compare with what it recorded.
    keep_seen: seen items stay in the ranking (RecBole's SASRec convention). Writes nothing."""
    dataset, split, model, metrics = runs.load_run(run_dir)
    name = next(iter(metrics["models"]))
    results = evaluate_model(model, split, dataset, mask_history=not keep_seen)
    entry = dict(metrics["models"][name], valid=results["valid"], test=results["test"])
    return {**metrics, "models": {name: entry}}
