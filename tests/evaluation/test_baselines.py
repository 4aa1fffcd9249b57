import sysconfig
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from distillrec.data.dataset import RawData, build_dataset
from distillrec.data.split import Split
from distillrec.data.splitting import random_split
from distillrec.evaluation import PopularityScorer, RandomScorer, evaluate

ML100K = Path(sysconfig.get_paths()["purelib"]) / "recbole/dataset_example/ml-100k/ml-100k.inter"


def _frame(pairs: list[tuple[int, int]]) -> pd.DataFrame:
    users, items = zip(*pairs)
    return pd.DataFrame({"user": np.array(users, np.int64), "item": np.array(items, np.int64),
                         "rating": np.ones(len(pairs), np.float32), "timestamp": np.zeros(len(pairs), np.int64)})


# 3 users x 5 items. train: user 0 {0, 1}, user 1 {1, 2}, user 2 {1}; test: user 0 {2}, user 1 {4}, user 2 {0}
TOY = Split("toy", train=_frame([(0, 0), (0, 1), (1, 1), (1, 2), (2, 1)]),
            valid=_frame([(0, 3)]), test=_frame([(0, 2), (1, 4), (2, 0)]), n_users=3, n_items=5)


def test_popularity_scores_train_counts_for_every_user():
    scorer = PopularityScorer(TOY)
    scores = scorer(torch.tensor([2, 0]))
    assert scores.tolist() == [[1, 3, 1, 0, 0]] * 2
    scores += 1  # a caller modifying its scores does not change the next call's
    assert scorer(torch.tensor([1])).tolist() == [[1, 3, 1, 0, 0]]


def test_popularity_through_the_evaluator():
    result = evaluate(PopularityScorer(TOY), TOY, "test", ks=(2,), metrics=("hit", "mrr"))
    # counts [1, 3, 1, 0, 0]
    # user 0: masked {0, 1} + valid {3} -> 2 (1), then 4 (0): relevant {2} at rank 1
    # user 1: masked {1, 2} -> 0 (1), then 3, 4 tie at 0 -> [0, 3]: relevant {4} missed
    # user 2: masked {1} -> 0 and 2 tie at 1 -> [0, 2]: relevant {0} at rank 1
    assert result == pytest.approx({"hit@2": 2 / 3, "mrr@2": 2 / 3, "n_users": 3, "n_skipped": 0})


def test_random_scores_depend_only_on_seed_and_user():
    scorer = RandomScorer(n_items=7, seed=3)
    together = scorer(torch.tensor([0, 1, 2]))
    assert together.shape == (3, 7) and together.dtype == torch.float32
    assert ((together >= 0) & (together < 1)).all()
    assert torch.equal(scorer(torch.tensor([2, 0])), together[[2, 0]])
    assert not torch.equal(together[0], together[1])
    assert not torch.equal(RandomScorer(n_items=7, seed=4)(torch.tensor([0])), together[:1])


@pytest.fixture(scope="module")
def ml100k_split() -> Split:
    frame = pd.read_csv(ML100K, sep="\t")
    frame.columns = ["user_id", "item_id", "rating", "timestamp"]
    return random_split(build_dataset(RawData("ml-100k", frame, source=str(ML100K))), (0.8, 0.1, 0.1), seed=0)


def test_popularity_and_random_on_ml100k_are_plausible(ml100k_split):
    popular = evaluate(PopularityScorer(ml100k_split), ml100k_split, "test", ks=(10,), metrics=("ndcg", "recall"))
    random = evaluate(RandomScorer(ml100k_split.n_items, seed=0), ml100k_split, "test", ks=(10,),
                      metrics=("ndcg", "recall"))
    # RecBole reports popularity at NDCG@10 ~0.15 on this protocol; random ranking of ~1,600
    # items leaves NDCG@10 near 0.01.
    assert 0.08 < popular["ndcg@10"] < 0.25
    assert 0.05 < popular["recall@10"] < 0.25
    assert random["ndcg@10"] < 0.03
    assert popular["n_users"] == random["n_users"] == 943 and popular["n_skipped"] == 0
