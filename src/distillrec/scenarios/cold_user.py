"""Cold-start users: new users with a profile and 0, 1, 3, 5 or 10 revealed interactions.

Protocol (split `cold-user` with `reveal: R`): the held-out users have no training interaction;
each one's first R interactions in time order are `split.revealed`, the rest are valid (half
of the users) or test (the other half) ground truth. For each k in `ks` (every k <= R) a cold
user is shown only the first k revealed items; the ground truth is the same for every k (all R
revealed interactions are excluded from it and masked), so the columns differ only in what the
model sees. A user's vector comes from the trained towers without retraining: the user tower
over the profile (age, gender, occupation; no ID, since the user had no training interaction)
and the mean of the shown items' vectors. NDCG@10 over the full catalog (train, valid and
revealed items of the user are masked, as for every model and every k).

Models: popularity; popularity by profile (evaluation/baselines.py: the items' training
popularity among the training users who share the new user's profile values); the content
student (students/content.py: profile tower + history pooling) without and with feature
distillation of the teacher's user and item representations (warm users and items only: cold
users never appear in a training batch); the distilled student and the teacher, each blended
with popularity by profile; the teacher (attention over the shown items + profile). Neither
popularity reads revealed items, and their ground truth and masks do not change with k, so
their value is the same at every k (computed per k all the same).

Every choice the scenario makes is made on the VALID cold users (NDCG@10), never on test:
  - the profile columns of popularity by profile: the best non-empty subset of `profile_columns`
    (the combination of all three may be too sparse; a single column may win). One choice for
    every k, since nothing it is scored on changes with k;
  - the content students' history prior (the pseudo-count that shrinks a short history's
    mean toward zero: one revealed item says less than fifty) from `history_priors`, per k, per
    student and seed: a scoring-time setting, chosen before the blend that uses it;
  - the blend weight w (score = (1 - w) z(model) + w z(popularity by profile), z-scored per
    user over the catalog) from `blend_weights`, per k, per blended model and per seed.
The selections and every candidate's valid NDCG@10 are in details["selected"] and
details["selection"]. Ties go to the first candidate (fewer columns; smaller prior; smaller w).
Paired tests over the test cold users (Wilcoxon, t) at every k, in details["paired"]: distilled
vs undistilled, and each blend vs each popularity.
"""

from __future__ import annotations

from dataclasses import replace
from itertools import combinations
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from distillrec import runs
from distillrec.data.split import Split
from distillrec.errors import DistillrecError
from distillrec.scenarios import SCENARIOS, ScenarioContext, ScenarioResult
from distillrec.scenarios.cold_item import DISTILLED, UNDISTILLED, summarise, teacher_run, train_students
from distillrec.scenarios.common import best, blend_scorer

DEFAULT_KS = (0, 1, 3, 5, 10)
#: feature KD on the batch's (warm) users and positive items against the teacher's vectors.
DEFAULT_KD: dict[str, Any] = {"feature": {"weight": 1.0, "kind": "cosine", "on": "both"}}
#: the profile columns popularity by profile may group by (the subset is chosen on valid users).
DEFAULT_PROFILE_COLUMNS = ("age", "gender", "occupation")
#: the weights of popularity by profile in the blend (chosen per k on valid users).
DEFAULT_BLEND_WEIGHTS = (0.0, 0.25, 0.5, 0.75)
#: the content students' history priors (pseudo-items; chosen per k on valid users).
DEFAULT_HISTORY_PRIORS = (0.0, 1.0, 2.0, 4.0, 8.0)
METRIC = "ndcg@10"
POPULARITY, PROFILE_POPULARITY, TEACHER = "popularity", "popularity by profile", "teacher (language model)"


def blended(label: str) -> str:
    """The row label of `label`'s scores blended with popularity by profile."""
    return f"{label} + profile popularity (blend)"


BLEND, TEACHER_BLEND = blended(DISTILLED), blended(TEACHER)
SELECTED_ON = "valid cold users"

