"""Small trained students and a bundle of each, shared by the serving tests: MF and two-tower
(1 epoch on ML-100K) through one `distillrec run` without a teacher, and the content student
(1 epoch) through `distillrec train` on a slice of ML-100K (its first users, as RecBole atomic
files): the run config does not list it, and each of its steps encodes the whole catalog."""

import pytest

from distillrec.data.builtin import resolve_builtin

from distillrec.config import parse_config
from distillrec.experiment import train_model
from distillrec.pipeline import run_experiment
from distillrec.serving.bundle import export_bundle

STUDENTS = {"mf": {"dim": 8}, "two-tower": {"dim": 8, "feature_dim": 4, "hidden": 16}}
CONTENT = {"dim": 8, "text_dim": 8, "buckets": 1024, "feature_dim": 4, "hidden": 16}


@pytest.fixture(scope="session")
def pipeline_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("serving") / "run"
    config = parse_config({"name": "serving", "teacher": None, "baselines": [],
                           "students": [{"name": name, "model": name, "params": params,
                                         "train": {"epochs": 1, "patience": 5}}
                                        for name, params in STUDENTS.items()]})
    run_experiment(config, out, progress=False)
    return out


def ml100k_slice(directory, max_user: int = 120):
    """ML-100K's .item and .user files, and the interactions of users 1..max_user."""
    source = resolve_builtin("ml-100k")
    directory.mkdir()
    for suffix in ("item", "user"):
        (directory / f"{directory.name}.{suffix}").write_bytes((source / f"ml-100k.{suffix}").read_bytes())
    header, *rows = (source / "ml-100k.inter").read_text().splitlines()
    kept = [row for row in rows if int(row.split("\t", 1)[0]) <= max_user]
    (directory / f"{directory.name}.inter").write_text("\n".join([header, *kept]) + "\n")
    return directory


@pytest.fixture(scope="session")
def content_run(tmp_path_factory):
    data = ml100k_slice(tmp_path_factory.mktemp("data") / "slice")
    run_dir, _ = train_model("content", dataset=str(data), split_name="random", seed=0, model_params=CONTENT,
                             train_params={"epochs": 1, "batch_size": 4096},
                             out=tmp_path_factory.mktemp("serving") / "content", progress=False)
    return run_dir


@pytest.fixture(scope="session")
def bundles(pipeline_run, content_run, tmp_path_factory):
    base = tmp_path_factory.mktemp("bundles")
    made = {name: export_bundle(pipeline_run, base / name, model=name) for name in STUDENTS}
    made["content"] = export_bundle(content_run, base / "content")
    return made
