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


def test_compare_names_extra_pairs_of_models_of_the_config():
    from distillrec.evidence import pairs

    config = parse_config({"teacher": None, "students": [{"name": "a", "model": "mf"}, {"name": "b", "model": "mf"}],
                           "compare": [["a", "b"]]})
    assert pairs(config) == [("a", "b")]
    assert "compare" not in parse_config({"teacher": None}).model_dump()  # unset: dumps as before the key
    with pytest.raises(DistillrecError, match=r"compare: 'c' is not a model of this config"):
        parse_config({"teacher": None, "students": [{"name": "a", "model": "mf"}], "compare": [["a", "c"]]})


def test_students_may_be_any_registered_model():
    config = parse_config({"students": [{"name": "c", "model": "content", "params": {"text_dim": 32}}]})
    assert config.students[0].model == "content"
    with pytest.raises(DistillrecError, match=r"config: students.0.model: unknown model 'lightgcn'; expected one of"):
        parse_config({"students": [{"name": "g", "model": "lightgcn"}]})


# A mistyped and a misspelt parameter for a student, the teacher and a distillation term.
BAD_PARAMS = [
    ("students:\n  - {name: mf, model: mf, params: {dim: sixty}}\n",
     "students.0.params.dim: expected an integer >= 1, got 'sixty'"),
    ("students:\n  - {name: mf, model: mf, params: {dimm: 64}}\n",
     "students.0.params.dimm: unknown parameter of model 'mf' (did you mean 'dim'?)"),
    ("teacher:\n  params: {heads: two}\n", "teacher.params.heads: expected an integer >= 1, got 'two'"),
    ("teacher:\n  params: {hiden: 256}\n", "teacher.params.hiden: unknown parameter of model 'lm-teacher' "
                                           "(did you mean 'hidden'?)"),
    ("distilled:\n  - {name: kd, student: mf, kd: {feature: {kind: l2}}}\n",
     "distilled.0.kd.feature.kind: expected 'mse' or 'cosine', got 'l2'"),
    ("distilled:\n  - {name: kd, student: mf, kd: {neighbour-graph: {anchor: 64}}}\n",
     "distilled.0.kd.neighbour-graph.anchor: unknown parameter of distillation method 'neighbour-graph' "
     "(did you mean 'anchors'?)"),
    ("students:\n  - {name: mf, train: {lr: fast}}\n", "students.0.train.lr: expected a number > 0, got 'fast'"),
    ("split:\n  name: cold-user\n  params: {reveals: 5}\n", "split.params.reveals: unknown parameter of split"),
]


@pytest.mark.parametrize("command", ["run", "config show"])
@pytest.mark.parametrize("text, message", BAD_PARAMS)
def test_run_refuses_bad_parameters_at_load_in_one_line_and_writes_nothing(tmp_path, monkeypatch, capsys,
                                                                           command, text, message):
    import time

    from distillrec.cli import main

    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, "name: bad\n" + text)
    out = tmp_path / "out"
    started = time.perf_counter()
    with pytest.raises(SystemExit) as exit_info:
        main([*command.split(), str(path), *(["--out", str(out)] if command == "run" else [])])
    assert exit_info.value.code == 2
    assert time.perf_counter() - started < 30  # the baseline and teacher alone take minutes
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and f"{path}: {message}" in lines[0] and "Traceback" not in err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["exp.yaml"]


def test_distilled_overrides_of_params_and_train_are_checked_at_load():
    base = {"students": [{"name": "mf", "params": {"dim": 8}}],
            "distilled": [{"name": "mf-kd", "student": "mf", "kd": {"ranking": 0.5}}]}
    for override, message in [({"params": {"dimm": 3}}, "distilled.0.params.dimm"),
                              ({"train": {"lr": "fast"}}, "distilled.0.train.lr")]:
        raw = {**base, "distilled": [{**base["distilled"][0], **override}]}
        with pytest.raises(DistillrecError, match=message):
            parse_config(raw)
    raw = {**base, "distilled": [{**base["distilled"][0], "train": {"lr": "1e-3"}}]}
    assert parse_config(raw).distilled[0].train == {"lr": 0.001}
