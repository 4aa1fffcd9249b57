"""Content student: hashed title n-grams, new items from raw attributes, cold items kept out
of the loss, and a real fit through the one Trainer."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from distillrec.data.dataset import RawData, build_dataset
from distillrec.data.splitting import make_split
from distillrec.errors import DistillrecError
from distillrec.params import make_train_config
from distillrec.students import MODELS
from distillrec.students.content import ContentStudent, hash_titles, title_ngrams
from distillrec.train import Trainer

WORDS = ["Dark", "Night", "Love", "Story", "Return", "City", "Last", "Star", "War", "River"]
SMALL = dict(dim=8, text_dim=8, buckets=512, feature_dim=4, hidden=16)


pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def movies():
    rng = np.random.default_rng(0)
    titles = [f"{WORDS[i % 10]} {WORDS[(3 * i + 1) % 10]} {i}" for i in range(30)]
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(30)], "title": titles,
                          "year": [1980.0 + i for i in range(30)],
                          "genres": [["Drama", "Comedy"][: 1 + i % 2] for i in range(30)]})
    users = pd.DataFrame({"user_id": [f"u{u}" for u in range(40)], "gender": ["F", "M"] * 20,
                          "age": [20.0 + u for u in range(40)], "occupation": ["student", "writer"] * 20})
    rows = [(f"u{u}", f"i{i}", 4.0, t) for u in range(40) for t, i in enumerate(rng.choice(30, 10, replace=False))]
    ds = build_dataset(RawData("tiny", pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"]),
                               items=items, users=users))
    return ds, make_split(ds, "cold-item", fraction=0.2, seed=0)


def test_ngrams_and_hashes_are_deterministic_and_in_range():
    assert title_ngrams("Heat") == ["w:heat", "c:#he", "c:hea", "c:eat", "c:at#"]
    assert "b:toy story" in title_ngrams("Toy Story")
    ids = hash_titles(["Toy Story", "Heat", "Toy Story"], buckets=64)
    assert torch.equal(ids[0], ids[2]) and not torch.equal(ids[0], ids[1])
    assert int(ids.min()) >= 0 and int(ids.max()) < 64
    assert int((ids[1] > 0).sum()) == len(title_ngrams("Heat"))  # padding is 0, never a bucket


def test_registered_and_new_items_land_where_catalog_items_do(movies):
    ds, split = movies
    assert MODELS.get("content") is ContentStudent
    model = ContentStudent.build(ds, split, seed=0, **SMALL).eval()
    cold = int(split.cold_items[0])  # no training interaction: no ID part, like a new item
    row = ds.items.iloc[cold]
    encoded = model.encode_items([{"title": row.title, "genres": list(row.genres), "year": row.year}])
    with torch.no_grad():
        assert torch.allclose(encoded, model.item_vectors(torch.tensor([cold])), atol=1e-6)
        renamed = model.encode_items([{"title": "A Completely Different Film", "genres": list(row.genres),
                                       "year": row.year}])
    assert not torch.allclose(encoded, renamed)  # the title matters


def test_bad_records_and_sampled_losses_are_refused(movies):
    ds, split = movies
    model = ContentStudent.build(ds, split, seed=0, **SMALL)
    with pytest.raises(DistillrecError, match="item record 1: field 'title'"):
        model.encode_items([{"title": "Heat"}, {"genres": ["Drama"]}])
    with pytest.raises(DistillrecError, match="full-catalog loss"):
        ContentStudent.build(ds, split, seed=0, rec_loss="bpr", **SMALL)


def test_items_without_training_interactions_never_enter_the_loss(movies):
    ds, split = movies
    model = ContentStudent.build(ds, split, seed=0, **SMALL).eval()  # eval: no random dropout
    batch = {"user": torch.as_tensor(split.train["user"].to_numpy()[:64]),
             "pos": torch.as_tensor(split.train["item"].to_numpy()[:64])}
    base = model.loss(batch)
    tokens = model.title_tokens.clone()
    cold = torch.as_tensor(split.cold_items)
    model.title_tokens[cold] = torch.randint(1, 512, (len(cold), tokens.shape[1]))
    assert torch.equal(model.loss(batch), base)          # cold titles: no effect at all
    warm = int(batch["pos"][0])
    model.title_tokens[warm] = torch.randint(1, 512, (tokens.shape[1],))
    assert not torch.equal(model.loss(batch), base)      # a warm title does count


def test_fits_through_the_trainer_deterministically(movies):
    ds, split = movies
    config = make_train_config({"epochs": 2, "batch_size": 64}, 0)
    weights = []
    for _ in range(2):
        model = ContentStudent.build(ds, split, seed=0, **SMALL)
        result = Trainer(model, split, config, progress=False).fit()
        assert np.isfinite(result.history[-1]["loss"])
        weights.append(model.state_dict())
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    reps = model.representations()
    assert reps["item"].shape == (ds.n_items, 8) and reps["user"].shape == (ds.n_users, 8)


def test_history_prior_shrinks_short_histories(movies):
    ds, split = movies
    model = ContentStudent.build(ds, split, seed=0, history_prior=1.0, **SMALL).eval()
    with torch.no_grad():
        items = model.item_vectors()
        one = model._pool(items, torch.tensor([[3, -1]]), torch.tensor([[True, False]]))
        two = model._pool(items, torch.tensor([[3, 5]]), torch.tensor([[True, True]]))
        empty = model._pool(items, torch.tensor([[-1, -1]]), torch.tensor([[False, False]]))
    assert torch.allclose(one, items[3] / 2) and torch.allclose(two, (items[3] + items[5]) / 3)
    assert torch.equal(empty, torch.zeros_like(empty))
    with pytest.raises(DistillrecError, match="history_prior"):
        ContentStudent.build(ds, split, history_prior=-1.0, **SMALL)
