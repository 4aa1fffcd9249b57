"""Cold-item scenario: the protocol's invariant (cold items never in training, their teacher
vectors never used) and a tiny end-to-end run with the real MiniLM teacher and the real Trainer."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
import pytest
import torch

from distillrec.config import parse_config
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
    assert set(result) == {f"{w} {m}@5" for w in ("cold", "catalog", "warm") for m in ("recall", "ndcg")}
    # With at most 5 test cold items, ranking them first finds every cold interaction both ways.
    assert len(test_cold) <= 5 and result["cold recall@5"] == result["catalog recall@5"] == 1.0
    assert result["warm recall@5"] < 1.0


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
    assert list(rows) == ["popularity", "teacher (language model)", "content", "content-kd"]
    for row in rows.values():
        for key in ("cold ndcg@5", "catalog ndcg@5", "warm ndcg@5", "cold recall@5"):
            assert 0.0 <= row[key] <= 1.0 and row[f"{key} std"] >= 0.0
    assert rows["popularity"]["cold ndcg@5 std"] == 0.0
    assert len(result.details["per_seed"]["content-kd"]) == 2
    # Paired over users within the test's cold items, the distilled student's per-user values
    # averaged over its seeds: the same means as the table's.
    paired = {(row["model"], row["vs"]): row for row in result.details["paired"]}
    vs_teacher = paired[("content-kd", "teacher (language model)")]
    assert vs_teacher["base"] == pytest.approx(rows["teacher (language model)"]["cold ndcg@5"])
    assert vs_teacher["other"] == pytest.approx(rows["content-kd"]["cold ndcg@5"])
    assert paired[("content-kd", "content")]["base"] == pytest.approx(rows["content"]["cold ndcg@5"])
    assert result.details["encoding"]["student_items_per_s"] > 0 and rows["content"]["items/s (1 thread)"] > 0
    assert (tmp_path / "scenario" / "runs" / "content-kd-s1" / "manifest.json").exists()
