import numpy as np
import pandas as pd
import pytest

from distillrec.data.dataset import RawData, build_dataset
from distillrec.errors import DataError


def raw(rows, items=None, users=None):
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    return RawData("toy", inter, items, users, source="toy.csv")


def test_ids_are_contiguous_and_stable_under_row_order():
    rows = [("u2", "b", 4, 3), ("u1", "a", 5, 1), ("u1", "c", 3, 2), ("u2", "a", 1, 4)]
    a = build_dataset(raw(rows))
    b = build_dataset(raw(rows[::-1]))
    assert list(a.user_ids) == ["u1", "u2"] and list(a.item_ids) == ["a", "b", "c"]
    pd.testing.assert_frame_equal(a.interactions, b.interactions)
    assert a.fingerprint == b.fingerprint
    assert a.interactions["user"].dtype == np.int64 and a.interactions["rating"].dtype == np.float32


def test_fingerprint_changes_with_the_data():
    a = build_dataset(raw([("u1", "a", 5, 1), ("u1", "b", 4, 2)]))
    b = build_dataset(raw([("u1", "a", 5, 1), ("u1", "b", 3, 2)]))
    assert a.fingerprint != b.fingerprint


def test_rating_threshold_keeps_only_positives():
    ds = build_dataset(raw([("u1", "a", 5, 1), ("u1", "b", 2, 2), ("u2", "a", 3, 3)]), rating_threshold=3)
    assert len(ds.interactions) == 2 and list(ds.item_ids) == ["a"]


def test_duplicates_keep_the_latest_by_default_or_raise():
    rows = [("u1", "a", 2, 1), ("u1", "a", 5, 9), ("u1", "b", 4, 2)]
    ds = build_dataset(raw(rows))
    assert len(ds.interactions) == 2
    assert ds.interactions.loc[ds.interactions["item"] == 0, "rating"].item() == 5
    assert build_dataset(raw(rows), duplicates="first").interactions["rating"].iloc[0] == 2
    with pytest.raises(DataError, match=r"toy.csv: duplicate \(user, item\) pair \(u1, a\)"):
        build_dataset(raw(rows), duplicates="error")


def test_k_core_is_applied_until_stable():
    # u3 has one interaction; removing it leaves item c with one, which must go too.
    rows = [("u1", "a", 1, 1), ("u1", "b", 1, 2), ("u2", "a", 1, 3), ("u2", "b", 1, 4),
            ("u2", "c", 1, 5), ("u3", "c", 1, 6)]
    ds = build_dataset(raw(rows), k_core=2)
    assert list(ds.user_ids) == ["u1", "u2"] and list(ds.item_ids) == ["a", "b"]


def test_side_tables_follow_the_index_order():
    items = pd.DataFrame({"item_id": ["b", "a", "z"], "title": ["B", "A", "Z"]})
    ds = build_dataset(raw([("u1", "b", 1, 1), ("u1", "a", 1, 2)], items=items))
    assert list(ds.items["title"]) == ["A", "B"]
    assert list(ds.users["user_id"]) == ["u1"]


def test_filtering_everything_away_is_a_clear_error():
    with pytest.raises(DataError, match="no interactions left after filtering"):
        build_dataset(raw([("u1", "a", 1, 1)]), rating_threshold=4)
