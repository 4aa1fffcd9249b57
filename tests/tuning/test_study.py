"""run_study with a cheap pure-Python objective: seeded and reproducible, resumable after a
kill, budgets read exactly, weak trials pruned, bad values refused."""

import math

import optuna
import pytest
from optuna.trial import TrialState

from distillrec.errors import DistillrecError
from distillrec.tuning.space import parse_space
from distillrec.tuning.study import STARTUP_TRIALS, STUDY_FILE, run_study

SPACE = parse_space({
    "train.lr": {"low": 1e-4, "high": 1e-1, "log": True},
    "params.rec_loss": {"choices": ["bpr", "softmax", "sampled-softmax"]},
    "train.n_negatives": {"low": 1, "high": 64, "log": True, "when": {"params.rec_loss": ["bpr", "sampled-softmax"]}},
    "train.epochs": 3,
}, "test")


def score(assignment: dict) -> float:
    """Best near lr 1e-2 with softmax; a few negatives help the sampled losses."""
    value = -abs(math.log10(assignment["train.lr"]) + 2)
    value += {"softmax": 0.3, "bpr": 0.1, "sampled-softmax": 0.2}[assignment["params.rec_loss"]]
    return value + 0.01 * math.log(assignment.get("train.n_negatives", 1))


class Objective:
    """Reports a rising validation curve, returns its best; counts its calls."""

    def __init__(self, steps: int = 2, kill_on_call: int | None = None):
        self.steps, self.kill_on_call, self.calls = steps, kill_on_call, 0

    def __call__(self, trial) -> float:
        self.calls += 1
        if self.calls == self.kill_on_call:
            raise KeyboardInterrupt  # a kill in the middle of a trial
        final = score(trial.assignment)
        for step in range(1, self.steps + 1):
            trial.report(final - (self.steps - step) * 0.1, step)
        return final


TRIALS = STARTUP_TRIALS + 2  # random trials, then TPE's


def study(directory, objective=None, **kwargs):
    kwargs = {"trials": TRIALS, "seed": 0, "pruner": "median", **kwargs}
    return run_study(directory, objective or Objective(), SPACE, **kwargs)


def stored(directory):
    return optuna.load_study(study_name="distillrec", storage=f"sqlite:///{directory / STUDY_FILE}").get_trials()


