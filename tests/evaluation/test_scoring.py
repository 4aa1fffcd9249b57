"""The shared scoring helpers: genre multi-hot, baselines by name, the history a model sees,
and the per-user file the paired tests read."""

import numpy as np
import pandas as pd
import pytest
import torch

from distillrec.data.dataset import RawData, build_dataset
from distillrec.data.splitting import random_split
from distillrec.errors import DistillrecError
from distillrec.evaluation.baselines import PopularityScorer
from distillrec.evaluation.scoring import (baseline_scorer, evaluate_scorer, genre_matrix, model_scorer,
                                           read_per_user)


def _dataset(genres):
    """24 items (so NDCG@10 and @20 are defined); genres given for the first ones."""
    genres = list(genres) + [[]] * (24 - len(genres))
    rows = [(f"u{u}", f"i{(3 * u + j) % 24}", 4.0, j) for u in range(12) for j in range(6)]
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(24)], "genres": genres})
    return build_dataset(RawData("toy", inter, items=items))


def test_genre_matrix_is_the_items_multi_hot_in_sorted_genre_order():
    dataset = _dataset([["Drama", "Comedy"], ["Comedy"], [], ["War"]])
    rows = {item: row for item, row in zip(dataset.item_ids, genre_matrix(dataset).tolist())}
    # columns: Comedy, Drama, War
    assert [rows[i] for i in ("i0", "i1", "i2", "i3", "i4")] == [[1, 1, 0], [1, 0, 0], [0, 0, 0], [0, 0, 1], [0, 0, 0]]
    assert genre_matrix(_dataset([])) is None


def test_baselines_by_name_and_unknown_names_refused():
    dataset = _dataset([])
    split = random_split(dataset, seed=0)
    assert isinstance(baseline_scorer("pop", split, 0), PopularityScorer)
    with pytest.raises(DistillrecError, match="unknown baseline 'lightgcn'; expected pop or random"):
        baseline_scorer("lightgcn", split, 0)


def test_per_user_file_round_trips_the_test_ndcg(tmp_path):
    dataset = _dataset([])
    split = random_split(dataset, seed=0)
    results = evaluate_scorer(baseline_scorer("pop", split, 0), split, dataset, per_user_dir=tmp_path)
    users, values = read_per_user(tmp_path)
    assert len(users) == results["test"]["n_users"]
    assert np.isclose(values.mean(), results["test"]["ndcg@10"])
    assert read_per_user(tmp_path / "missing") is None


def test_model_scorer_gives_the_model_the_history_of_its_part():
    dataset = _dataset([])
    split = random_split(dataset, seed=0)

    class Recorder:
        def eval(self):
            pass

        def set_history(self, history):
            self.seen = len(history)

        def score(self, users):
            return torch.zeros(len(users), split.n_items)

    model = Recorder()
    model_scorer(model, split, "valid")
    assert model.seen == len(split.train)
    model_scorer(model, split, "test")(torch.tensor([0]))
    assert model.seen == len(split.train) + len(split.valid)
