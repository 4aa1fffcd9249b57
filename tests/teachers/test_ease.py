"""EASE and its text-augmented form, on a tiny catalogue encoded by the real MiniLM."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from distillrec.data.dataset import RawData, build_dataset
from distillrec.data.splitting import random_split
from distillrec.errors import DistillrecError
from distillrec.teachers.ease import EASETeacher, ease_weights
from distillrec.teachers.knowledge import extract_knowledge
from distillrec.train.trainer import TrainConfig, Trainer

N_USERS, N_ITEMS = 30, 16


def _ridge_column(x: np.ndarray, j: int, l2: float) -> np.ndarray:
    """Column j of EASE solved directly: min ||x_j - X_{-j} b||² + l2 ||b||², b_j = 0."""
    others = [i for i in range(x.shape[1]) if i != j]
    a = x[:, others]
    b = np.linalg.solve(a.T @ a + l2 * np.eye(len(others)), a.T @ x[:, j])
    column = np.zeros(x.shape[1])
    column[others] = b
    return column


def test_closed_form_matches_per_column_ridge_regression():
    rng = np.random.default_rng(3)
    x = (rng.random((40, 7)) < 0.35).astype(float)
    weights = ease_weights(x.T @ x, l2=2.0)
    for j in range(7):
        np.testing.assert_allclose(weights[:, j], _ridge_column(x, j, 2.0), atol=1e-10)
    assert np.all(np.diag(weights) == 0)


def test_l2_must_be_positive():
    with pytest.raises(DistillrecError, match="l2 must be > 0"):
        ease_weights(np.eye(3), l2=0.0)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    rng = np.random.default_rng(0)
    rows = [(f"u{u}", f"i{i}", 4.0, t) for u in range(N_USERS)
            for t, i in enumerate(rng.choice(N_ITEMS, 8, replace=False))]
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(N_ITEMS)],
                          "title": [("A space war film " if i % 2 else "A quiet love story ") + str(i)
                                    for i in range(N_ITEMS)],
                          "year": [1990.0 + i for i in range(N_ITEMS)],
                          "genres": [["Sci-Fi"] if i % 2 else ["Romance"] for i in range(N_ITEMS)]})
    dataset = build_dataset(RawData("tiny", inter, items=items))
    return dataset, random_split(dataset, seed=0), tmp_path_factory.mktemp("cache")


def test_scores_are_history_rows_times_weights(tiny):
    dataset, split, cache = tiny
    model = EASETeacher.build(dataset, split, l2=5.0, cache_dir=cache)
    x = np.zeros((split.n_users, split.n_items))
    x[split.train["user"], split.train["item"]] = 1
    np.testing.assert_allclose(model.weights.numpy(), ease_weights(x.T @ x, 5.0), atol=1e-5)
    users = torch.tensor([0, 3, 7])
    expected = torch.from_numpy(x[[0, 3, 7]]).float() @ model.weights
    torch.testing.assert_close(model.score(users), expected)
    # The test-time history (train + valid) changes the scores, not the weights.
    model.set_history(split.history("test"))
    x_test = x.copy()
    x_test[split.valid["user"], split.valid["item"]] = 1
    torch.testing.assert_close(model.score(users), torch.from_numpy(x_test[[0, 3, 7]]).float() @ model.weights)


def test_text_weight_adds_the_items_text_similarity(tiny):
    dataset, split, cache = tiny
    plain = EASETeacher.build(dataset, split, l2=5.0, cache_dir=cache)
    with_text = EASETeacher.build(dataset, split, l2=5.0, text_weight=3.0, cache_dir=cache)
    unit = torch.nn.functional.normalize(with_text.text_embeddings.double(), dim=1).numpy()
    x = np.zeros((split.n_users, split.n_items))
    x[split.train["user"], split.train["item"]] = 1
    np.testing.assert_allclose(with_text.weights.numpy(), ease_weights(x.T @ x + 3.0 * unit @ unit.T, 5.0), atol=1e-5)
    assert not torch.allclose(plain.weights, with_text.weights)
    assert plain.text_cost["text_used"] is False and with_text.text_cost["text_used"] is True


def test_trainer_validates_a_closed_form_model_once_and_knowledge_extracts(tiny):
    dataset, split, cache = tiny
    model = EASETeacher.build(dataset, split, l2=5.0, rank=6, cache_dir=cache)
    result = Trainer(model, split, TrainConfig(eval_ks=(10,)), progress=False).fit()
    assert [r["epoch"] for r in result.history] == [0] and result.train_seconds == 0.0
    assert 0.0 < result.best_valid["ndcg@10"] <= 1.0
    knowledge = extract_knowledge(model, split, dataset, top_k=5, knn=3, importance=False)
    assert knowledge.tensors["user"].shape == (N_USERS, 6) and knowledge.tensors["item"].shape == (N_ITEMS, 6)
    # The teacher's top-5 never lists an item the user trained on.
    seen = set(zip(split.train["user"], split.train["item"]))
    top = knowledge.tensors["top_items"]
    assert not any((u, int(i)) in seen for u in range(N_USERS) for i in top[u] if i >= 0)


def test_full_rank_representations_reproduce_the_scores(tiny):
    dataset, split, cache = tiny
    model = EASETeacher.build(dataset, split, l2=5.0, rank=N_ITEMS, cache_dir=cache)
    reps = model.representations()
    torch.testing.assert_close(reps["user"] @ reps["item"].T, model.score(torch.arange(N_USERS)), atol=1e-4, rtol=1e-4)
