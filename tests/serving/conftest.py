"""One small `distillrec run` (no teacher: MF and two-tower students, 2 epochs on ML-100K) and
a bundle of each student, shared by the serving tests."""

import pytest

from distillrec.config import parse_config
from distillrec.pipeline import run_experiment
from distillrec.serving.bundle import export_bundle

STUDENTS = {"mf": {"dim": 8}, "two-tower": {"dim": 8, "feature_dim": 4, "hidden": 16}}


@pytest.fixture(scope="session")
def pipeline_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("serving") / "run"
    config = parse_config({"name": "serving", "teacher": None, "baselines": [],
                           "students": [{"name": name, "model": name, "params": params,
                                         "train": {"epochs": 2, "patience": 5}}
                                        for name, params in STUDENTS.items()]})
    run_experiment(config, out, progress=False)
    return out


@pytest.fixture(scope="session")
def bundles(pipeline_run, tmp_path_factory):
    base = tmp_path_factory.mktemp("bundles")
    return {name: export_bundle(pipeline_run, base / name, model=name) for name in STUDENTS}
