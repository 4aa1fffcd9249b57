"""Popularity by profile: hand-computed group counts, the epsilon tie-break by global
popularity, the back-off for users without a group, and the age buckets (ML-100K raw ages and
ML-1M age codes land in the same groups)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from distillrec.data.split import Split
from distillrec.errors import DistillrecError
from distillrec.evaluation import PopularityScorer, evaluate
from distillrec.evaluation.baselines import ProfilePopularityScorer, profile_groups


def _frame(pairs: list[tuple[int, int]]) -> pd.DataFrame:
    users = np.array([u for u, _ in pairs], np.int64)
    items = np.array([i for _, i in pairs], np.int64)
    return pd.DataFrame({"user": users, "item": items, "rating": np.ones(len(pairs), np.float32),
                         "timestamp": np.zeros(len(pairs), np.int64)})


# 8 users, 4 items. Users 0-3 train: 0 {0, 1}, 1 {1}, 2 {2}, 3 {2, 3}: global counts [1, 2, 2, 1],
# so epsilon = 1 / (1 + 2) = 1/3. Users 4-7 are new (no training interaction).
USERS = pd.DataFrame({"user_id": [f"u{u}" for u in range(8)],
                      "gender": ["F", "F", "M", "M", "F", "M", None, "F"],
                      "age": [20.0, 22.0, 30.0, 40.0, 23.0, 31.0, 50.0, 60.0],
                      "occupation": ["student", "writer", "student", "writer",
                                     "writer", "student", "student", "writer"]})
TOY = Split("toy", train=_frame([(0, 0), (0, 1), (1, 1), (2, 2), (3, 2), (3, 3)]), valid=_frame([]),
            test=_frame([(4, 3)]), n_users=8, n_items=4)
E = 1 / 3
GLOBAL = [E * 1, E * 2, E * 2, E * 1]


def scores(columns, users=(4, 5, 6, 7)):
    return ProfilePopularityScorer(TOY, USERS, columns)(torch.tensor(users))


def test_gender_groups_count_their_training_users_items():
    got = scores(("gender",))
    assert got.dtype == torch.float64
    # F = {0, 1} in train: counts [1, 2, 0, 0]; M = {2, 3}: [0, 0, 2, 1]; user 6 has no gender.
    assert got[0].tolist() == pytest.approx([1 + E, 2 + 2 * E, 2 * E, E])
    assert got[1].tolist() == pytest.approx([E, 2 * E, 2 + 2 * E, 1 + E])
    assert got[2].tolist() == pytest.approx(GLOBAL)
    assert got[3].tolist() == pytest.approx(got[0].tolist())


def test_age_buckets_and_empty_groups_back_off_to_popularity():
    got = scores(("age",))
    # 18-24: users 0, 1 -> [1, 2, 0, 0]; 25-34: user 2 -> [0, 0, 1, 0]; 50-55 (user 6) and 56+
    # (user 7) hold no training user: plain popularity (times epsilon, the same ranking).
    assert got[0].tolist() == pytest.approx([1 + E, 2 + 2 * E, 2 * E, E])
    assert got[1].tolist() == pytest.approx([E, 2 * E, 1 + 2 * E, E])
    assert got[2].tolist() == pytest.approx(GLOBAL) and got[3].tolist() == pytest.approx(GLOBAL)


def test_combined_columns_intersect_the_groups():
    got = scores(("age", "gender", "occupation"), users=(4, 5))
    # user 4: F, 18-24, writer -> user 1 only {1}; user 5: M, 25-34, student -> user 2 only {2}.
    assert got[0].tolist() == pytest.approx([E, 1 + 2 * E, 2 * E, E])
    assert got[1].tolist() == pytest.approx([E, 2 * E, 1 + 2 * E, E])


def test_ties_in_the_group_break_by_global_popularity_through_the_evaluator():
    got = scores(("occupation",), users=(4,))
    # writers in train: users 1 {1} and 3 {2, 3} -> [0, 1, 1, 1]; globally item 3 is the least popular.
    assert got[0].tolist() == pytest.approx([E, 1 + 2 * E, 1 + 2 * E, 1 + E])
    profile = evaluate(ProfilePopularityScorer(TOY, USERS, ("occupation",)), TOY, "test", ks=(3,), metrics=("ndcg",))
    plain = evaluate(PopularityScorer(TOY), TOY, "test", ks=(3,), metrics=("ndcg",))
    # user 4's test item 3: third by profile ([1, 2, 3, 0]), fourth by popularity ([1, 2, 0, 3]).
    assert profile["ndcg@3"] == pytest.approx(1 / np.log2(4)) and plain["ndcg@3"] == 0.0


def test_age_groups_are_the_ml_1m_age_groups():
    ages = pd.DataFrame({"age": [1.0, 17.0, 18.0, 24.0, 25.0, 56.0, 70.0, np.nan]})
    # ML-1M codes 1 (under 18), 18 (18-24), 25 (25-34), 56 (56+) against raw ages; NaN: no group.
    assert profile_groups(ages, ("age",)).tolist() == [0, 0, 1, 1, 2, 3, 3, -1]


def test_bad_inputs_are_refused():
    with pytest.raises(DistillrecError, match="no column 'zip'"):
        ProfilePopularityScorer(TOY, USERS, ("gender", "zip"))
    with pytest.raises(DistillrecError, match="7 rows for 8 users"):
        ProfilePopularityScorer(TOY, USERS.iloc[:7], ("gender",))
    with pytest.raises(DistillrecError, match="no profile column"):
        ProfilePopularityScorer(TOY, USERS, ())