#: (part, k) -> a scorer over user indices that sees, for the cold users, their first k
#: revealed items (and the history before `part`); called just before the scorer is used,
#: since models read their history when it is made.
ScorerFactory = Callable[[str, int], Callable]


# --------------------------------------------------------------------------- protocol

def check_protocol(split: Split, ks: tuple[int, ...]) -> np.ndarray:
    """The test part's cold users; raises if the split breaks the protocol: a cold user in
    train, a revealed interaction also in valid or test, or a k beyond what was revealed."""
    if split.name != "cold-user" or len(split.cold_users) == 0:
        raise DistillrecError(f"the cold-user scenario needs the 'cold-user' split, got {split.name!r}")
    reveal = int(split.params.get("reveal", 0))
    if not ks or any(isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0 for k in ks):
        raise DistillrecError(f"cold-user scenario: ks must be integers >= 0, got {list(ks)}")
    if max(ks) > reveal:
        raise DistillrecError(f"cold-user scenario: ks go up to k={max(ks)} but the split reveals only "
                              f"reveal={reveal} interactions per cold user; expected the split's "
                              f"reveal >= max(ks) = {max(ks)} (split params: reveal: {max(ks)}) or smaller ks")
    in_train = np.intersect1d(split.cold_users, split.train["user"].to_numpy())
    if len(in_train):
        raise DistillrecError(f"cold-user split: cold user index {int(in_train[0])} has training interactions")
    revealed = set(zip(split.revealed["user"].to_numpy().tolist(), split.revealed["item"].to_numpy().tolist()))
    for part in ("valid", "test"):
        frame = split.part(part)
        if revealed & set(zip(frame["user"].to_numpy().tolist(), frame["item"].to_numpy().tolist())):
            raise DistillrecError(f"cold-user split: a revealed interaction is also ground truth in '{part}'")
    return cold_users_in(split, "test")


def cold_users_in(split: Split, part: str) -> np.ndarray:
    """The cold users with ground truth in `part` ("valid": those the scenario selects on)."""
    users = np.intersect1d(split.cold_users, split.part(part)["user"].to_numpy())
    if len(users) == 0:
        raise DistillrecError(f"cold-user split: no cold user has {part} interactions; expected a larger fraction")
    return users


def first_revealed(split: Split, k: int) -> pd.DataFrame:
    """Each cold user's first k revealed interactions in time order."""
    ordered = split.revealed.sort_values(["user", "timestamp"], kind="stable")
    return ordered[ordered.groupby("user", sort=False).cumcount().to_numpy() < k]


def shown_history(split: Split, k: int, part: str = "test") -> pd.DataFrame:
    """What a model may see when scoring `part` with k revealed items per cold user."""
    return replace(split, revealed=first_revealed(split, k)).history(part)


