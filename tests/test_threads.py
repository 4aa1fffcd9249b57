"""One thread setting for every command: CLI flag > config key > $DISTILLREC_THREADS > CPU set."""

import os
import sys

import pytest
import torch

from distillrec import pipeline, threads
from distillrec.config import ExperimentConfig, dump_config, parse_config
from distillrec.errors import DistillrecError

VARIABLES = ("DISTILLREC_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "LOCAL_WORLD_SIZE",
             "GOMP_SPINCOUNT", "OMP_WAIT_POLICY")


@pytest.fixture(autouse=True)
def clean_setting(monkeypatch):
    """No inherited variables or module state; torch's thread count as it was afterwards."""
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in (("_flag", None), ("_applied", None), ("_torch_pending", False)):
        monkeypatch.setattr(threads, name, value)
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_the_default_is_the_cpu_set_not_the_machine(monkeypatch):
    assert threads.available_cores() == len(os.sched_getaffinity(0))
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 3, 5})
    assert threads.available_cores() == 3 and threads.resolve() == 3
    monkeypatch.delattr(os, "sched_getaffinity")
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert threads.available_cores() == 1


def test_under_torchrun_the_default_is_shared_between_local_ranks(monkeypatch):
    monkeypatch.setattr(threads, "available_cores", lambda: 8)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert threads.resolve() == 2


def test_precedence_flag_then_requested_then_environment_then_cores(monkeypatch):
    monkeypatch.setattr(threads, "available_cores", lambda: 8)
    assert threads.resolve() == 8
    monkeypatch.setenv("DISTILLREC_THREADS", "3")
    assert threads.resolve() == 3
    assert threads.resolve(5) == 5
    threads.override(2)
    assert threads.resolve(5) == 2 and threads.resolve() == 2
    threads.override(None)
    assert threads.resolve(5) == 5


@pytest.mark.parametrize("value", ["0", "-2", "four", "2.5"])
def test_a_bad_environment_value_names_variable_value_and_expectation(monkeypatch, value):
    monkeypatch.setenv("DISTILLREC_THREADS", value)
    with pytest.raises(DistillrecError) as error:
        threads.resolve()
    assert "DISTILLREC_THREADS" in str(error.value) and repr(value) in str(error.value)
    assert "positive integer" in str(error.value)


def test_apply_sets_torch_and_the_environment_children_inherit():
    assert threads.apply(1) == 1
    assert torch.get_num_threads() == 1
    assert all(os.environ[name] == "1" for name in VARIABLES[:4])
    assert threads.resolve() == 1  # what later code in this process reads too


def test_ensure_applies_the_setting_once_and_then_leaves_torch_alone(monkeypatch):
    monkeypatch.setenv("DISTILLREC_THREADS", "1")
    torch.set_num_threads(3)
    assert threads.ensure() == 1  # nothing applied yet: the process-wide setting
    torch.set_num_threads(3)  # e.g. a scoped section or a test fixture, after the apply
    assert threads.ensure() == 3


def test_applied_before_torch_is_imported_torch_is_told_when_used(monkeypatch):
    with monkeypatch.context() as patch:
        patch.delitem(sys.modules, "torch")
        threads.apply(1)  # as the CLI callback does before a command imports torch
    assert os.environ["OMP_NUM_THREADS"] == "1"
    torch.set_num_threads(3)
    assert threads.ensure() == 1


def test_before_torch_loads_openmp_its_idle_threads_are_told_to_sleep_sooner(monkeypatch):
    with monkeypatch.context() as patch:
        patch.delitem(sys.modules, "torch")
        threads.apply(2)
    assert os.environ["GOMP_SPINCOUNT"] == threads.SPIN_COUNT == "1000"


@pytest.mark.parametrize("users_variable", [("GOMP_SPINCOUNT", "50"), ("OMP_WAIT_POLICY", "ACTIVE")])
def test_a_spin_or_wait_policy_the_user_set_is_kept(monkeypatch, users_variable):
    monkeypatch.setenv(*users_variable)
    with monkeypatch.context() as patch:
        patch.delitem(sys.modules, "torch")
        threads.apply(2)
    assert os.environ[users_variable[0]] == users_variable[1]
    if users_variable[0] == "OMP_WAIT_POLICY":
        assert "GOMP_SPINCOUNT" not in os.environ  # the policy decides the spinning; no count beside it


def test_once_torch_is_loaded_the_spin_is_not_touched():
    threads.apply(1)  # libgomp read its environment when torch loaded it: setting it now would only mislead
    assert "GOMP_SPINCOUNT" not in os.environ


def test_parallel_jobs_divide_the_cores(monkeypatch):
    assert threads.per_job(2, 8) == 4 and threads.per_job(3, 8) == 2
    assert threads.per_job(4, 2) == 1 and threads.per_job(16, 1) == 1  # at least one each
    monkeypatch.setenv("DISTILLREC_THREADS", "6")
    assert threads.per_job(2) == 3


def test_the_cli_flag_reaches_torch_and_the_environment(capsys, run_cli):
    assert run_cli("--threads", "1", "config", "show") == 0
    assert "students:" in capsys.readouterr().out
    assert torch.get_num_threads() == 1 and os.environ["DISTILLREC_THREADS"] == "1"


def test_a_bad_flag_or_environment_value_is_a_one_line_error(monkeypatch, capsys, run_cli):
    assert run_cli("--threads", "0", "config", "show") == 2
    monkeypatch.setenv("DISTILLREC_THREADS", "many")
    assert run_cli("config", "show") == 2
    err = capsys.readouterr().err
    assert "DISTILLREC_THREADS='many'" in " ".join(err.split()) and "Traceback" not in err


def test_the_config_key_applies_in_run_experiment_and_the_flag_wins_over_it(tmp_path, monkeypatch, run_cli):
    monkeypatch.setattr(pipeline, "_run_split", lambda config, out, **kwargs: {})  # the stages are not under test
    pipeline.run_experiment(ExperimentConfig(threads=1), tmp_path / "a", progress=False)
    assert torch.get_num_threads() == 1
    config = tmp_path / "threads.yaml"
    config.write_text("threads: 1\n")
    assert run_cli("--threads", "3", "run", str(config), "--out", str(tmp_path / "b")) == 0
    assert torch.get_num_threads() == 3
    assert run_cli("run", str(config), "--out", str(tmp_path / "c")) == 0
    assert torch.get_num_threads() == 1


def test_the_config_key_is_optional_positive_and_left_out_of_dumps_when_unset():
    assert parse_config({"threads": 4}).threads == 4 and "threads: 4" in dump_config(parse_config({"threads": 4}))
    assert ExperimentConfig().threads is None and "threads" not in ExperimentConfig().model_dump(mode="json")
    with pytest.raises(DistillrecError, match="threads"):
        parse_config({"threads": 0})
