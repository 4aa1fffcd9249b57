"""One Optuna study: seeded TPE over a space, stored in SQLite so a killed study resumes.

Each trial trains on the training part and returns its best validation metric; nothing in a
study ever sees the test part (the caller's `objective` gets the trial's settings and reports
validation values only). Weak trials are pruned on their validation curve.

Determinism: trial n is sampled by a TPE sampler seeded with `seed + n`, from the trials
finished before it. So a study resumed after a kill proposes exactly what the uninterrupted
one would have: the interrupted trial is marked failed and re-run under its place's seed.
"""

from __future__ import annotations

import math
import time
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from distillrec.config import PrunerName
from distillrec.errors import DistillrecError
from distillrec.tuning.space import Dimension, sample

STUDY_FILE = "study.db"
PRUNERS = typing.get_args(PrunerName)  # one list for configs and make_pruner
#: random trials before TPE models the others (Optuna's default). Not derived from the budget:
#: then trial n does not depend on `trials`, and a study continued to a larger budget, or read
#: at a smaller one, holds exactly the trials a fresh study of that budget would.
STARTUP_TRIALS = 10


@dataclass
class TrialContext:
    """What a trial's objective gets: its settings and a way to report validation values."""

    number: int
    assignment: dict[str, Any]
    _trial: Any

    def report(self, value: float, step: int) -> None:
        """Validation value after `step` epochs; raises optuna.TrialPruned when the trial
        is weaker than the others were at that step."""
        import optuna

        self._trial.report(value, step)
        if self._trial.should_prune():
            raise optuna.TrialPruned()


def make_pruner(name: str, patience_floor: int = 5):
    import optuna

    if name == "median":
        # No decision on the first trials or the first epochs: early curves are noisy.
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=patience_floor)
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=patience_floor)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise DistillrecError(f"unknown pruner {name!r}; expected one of: {', '.join(PRUNERS)}")


def run_study(directory: str | Path, objective: Callable[[TrialContext], float], dimensions: list[Dimension], *,
              trials: int, seed: int = 0, pruner: str = "median",
              say: Callable[[str], None] = lambda line: None) -> dict:
    """Run (or continue) the study in `directory` until it holds `trials` finished trials;
    returns the tuning record: {"trials", "finished", "pruned", "seed", "pruner",
    "space", "selected", "valid", "best_trial", "history"}."""
    import optuna
    from optuna.trial import TrialState

    if trials < 1:
        raise DistillrecError(f"trials must be >= 1, got {trials}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="distillrec", storage=f"sqlite:///{directory / STUDY_FILE}",
                                direction="maximize", pruner=make_pruner(pruner), load_if_exists=True)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)):
        study.tell(trial.number, state=TrialState.FAIL)  # killed mid-trial: its place is re-run
    started, ran = time.perf_counter(), 0
    while (done := _finished(study)) < trials:
        study.sampler = optuna.samplers.TPESampler(seed=seed + done, n_startup_trials=STARTUP_TRIALS)
        trial = study.ask()
        assignment = sample(trial, dimensions)
        trial_started = time.perf_counter()
        try:
            value = float(objective(TrialContext(done, assignment, trial)))
        except optuna.TrialPruned:
            study.tell(trial, state=TrialState.PRUNED)
            state, value = "pruned", None
        else:
            if not math.isfinite(value):
                study.tell(trial, state=TrialState.FAIL)
                raise DistillrecError(f"trial {done + 1}: validation value {value} is not finite")
            study.tell(trial, value)
            state = "finished"
        ran += 1
        finished, best = _finished(study), _best(study, trials)
        per_trial = (time.perf_counter() - started) / ran
        say(f"trial {finished}/{trials} {state}" + (f" · valid {value:.4f}" if value is not None else "")
            + (f" · best {best.value:.4f} (trial {best.number + 1})" if best else "")
            + f" · {time.perf_counter() - trial_started:.0f} s · ~{per_trial * (trials - finished) / 60:.1f} min left")
    return _record(study, dimensions, trials, seed, pruner)


def _finished(study) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


def _budget(study, trials: int) -> list:
    """The first `trials` finished trials: a study that ran longer before (a larger budget)
    is read at this budget, so equal budgets stay equal."""
    from optuna.trial import TrialState

    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    return sorted(done, key=lambda t: t.number)[:trials]


def _best(study, trials: int):
    from optuna.trial import TrialState

    complete = [t for t in _budget(study, trials) if t.state == TrialState.COMPLETE]
    # Ties go to the earlier trial, so the selection does not depend on storage order.
    return max(complete, key=lambda t: (t.value, -t.number)) if complete else None


def _record(study, dimensions: list[Dimension], trials: int, seed: int, pruner: str) -> dict:
    best = _best(study, trials)
    if best is None:
        raise DistillrecError("every trial was pruned or failed: no configuration to select "
                              "(widen the space or use pruner: none)")
    history = [{"number": t.number, "state": t.state.name.lower(), "params": dict(t.params),
                "valid": t.value} for t in _budget(study, trials)]
    return {"trials": trials, "finished": sum(h["state"] == "complete" for h in history),
            "pruned": sum(h["state"] == "pruned" for h in history),
            "seed": seed, "pruner": pruner, "space": {d.path: d.to_json() for d in dimensions},
            "selected": selected_assignment(best.params, dimensions), "valid": best.value,
            "best_trial": best.number, "history": history}


def selected_assignment(params: Mapping[str, Any], dimensions: list[Dimension]) -> dict[str, Any]:
    """The best trial's values plus the space's fixed ones (Optuna stores only sampled values)."""
    chosen = dict(params)
    for dimension in dimensions:
        if dimension.choices is None and dimension.low is None and dimension.active(chosen):
            chosen[dimension.path] = dimension.fixed
    return {d.path: chosen[d.path] for d in dimensions if d.path in chosen}
