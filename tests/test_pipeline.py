"""`distillrec run`: stage caching, resume after an interrupted stage, the aggregate outputs.

The teacher-to-student path is exercised by tests/distill/test_runner.py and by `make run`;
here the teacher is switched off so the pipeline's own mechanics run in seconds."""

import json

import pytest

from distillrec.config import parse_config
from distillrec.pipeline import run_experiment
from distillrec.train import trainer as trainer_module

CONFIG = {"name": "tiny", "teacher": None, "baselines": ["pop"],
          "students": [{"name": "mf", "params": {"dim": 8}, "train": {"epochs": 3, "patience": 5}}]}


class Killed(Exception):
    pass


def test_a_second_run_reuses_every_stage(tmp_path, monkeypatch):
    config = parse_config(CONFIG)
    first = run_experiment(config, tmp_path, progress=False)
    assert set(first["models"]) == {"pop", "mf"}
    assert (tmp_path / "report.html").exists() and (tmp_path / "config.yaml").exists()

    def no_training(*args, **kwargs):
        raise AssertionError("a finished stage was trained again")
    monkeypatch.setattr(trainer_module.Trainer, "fit", no_training)
    second = run_experiment(config, tmp_path, progress=False)
    assert second["models"] == first["models"]


def test_changed_inputs_redo_only_the_affected_stage(tmp_path):
    run_experiment(parse_config(CONFIG), tmp_path, progress=False)
    pop_stage = (tmp_path / "baselines" / "pop" / "stage.json").read_text()
    changed = json.loads(json.dumps(CONFIG))
    changed["students"][0]["params"]["dim"] = 4
    result = run_experiment(parse_config(changed), tmp_path, progress=False)
    assert result["models"]["mf"]["params"] == (943 + 1682) * 4
    assert (tmp_path / "baselines" / "pop" / "stage.json").read_text() == pop_stage


def test_an_interrupted_stage_resumes_to_the_same_result(tmp_path, monkeypatch):
    config = parse_config(CONFIG)
    uninterrupted = run_experiment(config, tmp_path / "a", progress=False)

    original_init = trainer_module.Trainer.__init__

    def init_with_kill(self, *args, **kwargs):
        original_init(self, *args, **kwargs)

        def kill(record):
            if record["epoch"] == 2:
                raise Killed
        self.callbacks.append(kill)
    monkeypatch.setattr(trainer_module.Trainer, "__init__", init_with_kill)
    with pytest.raises(Killed):
        run_experiment(config, tmp_path / "b", progress=False)
    monkeypatch.setattr(trainer_module.Trainer, "__init__", original_init)

    stage = json.loads((tmp_path / "b" / "students" / "mf" / "stage.json").read_text())
    assert stage["status"] == "running"
    resumed = run_experiment(config, tmp_path / "b", progress=False)
    history = resumed["models"]["mf"]["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3]
    for key in ("valid", "test"):
        assert resumed["models"]["mf"][key] == uninterrupted["models"]["mf"][key]


def test_the_same_seed_gives_the_same_metrics(tmp_path):
    a = run_experiment(parse_config(CONFIG), tmp_path / "a", progress=False)
    b = run_experiment(parse_config(CONFIG), tmp_path / "b", progress=False)
    assert a["models"]["mf"]["test"] == b["models"]["mf"]["test"]
    assert a["data_fingerprint"] == b["data_fingerprint"] and a["seed"] == b["seed"] == 0