def sampled(record):
    return [(h["state"], h["params"], h["valid"]) for h in record["history"]]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted study of TRIALS trials, seed 0, in a directory of its own."""
    directory = tmp_path_factory.mktemp("reference")
    objective = Objective()
    record = study(directory, objective)
    assert objective.calls == TRIALS and (directory / STUDY_FILE).exists()
    return record


def test_the_same_seed_gives_the_same_study_and_selection(tmp_path, reference):
    a = reference
    assert study(tmp_path / "b") == a
    assert len(a["history"]) == TRIALS and a["finished"] == TRIALS and a["pruned"] == 0
    assert [h["number"] for h in a["history"]] == list(range(TRIALS))
    assert len({h["params"]["train.lr"] for h in a["history"]}) == TRIALS  # trials explore: no point repeated
    best = max(a["history"], key=lambda h: h["valid"])
    assert a["valid"] == best["valid"] and a["best_trial"] == best["number"]
    # The selection is the best trial's sampled values plus the fixed ones, in space order.
    assert a["selected"] == {**best["params"], "train.epochs": 3}
    assert list(a["selected"]) == [d.path for d in SPACE if d.path in a["selected"]]
    assert a["valid"] == pytest.approx(score(a["selected"]))
    assert a["space"]["train.epochs"] == 3 and a["space"]["params.rec_loss"]["choices"][0] == "bpr"

    other = study(tmp_path / "c", seed=1, trials=3)
    assert other["seed"] == 1
    assert [h["params"] for h in other["history"]] != [h["params"] for h in a["history"][:3]]


def test_a_killed_study_resumes_to_what_the_uninterrupted_one_found(tmp_path, reference):
    killed = Objective(kill_on_call=TRIALS - 1)  # in a TPE trial, one before the last
    with pytest.raises(KeyboardInterrupt):
        study(tmp_path, killed)
    states = [t.state for t in stored(tmp_path)]
    assert states == [TrialState.COMPLETE] * (TRIALS - 2) + [TrialState.RUNNING]

    resumed_objective = Objective()
    resumed = study(tmp_path, resumed_objective)
    assert resumed_objective.calls == 2  # the killed trial's place and the one after it
    assert [t.state for t in stored(tmp_path)] == [TrialState.COMPLETE] * (TRIALS - 2) + [TrialState.FAIL] \
        + [TrialState.COMPLETE] * 2
    assert sampled(resumed) == sampled(reference)
    assert resumed["selected"] == reference["selected"] and resumed["valid"] == reference["valid"]
    assert resumed["finished"] == TRIALS


def test_more_trials_continue_the_stored_study_and_fewer_read_only_the_first(tmp_path, reference):
    first = Objective()
    four = study(tmp_path, first, trials=4)
    assert first.calls == 4 and four["trials"] == 4 and len(four["history"]) == 4

    more = Objective()
    continued = study(tmp_path, more)
    assert more.calls == TRIALS - 4  # the first four are read back, not re-run
    assert continued["history"][:4] == four["history"] and continued["trials"] == TRIALS
    # A budget's trials do not depend on how the study got there: raised, or run at once.
    assert continued == reference

    again = Objective()
    assert study(tmp_path, again) == continued and again.calls == 0
    assert study(tmp_path, again, trials=4) == four and again.calls == 0


def test_a_smaller_budget_selects_among_the_first_trials_only(tmp_path):
    def later_is_better(trial):  # the best of any budget is its last trial
        return trial.number + 0.001 * score(trial.assignment)

    six = study(tmp_path, later_is_better, trials=6)
    assert six["best_trial"] == 5 and six["pruned"] == 0

    calls = []
    three = study(tmp_path, lambda trial: calls.append(trial) or 0.0, trials=3)
    assert calls == []
    assert three["history"] == six["history"][:3] and three["trials"] == 3 and three["finished"] == 3
    assert three["best_trial"] == 2 and three["valid"] == six["history"][2]["valid"]
    assert three["selected"] == {**six["history"][2]["params"], "train.epochs": 3}
    assert three["selected"] != six["selected"]


def test_weak_curves_are_pruned_after_the_startup_trials(tmp_path):
    steps_run = []

    def objective(trial):
        good = trial.number < 5 or trial.number % 2 == 0
        value = 1.0 if good else 0.1
        for step in range(1, 7):
            steps_run.append((trial.number, step))
            trial.report(value, step)
        return value

    record = study(tmp_path, objective, trials=7, pruner="median")
    states = [h["state"] for h in record["history"]]
    assert states == ["complete"] * 5 + ["pruned", "complete"]  # a pruned trial uses up its place in the budget
    assert record["pruned"] == 1 and record["finished"] == 6
    # Pruned at the first step after the warm-up, not before and not at the end.
    assert max(step for number, step in steps_run if number == 5) == 5
    assert max(step for number, step in steps_run if number == 6) == 6
    assert record["valid"] == 1.0 and record["best_trial"] == 0


def test_every_trial_pruned_is_an_error(tmp_path):
    def always_pruned(trial):
        raise optuna.TrialPruned()

    with pytest.raises(DistillrecError, match="every trial was pruned"):
        study(tmp_path, always_pruned, trials=3)
    assert [t.state for t in stored(tmp_path)] == [TrialState.PRUNED] * 3


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_non_finite_validation_value_is_refused(tmp_path, value):
    calls = []

    def objective(trial):
        calls.append(trial.number)
        return value if trial.number == 1 else 0.5

    with pytest.raises(DistillrecError, match=r"trial 2: validation value .* is not finite"):
        study(tmp_path, objective, trials=4)
    assert calls == [0, 1]
    assert [t.state for t in stored(tmp_path)] == [TrialState.COMPLETE, TrialState.FAIL]


def test_bad_budgets_and_pruners_are_refused(tmp_path):
    with pytest.raises(DistillrecError, match="trials must be >= 1, got 0"):
        study(tmp_path / "a", trials=0)
    with pytest.raises(DistillrecError, match="unknown pruner 'hyperband'"):
        study(tmp_path / "b", pruner="hyperband")
