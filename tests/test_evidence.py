"""The before/after evidence of a tuned, resampled run: one small `run_experiment` over two
split seeds (EASE teacher, MF student, MF distilled with a ranking term, 2 trials each) on a
slice of ML-100K, and the config errors that keep budgets equal."""

import json

import numpy as np
import pytest

from distillrec.config import parse_config
from distillrec.data.builtin import resolve_builtin
from distillrec.errors import DistillrecError
from distillrec.evidence import (activity_rows, comparison_rows, pairs, scenario_pair_rows, split_comparisons,
                                 summarise_scenarios)
from distillrec.evaluation.scoring import read_per_user
from distillrec.pipeline import run_experiment
from distillrec.train import trainer as trainer_module
from distillrec.tuning import apply

pytestmark = pytest.mark.usefixtures("single_thread")


def ml100k_slice(directory, max_user=120, max_item=300):
    """ML-100K's interactions among users 1..max_user and items 1..max_item, as atomic files."""
    source = resolve_builtin("ml-100k")
    directory.mkdir()
    for suffix, keep in (("inter", lambda f: int(f[0]) <= max_user and int(f[1]) <= max_item),
                         ("item", lambda f: int(f[0]) <= max_item)):
        header, *rows = (source / f"ml-100k.{suffix}").read_text().splitlines()
        kept = [row for row in rows if keep(row.split("\t"))]
        (directory / f"{directory.name}.{suffix}").write_text("\n".join([header, *kept]) + "\n")
    return directory


def config(data, cache, **extra):
    return parse_config({
        "name": "evidence", "seeds": [0, 1], "baselines": [], "data": {"dataset": str(data)},
        "teacher": {"model": "ease", "params": {"l2": 50.0, "template": "{title}", "cache_dir": str(cache)}},
        "students": [{"name": "mf", "params": {"dim": 8}, "train": {"epochs": 2}}],
        "distilled": [{"name": "mf-kd", "student": "mf", "kd": {"ranking": 0.5}}],
        "tune": {"trials": 2}, **extra})


@pytest.fixture(scope="module")
def resampled(tmp_path_factory):
    base = tmp_path_factory.mktemp("evidence")
    cfg = config(ml100k_slice(base / "slice"), base / "text-cache")
    out = base / "run"
    metrics = run_experiment(cfg, out, progress=False)
    return cfg, out, metrics


