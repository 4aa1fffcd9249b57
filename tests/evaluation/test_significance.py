import json
import math

import numpy as np
import pytest

from distillrec.errors import DistillrecError
from distillrec.evaluation.significance import activity_groups, breakdown, paired_splits, paired_users

# Two-sided p of a t statistic with 2 degrees of freedom, in closed form:
# the CDF is 1/2 + t / (2 sqrt(2 + t^2)), so p = 1 - |t| / sqrt(2 + t^2).
# Differences 1, 2, 3 (or 0.1, 0.2, 0.3): mean 2, sd 1, t = 2 / (1 / sqrt 3) = 2 sqrt 3 -> p = 1 - sqrt(12 / 14).
T_P_123 = 1 - math.sqrt(6 / 7)


def _json_ready(result):
    assert json.loads(json.dumps(result)) == result
    for value in (result.values() if isinstance(result, dict) else result):
        assert value is None or type(value) in (int, float, str)


def test_paired_users_over_shared_users_by_hand():
    base = {0: 0.1, 1: 0.2, 2: 0.3, 3: 0.4, 4: 0.5, 9: 1.0}          # user 9: base only
    other = {4: 1.05, 3: 0.8, 2: 0.6, 1: 0.4, 0: 0.2, 7: 0.0}         # user 7: other only
    result = paired_users(base, other)
    _json_ready(result)
    # shared users 0..4; differences 0.1, 0.2, 0.3, 0.4, 0.55: all positive, distinct sizes.
    assert result["n_users"] == 5
    assert result["base"] == pytest.approx(1.5 / 5)
    assert result["other"] == pytest.approx(3.05 / 5)
    assert result["lift"] == pytest.approx(0.61 / 0.3 - 1)
    # Exact Wilcoxon: of the 2^5 equally likely sign patterns only "all positive" reaches
    # W- = 0, so the one-sided p is 1/32 and the two-sided p is 2/32.
    assert result["wilcoxon_p"] == pytest.approx(0.0625)
    assert 0 < result["t_p"] < 0.05


def test_paired_users_accepts_per_user_arrays_and_hand_computed_t_p():
    base = (np.array([5, 2, 8]), np.array([0.0, 1.0, 2.0]))
    other = (np.array([2, 5, 8]), np.array([3.0, 1.0, 5.0]))   # differences: user 2 -> 2, 5 -> 1, 8 -> 3
    result = paired_users(base, other)
    assert result["n_users"] == 3 and result["base"] == pytest.approx(1.0) and result["other"] == pytest.approx(3.0)
    assert result["lift"] == pytest.approx(2.0)
    assert result["t_p"] == pytest.approx(T_P_123)
    assert result["wilcoxon_p"] == pytest.approx(2 / 8)   # exact, n = 3, all positive


def test_paired_users_degenerate_cases():
    same = paired_users({0: 0.5, 1: 0.0}, {0: 0.5, 1: 0.0})
    assert same == {"n_users": 2, "base": 0.25, "other": 0.25, "lift": 0.0, "wilcoxon_p": None, "t_p": None}
    constant = paired_users({0: 0.0, 1: 0.0}, {0: 1.0, 1: 1.0})   # base mean 0; differences do not vary
    assert constant["lift"] is None and constant["t_p"] is None and constant["wilcoxon_p"] == pytest.approx(0.5)
    one = paired_users({3: 0.2}, {3: 0.4})
    assert one["n_users"] == 1 and one["t_p"] is None and one["lift"] == pytest.approx(1.0)


def test_paired_users_errors():
    with pytest.raises(DistillrecError, match="no user is shared"):
        paired_users({0: 1.0}, {1: 1.0})
    with pytest.raises(DistillrecError, match="base: a user appears more than once"):
        paired_users(([0, 0], [1.0, 2.0]), {0: 1.0})
    with pytest.raises(DistillrecError, match="other: expected one value per user"):
        paired_users({0: 1.0}, ([0, 1], [1.0]))


def test_paired_splits_by_hand():
    result = paired_splits([0.1, 0.2, 0.3], [0.2, 0.4, 0.6])
    _json_ready(result)
    assert result["n_splits"] == 3
    assert result["base_mean"] == pytest.approx(0.2) and result["base_std"] == pytest.approx(0.1)
    assert result["other_mean"] == pytest.approx(0.4) and result["other_std"] == pytest.approx(0.2)
    assert result["lift"] == pytest.approx(1.0)
    assert result["lift_mean"] == pytest.approx(1.0) and result["lift_std"] == pytest.approx(0.0, abs=1e-12)
    assert result["t_p"] == pytest.approx(T_P_123)   # differences 0.1, 0.2, 0.3


