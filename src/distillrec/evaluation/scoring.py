"""Scoring a model or baseline the way every command does: the shared evaluator (accuracy plus
coverage, novelty and, with genres, diversity), the history a model sees before each part, and
the per-user test NDCG@10 that the paired tests read."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from distillrec.data.dataset import Dataset
from distillrec.data.split import Split
from distillrec.errors import DistillrecError

DEFAULT_KS = (10, 20)
#: each evaluated user's test NDCG@10, written beside a run's metrics: the paired tests' input.
PER_USER_FILE = "per_user.parquet"
#: each test (user, item) pair and whether it was in the user's top-10: the item-side breakdown's input.
PER_INTERACTION_FILE = "per_interaction.parquet"


def baseline_scorer(name: str, split: Split, seed: int):
    from distillrec.evaluation.baselines import PopularityScorer, RandomScorer

    if name == "pop":
        return PopularityScorer(split)
    if name == "random":
        return RandomScorer(split.n_items, seed=seed)
    raise DistillrecError(f"unknown baseline {name!r}; expected pop or random")


def genre_matrix(dataset: Dataset) -> np.ndarray | None:
    """Items' genre multi-hot [n_items, n_genres] for intra-list diversity, or None."""
    if "genres" not in dataset.items.columns:
        return None
    genres = dataset.items["genres"].map(lambda g: list(g) if isinstance(g, (list, np.ndarray)) else [])
    vocabulary = sorted({g for row in genres for g in row})
    if not vocabulary:
        return None
    column = {g: j for j, g in enumerate(vocabulary)}
    matrix = np.zeros((dataset.n_items, len(vocabulary)), dtype=np.float32)
    for row, values in enumerate(genres):
        matrix[row, [column[g] for g in values]] = 1.0
    return matrix


def make_evaluator(split: Split, dataset: Dataset, ks=DEFAULT_KS, *, mask_history: bool = True):
    """The evaluator every command shares: accuracy metrics plus coverage, novelty and, when
    items have genres, intra-list diversity. mask_history=False keeps the items a user has seen
    in the ranking (RecBole's SASRec convention) instead of leaving them out."""
    from distillrec.evaluation.evaluator import ACCURACY_METRICS, Evaluator

    genres = genre_matrix(dataset)
    beyond = ("coverage", "novelty") + (("diversity",) if genres is not None else ())
    return Evaluator(split, ks=ks, metrics=ACCURACY_METRICS + beyond, item_features=genres,
                     mask_history=mask_history)


def evaluate_scorer(scorer, split: Split, dataset: Dataset, ks=DEFAULT_KS, *, per_user_dir: Path | None = None) -> dict:
    """Validation and test metrics of one scorer, in the metrics.json entry layout
    (per_user_dir: also write each user's test NDCG@10 there)."""
    evaluator = make_evaluator(split, dataset, ks)
    if per_user_dir is not None:
        write_per_user(per_user_dir, evaluator, scorer)
    return {part: evaluator.evaluate(scorer, part=part) for part in ("valid", "test")}


def model_scorer(model, split: Split, part: str):
    """A scorer for `part`: the model first sees the history it may use (train for valid;
    train + valid for test; plus revealed cold-user interactions)."""
    import torch

    model.eval()
    model.set_history(split.history(part))

    def scorer(users):
        with torch.no_grad():
            return model.score(users)
    return scorer


def evaluate_model(model, split: Split, dataset: Dataset, ks=DEFAULT_KS, *, per_user_dir: Path | None = None,
                   mask_history: bool = True) -> dict:
    evaluator = make_evaluator(split, dataset, ks, mask_history=mask_history)
    if per_user_dir is not None:
        write_per_user(per_user_dir, evaluator, model_scorer(model, split, "test"))
    return {part: evaluator.evaluate(model_scorer(model, split, part), part=part) for part in ("valid", "test")}


def write_per_user(run_dir: Path, evaluator, test_scorer) -> None:
    import pandas as pd

    from distillrec import artifacts

    users, values = evaluator.per_user(test_scorer, "test", "ndcg@10")
    artifacts.write_parquet(Path(run_dir) / PER_USER_FILE, pd.DataFrame({"user": users, "ndcg@10": values}))
    users, items, hits = evaluator.per_interaction(test_scorer, "test", 10)
    artifacts.write_parquet(Path(run_dir) / PER_INTERACTION_FILE,
                            pd.DataFrame({"user": users, "item": items, "hit@10": hits}))


def read_per_user(run_dir: Path):
    """(users, test NDCG@10 values) of a run, or None when it has none."""
    from distillrec import artifacts

    path = Path(run_dir) / PER_USER_FILE
    if not path.exists():
        return None
    frame = artifacts.read_parquet(path)
    return frame["user"].to_numpy(), frame["ndcg@10"].to_numpy()


def read_per_interaction(run_dir: Path, n_items: int):
    """(pair ids user * n_items + item, item, hit@10 as float) of a run's test pairs, or None."""
    from distillrec import artifacts

    path = Path(run_dir) / PER_INTERACTION_FILE
    if not path.exists():
        return None
    frame = artifacts.read_parquet(path)
    items = frame["item"].to_numpy(np.int64)
    return frame["user"].to_numpy(np.int64) * n_items + items, items, frame["hit@10"].to_numpy(np.float64)
