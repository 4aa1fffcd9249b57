"""The ensemble teacher: fitted runs blended by per-user z-scores, weights chosen on validation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from distillrec import experiment
from distillrec.params import make_train_config
from distillrec.data import sources
from distillrec.data.dataset import RawData, build_dataset
from distillrec.data.splitting import random_split
from distillrec.errors import DistillrecError
from distillrec.evaluation.evaluator import Evaluator
from distillrec.teachers.ease import EASETeacher
from distillrec.teachers.ensemble import EnsembleTeacher, simplex_grid, standardised
from distillrec.students.mf import MatrixFactorization

N_USERS, N_ITEMS = 40, 20


def test_simplex_grid_lists_every_weight_vector_once():
    grid = simplex_grid(3, 0.5)
    assert sorted(grid) == sorted([(1, 0, 0), (0, 1, 0), (0, 0, 1), (0.5, 0.5, 0), (0.5, 0, 0.5), (0, 0.5, 0.5)])
    assert all(np.isclose(sum(w), 1.0) for w in simplex_grid(2, 0.1)) and len(simplex_grid(2, 0.1)) == 11
    with pytest.raises(DistillrecError, match="grid_step"):
        simplex_grid(2, 0.3)


def test_standardised_rows_have_zero_mean_and_unit_spread():
    scores = torch.tensor([[1.0, 2.0, 3.0], [10.0, 10.0, 40.0]])
    z = standardised(scores)
    torch.testing.assert_close(z.mean(1), torch.zeros(2))
    torch.testing.assert_close(z.std(1), torch.ones(2))
    torch.testing.assert_close(z[0], torch.tensor([-1.0, 0.0, 1.0]))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A fitted EASE run and an untrained MF run (random scores) on one tiny split."""
    rng = np.random.default_rng(1)
    # Two taste groups: even users like even items, odd users odd items; EASE finds this.
    rows = [(f"u{u}", f"i{i}", 4.0, t) for u in range(N_USERS)
            for t, i in enumerate(rng.choice(np.arange(u % 2, N_ITEMS, 2), 7, replace=False))]
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(N_ITEMS)], "title": [f"Film {i}" for i in range(N_ITEMS)]})
    dataset = build_dataset(RawData("tiny", inter, items=items))
    split = random_split(dataset, seed=0)
    root = tmp_path_factory.mktemp("runs")
    cache = root / "cache"
    out = {}
    for name, cls, params, epochs in (("ease", EASETeacher, {"l2": 2.0, "cache_dir": str(cache), "template": "{title}"}, 1),
                                      ("mf", MatrixFactorization, {"dim": 4}, 1)):
        train = make_train_config({"epochs": epochs, "lr": 1e-9, "eval_ks": [10]}, 0)
        experiment.fit_model(cls, name, dataset, split, model_params=params, train_config=train, run_dir=root / name,
                             config={"command": "train", "model": name, "model_params": params, "dataset": "tiny",
                                     "split": "random", "split_params": split.params, "seed": 0,
                                     "train": train.model_dump(mode="json")},
                             role="teacher" if name == "ease" else "baseline", progress=False)
        out[name] = root / name
    return dataset, split, out, cache


def test_weights_chosen_on_validation_favour_the_informative_component(runs, monkeypatch):
    dataset, split, paths, cache = runs
    monkeypatch.setattr(sources, "load_dataset", lambda *a, **k: dataset)  # "tiny" is not a built-in name
    ensemble = EnsembleTeacher.build(dataset, split, component_runs=[str(paths["ease"]), str(paths["mf"])],
                                     grid_step=0.25, cache_dir=cache, template="{title}")
    weights = ensemble.selection["weights"]
    assert weights[0] > weights[1]
    evaluator = Evaluator(split, ks=(10,))
    ease_only = EnsembleTeacher.build(dataset, split, component_runs=[str(paths["ease"])], weights=[1.0], template="{title}",
                                      cache_dir=cache)
    ease_only.set_history(split.history("valid"))
    assert ensemble.selection["valid_ndcg@10"] >= evaluator.evaluate(ease_only.score, "valid")["ndcg@10"] - 1e-9
    # The blend's scores are the weighted z-scores of its components.
    users = torch.arange(5)
    expected = sum(w * standardised(c.score(users)) for w, c in zip(weights, ensemble.components))
    torch.testing.assert_close(ensemble.score(users), expected)
    assert not any(p.requires_grad for p in ensemble.parameters())


def test_bad_weights_and_foreign_splits_are_refused(runs, monkeypatch):
    dataset, split, paths, cache = runs
    monkeypatch.setattr(sources, "load_dataset", lambda *a, **k: dataset)
    with pytest.raises(DistillrecError, match="summing to 1"):
        EnsembleTeacher.build(dataset, split, component_runs=[str(paths["ease"]), str(paths["mf"])],
                              weights=[0.7, 0.7], cache_dir=cache, template="{title}")
    other = random_split(dataset, seed=5)
    with pytest.raises(DistillrecError, match="another split"):
        EnsembleTeacher.build(dataset, other, component_runs=[str(paths["ease"])], cache_dir=cache, template="{title}")
