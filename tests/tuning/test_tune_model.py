"""tune_model on a small clustered dataset with real MF fits: reproducible, and blind to the
test part (garbage in test changes nothing the study selects)."""

import dataclasses

import numpy as np
import optuna
import pandas as pd
import pytest

from distillrec.config import parse_config
from distillrec.data.dataset import RawData, build_dataset
from distillrec.data.splitting import make_seeded_split
from distillrec.pipeline import run_experiment
from distillrec.tuning import search_space, tune_model

pytestmark = pytest.mark.usefixtures("single_thread")

PARAMS, TRAIN = {"dim": 8}, {"epochs": 2}


@pytest.fixture(scope="module")
def data():
    """120 users in 4 taste clusters over 80 items, 16 interactions each (mostly in-cluster)."""
    rng = np.random.default_rng(0)
    n_users, n_items, clusters = 120, 80, 4
    rows = []
    for user in range(n_users):
        own = np.arange(user % clusters, n_items, clusters)
        items = np.concatenate([rng.choice(own, 13, replace=False),
                                rng.choice(np.setdiff1d(np.arange(n_items), own), 3, replace=False)])
        rows += [(f"u{user}", f"i{item}", 5.0, t) for t, item in enumerate(rng.permutation(items))]
    ds = build_dataset(RawData("clusters", pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])))
    return ds, make_seeded_split(ds, "random", 0)


def garbage_test(split, seed=1):
    """The split with every test row's item replaced by a random other item."""
    rng = np.random.default_rng(seed)
    test = split.test.copy()
    items = test["item"].to_numpy()
    shift = rng.integers(1, split.n_items, len(items))
    test["item"] = ((items + shift) % split.n_items).astype(items.dtype)
    assert (test["item"].to_numpy() != items).all()
    return dataclasses.replace(split, test=test)


def tune(directory, ds, split):
    return tune_model(directory, "mf", ds, split, params=PARAMS, train=TRAIN, trials=3, seed=0)


@pytest.fixture(scope="module")
def first(data, tmp_path_factory):
    return tune(tmp_path_factory.mktemp("tune"), *data)


def test_tuning_is_reproducible_and_never_reads_test(tmp_path, data, first):
    ds, split = data
    assert first["trials"] == 3 and first["finished"] + first["pruned"] == 3 and len(first["history"]) == 3
    assert set(first["selected"]) >= {"train.lr", "train.weight_decay", "train.batch_size", "params.rec_loss"}
    assert 0 < first["valid"] <= 1
    assert first["space"] == {d.path: d.to_json() for d in search_space("mf")}
    # Trials differ in their settings and their validation values: the selection is a choice.
    assert len({h["valid"] for h in first["history"]}) > 1
    assert first["valid"] == max(h["valid"] for h in first["history"] if h["state"] == "complete")

    again = tune(tmp_path / "b", ds, split)
    assert again["selected"] == first["selected"] and again["valid"] == first["valid"]
    assert [h["valid"] for h in again["history"]] == [h["valid"] for h in first["history"]]

    blind = tune(tmp_path / "c", ds, garbage_test(split))
    assert blind["selected"] == first["selected"] and blind["valid"] == first["valid"]
    assert blind["history"] == first["history"]


def test_a_changed_validation_part_changes_the_study(tmp_path, data, first):
    """The counterpart of the test above: the study does read validation."""
    ds, split = data
    rng = np.random.default_rng(2)
    valid = split.valid.copy()
    valid["item"] = rng.integers(0, split.n_items, len(valid)).astype(valid["item"].dtype)
    changed = tune(tmp_path / "b", ds, dataclasses.replace(split, valid=valid))
    assert [h["valid"] for h in changed["history"]] != [h["valid"] for h in first["history"]]


def test_a_run_given_more_trials_continues_its_stored_study(tmp_path, data):
    """`distillrec run` with a raised tune.trials reopens the finished tuning stage and adds
    trials to the stored study; a lowered one reads its first trials."""
    ds, _ = data
    frame = ds.interactions.assign(user_id=lambda f: "u" + f["user"].astype(str),
                                   item_id=lambda f: "i" + f["item"].astype(str))
    path = tmp_path / "clusters.csv"
    frame[["user_id", "item_id", "rating", "timestamp"]].to_csv(path, index=False)

    def run(trials):
        config = parse_config({"name": "t", "teacher": None, "baselines": [], "data": {"dataset": str(path)},
                               "students": [{"name": "mf", "params": {"dim": 8}, "train": {"epochs": 2}}],
                               "tune": {"trials": trials}})
        return run_experiment(config, tmp_path / "run", progress=False)["models"]["mf"]["tuning"]

    study_db = tmp_path / "run" / "tuning" / "mf" / "study.db"
    one = run(1)
    assert one["trials"] == 1 and study_db.exists()
    three = run(3)
    assert three["trials"] == 3 and three["finished"] + three["pruned"] == 3
    trials = optuna.load_study(study_name="distillrec", storage=f"sqlite:///{study_db}").get_trials()
    assert len(trials) == 3 and trials[0].params == one["selected"]  # the first trial was kept, not re-run
    again = run(1)
    assert again == one
