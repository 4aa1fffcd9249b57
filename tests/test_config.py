import pytest

from distillrec.config import ExperimentConfig, dump_config, load_config, parse_config
from distillrec.errors import DistillrecError


def write(tmp_path, text):
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    return path


def test_defaults_round_trip_through_yaml(tmp_path):
    config = load_config(write(tmp_path, dump_config(ExperimentConfig())))
    assert config == ExperimentConfig()
    assert config.data.dataset == "ml-100k" and config.split.name == "random" and config.teacher.model == "lm-teacher"


@pytest.mark.parametrize("text, message", [
    ("data:\n  datset: ml-1m\n", "exp.yaml: data.datset: unknown key"),
    ("seed: many\n", "exp.yaml: seed: Input should be a valid integer"),
    ("split:\n  name: shuffled\n", "exp.yaml: split.name: Input should be 'random', 'temporal', 'loo', 'cold-user' or 'cold-item'"),
    ("distilled:\n  - {name: kd, student: nope, kd: {ranking: 1.0}}\n",
     "distilled model 'kd' refers to student 'nope', which is not among students (mf)"),
    ("teacher: null\ndistilled:\n  - {name: kd, student: mf, kd: {ranking: 1.0}}\n", "distilled models need a teacher"),
    ("distilled:\n  - {name: kd, student: mf}\n", "distilled model 'kd' needs distillation losses (kd) or an init"),
    ("students:\n  - {name: seq, model: sasrec}\n", "student 'seq' is sequential (sasrec): use split name 'loo'"),
    ("students:\n  - {name: a}\n  - {name: a}\n", "model names must be unique; repeated: a"),
    ("- just\n- a list\n", "exp.yaml: expected a mapping of sections"),
    ("data: {dataset: [unclosed\n", "exp.yaml, line 2: not valid YAML"),
])
def test_bad_configs_name_the_file_key_and_expectation(tmp_path, text, message):
    with pytest.raises(DistillrecError) as error:
        load_config(write(tmp_path, text))
    assert message in str(error.value)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(DistillrecError, match="nope.yaml: config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_shipped_configs_are_valid():
    from pathlib import Path

    configs = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))
    assert configs, "configs/ holds the ready experiments"
    for path in configs:
        load_config(path)


def test_parse_config_accepts_a_dict():
    config = parse_config({"seed": 3, "students": [{"name": "mf32", "params": {"dim": 32}}]})
    assert config.seed == 3 and config.students[0].params == {"dim": 32}