def test_the_aggregate_holds_seeds_summary_and_paired_comparisons(resampled):
    cfg, out, metrics = resampled
    assert json.loads((out / "metrics.json").read_text()) == json.loads(json.dumps(metrics))
    assert (out / "report.html").exists() and (out / "config.yaml").exists()
    assert metrics["seeds"] == [0, 1]
    assert metrics["splits"] == {"0": str(out / "split-0"), "1": str(out / "split-1")}
    per_split = {s: json.loads((out / f"split-{s}" / "metrics.json").read_text()) for s in (0, 1)}
    assert [per_split[s]["seed"] for s in (0, 1)] == [0, 1]
    assert per_split[0]["models"]["mf"]["test"] != per_split[1]["models"]["mf"]["test"]  # two different splits

    assert set(metrics["summary"]) == {"teacher", "mf", "mf-kd"}
    for name, row in metrics["summary"].items():
        values = [per_split[s]["models"][name]["test"]["ndcg@10"] for s in (0, 1)]
        cell = row["test ndcg@10"]
        assert cell["values"] == values
        assert cell["mean"] == pytest.approx(np.mean(values)) and cell["std"] == pytest.approx(np.std(values, ddof=1))
        assert metrics["models"][name]["test"]["ndcg@10"] == pytest.approx(np.mean(values))

    assert pairs(cfg) == [("mf", "mf-kd"), ("mf", "teacher")]
    assert [(c["model"], c["vs"]) for c in metrics["comparisons"]] == [("mf-kd", "mf"), ("teacher", "mf")]
    for comparison in metrics["comparisons"]:
        assert comparison["n_splits"] == 2 and comparison["metric"] == "test ndcg@10"
        base = [per_split[s]["models"][comparison["vs"]]["test"]["ndcg@10"] for s in (0, 1)]
        other = [per_split[s]["models"][comparison["model"]]["test"]["ndcg@10"] for s in (0, 1)]
        assert comparison["base_mean"] == pytest.approx(np.mean(base))
        assert comparison["other_mean"] == pytest.approx(np.mean(other))
        assert [row["seed"] for row in comparison["per_split"]] == [0, 1]
        for row, b, o in zip(comparison["per_split"], base, other):
            assert (row["model"], row["vs"]) == (comparison["model"], comparison["vs"])
            assert row["base"] == pytest.approx(b) and row["other"] == pytest.approx(o)
            assert row["n_users"] > 80 and 0 <= row["wilcoxon_p"] <= 1
        groups = comparison["by_activity"]
        assert len(groups) == 4 and all(0 <= g["splits_better"] <= 2 for g in groups)
    # The EASE teacher is far stronger than a 2-epoch MF: every split, every activity quartile.
    teacher = metrics["comparisons"][1]
    assert teacher["lift"] > 1 and all(g["splits_better"] == 2 for g in teacher["by_activity"])

    rows = comparison_rows(metrics)
    assert [(r["model"], r["vs"]) for r in rows] == [("mf-kd", "mf"), ("teacher", "mf")]
    assert rows[1]["splits better"] == "2/2" and " ± " in rows[1]["model ndcg@10"]
    assert len(rows[0]["p (users, Wilcoxon) per split"].split(" / ")) == 2
    activity = activity_rows(metrics)
    by_user = [r for r in activity if r["grouped by"] == "users' training items"]
    by_item = [r for r in activity if r["grouped by"] == "items' training interactions"]
    assert len(by_user) == 8 and by_user[-1]["splits better"] == "2/2"
    assert by_item and {r["metric"] for r in by_item} == {"recall@10"}
    # Item quartiles of the test interactions: each holds about a quarter of them.
    item_groups = teacher["by_item_activity"]
    assert 2 <= len(item_groups) <= 4 and all(g["n_users"] > 0 for g in item_groups)


def test_each_split_pairs_its_models_user_by_user(resampled):
    cfg, out, metrics = resampled
    from distillrec.data.splitting import make_seeded_split
    from distillrec.data.sources import load_dataset

    split_dir = out / "split-1"
    model_dirs = {"teacher": split_dir / "teacher", "mf": split_dir / "students" / "mf",
                  "mf-kd": split_dir / "distilled" / "mf-kd"}
    single = json.loads((split_dir / "metrics.json").read_text())
    for name, directory in model_dirs.items():
        users, values = read_per_user(directory)
        assert len(users) == len(np.unique(users)) > 80
        assert values.mean() == pytest.approx(single["models"][name]["test"]["ndcg@10"])

    split = make_seeded_split(load_dataset(cfg.data.dataset), "random", 1)
    rows = split_comparisons(cfg.model_copy(update={"seed": 1, "seeds": None}), split, model_dirs)
    assert json.loads(json.dumps(rows)) == single["comparisons"]
    for row in rows:
        assert sum(group["n_users"] for group in row["by_activity"]) == row["n_users"]
    # A pair whose per-user values are missing is left out, not guessed.
    assert [r["model"] for r in split_comparisons(cfg, split, {"mf": model_dirs["mf"], "mf-kd": model_dirs["mf-kd"]})] \
        == ["mf-kd"]
    single_rows = comparison_rows(single)
    assert [r["users"] for r in single_rows] == [row["n_users"] for row in rows]


