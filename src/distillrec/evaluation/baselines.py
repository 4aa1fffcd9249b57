"""Reference scorers that need no training, evaluated like any model."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import torch
from scipy import sparse

from distillrec.data.split import Split
from distillrec.errors import DistillrecError


class PopularityScorer:
    """Scores every item by its number of train interactions, the same for every user."""

    def __init__(self, split: Split):
        counts = np.bincount(split.train["item"].to_numpy(np.int64), minlength=split.n_items)
        self.counts = torch.from_numpy(counts.astype(np.float32))

    def __call__(self, users: torch.Tensor) -> torch.Tensor:
        # A fresh tensor per call: callers may modify the scores in place.
        return self.counts.repeat(len(users), 1)


class RandomScorer:
    """Uniform random scores that depend only on (seed, user): the same user gets the same
    scores whatever the batch size or call order, so evaluations are reproducible."""

    def __init__(self, n_items: int, seed: int = 0):
        self.n_items, self.seed = n_items, seed

    def __call__(self, users: torch.Tensor) -> torch.Tensor:
        rows = [np.random.default_rng([self.seed, int(user)]).random(self.n_items, dtype=np.float32)
                for user in users.tolist()]
        return torch.from_numpy(np.stack(rows)) if rows else torch.empty(0, self.n_items)


class ProfilePopularityScorer:
    """Popularity among the training users who share a user's profile (a new user's baseline).

    For user u and item i: score = count_g(i) + epsilon * count(i), where g is the group of
    users with u's values in every one of `columns`, count_g(i) the group's train interactions
    with i and count(i) the global train count (`PopularityScorer`). epsilon defaults to
    1 / (1 + max count), so epsilon * count < 1: the global term only breaks ties between equal
    group counts, and a user with no group to learn from (no training user shares the profile,
    or one of its values is missing) is ranked by plain popularity.

    Profile values are encoded as the content student's profile tower sees them
    (`students.features.DEFAULT_USER_COLUMNS`): gender and occupation as categories, age cut at
    the ML-1M age groups' lower bounds 18, 25, 35, 45, 50, 56. ML-1M stores the group codes
    (1, 18, 25, ...), ML-100K raw ages; both land in the same seven groups (under 18, 18-24,
    25-34, 35-44, 45-49, 50-55, 56+). Another column is a category, or give a `FeatureColumn`.
    Vocabularies come from the users table alone, never from interactions.

    `users`: the Dataset's users table, one row per user index. Scores are float64: in float32
    the tie-breaking term is lost once a group count reaches the thousands. Group counts are
    held sparse ([groups, n_items]), so a fine grouping (zip codes) stays small.
    """

    def __init__(self, split: Split, users: pd.DataFrame, columns: Sequence = ("age", "gender", "occupation"),
                 epsilon: float | None = None):
        self.columns = tuple(column if isinstance(column, str) else column.name for column in columns)
        self.group = profile_groups(users, columns, n_users=split.n_users)
        train_users = split.train["user"].to_numpy(np.int64)
        train_items = split.train["item"].to_numpy(np.int64)
        counts = np.bincount(train_items, minlength=split.n_items).astype(np.float64)
        self.epsilon = 1.0 / (1.0 + counts.max(initial=0.0)) if epsilon is None else float(epsilon)
        if not np.isfinite(self.epsilon) or self.epsilon < 0:
            raise DistillrecError(f"ProfilePopularityScorer: epsilon must be a number >= 0, got {epsilon!r}")
        self.global_scores = self.epsilon * counts
        groups = self.group[train_users]
        grouped = groups >= 0
        n_groups = int(self.group.max(initial=-1)) + 1
        self.group_counts = sparse.csr_matrix(
            (np.ones(int(grouped.sum())), (groups[grouped], train_items[grouped])),
            shape=(n_groups, split.n_items), dtype=np.float64)  # repeated (group, item) pairs add up

    def __call__(self, users: torch.Tensor) -> torch.Tensor:
        groups = self.group[users.cpu().numpy().astype(np.int64)]
        scores = np.tile(self.global_scores, (len(groups), 1))
        rows = np.flatnonzero(groups >= 0)
        if len(rows):
            scores[rows] += self.group_counts[groups[rows]].toarray()
        return torch.from_numpy(scores)


def profile_groups(users: pd.DataFrame, columns: Sequence, n_users: int | None = None) -> np.ndarray:
    """int64 [len(users)]: each user's group, the distinct combination of its encoded values in
    `columns` (see `ProfilePopularityScorer`), numbered 0.. in sorted order of the codes; -1 for a
    user with a missing value in any of them."""
    from distillrec.students.features import (DEFAULT_USER_COLUMNS, UNKNOWN, FeatureColumn, FeatureEncoder,
                                              as_columns)

    if n_users is not None and len(users) != n_users:
        raise DistillrecError(f"profile popularity: the users table has {len(users)} rows for {n_users} users; "
                              "expected the Dataset's users table (one row per user index)")
    if not columns:
        raise DistillrecError("profile popularity: no profile column given; expected e.g. ('age', 'gender')")
    defaults = {column.name: column for column in DEFAULT_USER_COLUMNS}
    specs = as_columns([defaults.get(c, FeatureColumn(c, "category")) if isinstance(c, str) else c for c in columns])
    missing = [spec.name for spec in specs if spec.name not in users.columns]
    if missing:
        raise DistillrecError(f"profile popularity: the users table has no column {', '.join(map(repr, missing))}; "
                              f"it has {', '.join(map(str, users.columns))}")
    if any(spec.kind == "multi" for spec in specs):
        raise DistillrecError("profile popularity: profile columns must hold one value per user (category or bucket)")
    encoded = FeatureEncoder.fit(users, specs).encode(users)
    codes = np.stack([encoded[spec.name].numpy() for spec in specs], axis=1)
    known = (codes != UNKNOWN).all(axis=1)
    group = np.full(len(users), -1, dtype=np.int64)
    if known.any():
        group[known] = np.unique(codes[known], axis=0, return_inverse=True)[1].reshape(-1)
    return group
