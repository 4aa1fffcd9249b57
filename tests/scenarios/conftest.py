"""Shared by the cold-start scenario tests: a tiny movie catalogue with users' profiles, and a
small real LM teacher fitted on it (with optionally poisoned knowledge rows)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from distillrec import artifacts
from distillrec.data.dataset import RawData, build_dataset

WORDS = ["Dark", "Night", "Love", "Story", "Return", "City", "Last", "Star", "War", "River"]


def _tiny_movies(n_users: int = 40, n_items: int = 30):
    rng = np.random.default_rng(0)
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(n_items)],
                          "title": [f"{WORDS[i % 10]} {WORDS[(3 * i + 1) % 10]} {i}" for i in range(n_items)],
                          "year": [1980.0 + i for i in range(n_items)],
                          "genres": [["Drama", "Comedy"][: 1 + i % 2] for i in range(n_items)]})
    users = pd.DataFrame({"user_id": [f"u{u}" for u in range(n_users)], "gender": ["F", "M"] * (n_users // 2),
                          "age": [20.0 + u for u in range(n_users)],
                          "occupation": ["student", "writer"] * (n_users // 2)})
    rows = [(f"u{u}", f"i{i}", 4.0, t) for u in range(n_users)
            for t, i in enumerate(rng.choice(n_items, 12, replace=False))]
    return build_dataset(RawData("tiny", pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"]),
                                 items=items, users=users))


def _fit_teacher(ds, split, directory, poison_users=(), poison_items=()):
    """A small LM teacher fitted as the pipeline's teacher stage does, with its knowledge; the
    knowledge rows of `poison_*` are NaN, so any use of them makes training fail."""
    from distillrec.experiment import fit_model
    from distillrec.params import make_train_config
    from distillrec.teachers.knowledge import Knowledge, extract_knowledge
    from distillrec.teachers.models import LMTeacher

    params = {"dim": 16, "hidden": 32, "heads": 1, "cache_dir": str(directory.parent / "text-cache")}
    model = LMTeacher.build(ds, split, seed=0, **params)
    fit_model(LMTeacher, "teacher", ds, split, model_params=params, train_config=make_train_config(
        {"epochs": 2, "batch_size": 64}, 0), run_dir=directory, config={"dataset": "tiny", "seed": 0},
        role="teacher", progress=False, model=model)
    knowledge = extract_knowledge(model, split, ds, top_k=5, knn=3, importance=False)
    knowledge.tensors["user"][torch.as_tensor(np.asarray(poison_users, np.int64))] = float("nan")
    knowledge.tensors["item"][torch.as_tensor(np.asarray(poison_items, np.int64))] = float("nan")
    Knowledge(knowledge.tensors, knowledge.importance, knowledge.info).save(directory / "knowledge")
    artifacts.write_manifest(directory, kind="run")  # the stage's manifest covers knowledge/ too


@pytest.fixture(scope="module")
def tiny_movies():
    """A tiny dataset: 40 users with profiles, 30 titled items, 12 interactions each."""
    return _tiny_movies()


@pytest.fixture
def fit_teacher():
    """fit_teacher(ds, split, directory, poison_users=(), poison_items=()) -> None."""
    return _fit_teacher