def test_tuning_gives_equal_budgets_and_the_final_fits_use_the_selection(resampled):
    cfg, out, metrics = resampled
    tuning = metrics["tuning"]
    assert set(tuning) == {"mf", "mf-kd"}
    assert tuning["mf"]["trials"] == tuning["mf-kd"]["trials"] == 2
    for name in ("mf", "mf-kd"):
        assert tuning[name]["finished"] + tuning[name]["pruned"] == 2
    assert "history" not in tuning["mf"]
    # The distilled model searches the student's space and its term's options.
    assert set(tuning["mf-kd"]["space"]) == set(tuning["mf"]["space"]) | {"kd.ranking.weight", "kd.ranking.k"}
    # Tuned on the first split only: its studies live there, and the second split reuses the selection.
    assert (out / "split-0" / "tuning" / "mf" / "study.db").exists()
    assert (out / "split-0" / "tuning" / "mf-kd" / "study.db").exists()
    assert not (out / "split-1" / "tuning").exists()

    for seed in (0, 1):
        split_dir = out / f"split-{seed}"
        entry = json.loads((split_dir / "metrics.json").read_text())["models"]
        for name, stage in (("mf", "students/mf"), ("mf-kd", "distilled/mf-kd"), ("teacher", "teacher")):
            assert (split_dir / stage / "per_user.parquet").exists()
        assert entry["mf"]["tuning"]["selected"] == tuning["mf"]["selected"]
        assert entry["mf-kd"]["tuning"]["selected"] == tuning["mf-kd"]["selected"]

        student = json.loads((split_dir / "students" / "mf" / "metrics.json").read_text())["config"]
        params, train, _ = apply(tuning["mf"]["selected"], {"dim": 8}, {"epochs": 2})
        assert student["model_params"] == params
        assert {key: student["train"][key] for key in train} == train
        assert student["seed"] == seed

        distilled = json.loads((split_dir / "distilled" / "mf-kd" / "metrics.json").read_text())["config"]
        params, train, kd = apply(tuning["mf-kd"]["selected"], {"dim": 8}, {"epochs": 2}, {"ranking": 0.5})
        assert distilled["model_params"] == params
        assert {key: distilled["train"][key] for key in train} == train
        assert distilled["kd"] == {"ranking-distillation": kd["ranking"]}

    # On the split it was tuned on, the final fit repeats the best trial: same validation value.
    split0 = json.loads((out / "split-0" / "metrics.json").read_text())["models"]
    assert split0["mf"]["valid"]["ndcg@10"] == pytest.approx(tuning["mf"]["valid"], rel=1e-3)
    assert split0["mf-kd"]["valid"]["ndcg@10"] == pytest.approx(tuning["mf-kd"]["valid"], rel=1e-3)


def test_a_second_run_is_fully_cached(resampled, monkeypatch):
    cfg, out, metrics = resampled

    def no_training(*args, **kwargs):
        raise AssertionError("a finished stage (or a finished study) was trained again")
    monkeypatch.setattr(trainer_module.Trainer, "fit", no_training)
    again = run_experiment(cfg, out, progress=False)
    drop = {"wall_seconds"}
    assert {k: v for k, v in again.items() if k not in drop} == {k: v for k, v in metrics.items() if k not in drop}


@pytest.mark.parametrize("extra, message", [
    ({"tune": {"models": ["mlp"]}}, "tune.models: 'mlp' is not a tunable model"),
    ({"tune": {"models": ["teacher", "pop"]}}, "tune.models: 'pop' is not a tunable model"),
    ({"tune": {"space": {"nope": {"train.lr": 0.01}}}}, "tune.space: 'nope' is not a tunable model"),
    ({"tune": {"models": ["mf-kd"]}}, "tune: distilled model 'mf-kd' and its student 'mf' must be tuned together"),
    ({"tune": {"models": ["mf"]}}, "tune: distilled model 'mf-kd' and its student 'mf' must be tuned together"),
    ({"tune": {"space": {"mf": {"params.dim": 16}}}}, "tune.space.mf.params.dim: params.dim is fixed"),
    ({"tune": {"space": {"mf-kd": {"kd.ranking.k": {"low": 9, "high": 3}}}}},
     "tune.space.mf-kd.kd.ranking.k: expected low < high"),
    ({"tune": {"trials": 0}}, "tune.trials"),
    ({"tune": {"pruner": "hyperband"}}, "tune.pruner"),
    ({"seeds": [0, 1, 0]}, "seeds must be distinct, got [0, 1, 0]"),
    ({"seeds": []}, "seeds"),
])
def test_config_errors_name_the_key(tmp_path, extra, message):
    with pytest.raises(DistillrecError) as error:
        config(tmp_path, tmp_path, **extra)
    assert message in str(error.value)


