"""Cold-start users: new users with a profile and 0, 1, 3 or 5 revealed interactions.

Protocol (split `cold-user` with `reveal: R`): the held-out users have no training interaction;
each one's first R interactions in time order are `split.revealed`, the rest are valid (half
of the users) or test (the other half) ground truth. For each k in `ks` (<= R) a cold user is
shown only the first k revealed items; the ground truth is the same for every k (all R revealed
interactions are excluded from it), so the columns differ only in what the model sees.
A user's vector comes from the trained towers without retraining: the user tower over the
profile (age, gender, occupation; no ID, since the user had no training interaction) and the
mean of the shown items' vectors. NDCG@10 over the full catalog (train, valid and revealed
items of the user are masked, as for every model and every k).

Models: popularity; the content student (students/content.py: profile tower + history
pooling) without and with feature distillation of the teacher's user and item
representations (warm users and items only: cold users never appear in a training batch);
the teacher for reference (attention over the shown items + profile).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch

from distillrec import runs
from distillrec.data.split import Split
from distillrec.errors import DistillrecError
from distillrec.scenarios import SCENARIOS, ScenarioContext, ScenarioResult
from distillrec.scenarios.cold_item import DISTILLED, UNDISTILLED, summarise, teacher_run, train_students

DEFAULT_KS = (0, 1, 3, 5)
#: feature KD on the batch's (warm) users and positive items against the teacher's vectors.
DEFAULT_KD: dict[str, Any] = {"feature": {"weight": 1.0, "kind": "cosine", "on": "both"}}
METRIC = "ndcg@10"


def check_protocol(split: Split, ks: tuple[int, ...]) -> np.ndarray:
    """The test part's cold users; raises if the split breaks the protocol: a cold user in
    train, a revealed interaction also in valid or test, or a k beyond what was revealed."""
    if split.name != "cold-user" or len(split.cold_users) == 0:
        raise DistillrecError(f"the cold-user scenario needs the 'cold-user' split, got {split.name!r}")
    reveal = int(split.params.get("reveal", 0))
    if not ks or any(not isinstance(k, int) or not 0 <= k <= reveal for k in ks):
        raise DistillrecError(f"cold-user scenario: ks must be integers in 0..reveal={reveal} (the split's "
                              f"revealed interactions per cold user), got {list(ks)}")
    in_train = np.intersect1d(split.cold_users, split.train["user"].to_numpy())
    if len(in_train):
        raise DistillrecError(f"cold-user split: cold user index {int(in_train[0])} has training interactions")
    revealed = set(zip(split.revealed["user"].to_numpy().tolist(), split.revealed["item"].to_numpy().tolist()))
    for part in ("valid", "test"):
        frame = split.part(part)
        if revealed & set(zip(frame["user"].to_numpy().tolist(), frame["item"].to_numpy().tolist())):
            raise DistillrecError(f"cold-user split: a revealed interaction is also ground truth in '{part}'")
    users = np.intersect1d(split.cold_users, split.test["user"].to_numpy())
    if len(users) == 0:
        raise DistillrecError("cold-user split: no cold user has test interactions; expected a larger fraction")
    return users


def first_revealed(split: Split, k: int) -> pd.DataFrame:
    """Each cold user's first k revealed interactions in time order."""
    ordered = split.revealed.sort_values(["user", "timestamp"], kind="stable")
    return ordered[ordered.groupby("user", sort=False).cumcount().to_numpy() < k]


def shown_history(split: Split, k: int) -> pd.DataFrame:
    """What a model may see when scoring the test part with k revealed items per cold user."""
    return replace(split, revealed=first_revealed(split, k)).history("test")


def history_scorer(model, history: pd.DataFrame) -> Callable:
    model.eval()
    model.set_history(history)

    def scorer(users: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return model.score(users)
    return scorer


@SCENARIOS.register("cold-user")
def run(context: ScenarioContext) -> ScenarioResult:
    from distillrec.evaluation.baselines import PopularityScorer
    from distillrec.evaluation.evaluator import Evaluator

    params = context.params
    ks = tuple(params.get("ks", DEFAULT_KS))
    teacher = teacher_run(context)
    split = teacher.split
    users = check_protocol(split, ks)
    evaluator = Evaluator(split, ks=(10,))
    students = train_students(context, teacher, params.get("kd", DEFAULT_KD))
    teacher_model = runs.load_model(teacher.path, dataset=teacher.dataset, split=split)
    histories = {k: shown_history(split, k) for k in ks}

    def per_k(make_scorer) -> dict[str, float]:
        return {f"{METRIC} k={k}": evaluator.evaluate(make_scorer(k), "test", users=users)[METRIC] for k in ks}

    popularity = PopularityScorer(split)
    per_seed = {"popularity": [per_k(lambda k: popularity)],
                "teacher (language model)": [per_k(lambda k: history_scorer(teacher_model, histories[k]))]}
    for label, models in students.items():
        per_seed[label] = [per_k(lambda k, m=model: history_scorer(m, histories[k])) for model in models]
    table = [summarise(label, values) for label, values in per_seed.items()]

    rows = {row["model"]: row for row in table}
    lifts = {k: rows[DISTILLED][f"{METRIC} k={k}"] / rows[UNDISTILLED][f"{METRIC} k={k}"] - 1 for k in ks}
    details = {"per_seed": per_seed, "seeds": context.seeds, "n_test_cold_users": int(len(users)),
               "reveal": int(split.params.get("reveal", 0)), "distilled_lift": {str(k): v for k, v in lifts.items()},
               "kd": params.get("kd", DEFAULT_KD)}
    notes = (f"Cold-user split: {len(users)} test users never seen in training, shown their first k of "
             f"{details['reveal']} revealed interactions (never ground truth); NDCG@10 over the full catalog. "
             f"Students: towers without retraining, mean ± std over seeds {context.seeds}; teacher (seed-0 "
             f"pipeline stage, shared) and popularity do not vary. Distilled vs undistilled: "
             + ", ".join(f"k={k} {100 * v:+.1f}%" for k, v in lifts.items()) + ".")
    return ScenarioResult(table=table, notes=notes, details=details)
