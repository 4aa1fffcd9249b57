"""The scenario hook of the pipeline: a registered scenario runs in its own cached stage, and
its table reaches metrics.json and report.html."""

from distillrec.config import parse_config
from distillrec.errors import DistillrecError
from distillrec.pipeline import run_experiment
from distillrec.scenarios import SCENARIOS, ScenarioResult, mean_std

import pytest


def test_mean_std():
    assert mean_std([1.0, 3.0]) == (2.0, pytest.approx(2 ** 0.5))
    assert mean_std([5.0]) == (5.0, 0.0)


def test_cold_scenarios_need_their_split():
    with pytest.raises(DistillrecError, match="needs split name 'cold-user'"):
        parse_config({"scenario": {"name": "cold-user"}})


def test_unknown_scenario_is_refused():
    with pytest.raises(DistillrecError, match="scenario.name"):
        parse_config({"scenario": {"name": "warm-everything"}})


def test_pipeline_runs_a_scenario_once(tmp_path, monkeypatch):
    calls = []

    def probe(context):
        calls.append(context.seeds)
        assert context.out.is_dir() and context.split.n_items == context.dataset.n_items
        return ScenarioResult(table=[{"model": "probe", "n_items": context.split.n_items}], notes="a probe")

    monkeypatch.setitem(SCENARIOS._items, "cold-item", probe)
    config = parse_config({"name": "probe", "baselines": [], "teacher": None, "students": [],
                           "split": {"name": "cold-item"}, "scenario": {"name": "cold-item", "seeds": [0]}})
    metrics = run_experiment(config, tmp_path, progress=False)
    assert metrics["scenarios"]["cold-item"]["table"][0]["model"] == "probe"
    assert "a probe" in (tmp_path / "report.html").read_text()
    run_experiment(config, tmp_path, progress=False)  # cached: the scenario does not run again
    assert calls == [[0]]