def test_tuned_names_and_split_seeds():
    no_teacher = {"teacher": None, "baselines": ["pop"], "students": [{"name": "mf", "params": {"dim": 8}}]}
    cfg = parse_config({**no_teacher, "seed": 4})
    assert cfg.tuned_names() == [] and cfg.split_seeds == [4]
    assert parse_config({**no_teacher, "tune": {}}).tuned_names() == ["mf"]
    with pytest.raises(DistillrecError, match=r"tune\.models: 'teacher' is not a tunable model"):
        parse_config({**no_teacher, "tune": {"models": ["teacher"]}})
    cfg = config("x", "y", seeds=[3, 1], tune={"models": ["mf-kd", "teacher", "mf"]})
    assert cfg.tuned_names() == ["teacher", "mf", "mf-kd"]  # in the order they are fitted
    assert cfg.split_seeds == [3, 1]
    assert config("x", "y", tune={}).tuned_names() == ["mf", "mf-kd"]  # the teacher only when named


def _scenario_split(ndcg: float, teacher: float, wilcoxon: float) -> dict:
    table = [{"model": "teacher (language model)", "cold ndcg@20": teacher, "cold ndcg@20 std": 0.0},
             {"model": "content-kd", "cold ndcg@20": ndcg, "cold ndcg@20 std": 0.01, "items/s (1 thread)": 100.0}]
    paired = [{"model": "content-kd", "vs": "teacher (language model)", "metric": "test cold ndcg@20",
               "n_users": 50, "base": teacher, "other": ndcg, "lift": ndcg / teacher - 1,
               "wilcoxon_p": wilcoxon, "t_p": wilcoxon}]
    return {"scenarios": {"cold-item": {"table": table, "notes": "per split.", "details": {"paired": paired}}}}


def test_scenario_tables_are_averaged_over_splits_and_paired_again():
    per_split = {0: _scenario_split(0.40, 0.50, 0.01), 1: _scenario_split(0.44, 0.52, 0.2),
                 2: _scenario_split(0.42, 0.45, 0.5)}
    result = summarise_scenarios(per_split, [0, 1, 2])["cold-item"]
    teacher, student = result["table"]
    assert teacher["model"] == "teacher (language model)" and student["model"] == "content-kd"
    assert student["cold ndcg@20"] == pytest.approx(0.42)
    assert student["cold ndcg@20 std"] == pytest.approx(0.02)  # over splits, not the within-split 0.01
    assert teacher["cold ndcg@20 std"] == pytest.approx(np.std([0.50, 0.52, 0.45], ddof=1))
    (pair,) = result["details"]["paired"]
    assert pair["n_splits"] == 3 and pair["base_mean"] == pytest.approx(np.mean([0.50, 0.52, 0.45]))
    assert [row["wilcoxon_p"] for row in pair["per_split"]] == [0.01, 0.2, 0.5]
    from scipy import stats
    assert pair["t_p"] == pytest.approx(stats.ttest_rel([0.40, 0.44, 0.42], [0.50, 0.52, 0.45]).pvalue)
    assert result["notes"].startswith("Mean ± std over split seeds [0, 1, 2]")
    assert "Split 0's notes (its own figures): " in result["notes"]  # not to be read as the means


def test_a_scenario_missing_from_a_split_is_not_summarised():
    per_split = {0: _scenario_split(0.40, 0.50, 0.01), 1: {}}
    assert summarise_scenarios(per_split, [0, 1]) == {}


def test_scenario_pairs_read_as_rows_per_split_and_over_splits():
    per_split = {0: _scenario_split(0.40, 0.50, 0.01), 1: _scenario_split(0.44, 0.52, 0.2)}
    (one,) = scenario_pair_rows(per_split[0]["scenarios"]["cold-item"]["details"]["paired"])
    assert one["users"] == 50 and one["lift"] == "-20.0%" and one["p (users, Wilcoxon)"] == "0.01"
    (over,) = scenario_pair_rows(summarise_scenarios(per_split, [0, 1])["cold-item"]["details"]["paired"])
    assert over["vs value"] == "0.5100 ± 0.0141" and over["p (users, Wilcoxon) per split"] == "0.01 / 0.2"
