"""Hyper-parameter tuning with equal budgets: every model (undistilled or distilled) gets the
same number of Optuna trials, selected on validation only; the test part is never read here.

    record = tune_model(directory, "mf", dataset, split, params={"dim": 64}, train={}, trials=20)
    record["selected"]   # {"train.lr": ..., "params.rec_loss": ..., ...}

`distillrec run` / `distillrec tune` call this for each model named in a config's `tune:`
section before the model's final fit (see `distillrec.pipeline`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

from distillrec.tuning.space import apply, kd_space, model_space, parse_space
from distillrec.tuning.study import TrialContext, run_study

__all__ = ["apply", "search_space", "tune_model", "validation_objective"]


def search_space(model: str, kd: Mapping[str, Any] | None = None, *overrides: Mapping[str, Any] | None,
                 where: str = "tune.space", knowledge=None):
    """The model's default space, its distillation terms' (if any; bounded by the teacher's
    `knowledge` when given), then each override on top."""
    from distillrec.students.base import model_class

    spec = model_space(model_class(model))
    if kd:
        spec.update(kd_space(kd, knowledge))
    for override in overrides:
        spec.update(override or {})
    return parse_space(spec, where)


def validation_objective(model: str, dataset, split, *, params: Mapping[str, Any], train: Mapping[str, Any],
                         kd: Mapping[str, Any] | None = None, knowledge=None, weighting: str = "fixed",
                         init: str | None = None, seed: int = 0,
                         build: Callable[[dict], Any] | None = None,
                         extra_loss: Callable[[Any], Any] | None = None) -> Callable[[TrialContext], float]:
    """A trial: the settings written over (params, train, kd), one fit with early stopping on
    validation, its best validation metric returned. Each validation is reported for pruning.
    build(trial_params) -> model: how a trial's model is made when it is not the plain
    `cls.build` (e.g. an MF whose item table starts from a source domain's, cross-domain); it
    gets the trial's params unchecked and checks them itself;
    extra_loss(model) -> the trial's extra loss term when it is not a `kd` spec."""
    from distillrec.distill.objective import DistillObjective, normalise_spec
    from distillrec.params import make_train_config
    from distillrec.params import check_kd, check_model_params
    from distillrec.students.base import model_class
    from distillrec.train import Trainer

    cls = model_class(model)

    def objective(trial: TrialContext) -> float:
        trial_params, trial_train, trial_kd = apply(trial.assignment, params, train, kd)
        if build is None:  # a custom build checks its own params: it may take more than the model's
            trial_params = check_model_params(model, trial_params, "tuned params")
        train_config = make_train_config(trial_train, seed)
        fitted = build(trial_params) if build else cls.build(dataset, split, seed=seed, **trial_params)
        if init:
            from distillrec.transfer import init_from_teacher
            init_from_teacher(fitted, knowledge, init)
        extra = (DistillObjective(normalise_spec(check_kd(trial_kd)), knowledge, fitted, weighting=weighting,
                                  seed=seed) if trial_kd else extra_loss(fitted) if extra_loss else None)

        def report(record: dict) -> None:
            if "valid" in record:
                trial.report(record["valid"][train_config.metric], record["epoch"])

        result = Trainer(fitted, split, train_config, progress=False, extra_loss=extra, callbacks=[report]).fit()
        return result.best_valid[train_config.metric]

    return objective


def tune_model(directory: str | Path, model: str, dataset, split, *, params: Mapping[str, Any],
               train: Mapping[str, Any], trials: int, kd: Mapping[str, Any] | None = None, knowledge=None,
               weighting: str = "fixed", init: str | None = None, space=None, seed: int = 0,
               pruner: str = "median", say: Callable[[str], None] = lambda line: None,
               build: Callable[[dict], Any] | None = None, extra_loss: Callable[[Any], Any] | None = None) -> dict:
    """Tune one model on `split`'s validation part; the study lives in `directory`
    (study.db: re-running continues it). `space`: a parsed space (default: `search_space`)."""
    dimensions = space if space is not None else search_space(model, kd, knowledge=knowledge)
    objective = validation_objective(model, dataset, split, params=params, train=train, kd=kd,
                                     knowledge=knowledge, weighting=weighting, init=init, seed=seed, build=build,
                                     extra_loss=extra_loss)
    return run_study(directory, objective, dimensions, trials=trials, seed=seed, pruner=pruner, say=say)
