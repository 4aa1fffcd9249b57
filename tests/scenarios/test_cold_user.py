"""Cold-user scenario: revealed interactions are history, never ground truth; cold users'
teacher vectors are never used; a tiny end-to-end run with the real teacher and Trainer."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from distillrec.config import parse_config
from distillrec.data.splitting import make_split
from distillrec.errors import DistillrecError
from distillrec.evaluation.evaluator import Evaluator
from distillrec.scenarios import SCENARIOS, ScenarioContext
from distillrec.scenarios.cold_user import (BLEND, PROFILE_POPULARITY, SELECTED_ON, TEACHER, TEACHER_BLEND,
                                            blended, check_protocol,
                                            evaluate_cold_users, first_revealed, model_factory, PriorChoice,
                                            shown_history)

STUDENT = {"model": {"dim": 8, "text_dim": 8, "buckets": 512, "feature_dim": 4, "hidden": 16},
           "train": {"epochs": 2, "batch_size": 64}, "ks": [0, 1, 3]}


@pytest.fixture(scope="module")
def cold_users(tiny_movies):
    ds = tiny_movies
    return ds, make_split(ds, "cold-user", fraction=0.2, reveal=3, seed=0)


def test_revealed_interactions_are_history_never_ground_truth(cold_users):
    ds, split = cold_users
    users = check_protocol(split, (0, 1, 3))
    assert set(users) <= set(split.cold_users) and not set(split.cold_users) & set(split.train["user"])
    pairs = lambda frame: set(zip(frame["user"], frame["item"]))  # noqa: E731
    assert len(split.revealed) == 3 * len(split.cold_users)
    assert not pairs(split.revealed) & (pairs(split.valid) | pairs(split.test))
    # k shown items: the first k revealed in time order, and nothing of the test part.
    one = first_revealed(split, 1)
    assert len(one) == len(split.cold_users) and pairs(one) <= pairs(split.revealed)
    assert not pairs(shown_history(split, 3)) & pairs(split.test)
    # A scorer that ranks a user's revealed items first gains nothing: they are masked.
    revealed = torch.zeros(split.n_users, split.n_items)
    revealed[torch.tensor(split.revealed["user"].to_numpy()), torch.tensor(split.revealed["item"].to_numpy())] = 1
    evaluator = Evaluator(split, ks=(3,))
    flat = evaluator.evaluate(lambda u: torch.zeros(len(u), split.n_items), "test", users=users)
    cheat = evaluator.evaluate(lambda u: revealed[u].clone(), "test", users=users)
    assert cheat["ndcg@3"] == flat["ndcg@3"]


def test_broken_protocols_are_refused(cold_users):
    ds, split = cold_users
    with pytest.raises(DistillrecError, match=r"reveals only reveal=3 .* reveal >= max\(ks\) = 5"):
        check_protocol(split, (0, 5))
    with pytest.raises(DistillrecError, match="ks must be integers >= 0"):
        check_protocol(split, (0, -1))
    leaked = replace(split, test=pd.concat([split.test, split.revealed.iloc[:1]], ignore_index=True))
    with pytest.raises(DistillrecError, match="revealed interaction is also ground truth in 'test'"):
        check_protocol(leaked, (0, 1))
    trained = replace(split, train=pd.concat([split.train, split.test[split.test["user"].isin(split.cold_users)]]))
    with pytest.raises(DistillrecError, match="cold user index .* has training interactions"):
        check_protocol(trained, (0, 1))


def test_scenario_end_to_end_without_the_cold_users_teacher_vectors(cold_users, fit_teacher, tmp_path):
    ds, split = cold_users
    fit_teacher(ds, split, tmp_path / "teacher", poison_users=split.cold_users)
    config = parse_config({"split": {"name": "cold-user", "params": {"fraction": 0.2, "reveal": 3}},
                           "scenario": {"name": "cold-user", "seeds": [0, 1], "params": STUDENT}})
    context = ScenarioContext(config=config, dataset=ds, split=split, teacher_dir=tmp_path / "teacher",
                              out=tmp_path / "scenario", progress=False)
    result = SCENARIOS.get("cold-user")(context)
    rows = {row["model"]: row for row in result.table}
    assert list(rows) == ["popularity", PROFILE_POPULARITY, TEACHER, "content", "content-kd", BLEND, TEACHER_BLEND]
    assert BLEND == blended("content-kd") and TEACHER_BLEND == blended(TEACHER)
    for row in rows.values():
        for k in (0, 1, 3):
            assert 0.0 <= row[f"ndcg@10 k={k}"] <= 1.0 and row[f"ndcg@10 k={k} std"] >= 0.0
    # Both popularities see no history: the same at every k.
    for label in ("popularity", PROFILE_POPULARITY):
        assert rows[label]["ndcg@10 k=0"] == rows[label]["ndcg@10 k=3"]
    assert set(result.details["distilled_lift"]) == {"0", "1", "3"}
    details = result.details
    assert details["selected_on"] == SELECTED_ON and details["selected"]["profile_columns"]
    # One blend weight per k and seed for each blended model (the teacher has one seed).
    weights = details["selected"]["blend_weight"]
    assert {k: len(w) for k, w in weights["content-kd"].items()} == {"0": 2, "1": 2, "3": 2}
    assert {k: len(w) for k, w in weights[TEACHER].items()} == {"0": 1, "1": 1, "3": 1}
    # Both students' history priors are chosen per k and seed among the defaults.
    for label in ("content", "content-kd"):
        chosen = details["selected"]["history_prior"][label]
        assert set(chosen) == {"0", "1", "3"} and all(len(v) == 2 and set(v) <= {0, 1, 2, 4, 8} for v in chosen.values())
    # Paired over the test cold users at every k: distilled vs undistilled, each blend vs each popularity.
    pairs = {(p["model"], p["vs"], p["metric"]): p for p in details["paired"]}
    assert len(pairs) == 3 * 5
    assert pairs[(TEACHER_BLEND, "popularity", "test ndcg@10 k=3")]["other"] == pytest.approx(
        rows[TEACHER_BLEND]["ndcg@10 k=3"])
    pair = pairs[(BLEND, PROFILE_POPULARITY, "test ndcg@10 k=1")]
    assert pair["n_users"] == details["n_test_cold_users"]
    assert pair["base"] == pytest.approx(rows[PROFILE_POPULARITY]["ndcg@10 k=1"])
    assert pair["other"] == pytest.approx(rows[BLEND]["ndcg@10 k=1"])


class MeanOfHistory:
    """A stand-in model that reads its history: a user's vector is the mean of its shown items'
    fixed random vectors (zero without history), shrunk by `history_prior` pseudo-items as the
    content student's is, plus a fixed offset (so the prior changes the ranking); dot product."""

    def __init__(self, n_users: int, n_items: int, seed: int):
        generator = torch.Generator().manual_seed(seed)
        self.items = torch.randn(n_items, 4, generator=generator)
        self.offset = torch.randn(4, generator=generator)
        self.n_users, self.sums, self.counts = n_users, torch.zeros(n_users, 4), torch.zeros(n_users, 1)
        self.history_prior = 0.0

    def eval(self):
        return self

    def set_history(self, history: pd.DataFrame) -> None:
        user, item = (torch.from_numpy(history[c].to_numpy(np.int64, copy=True)) for c in ("user", "item"))
        self.counts = torch.bincount(user, minlength=self.n_users).unsqueeze(1).float()
        self.sums = torch.zeros(self.n_users, 4).index_add_(0, user, self.items[item])

    def score(self, users: torch.Tensor) -> torch.Tensor:
        mean = self.sums[users] / (self.counts[users] + self.history_prior).clamp(min=1e-9)
        return (mean + self.offset) @ self.items.T