def test_paired_splits_single_split_and_degenerate_differences():
    single = paired_splits([0.2], [0.3])
    assert single["n_splits"] == 1 and single["base_std"] == 0.0 and single["other_std"] == 0.0
    assert single["lift_std"] == 0.0 and single["t_p"] is None
    assert single["lift"] == pytest.approx(0.5) and single["lift_mean"] == pytest.approx(0.5)
    assert paired_splits([1.0, 2.0], [2.0, 3.0])["t_p"] is None        # differences do not vary
    zero_base = paired_splits([0.0, 0.2], [0.1, 0.3])
    assert zero_base["lift"] == pytest.approx(1.0) and zero_base["lift_mean"] is None and zero_base["lift_std"] is None
    assert zero_base["t_p"] is None   # differences 0.1 and 0.09999999999999998: equal up to rounding


@pytest.mark.parametrize("base, other", [([0.1, 0.2], [0.1]), ([], [])])
def test_paired_splits_needs_one_value_per_split_for_both(base, other):
    with pytest.raises(DistillrecError, match="one value per split"):
        paired_splits(base, other)


def test_activity_groups_keep_tied_counts_together():
    counts = np.array([1, 1, 1, 1, 2, 3, 4, 5])           # indexed by user
    groups = activity_groups(counts, np.arange(8))
    # np.quantile edges: 0.25 -> 1, 0.5 -> 1.5, 0.75 -> 3.25; bins (edge, next edge]:
    # every count of 1 lies in the first bin (a plain 4-way split by rank would put
    # two of them in the second), the second bin (1, 1.5] is empty and dropped.
    assert [label for label, _ in groups] == ["1 item", "2–3 items", "4–5 items"]
    assert [np.flatnonzero(mask).tolist() for _, mask in groups] == [[0, 1, 2, 3], [4, 5], [6, 7]]


def test_activity_groups_quartiles_from_a_mapping_and_a_user_subset():
    counts = {user: 10 + user for user in range(8)}        # counts 10..17
    users = np.array([7, 0, 3, 4, 1, 6, 2, 5])
    groups = activity_groups(counts, users)
    # edges 11.75, 13.5, 15.25
    assert [label for label, _ in groups] == ["10–11 items", "12–13 items", "14–15 items", "16–17 items"]
    assert [sorted(users[mask].tolist()) for _, mask in groups] == [[0, 1], [2, 3], [4, 5], [6, 7]]
    # a user missing from the mapping (cold) counts 0
    assert [label for label, _ in activity_groups({1: 3}, np.array([0, 1]), n_groups=2)] == ["0 items", "3 items"]
    # Test interactions grouped by their items' training counts: the unit names what is counted.
    item_counts = np.array([1, 5, 9])
    labels = [label for label, _ in activity_groups(item_counts, np.array([0, 0, 1, 2]), n_groups=2, unit="interaction")]
    assert labels == ["1 interaction", "5–9 interactions"]


def test_breakdown_per_group_by_hand():
    users = np.arange(6)
    base = np.array([0.0, 0.5, 0.1, 0.2, 0.4, 0.4])
    other = np.array([0.0, 0.5, 0.2, 0.4, 0.8, 0.2])
    counts = np.array([1, 1, 2, 2, 3, 3])
    groups = activity_groups(counts, users, n_groups=3)
    rows = breakdown(users, base, users[:4], other[:4], groups + [("nobody", users >= 4)])
    for row in rows:
        _json_ready(row)
    assert [row["group"] for row in rows] == ["1 item", "2 items", "3 items", "nobody"]
    assert rows[0] == {"group": "1 item", "n_users": 2, "base": 0.25, "other": 0.25, "lift": 0.0, "wilcoxon_p": None}
    assert rows[1]["n_users"] == 2 and rows[1]["base"] == pytest.approx(0.15) and rows[1]["other"] == pytest.approx(0.3)
    assert rows[1]["lift"] == pytest.approx(1.0)
    assert rows[1]["wilcoxon_p"] == pytest.approx(2 / 4)   # exact, n = 2, both positive
    # users 4 and 5 were not evaluated for the other model
    assert rows[2] == rows[3] | {"group": "3 items"}
    assert rows[3] == {"group": "nobody", "n_users": 0, "base": None, "other": None, "lift": None, "wilcoxon_p": None}
    with pytest.raises(DistillrecError, match="one entry per base user"):
        breakdown(users, base, users, other, [("short", np.ones(3, bool))])
