"""Cold-user scenario: revealed interactions are history, never ground truth; cold users'
teacher vectors are never used; a tiny end-to-end run with the real teacher and Trainer."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
import pytest
import torch

from distillrec.config import parse_config
from distillrec.data.splitting import make_split
from distillrec.errors import DistillrecError
from distillrec.evaluation.evaluator import Evaluator
from distillrec.scenarios import SCENARIOS, ScenarioContext
from distillrec.scenarios.cold_user import check_protocol, first_revealed, shown_history

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
    with pytest.raises(DistillrecError, match="ks must be integers in 0..reveal=3"):
        check_protocol(split, (0, 5))
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
    assert list(rows) == ["popularity", "teacher (language model)", "content", "content-kd"]
    for row in rows.values():
        for k in (0, 1, 3):
            assert 0.0 <= row[f"ndcg@10 k={k}"] <= 1.0 and row[f"ndcg@10 k={k} std"] >= 0.0
    # Popularity sees no history: the same at every k.
    assert rows["popularity"]["ndcg@10 k=0"] == rows["popularity"]["ndcg@10 k=3"]
    assert set(result.details["distilled_lift"]) == {"0", "1", "3"}