def test_every_choice_is_made_on_valid_users_never_on_test(cold_users):
    ds, split = cold_users
    rng = np.random.default_rng(1)
    # Garbage ground truth: every test row gets a random item (none of them a revealed pair).
    garbage = split.test.assign(item=rng.integers(0, split.n_items, len(split.test)))
    revealed = set(zip(split.revealed["user"], split.revealed["item"]))
    garbage = garbage[[pair not in revealed for pair in zip(garbage["user"], garbage["item"])]]
    assert set(split.cold_users) & set(garbage["user"]) == set(split.cold_users) & set(split.test["user"])

    def run(s):
        models = {"content-kd": [PriorChoice(MeanOfHistory(s.n_users, s.n_items, seed), s, (0, 1, 4))
                                 for seed in (0, 1)],
                  TEACHER: [model_factory(MeanOfHistory(s.n_users, s.n_items, 2), s)]}
        return evaluate_cold_users(s, ds.users, (0, 1, 3), models, blend_bases=("content-kd", TEACHER))

    honest, corrupted = run(split), run(replace(split, test=garbage.reset_index(drop=True)))
    assert honest["selected"] == corrupted["selected"] and honest["selection"] == corrupted["selection"]
    assert honest["selected_on"] == "valid cold users"
    for base in ("content-kd", TEACHER):
        assert set(honest["selected"]["blend_weight"][base]) == {"0", "1", "3"}
    assert set(honest["selected"]["history_prior"]["content-kd"]) == {"0", "1", "3"}
    assert len(honest["selection"]["profile_columns"]) == 7  # every non-empty subset of age, gender, occupation
    assert honest["per_seed"] != corrupted["per_seed"]  # the test part does matter to the test values
    assert list(honest["per_seed"]) == ["popularity", PROFILE_POPULARITY, "content-kd", TEACHER, BLEND, TEACHER_BLEND]
    assert honest["paired"] != corrupted["paired"]


def test_history_prior_is_refused_before_it_is_chosen_and_scores_with_the_choice(cold_users):
    ds, split = cold_users
    model = MeanOfHistory(split.n_users, split.n_items, 0)
    factory = PriorChoice(model, split, (0, 4))
    with pytest.raises(DistillrecError, match="no history prior chosen for k=1"):
        factory("test", 1)
    seen = []
    values = factory.choose(1, lambda scorer: seen.append(scorer(torch.tensor([0]))) or model.history_prior)
    assert values == {"0.0": 0.0, "4.0": 4.0} and factory.chosen[1] == 4.0  # the higher "value" wins
    model.history_prior = 0.0  # another scorer sharing the model changed it: the choice still holds
    factory("test", 1)(torch.tensor([0]))
    assert model.history_prior == 4.0
    with pytest.raises(DistillrecError, match="history_priors must be"):
        PriorChoice(model, split, (-1,))


