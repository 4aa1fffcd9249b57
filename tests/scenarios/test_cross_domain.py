"""Cross-domain scenario: disjoint users, title alignment, thinned train parts, and a tiny
end-to-end run with the real MiniLM and the real Trainer."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from distillrec.config import parse_config
from distillrec.data.dataset import RawData, build_dataset
from distillrec.data.splitting import random_split
from distillrec.errors import DataError, DistillrecError
from distillrec.evaluation.baselines import PopularityScorer
from distillrec.evaluation.scoring import make_evaluator
from distillrec.scenarios import SCENARIOS, ScenarioContext
from distillrec.scenarios.common import subsample_train
from distillrec.scenarios.cross_domain import (POP_WEIGHTS, CrossDomainParams, check_disjoint_users, cross_domain,
                                               match_titles, normalise_title, source_cooccurrence,
                                               transferred_item_table, with_popularity)
from distillrec.students.mf import MatrixFactorization

GENRES = ["Action", "Comedy", "Drama", "Romance"]
TITLES = ["Heat", "Toy Story", "Usual Suspects, The", "Fargo", "Casablanca", "Alien", "Aliens", "Jaws",
          "Vertigo", "Psycho", "Rocky", "Big", "Babe", "Speed", "Seven", "Ran"]


def tiny(name: str, prefix: str, n_users: int, titles: list[str], seed: int, per_user: int = 10):
    rng = np.random.default_rng(seed)
    rows = [(f"{prefix}{u}", f"{prefix}i{i}", 4.0, t) for u in range(n_users)
            for t, i in enumerate(rng.choice(len(titles), per_user, replace=False))]
    items = pd.DataFrame({"item_id": [f"{prefix}i{i}" for i in range(len(titles))], "title": titles,
                          "year": [1990.0 + i for i in range(len(titles))],
                          "genres": [[GENRES[i % 4], GENRES[(i + 1) % 4]] for i in range(len(titles))]})
    users = pd.DataFrame({"user_id": [f"{prefix}{u}" for u in range(n_users)],
                          "gender": ["F", "M"] * (n_users // 2)})
    return build_dataset(RawData(name, pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"]),
                                 items=items, users=users))


@pytest.fixture(scope="module")
def domains():
    # Catalogs of 24 items (the evaluator ranks top-20); 6 target films are also in the source.
    source = tiny("source", "1m_", 30, TITLES + [f"Source Film {i}" for i in range(8)], seed=1)
    target = tiny("target", "", 20, TITLES[:6] + [f"Target Film {i}" for i in range(18)], seed=2)
    return source, target


def test_target_users_are_never_in_the_source(domains):
    source, target = domains
    assert not set(target.user_ids) & set(source.user_ids)
    check_disjoint_users(source, target)
    with pytest.raises(DataError, match="user ids also in the target"):
        check_disjoint_users(target, target)


def test_the_builtin_domains_are_disjoint():
    from distillrec.data.sources import load_dataset

    source, target = load_dataset("ml-1m"), load_dataset("ml-100k")
    assert not set(target.user_ids.astype(str)) & set(source.user_ids.astype(str))
    matches = match_titles(source.items, target.items)
    assert 800 < (matches >= 0).sum() < target.n_items  # most ML-100K films are in ML-1M, not all
    matched = np.flatnonzero(matches >= 0)
    assert (source.items["year"].to_numpy()[matches[matched]] == target.items["year"].to_numpy()[matched]).all()


def test_titles_match_after_normalising_articles_and_years(domains):
    assert normalise_title("Usual Suspects, The") == normalise_title("The Usual Suspects") == "the usual suspects"
    source, target = domains
    matches = match_titles(source.items, target.items)
    shared = target.items["title"].isin(TITLES[:6]).to_numpy()
    assert (matches[shared] >= 0).all() and (matches[~shared] == -1).all() and shared.sum() == 6
    assert list(source.items["title"].to_numpy()[matches[shared]]) == list(target.items["title"][shared])
    shifted = target.items.assign(year=target.items["year"] + 1)  # same title, other year: not the same film
    assert (match_titles(source.items, shifted) == -1).all()


def test_item_table_transfer_copies_matched_items_and_maps_the_rest_from_text():
    import torch

    generator = torch.Generator().manual_seed(0)
    source_text, target_text = torch.randn(200, 6, generator=generator), torch.randn(5, 6, generator=generator)
    linear, offset = torch.randn(6, 3, generator=generator), torch.randn(3, generator=generator)
    source_items = source_text @ linear + offset  # an exact linear relation the ridge map should recover
    matches = np.array([7, -1, 42, -1, -1])
    table = transferred_item_table(source_items, source_text, target_text, matches, ridge=1e-6)
    assert table.shape == (5, 3)
    assert torch.equal(table[0], source_items[7]) and torch.equal(table[2], source_items[42])
    unmatched = torch.tensor([1, 3, 4])
    assert torch.allclose(table[unmatched], target_text[unmatched] @ linear + offset, atol=1e-4)
    shrunk = transferred_item_table(source_items, source_text, target_text, matches, ridge=1e6)
    assert torch.allclose(shrunk[unmatched], source_items.mean(0).expand(3, 3), atol=0.05)  # all penalty: the mean
    with pytest.raises(DataError, match="one vector and one text per item"):
        transferred_item_table(source_items[:10], source_text, target_text, matches)


def test_source_cooccurrences_count_source_users_on_matched_target_items():
    # source items 0..3; target item 0 is source 2, target 2 is source 0, target 1 has no match
    matches = np.array([2, -1, 0])
    interactions = pd.DataFrame({"user": [0, 0, 0, 1, 1, 1, 2], "item": [0, 2, 3, 2, 0, 2, 1]})
    counts = source_cooccurrence(interactions, matches, n_source_users=3, n_source_items=4)
    # users 0 and 1 each saw source 0 and 2 (target 2 and 0); user 1's repeat counts once;
    # source items 1 and 3 have no target item
    assert counts.tolist() == [[2, 0, 2], [0, 0, 0], [2, 0, 2]]


def test_joint_ease_adds_the_source_cooccurrences_to_the_gram_matrix(domains):
    from distillrec.teachers.ease import EASETeacher, _interaction_matrix, ease_weights

    _, target = domains
    split = random_split(target, seed=0)
    rng = np.random.default_rng(0)
    extra = rng.integers(0, 3, (split.n_items, split.n_items)).astype(float)
    extra = extra + extra.T
    options = {"l2": 5.0, "text_weight": 0.0, "rank": 4, "encoder": None, "template": "{title}", "cache_dir": None}
    joint = EASETeacher.solve(target, split, cooccurrence=extra, **options)
    x = _interaction_matrix(split.history("valid"), split.n_users, split.n_items)
    assert np.allclose(joint.weights.numpy(), ease_weights(x.T @ x + extra, 5.0), atol=1e-6)
    alone = EASETeacher.solve(target, split, cooccurrence=None, **options)
    assert np.allclose(alone.weights.numpy(), EASETeacher.build(target, split, l2=5.0, rank=4,
                                                                template="{title}").weights.numpy())
    with pytest.raises(DistillrecError, match="co-occurrence matrix"):
        EASETeacher.solve(target, split, cooccurrence=extra[:3, :3], **options)


def test_thinning_keeps_valid_test_and_every_user(domains):
    _, target = domains
    split = random_split(target, seed=0)
    thin = subsample_train(split, 0.2, seed=3)
    assert thin.valid.equals(split.valid) and thin.test.equals(split.test)
    merged = thin.train.merge(split.train, how="left", indicator=True)
    assert (merged["_merge"] == "both").all()  # a subset of the original train part
    before, after = split.train.groupby("user").size(), thin.train.groupby("user").size()
    assert (after.index == before.index).all()
    assert (after == np.maximum(1, np.rint(0.2 * before))).all()
    assert thin.params["train_fraction"] == 0.2
    assert subsample_train(split, 0.2, seed=3).train.equals(thin.train)  # seeded
    assert not subsample_train(split, 0.2, seed=4).train.equals(thin.train)
    assert subsample_train(split, 1.0, seed=3) is split
    with pytest.raises(DistillrecError, match="fraction"):
        subsample_train(split, 0.0, seed=0)


def test_bad_params_are_refused_in_one_line(domains, tmp_path):
    config = parse_config({"teacher": None, "students": [], "baselines": [],
                           "scenario": {"name": "cross-domain", "params": {"fractions": [1.0], "sorce": "x"}}})
    _, target = domains
    context = ScenarioContext(config, target, random_split(target, seed=0), None, tmp_path, progress=False)
    with pytest.raises(DistillrecError, match=r"scenario.params.sorce: unknown key"):
        SCENARIOS.get("cross-domain")(context)
    assert not any(tmp_path.iterdir())
    bad = config.model_copy(update={"scenario": config.scenario.model_copy(update={"params": {"fractions": [1.5]}})})
    with pytest.raises(DistillrecError, match=r"scenario.params.fractions.0: .*less than or equal to 1"):
        SCENARIOS.get("cross-domain")(ScenarioContext(bad, target, None, None, tmp_path, progress=False))


def test_the_popularity_blend_is_chosen_on_validation_and_reads_test_once(domains, tmp_path):
    _, target = domains
    split = random_split(target, seed=0)
    model = MatrixFactorization.build(target, split, seed=0, dim=8)  # untrained: any scorer will do
    blend = with_popularity(model, split, make_evaluator(split, target), PopularityScorer(split), tmp_path / "a")
    values = blend["valid by weight"]
    assert list(values) == [str(w) for w in POP_WEIGHTS]
    assert blend["popularity weight"] == POP_WEIGHTS[int(np.argmax(list(values.values())))]
    assert blend["valid"]["ndcg@10"] == max(values.values())
    assert (tmp_path / "a" / "per_user.parquet").exists()
    # Garbage test ground truth: the same weight and validation values, only the test figure moves.
    rng = np.random.default_rng(1)
    garbage = dataclasses.replace(split, test=split.test.assign(item=rng.permutation(split.test["item"].to_numpy())))
    again = with_popularity(model, garbage, make_evaluator(garbage, target), PopularityScorer(garbage), tmp_path / "b")
    assert again["popularity weight"] == blend["popularity weight"] and again["valid by weight"] == values


def test_tiny_end_to_end_run(domains, tmp_path):
    source, target = domains
    fast = {"epochs": 1, "batch_size": 32, "patience": 1, "num_threads": 1, "eval_ks": [10]}
    raw = {"fractions": [1.0, 0.3], "two_tower": {"params": {"dim": 8, "hidden": 16, "rec_loss": "softmax",
                                                             "similarity": "cosine"}, "train": fast},
           "source_train": fast, "source_mf_train": fast, "mf": {"params": {"dim": 8}, "train": fast}}
    config = parse_config({"teacher": None, "students": [], "baselines": [],
                           "scenario": {"name": "cross-domain", "seeds": [3], "params": raw}})
    split = random_split(target, seed=0)
    context = ScenarioContext(config, target, split, None, tmp_path, progress=False)
    result = cross_domain(context, source, CrossDomainParams(**raw))
    rows = {(row["train fraction"], row["model"]): row for row in result.table}
    trained = ("mf", "two-tower (target)", "transfer (init)", "transfer (init+kd)", "transfer (MF ids)")
    models = {"pop", *trained, *(f"{m} + pop" for m in trained)}
    assert set(rows) == {(f, m) for f in (1.0, 0.3) for m in models}
    for (fraction, model), row in rows.items():
        assert 0 <= row["ndcg@10"] <= 1 and row["ndcg@10 std"] >= 0
        if model == "two-tower (target)":
            assert row["lift"] == pytest.approx(0.0)
        own = {m: rows[(fraction, m)]["ndcg@10"]
               for m in ("pop", "mf", "two-tower (target)", "mf + pop", "two-tower (target) + pop")}
        if model.startswith("transfer"):
            assert row["best target-only"] == max(own, key=own.get)
            assert row["lift vs best target-only"] == pytest.approx(row["ndcg@10"] / max(own.values()) - 1)
            assert row["p vs best target-only"] is None  # one seed: no test over seeds
        else:
            assert row["lift vs best target-only"] is None and row["best target-only"] is None
    assert {row["tuning trials"] for row in result.table} == {0}  # nothing tuned without mf_tune / two_tower_tune
    assert result.details["matched_titles"] == 6
    runs = {(r["train_fraction"], r["model"]): r["runs"] for r in result.details["per_seed"]}
    assert [r["seed"] for r in runs[(0.3, "mf")]] == [3]
    assert (tmp_path / "source" / "metrics.json").exists() and (tmp_path / "source-mf" / "metrics.json").exists()
    assert 0 <= result.details["source"]["mf"]["test"]["ndcg@10"] <= 1
    # Each transfer against its own architecture, per fraction: over users per seed, then seeds.
    paired = {(p["model"], p["vs"], p["metric"]): p for p in result.details["paired"]}
    assert len(paired) == 12  # each pair alone and blended with popularity
    blended = paired[("transfer (MF ids) + pop", "mf + pop", "test ndcg@10 at 0.3 of the target")]
    assert blended["other_mean"] == pytest.approx(rows[(0.3, "transfer (MF ids) + pop")]["ndcg@10"])
    ids = paired[("transfer (MF ids)", "mf", "test ndcg@10 at 0.3 of the target")]
    assert ids["n_splits"] == 1 and [c["seed"] for c in ids["per_split"]] == [3]
    assert ids["base_mean"] == pytest.approx(rows[(0.3, "mf")]["ndcg@10"])
    assert ids["other_mean"] == pytest.approx(rows[(0.3, "transfer (MF ids)")]["ndcg@10"])
    assert "users disjoint" in result.notes and "6 of 24" in result.notes


def test_each_architectures_arms_get_the_same_tuning_budget_chosen_on_validation(domains, tmp_path):
    source, target = domains
    fast = {"epochs": 2, "batch_size": 32, "patience": 1, "num_threads": 1, "eval_ks": [10]}
    raw = {"fractions": [0.5], "two_tower": {"params": {"dim": 8, "hidden": 16}, "train": fast},
           "source_train": fast, "source_mf_train": fast, "mf": {"params": {"dim": 8}, "train": fast},
           "mf_tune": {"trials": 3, "pruner": "none",
                       "space": {"train.batch_size": {"choices": [16, 32]}, "params.rec_loss": {"choices": ["bpr"]}}},
           "two_tower_tune": {"trials": 2, "pruner": "none",
                              "space": {"train.batch_size": {"choices": [16, 32]},
                                        "params.rec_loss": {"choices": ["softmax"]}}}}
    config = parse_config({"teacher": None, "students": [], "baselines": [],
                           "scenario": {"name": "cross-domain", "seeds": [0], "params": raw}})
    context = ScenarioContext(config, target, random_split(target, seed=0), None, tmp_path, progress=False)
    result = cross_domain(context, source, CrossDomainParams(**raw))
    runs = {r["model"]: r["runs"][0] for r in result.details["per_seed"]}
    arms = (("mf", "mf", 3), ("transfer (MF ids)", "transfer--MF-ids", 3), ("two-tower (target)", "two-tower--target", 2),
            ("transfer (init)", "transfer--init", 2), ("transfer (init+kd)", "transfer--init-kd", 2))
    for name, slug, trials in arms:
        tuned = runs[name]["tuned"]
        assert tuned["trials"] == trials and tuned["selected"]["train.batch_size"] in (16, 32)
        assert 0 <= tuned["valid"] <= 1
        assert (tmp_path / "train-0.5" / "seed-0" / f"{slug}-tune" / "study.db").exists()
        # The final fit trains the selected settings and validates where the best trial did.
        saved = json.loads((tmp_path / "train-0.5" / "seed-0" / slug / "metrics.json").read_text())
        assert saved["config"]["train"]["batch_size"] == tuned["selected"]["train.batch_size"]
        assert runs[name]["valid"]["ndcg@10"] == pytest.approx(tuned["valid"])
    assert "tuned" not in runs["pop"]
    budgets = {row["model"]: row["tuning trials"] for row in result.table}
    trials = {"mf": 3, "transfer (MF ids)": 3, "two-tower (target)": 2, "transfer (init)": 2, "transfer (init+kd)": 2}
    assert budgets == {"pop": 0, **trials, **{f"{m} + pop": n for m, n in trials.items()}}  # a blend trains nothing


def test_the_ease_arms_alone_with_the_same_budget(domains, tmp_path):
    source, target = domains
    raw = {"fractions": [0.5], "arms": ["ease (target)", "transfer (joint EASE)"],
           "ease": {"params": {"l2": 10.0, "text_weight": 1.0}},
           "ease_tune": {"trials": 3, "pruner": "none", "space": {"params.l2": {"low": 1.0, "high": 100.0, "log": True}}}}
    config = parse_config({"teacher": None, "students": [], "baselines": [],
                           "scenario": {"name": "cross-domain", "seeds": [0, 1], "params": raw}})
    context = ScenarioContext(config, target, random_split(target, seed=0), None, tmp_path, progress=False)
    result = cross_domain(context, source, CrossDomainParams(**raw))
    rows = {row["model"]: row for row in result.table}
    assert set(rows) == {"pop", "ease (target)", "transfer (joint EASE)", "ease (target) + pop",
                         "transfer (joint EASE) + pop"}
    assert not (tmp_path / "source").exists() and not (tmp_path / "source-mf").exists()  # no arm needs them
    joint = rows["transfer (joint EASE)"]
    own = {m: rows[m]["ndcg@10"] for m in ("pop", "ease (target)", "ease (target) + pop")}
    assert joint["best target-only"] == max(own, key=own.get) and joint["lift"] is None  # no two-tower ran
    assert rows["ease (target)"]["tuning trials"] == joint["tuning trials"] == 3
    runs = {r["model"]: r["runs"] for r in result.details["per_seed"]}
    assert all(1.0 <= run["tuned"]["selected"]["params.l2"] <= 100.0 for run in runs["transfer (joint EASE)"])
    paired = {(p["model"], p["vs"]) for p in result.details["paired"]}
    assert paired == {("transfer (joint EASE)", "ease (target)"), ("transfer (joint EASE) + pop", "ease (target) + pop")}
    assert "source test" not in result.notes


def test_a_bad_tuning_space_is_refused_before_any_work(domains, tmp_path):
    _, target = domains
    config = parse_config({"teacher": None, "students": [], "baselines": [], "scenario": {
        "name": "cross-domain", "params": {"mf_tune": {"trials": 2, "space": {"train.lr": {"low": 1}}}}}})
    context = ScenarioContext(config, target, random_split(target, seed=0), None, tmp_path, progress=False)
    with pytest.raises(DistillrecError, match=r"scenario.params.mf_tune.space"):
        SCENARIOS.get("cross-domain")(context)
    assert not any(tmp_path.iterdir())


def test_the_table_tests_each_transfer_against_the_strongest_target_only_model_over_seeds():
    from scipy.stats import ttest_rel

    from distillrec.scenarios.cross_domain import _table

    def runs(*values):
        return [{"seed": s, "test": {"ndcg@10": v, "recall@10": v}} for s, v in enumerate(values)]

    per_seed = {(0.05, "pop"): runs(0.30, 0.32, 0.31), (0.05, "mf"): runs(0.20, 0.22, 0.21),
                (0.05, "two-tower (target)"): runs(0.25, 0.26, 0.24), (0.05, "mf + pop"): runs(0.29, 0.33, 0.30),
                (0.05, "transfer (MF ids) + pop"): runs(0.33, 0.36, 0.32)}
    rows = {row["model"]: row for row in _table(per_seed, [0.05])}
    row = rows["transfer (MF ids) + pop"]
    assert row["best target-only"] == "pop"  # 0.31 beats mf + pop's 0.3067 on the mean
    assert row["lift vs best target-only"] == pytest.approx((0.33 + 0.36 + 0.32) / (0.30 + 0.32 + 0.31) - 1)
    assert row["p vs best target-only"] == pytest.approx(ttest_rel([0.33, 0.36, 0.32], [0.30, 0.32, 0.31]).pvalue)
    assert rows["pop"]["p vs best target-only"] is None


def test_the_joint_ease_tunes_how_much_a_source_user_counts(domains, tmp_path):
    source, target = domains
    raw = {"fractions": [1.0], "arms": ["transfer (joint EASE)"], "ease": {"params": {"l2": 10.0}},
           "ease_tune": {"trials": 2, "pruner": "none"}}
    config = parse_config({"teacher": None, "students": [], "baselines": [],
                           "scenario": {"name": "cross-domain", "seeds": [0], "params": raw}})
    context = ScenarioContext(config, target, random_split(target, seed=0), None, tmp_path, progress=False)
    result = cross_domain(context, source, CrossDomainParams(**raw))
    run = {r["model"]: r["runs"][0] for r in result.details["per_seed"]}["transfer (joint EASE)"]
    assert 0.001 <= run["tuned"]["selected"]["params.source_weight"] <= 1.0
    saved = json.loads((tmp_path / "train-1" / "seed-0" / "transfer--joint-EASE" / "metrics.json").read_text())
    assert saved["models"]["transfer (joint EASE)"]["valid"]["ndcg@10"] == pytest.approx(run["tuned"]["valid"])


def test_the_target_mf_distilled_from_the_joint_ease_is_tuned_like_the_mf(domains, tmp_path):
    source, target = domains
    fast = {"epochs": 2, "batch_size": 32, "patience": 1, "num_threads": 1, "eval_ks": [10]}
    raw = {"fractions": [0.5], "arms": ["mf", "transfer (joint EASE)", "transfer (MF from joint EASE)"],
           "mf": {"params": {"dim": 8}, "train": fast}, "ease": {"params": {"l2": 10.0}},
           "mf_tune": {"trials": 2, "pruner": "none", "space": {"params.rec_loss": {"choices": ["bpr"]}}},
           "joint_kd": {"ranking": {"weight": 0.5, "k": 5}}}
    config = parse_config({"teacher": None, "students": [], "baselines": [],
                           "scenario": {"name": "cross-domain", "seeds": [0], "params": raw}})
    context = ScenarioContext(config, target, random_split(target, seed=0), None, tmp_path, progress=False)
    result = cross_domain(context, source, CrossDomainParams(**raw))
    runs = {r["model"]: r["runs"][0] for r in result.details["per_seed"]}
    student = runs["transfer (MF from joint EASE)"]["tuned"]
    assert student["trials"] == runs["mf"]["tuned"]["trials"] == 2
    assert "kd.ranking.weight" in student["selected"]  # the term's weight is searched with the MF's settings
    saved = json.loads((tmp_path / "train-0.5" / "seed-0" / "transfer--MF-from-joint-EASE" / "metrics.json").read_text())
    assert saved["models"]["transfer (MF from joint EASE)"]["valid"]["ndcg@10"] == pytest.approx(student["valid"])
    paired = {(p["model"], p["vs"]) for p in result.details["paired"]}
    assert ("transfer (MF from joint EASE)", "mf") in paired


def test_the_distilled_arm_needs_its_teacher_first():
    with pytest.raises(Exception, match="must come before it"):
        CrossDomainParams(arms=["transfer (MF from joint EASE)", "transfer (joint EASE)"])
