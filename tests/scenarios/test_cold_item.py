"""Cold-item scenario: the protocol's invariant (cold items never in training, their teacher
vectors never used) and a tiny end-to-end run with the real MiniLM teacher and the real Trainer."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from distillrec.config import parse_config
from distillrec.data.split import Split
from distillrec.data.splitting import make_split
from distillrec.errors import DistillrecError
from distillrec.scenarios import SCENARIOS, ScenarioContext
from distillrec.scenarios.cold_item import ColdItemProtocol, cold_item_sets

STUDENT = {"model": {"dim": 8, "text_dim": 8, "buckets": 512, "feature_dim": 4, "hidden": 16},
           "train": {"epochs": 2, "batch_size": 64}, "ks": [5], "encode_items": 16}


@pytest.fixture(scope="module")
def cold_items(tiny_movies):
    ds = tiny_movies
    return ds, make_split(ds, "cold-item", fraction=0.2, seed=0)


def test_cold_items_are_never_in_training(cold_items):
    ds, split = cold_items
    test_cold, warm = cold_item_sets(split)
    assert not set(split.cold_items) & set(split.train["item"])
    assert set(test_cold) <= set(split.cold_items) and not set(test_cold) & set(split.valid["item"])
    assert not set(test_cold) & set(warm)
    leaked = replace(split, train=pd.concat([split.train, split.test[split.test["item"] == test_cold[0]]]))
    with pytest.raises(DistillrecError, match="cold item.*training interactions"):
        cold_item_sets(leaked)


def test_protocol_scores_cold_catalog_and_warm_separately(cold_items):
    ds, split = cold_items
    protocol = ColdItemProtocol(split, ks=(5,))
    test_cold = torch.as_tensor(protocol.test_cold)

    def cold_first(users):  # a scorer that puts every cold test item on top
        scores = torch.zeros(len(users), split.n_items)
        scores[:, test_cold] = 1.0
        return scores

    result = protocol.evaluate(cold_first)
    assert set(result) == {f"{w} {m}@5" for w in ("cold", "catalog", "warm", "all") for m in ("recall", "ndcg")}
    # With at most 5 test cold items, ranking them first finds every cold interaction both ways.
    assert len(test_cold) <= 5 and result["cold recall@5"] == result["catalog recall@5"] == 1.0
    assert result["warm recall@5"] < 1.0


def _frame(pairs: list[tuple[int, int]]) -> pd.DataFrame:
    users, items = zip(*pairs)
    return pd.DataFrame({"user": np.array(users, np.int64), "item": np.array(items, np.int64),
                         "rating": np.ones(len(pairs), np.float32), "timestamp": np.zeros(len(pairs), np.int64)})


def test_the_all_ranking_ranks_every_test_interaction_over_new_and_old_items():
    # 2 users x 5 items; items 3 and 4 are cold (no training interaction).
    #           train    valid   test        scores over items 0..4
    #   user 0  {0}      {2}     {1, 3}      [5, 1, 4, 3, 2]
    #   user 1  {1, 2}   {}      {0, 3, 4}   [3, 5, 4, 1, 2]
    split = Split("cold-item", train=_frame([(0, 0), (1, 1), (1, 2)]), valid=_frame([(0, 2)]),
                  test=_frame([(0, 1), (0, 3), (1, 0), (1, 3), (1, 4)]), n_users=2, n_items=5,
                  cold_items=np.array([3, 4]))
    table = torch.tensor([[5.0, 1.0, 4.0, 3.0, 2.0], [3.0, 5.0, 4.0, 1.0, 2.0]])
    result = ColdItemProtocol(split, ks=(2,)).evaluate(lambda users: table[users])
    d2 = 1 / math.log2(3)  # the discount of rank 2
    # all: seen items masked, the rest ranked together.
    #   user 0: {0, 2} masked -> [3, 4, 1], top 2 [3, 4]; truth {1, 3}: a hit at rank 1 of 2
    #   user 1: {1, 2} masked -> [0, 4, 3], top 2 [0, 4]; truth {0, 3, 4}: hits at ranks 1, 2
    assert result["all recall@2"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert result["all ndcg@2"] == pytest.approx((1 / (1 + d2) + 1.0) / 2)
    # The other three keep their meaning. catalog (same top 2, truth: cold items only):
    # user 0 {3} hit at 1; user 1 {3, 4}: only 4, at rank 2.
    assert result["catalog recall@2"] == pytest.approx((1 + 1 / 2) / 2)
    assert result["catalog ndcg@2"] == pytest.approx((1 + d2 / (1 + d2)) / 2)
    # cold (within {3, 4}) and warm (within {0, 1, 2}): every truth item comes first.
    assert result["cold recall@2"] == result["cold ndcg@2"] == result["warm recall@2"] == result["warm ndcg@2"] == 1.0


def test_scenario_end_to_end_without_the_cold_items_teacher_vectors(cold_items, fit_teacher, tmp_path):
    ds, split = cold_items
    # The cold items' teacher vectors are NaN: used anywhere in training, the loss turns NaN.
    fit_teacher(ds, split, tmp_path / "teacher", poison_items=split.cold_items)
    config = parse_config({"split": {"name": "cold-item", "params": {"fraction": 0.2}},
                           "scenario": {"name": "cold-item", "seeds": [0, 1], "params": STUDENT}})
    context = ScenarioContext(config=config, dataset=ds, split=split, teacher_dir=tmp_path / "teacher",
                              out=tmp_path / "scenario", progress=False)
    result = SCENARIOS.get("cold-item")(context)
    rows = {row["model"]: row for row in result.table}
    assert list(rows) == ["popularity", "text-kNN (language model)", "teacher (language model)",
                          "content", "content-kd"]
    for row in rows.values():
        for key in ("cold ndcg@5", "catalog ndcg@5", "warm ndcg@5", "all ndcg@5", "all recall@5", "cold recall@5"):
            assert 0.0 <= row[key] <= 1.0 and row[f"{key} std"] >= 0.0
    assert rows["popularity"]["cold ndcg@5 std"] == rows["text-kNN (language model)"]["cold ndcg@5 std"] == 0.0
    # Over the full catalogue popularity never ranks a cold item (no training count) above the
    # warm ones; text-kNN scores cold items from their text alone, so it finds some.
    assert rows["popularity"]["catalog ndcg@5"] == 0.0 < rows["text-kNN (language model)"]["catalog ndcg@5"]
    knn, teacher = rows["text-kNN (language model)"], rows["teacher (language model)"]
    assert knn["items/s (1 thread)"] == teacher["items/s (1 thread)"]  # both encode with the language model
    assert "'all'" in result.notes and "text-kNN" in result.notes
    assert len(result.details["per_seed"]["content-kd"]) == 2
    # Paired over users within the test's cold items, the distilled student's per-user values
    # averaged over its seeds: the same means as the table's.
    paired = {(row["model"], row["vs"], row["metric"]): row for row in result.details["paired"]}
    assert len(paired) == 6
    vs_teacher = paired[("content-kd", "teacher (language model)", "test cold ndcg@5")]
    assert vs_teacher["base"] == pytest.approx(rows["teacher (language model)"]["cold ndcg@5"])
    assert vs_teacher["other"] == pytest.approx(rows["content-kd"]["cold ndcg@5"])
    assert paired[("content-kd", "content", "test cold ndcg@5")]["base"] == pytest.approx(rows["content"]["cold ndcg@5"])
    vs_knn = paired[("content-kd", "text-kNN (language model)", "test cold ndcg@5")]
    assert vs_knn["base"] == pytest.approx(rows["text-kNN (language model)"]["cold ndcg@5"])
    assert vs_knn["other"] == pytest.approx(rows["content-kd"]["cold ndcg@5"])
    # The mixed catalogue's cold-item recall and the warm items' NDCG, paired the same way.
    catalog = paired[("content-kd", "text-kNN (language model)", "test catalog recall@5")]
    assert catalog["base"] == pytest.approx(rows["text-kNN (language model)"]["catalog recall@5"])
    assert catalog["other"] == pytest.approx(rows["content-kd"]["catalog recall@5"])
    warm = paired[("content-kd", "content", "test warm ndcg@5")]
    assert warm["base"] == pytest.approx(rows["content"]["warm ndcg@5"])
    assert result.details["encoding"]["student_items_per_s"] > 0 and rows["content"]["items/s (1 thread)"] > 0
    assert (tmp_path / "scenario" / "runs" / "content-kd-s1" / "manifest.json").exists()
