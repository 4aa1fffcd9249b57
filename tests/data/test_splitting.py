"""Split protocols: partition invariants, RecBole's part sizes, time order, cold-start rules."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from distillrec.data.dataset import Dataset, RawData, build_dataset
from distillrec.data.split import COLUMNS, PARTS, Split
from distillrec.data.splitting import (cold_item_split, cold_user_split, leave_one_out, make_seeded_split, make_split,
                                    part_sizes, random_split, temporal_split)
from distillrec.errors import DistillrecError

ML100K = (Path(__file__).resolve().parents[2] / ".venv/lib/python3.11/site-packages/recbole"
          / "dataset_example/ml-100k/ml-100k.inter")


# --------------------------------------------------------------------------- helpers

def dataset(rows: list[tuple[int, int, int]]) -> Dataset:
    """A Dataset from (user, item, timestamp) rows; zero-padded raw ids keep index == number."""
    frame = pd.DataFrame(rows, columns=["user", "item", "timestamp"])
    return build_dataset(RawData("tiny", pd.DataFrame({
        "user_id": frame["user"].map("u{:03d}".format), "item_id": frame["item"].map("i{:04d}".format),
        "rating": 4.0, "timestamp": frame["timestamp"]})))


def users_with(counts: list[int], seed: int = 0) -> Dataset:
    """User u has counts[u] interactions with distinct items at shuffled, distinct times."""
    rng = np.random.default_rng(seed)
    rows = [(user, item, int(rng.integers(1_000_000))) for user, n in enumerate(counts) for item in range(n)]
    return dataset(rows)


def sizes_by_user(split: Split, n_users: int) -> np.ndarray:
    """[n_users, 3]: how many interactions each user has in train, valid, test."""
    return np.stack([np.bincount(split.part(p)["user"], minlength=n_users) for p in PARTS], axis=1)


def assert_partition(ds: Dataset, split: Split) -> None:
    """Parts (+ revealed) are disjoint, cover the dataset exactly, and keep columns and dtypes."""
    frames = [split.part(p) for p in PARTS] + [split.revealed]
    for frame in frames:
        assert list(frame.columns) == list(COLUMNS)
        assert frame.dtypes.equals(ds.interactions.dtypes)
    union = pd.concat(frames, ignore_index=True)
    assert not union.duplicated(["user", "item"]).any()
    expected = ds.interactions.sort_values(["user", "item"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(union.sort_values(["user", "item"]).reset_index(drop=True), expected)
    assert (split.n_users, split.n_items) == (ds.n_users, ds.n_items)


def assert_chronological(split: Split) -> None:
    """Within each user, nothing in valid predates train, nothing in test predates valid."""
    last = split.train.groupby("user")["timestamp"].max()
    for later in ("valid", "test"):
        frame = split.part(later)
        assert (frame["timestamp"].to_numpy() >= frame["user"].map(last).fillna(-1).to_numpy()).all()
    last_valid = split.valid.groupby("user")["timestamp"].max()
    assert (split.test["timestamp"] >= split.test["user"].map(last_valid).fillna(-1)).all()


def assert_cold_users(split: Split) -> None:
    """Cold users are absent from train, each sits wholly in valid or in test, and none of
    their revealed history is ground truth."""
    cold = set(split.cold_users.tolist())
    assert cold and not cold & set(split.train["user"])
    in_valid, in_test = set(split.valid["user"]) & cold, set(split.test["user"]) & cold
    assert not in_valid & in_test and in_valid | in_test == cold
    assert set(split.revealed["user"]) <= cold
    truth = pd.concat([split.valid, split.test])
    assert not split.revealed.merge(truth, on=["user", "item"]).shape[0]


def assert_cold_items(split: Split) -> None:
    cold = set(split.cold_items.tolist())
    assert cold and not cold & set(split.train["item"])
    in_valid, in_test = set(split.valid["item"]) & cold, set(split.test["item"]) & cold
    assert not in_valid & in_test and in_valid | in_test == cold


def assert_same(a: Split, b: Split) -> None:
    for name in PARTS:
        pd.testing.assert_frame_equal(a.part(name), b.part(name))
    pd.testing.assert_frame_equal(a.revealed, b.revealed)
    np.testing.assert_array_equal(a.cold_users, b.cold_users)
    np.testing.assert_array_equal(a.cold_items, b.cold_items)
    assert (a.name, a.params, a.n_users, a.n_items) == (b.name, b.params, b.n_users, b.n_items)


def recbole_calcu_split_ids(tot: int, ratios: list[float]) -> list[int]:
    """Transcribed from RecBole 1.2.1 `Dataset._calcu_split_ids` (with the normalisation of
    `split_by_ratio`), as the reference our vectorised `part_sizes` must reproduce."""
    ratios = [r / sum(ratios) for r in ratios]
    cnt = [int(ratios[i] * tot) for i in range(len(ratios))]
    cnt[0] = tot - sum(cnt[1:])
    for i in range(1, len(ratios)):
        if cnt[0] <= 1:
            break
        if 0 < ratios[-i] * tot < 1:
            cnt[-i] += 1
            cnt[0] -= 1
    return list(np.cumsum(cnt)[:-1])


# --------------------------------------------------------------------------- part sizes

@pytest.mark.parametrize("n, expected", [(0, (0, 0, 0)), (1, (1, 0, 0)), (2, (1, 0, 1)), (3, (1, 1, 1)),
                                         (4, (2, 1, 1)), (10, (8, 1, 1)), (11, (9, 1, 1)),
                                         (19, (17, 1, 1)), (20, (16, 2, 2))])
def test_part_sizes_by_hand(n, expected):
    assert tuple(part_sizes(np.array([n]), (0.8, 0.1, 0.1))[0]) == expected


@pytest.mark.parametrize("ratios", [(0.8, 0.1, 0.1), (0.7, 0.15, 0.15), (0.6, 0.2, 0.2), (0.9, 0.0, 0.1),
                                    (1 / 3, 1 / 3, 1 / 3), (0.98, 0.01, 0.01)])
def test_part_sizes_match_recbole(ratios):
    n = np.arange(301)
    cuts = np.cumsum(part_sizes(n, ratios), axis=1)[:, :2]
    expected = np.array([recbole_calcu_split_ids(int(tot), list(ratios)) for tot in n])
    np.testing.assert_array_equal(cuts, expected)


# --------------------------------------------------------------------------- protocols

def test_random_split_gives_recbole_sizes_per_user():
    counts = [1, 2, 3, 10, 11]
    ds = users_with(counts)
    split = random_split(ds, seed=3)
    assert_partition(ds, split)
    assert sizes_by_user(split, ds.n_users).tolist() == [[1, 0, 0], [1, 0, 1], [1, 1, 1], [8, 1, 1], [9, 1, 1]]
    assert split.name == "random" and split.params == {"ratios": [0.8, 0.1, 0.1], "seed": 3}


def test_random_split_shuffles_within_user():
    # Over many seeds, the test interaction of a 10-interaction user is not always the same one.
    ds = users_with([10])
    tested = {random_split(ds, seed=seed).test["item"].item() for seed in range(20)}
    assert len(tested) > 3


def test_temporal_split_cuts_each_user_in_time_order():
    ds = users_with([1, 2, 3, 10, 11, 37], seed=5)
    split = temporal_split(ds, ratios=(0.6, 0.2, 0.2))
    assert_partition(ds, split)
    assert_chronological(split)
    np.testing.assert_array_equal(sizes_by_user(split, ds.n_users),
                                  part_sizes(np.array([1, 2, 3, 10, 11, 37]), (0.6, 0.2, 0.2)))


def test_temporal_split_keeps_table_order_on_ties():
    # All five at one timestamp: the table (item) order decides, so the last item is the test one.
    ds = dataset([(0, item, 100) for item in range(5)])
    split = temporal_split(ds, ratios=(0.6, 0.2, 0.2))
    assert split.train["item"].tolist() == [0, 1, 2]
    assert split.valid["item"].tolist() == [3] and split.test["item"].tolist() == [4]


def test_leave_one_out_holds_out_the_last_two():
    counts = [1, 2, 3, 7]
    ds = users_with(counts, seed=2)
    split = leave_one_out(ds)
    assert_partition(ds, split)
    # RecBole LS valid_and_test: 1 -> train only, 2 -> train + test, >= 3 -> one valid and one test.
    assert sizes_by_user(split, ds.n_users).tolist() == [[1, 0, 0], [1, 0, 1], [1, 1, 1], [5, 1, 1]]
    by_time = ds.interactions.sort_values(["user", "timestamp"]).groupby("user")["item"]
    for user in (2, 3):
        items = by_time.get_group(user).tolist()
        assert split.test.loc[split.test["user"] == user, "item"].tolist() == items[-1:]
        assert split.valid.loc[split.valid["user"] == user, "item"].tolist() == items[-2:-1]
    assert_chronological(split)


def test_cold_user_split_holds_users_out_of_train():
    counts = [6] * 18 + [2, 2]  # the last two users are too short to reveal 2 and keep a target
    ds = users_with(counts, seed=4)
    split = cold_user_split(ds, fraction=0.2, reveal=2, seed=1)
    assert_partition(ds, split)
    assert_cold_users(split)
    cold = split.cold_users
    assert len(cold) == 4 and not set(cold) & {18, 19}
    assert len(set(split.valid["user"]) & set(cold)) == 2 and len(set(split.test["user"]) & set(cold)) == 2
    # Revealed: each cold user's two oldest interactions; the other four are its ground truth.
    oldest = ds.interactions.sort_values(["user", "timestamp"]).groupby("user").head(2)
    expected = oldest[oldest["user"].isin(cold)].sort_values(["user", "item"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(split.revealed.sort_values(["user", "item"]).reset_index(drop=True), expected)
    assert (sizes_by_user(split, ds.n_users)[cold].sum(axis=1) == 4).all()
    # Warm users are cut as by the random split.
    warm = np.setdiff1d(np.arange(ds.n_users), cold)
    np.testing.assert_array_equal(sizes_by_user(split, ds.n_users)[warm],
                                  part_sizes(np.array(counts)[warm], (0.8, 0.1, 0.1)))


def test_cold_user_split_without_reveal_puts_all_in_ground_truth():
    ds = users_with([5] * 10)
    split = cold_user_split(ds, fraction=0.1, seed=0)
    assert_partition(ds, split)
    assert_cold_users(split)
    assert split.revealed.empty and len(split.cold_users) == 1
    assert (split.test["user"] == split.cold_users[0]).sum() == 5  # a lone cold user goes to test


def test_cold_item_split_holds_items_out_of_train():
    rng = np.random.default_rng(0)
    rows = [(user, item, int(rng.integers(10**6))) for user in range(12) for item in range(20) if rng.random() < 0.6]
    ds = dataset(rows)
    split = cold_item_split(ds, fraction=0.2, seed=2)
    assert_partition(ds, split)
    assert_cold_items(split)
    assert len(split.cold_items) == 4
    # Each user's warm-item interactions are cut by RecBole's rule.
    warm = ds.interactions[~ds.interactions["item"].isin(split.cold_items)]
    warm_split = Split("x", *(frame[~frame["item"].isin(split.cold_items)] for frame in
                              (split.train, split.valid, split.test)), n_users=ds.n_users, n_items=ds.n_items)
    np.testing.assert_array_equal(sizes_by_user(warm_split, ds.n_users),
                                  part_sizes(np.bincount(warm["user"], minlength=ds.n_users), (0.8, 0.1, 0.1)))


@pytest.mark.parametrize("name, params", [("random", {}), ("cold-user", {"fraction": 0.2, "reveal": 1}),
                                          ("cold-item", {"fraction": 0.2})])
def test_seeded_splits_are_reproducible(name, params):
    ds = users_with([8] * 15)
    assert_same(make_split(ds, name, seed=7, **params), make_split(ds, name, seed=7, **params))
    a, b = make_split(ds, name, seed=7, **params), make_split(ds, name, seed=8, **params)
    assert not a.test.equals(b.test)


# --------------------------------------------------------------------------- make_split

def test_make_split_records_every_parameter():
    ds = users_with([5] * 10)
    assert make_split(ds, "random").params == {"ratios": [0.8, 0.1, 0.1], "seed": 0}
    assert make_split(ds, "temporal", ratios=[0.6, 0.2, 0.2]).params == {"ratios": [0.6, 0.2, 0.2]}
    assert make_split(ds, "loo").params == {}
    assert make_split(ds, "cold-user", reveal=1).params == {
        "fraction": 0.1, "reveal": 1, "ratios": [0.8, 0.1, 0.1], "seed": 0}
    assert make_split(ds, "cold-item", fraction=0.3, seed=4).params == {
        "fraction": 0.3, "ratios": [0.8, 0.1, 0.1], "seed": 4}


@pytest.mark.parametrize("name, params, message", [
    ("shuffle", {}, "expected one of: cold-item, cold-user, loo, random, temporal"),
    ("loo", {"seed": 1}, "has no parameter 'seed'"),
    ("random", {"ratios": (0.5, 0.1, 0.1)}, "must sum to 1"),
    ("random", {"ratios": (0.9, 0.1)}, "three numbers"),
    ("temporal", {"ratios": (1.2, -0.1, -0.1)}, "three numbers >= 0"),
    ("temporal", {"ratios": "abc"}, "three numbers"),
    ("random", {"seed": -1}, "seed must be an integer"),
    ("cold-user", {"fraction": 0.0}, "fraction must be a number in (0, 1)"),
    ("cold-item", {"fraction": 1.0}, "fraction must be a number in (0, 1)"),
    ("cold-user", {"reveal": -1}, "reveal must be an integer >= 0"),
    ("cold-user", {"fraction": 0.96}, "leaves none warm"),
    ("cold-user", {"fraction": 0.5, "reveal": 5}, "only 0 users have more than reveal=5"),
])
def test_make_split_rejects_bad_requests(name, params, message):
    with pytest.raises(DistillrecError) as error:
        make_split(users_with([5] * 10), name, **params)
    assert message in str(error.value)


def test_split_survives_save_and_load(tmp_path):
    ds = users_with([6] * 12)
    for name, params in [("cold-user", {"fraction": 0.25, "reveal": 2}), ("cold-item", {"fraction": 0.2})]:
        split = make_split(ds, name, **params)
        split.save(tmp_path / name)
        assert_same(Split.load(tmp_path / name), split)


# --------------------------------------------------------------------------- real data

@pytest.fixture(scope="module")
def ml100k() -> Dataset:
    frame = pd.read_csv(ML100K, sep="\t")
    frame.columns = ["user_id", "item_id", "rating", "timestamp"]
    return build_dataset(RawData("ml-100k", frame, source=str(ML100K)))


@pytest.mark.parametrize("name, params", [("random", {}), ("temporal", {}), ("loo", {}),
                                          ("cold-user", {"reveal": 5}), ("cold-item", {})])
def test_ml100k_splits_keep_their_invariants(ml100k, name, params):
    split = make_split(ml100k, name, **params)
    assert_partition(ml100k, split)
    counts = np.bincount(ml100k.interactions["user"], minlength=ml100k.n_users)
    if name in ("random", "temporal"):
        np.testing.assert_array_equal(sizes_by_user(split, ml100k.n_users), part_sizes(counts, (0.8, 0.1, 0.1)))
    if name in ("temporal", "loo"):
        assert_chronological(split)
    if name == "loo":  # every ML-100K user has >= 20 ratings
        assert (sizes_by_user(split, ml100k.n_users)[:, 1:] == 1).all()
    if name == "cold-user":
        assert_cold_users(split)
        assert len(split.cold_users) == round(0.1 * ml100k.n_users)
        assert len(split.revealed) == 5 * len(split.cold_users)
    if name == "cold-item":
        assert_cold_items(split)


def test_an_experiment_seed_reaches_only_the_seeded_protocols():
    ds = users_with([5] * 10)
    assert make_seeded_split(ds, "loo", 3).params == {}
    assert make_seeded_split(ds, "random", 3).params["seed"] == 3