def history_scorer(model, history: pd.DataFrame) -> Callable:
    model.eval()
    model.set_history(history)

    def scorer(users: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return model.score(users)
    return scorer


def model_factory(model, split: Split) -> ScorerFactory:
    return lambda part, k: history_scorer(model, shown_history(split, k, part))


class PriorChoice:
    """A scorer factory for a model that pools the shown history with a pseudo-count prior
    (the content student's `history_prior`): at each k it scores with the prior `choose` picked
    on the valid part; asked for a k before the choice, it refuses."""

    def __init__(self, model, split: Split, priors: Sequence[float]):
        if not priors or any(float(p) < 0 for p in priors):
            raise DistillrecError(f"cold-user scenario: history_priors must be a non-empty list of numbers >= 0, "
                                  f"got {list(priors)}")
        self.model, self.split, self.priors = model, split, [float(p) for p in priors]
        self.chosen: dict[int, float] = {}

    def _with_prior(self, inner: Callable, prior: float) -> Callable:
        def scorer(users: torch.Tensor) -> torch.Tensor:
            self.model.history_prior = prior  # set per call: several scorers share the model
            return inner(users)
        return scorer

    def choose(self, k: int, valid_value: Callable[[Callable], float]) -> dict[str, float]:
        """Pick the prior for k by `valid_value(scorer)` (valid part only); {str(prior): value}."""
        inner = history_scorer(self.model, shown_history(self.split, k, "valid"))  # one history for every prior
        self.chosen[k], values = best(self.priors, lambda prior: valid_value(self._with_prior(inner, prior)))
        return {str(p): v for p, v in zip(self.priors, values)}

    def __call__(self, part: str, k: int) -> Callable:
        if k not in self.chosen:
            raise DistillrecError(f"cold-user scenario: no history prior chosen for k={k} yet")
        return self._with_prior(history_scorer(self.model, shown_history(self.split, k, part)), self.chosen[k])


# --------------------------------------------------------------------------- selection on valid users

def column_candidates(users_table: pd.DataFrame, columns: Sequence[str]) -> list[tuple[str, ...]]:
    """Every non-empty subset of the `columns` the users table has (and fills somewhere), fewer
    columns first, in the given order."""
    present = [c for c in columns if c in users_table.columns and users_table[c].notna().any()]
    if not present:
        raise DistillrecError(f"cold-user scenario: the users table has none of the profile columns "
                              f"{', '.join(map(repr, columns))} (it has {', '.join(map(str, users_table.columns))}); "
                              "popularity by profile needs at least one")
    return [subset for size in range(1, len(present) + 1) for subset in combinations(present, size)]


def select_profile_columns(split: Split, users_table: pd.DataFrame, columns: Sequence[str], evaluator,
                           valid_users: np.ndarray) -> tuple[tuple[str, ...], dict[str, float]]:
    """(the subset of `columns` whose popularity by profile has the best valid NDCG@10 on the
    valid cold users, {"age+gender": its valid NDCG@10, ...})."""
    from distillrec.evaluation.baselines import ProfilePopularityScorer

    candidates = column_candidates(users_table, columns)
    chosen, values = best(candidates, lambda subset: evaluator.evaluate(
        ProfilePopularityScorer(split, users_table, subset), "valid", users=valid_users)[METRIC])
    return chosen, {"+".join(subset): value for subset, value in zip(candidates, values)}


def select_blend_weight(make_scorer: ScorerFactory, popularity: Callable, k: int, weights: Sequence[float],
                        evaluator, valid_users: np.ndarray) -> tuple[float, dict[str, float]]:
    """(the blend weight with the best valid NDCG@10 at k on the valid cold users, {str(w): value})."""
    model = make_scorer("valid", k)
    chosen, values = best(list(weights), lambda w: evaluator.evaluate(
        blend_scorer(model, popularity, w), "valid", users=valid_users)[METRIC])
    return float(chosen), {str(w): value for w, value in zip(weights, values)}


# --------------------------------------------------------------------------- the table

def evaluate_cold_users(split: Split, users_table: pd.DataFrame, ks: tuple[int, ...],
                        models: Mapping[str, Sequence[ScorerFactory]], *, blend_bases: Sequence[str] = (DISTILLED,),
                        profile_columns: Sequence[str] = DEFAULT_PROFILE_COLUMNS,
                        blend_weights: Sequence[float] = DEFAULT_BLEND_WEIGHTS) -> dict[str, Any]:
    """Every row of the scenario's table on the test cold users, each choice made on the valid
    cold users first: {"per_seed": {label: [{"ndcg@10 k=K": value}] per seed}, "selected": ...,
    "selection": candidates' valid NDCG@10, "paired": paired tests over test users at each k,
    "n_test_cold_users", "n_valid_cold_users"}.

    models: label -> one scorer factory per seed (popularity and popularity by profile are
    added here; a PriorChoice gets its history prior chosen per k); blend_bases: the labels whose
    seeds are blended with popularity by profile, one blend row each (`blended(label)`; a label
    absent from models, or empty blend_weights: no row). Only the valid part is read before the
    test part is scored, and the test part never feeds a choice.
    """
    from distillrec.evaluation.baselines import PopularityScorer, ProfilePopularityScorer
    from distillrec.evaluation.evaluator import Evaluator

    users = check_protocol(split, ks)
    valid_users = cold_users_in(split, "valid")
    weights = [float(w) for w in blend_weights]
    if any(not 0 <= w <= 1 for w in weights):
        raise DistillrecError(f"cold-user scenario: blend_weights must lie in [0, 1], got {list(blend_weights)}")
    evaluator = Evaluator(split, ks=(10,))

    per_user: dict[str, dict[int, list[np.ndarray]]] = {}  # label -> k -> test values per seed
    tested_users: list[np.ndarray] = []  # every evaluation's users: the pairs need them equal

    def test_value(label: str, k: int, scorer) -> float:
        tested, values = evaluator.per_user(scorer, "test", METRIC, users=users)
        per_user.setdefault(label, {}).setdefault(k, []).append(values)
        tested_users.append(tested)
        return float(values.mean())  # = evaluate(...)[METRIC]

    def per_k(label: str, make_scorer: ScorerFactory) -> dict[str, float]:
        return {f"{METRIC} k={k}": test_value(label, k, make_scorer("test", k)) for k in ks}

    def valid_value(scorer) -> float:
        return evaluator.evaluate(scorer, "valid", users=valid_users)[METRIC]

    # Selections first, on the valid cold users only.
    columns, column_values = select_profile_columns(split, users_table, profile_columns, evaluator, valid_users)
    popularity, profile = PopularityScorer(split), ProfilePopularityScorer(split, users_table, columns)
    selected: dict[str, Any] = {"profile_columns": list(columns)}
    selection: dict[str, Any] = {"profile_columns": column_values}
    for label, factories in models.items():
        choices = [f for f in factories if isinstance(f, PriorChoice)]
        if choices:
            values = {str(k): [f.choose(k, valid_value) for f in choices] for k in ks}
            selection.setdefault("history_prior", {})[label] = values
            selected.setdefault("history_prior", {})[label] = {str(k): [f.chosen[k] for f in choices] for k in ks}

    per_seed = {POPULARITY: [per_k(POPULARITY, lambda part, k: popularity)],
                PROFILE_POPULARITY: [per_k(PROFILE_POPULARITY, lambda part, k: profile)]}
    for label, factories in models.items():
        per_seed[label] = [per_k(label, factory) for factory in factories]
    for base in blend_bases:
        if base not in models or not weights:
            continue
        chosen_weights: dict[str, list[float]] = {str(k): [] for k in ks}
        weight_values: dict[str, list[dict[str, float]]] = {str(k): [] for k in ks}
        rows = []
        for factory in models[base]:
            row = {}
            for k in ks:
                w, values = select_blend_weight(factory, profile, k, weights, evaluator, valid_users)
                chosen_weights[str(k)].append(w)
                weight_values[str(k)].append(values)
                row[f"{METRIC} k={k}"] = test_value(blended(base), k, blend_scorer(factory("test", k), profile, w))
            rows.append(row)
        per_seed[blended(base)] = rows
        selected.setdefault("blend_weight", {})[base] = chosen_weights
        selection.setdefault("blend_weight", {})[base] = weight_values
    if any(not np.array_equal(tested_users[0], t) for t in tested_users):
        raise DistillrecError("cold-user scenario: models were evaluated on different test users")
    return {"per_seed": per_seed, "selected": selected, "selected_on": SELECTED_ON, "selection": selection,
            "selection_metric": f"valid {METRIC}",
            "paired": paired_tests(per_user, tested_users[0], ks, [blended(base) for base in blend_bases]),
            "n_test_cold_users": int(len(users)), "n_valid_cold_users": int(len(valid_users))}


def paired_tests(per_user: Mapping[str, Mapping[int, list[np.ndarray]]], users: np.ndarray, ks: Sequence[int],
                 blends: Sequence[str]) -> list[dict]:
    """Per k, paired over the test cold users (each user's value averaged over the seeds):
    distilled vs undistilled and each blend vs each popularity, where both rows exist."""
    from distillrec.evaluation.significance import paired_users

    pairs = ((UNDISTILLED, DISTILLED),
             *((base, blend) for blend in blends for base in (POPULARITY, PROFILE_POPULARITY)))
    out = []
    for k in ks:
        for base, other in pairs:
            if base in per_user and other in per_user:
                out.append({"model": other, "vs": base, "metric": f"test {METRIC} k={k}",
                            **paired_users((users, np.mean(per_user[base][k], axis=0)),
                                           (users, np.mean(per_user[other][k], axis=0)))})
    return out


# --------------------------------------------------------------------------- the scenario

@SCENARIOS.register("cold-user")
def run(context: ScenarioContext) -> ScenarioResult:
    params = context.params
    ks = tuple(params.get("ks", DEFAULT_KS))
    teacher = teacher_run(context)
    split = teacher.split
    check_protocol(split, ks)  # before any training: a bad k or split fails at once
    cold_users_in(split, "valid")
    students = train_students(context, teacher, params.get("kd", DEFAULT_KD))
    teacher_model = runs.load_model(teacher.path, dataset=teacher.dataset, split=split)
    models = {TEACHER: [model_factory(teacher_model, split)]}
    priors = tuple(params.get("history_priors", DEFAULT_HISTORY_PRIORS))
    models.update({label: [PriorChoice(model, split, priors) for model in seeds] for label, seeds in students.items()})
    result = evaluate_cold_users(split, teacher.dataset.users, ks, models, blend_bases=(DISTILLED, TEACHER),
                                 profile_columns=tuple(params.get("profile_columns", DEFAULT_PROFILE_COLUMNS)),
                                 blend_weights=tuple(params.get("blend_weights", DEFAULT_BLEND_WEIGHTS)))
    per_seed = result["per_seed"]
    table = [summarise(label, values) for label, values in per_seed.items()]

    rows = {row["model"]: row for row in table}
    lifts = {k: rows[DISTILLED][f"{METRIC} k={k}"] / rows[UNDISTILLED][f"{METRIC} k={k}"] - 1 for k in ks}
    reveal = int(split.params.get("reveal", 0))
    details = {**result, "seeds": context.seeds, "reveal": reveal, "ks": list(ks),
               "distilled_lift": {str(k): v for k, v in lifts.items()}, "kd": params.get("kd", DEFAULT_KD)}
    selected = result["selected"]
    blend = ""
    for base, weights in selected.get("blend_weight", {}).items():
        blend += (f"; {base}: blend weight of popularity by profile per k (one per seed): "
                  + ", ".join(f"k={k} {weights[str(k)]}" for k in ks))
    if DISTILLED in selected.get("history_prior", {}):
        blend += ("; the distilled student's history prior per k: "
                  + ", ".join(f"k={k} {selected['history_prior'][DISTILLED][str(k)]}" for k in ks))
    notes = (f"Cold-user split: {result['n_test_cold_users']} test users never seen in training, shown their "
             f"first k of {reveal} revealed interactions (never ground truth); NDCG@10 over the full catalog. "
             f"Choices made on the {result['n_valid_cold_users']} valid cold users (NDCG@10), never on test: "
             f"popularity by profile groups by {'+'.join(selected['profile_columns'])}{blend}. "
             f"Students: towers without retraining, mean ± std over seeds {context.seeds}; teacher (seed-0 "
             f"pipeline stage, shared) and both popularities do not vary (nor do the popularities across k: "
             f"they read no revealed item and the ground truth is the same at every k). Distilled vs "
             f"undistilled: " + ", ".join(f"k={k} {100 * v:+.1f}%" for k, v in lifts.items()) + ".")
    return ScenarioResult(table=table, notes=notes, details=details)
