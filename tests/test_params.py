"""Declared parameters: derived from build signatures and term defaults, checked with key paths."""

import pytest

from distillrec.params import (ParamError, check_kd, check_model_params, check_split, check_train, model_class,
                               model_schema, term_schema)


def test_every_registered_model_and_term_declares_a_consistent_schema():
    from distillrec.distill.objective import METHODS
    from distillrec.students.base import MODELS

    model_class("lm-teacher", "model")  # registers the teachers too
    for name in MODELS.names():
        schema = model_schema(MODELS.get(name))  # a stale params_schema key raises here
        assert "seed" not in schema.params and "seed" in schema.reserved
    for name in METHODS.names():
        assert {"weight", "schedule"} <= set(term_schema(METHODS.get(name)).params)


def test_model_params_come_from_build_and_the_constructor_it_forwards_to():
    assert set(model_schema(model_class("mf", "model")).params) == {"dim", "rec_loss"}
    sasrec = model_schema(model_class("sasrec", "model")).params  # build(**params) -> __init__
    assert {"dim", "n_layers", "dropout", "max_len"} <= set(sasrec) and "n_users" not in sasrec
    teacher = model_schema(model_class("lm-teacher", "model")).params
    assert {"mode", "encoder", "dim", "lm_steps"} <= set(teacher)
    assert not {"text_encoder", "language_model", "item_texts"} & set(teacher)  # build sets them


@pytest.mark.parametrize("model, params, message", [
    ("mf", {"dim": "sixty"}, "params.dim: expected an integer >= 1, got 'sixty'"),
    ("mf", {"dimm": 64}, "params.dimm: unknown parameter of model 'mf' (did you mean 'dim'?); "
                         "expected one of: dim, rec_loss"),
    ("mf", {"dim": 0}, "params.dim: expected an integer >= 1, got 0"),
    ("mf", {"dim": True}, "params.dim: expected an integer >= 1, got True"),
    ("mf", {"rec_loss": "bprr"}, "params.rec_loss: expected 'bpr', 'sampled-softmax' or 'softmax', got 'bprr'"),
    ("mf", {"seed": 3}, "params.seed: not a parameter of model 'mf': it is set by the experiment's seed"),
    ("sasrec", {"dropout": 1.5}, "params.dropout: expected a number in [0, 1), got 1.5"),
    ("two-tower", {"similarity": "dott"}, "params.similarity: expected 'dot' or 'cosine', got 'dott'"),
    ("content", {"history_dropout": "half"}, "params.history_dropout: expected a number in [0, 1) or null"),
    ("lm-teacher", {"mode": "lora2"}, "params.mode: expected 'frozen', 'lora', 'adalora' or 'full', got 'lora2'"),
    ("lm-teacher", {"temperature": 0}, "params.temperature: expected a number > 0 or null, got 0"),
])
def test_bad_model_params_name_the_key_and_what_was_expected(model, params, message):
    with pytest.raises(ParamError) as error:
        check_model_params(model, params)
    assert message in str(error.value)


def test_good_params_pass_and_number_strings_become_numbers():
    # YAML 1.1 reads 1e-1 (no dot) as a string
    assert check_model_params("lm-teacher", {"temperature": "1e-1", "dim": 64, "encoder": None}) == {
        "temperature": 0.1, "dim": 64, "encoder": None}
    assert check_model_params("content", {"history_dropout": None, "id_dropout": 0}) == {
        "history_dropout": None, "id_dropout": 0}  # an int stays an int: stage keys do not move
    assert check_model_params("two-tower", {"item_columns": [{"name": "genres", "kind": "multi"}]})


def test_unknown_models_list_the_registered_ones():
    with pytest.raises(ParamError, match=r"students.0.model: unknown model 'lightgcn'; expected one of: .*content"):
        model_class("lightgcn", "students.0.model")


@pytest.mark.parametrize("spec, message", [
    ({"feature": {"kind": "l2"}}, "kd.feature.kind: expected 'mse' or 'cosine', got 'l2'"),
    ({"feature": {"knd": "mse"}}, "kd.feature.knd: unknown parameter of distillation method 'feature' "
                                  "(did you mean 'kind'?)"),
    ({"feature": {True: "item"}}, "quote the key, e.g. 'on'"),  # YAML's bare on
    ({"ranking": {"k": "twenty"}}, "kd.ranking.k: expected an integer >= 1, got 'twenty'"),
    ({"ranking": -1}, "kd.ranking.weight: expected a number > 0, got -1"),
    ({"rankin": 1.0}, "kd.rankin: unknown distillation method 'rankin'; expected one of:"),
    ({"ranking": 1.0, "ranking-distillation": 0.5}, "kd.ranking-distillation: the same method as 'ranking'"),
    ({"feature": {"schedule": "warm"}}, "kd.feature.schedule.name: unknown schedule 'warm'"),
    ({"feature": {"schedule": {"name": "linear-warmup"}}}, "kd.feature.schedule.steps: required by schedule"),
    ({"neighbour-graph": {"anchors": 6.5}}, "kd.neighbour-graph.anchors: expected an integer >= 1, got 6.5"),
])
def test_bad_distillation_specs_name_the_method_and_option(spec, message):
    with pytest.raises(ParamError) as error:
        check_kd(spec)
    assert message in str(error.value)


def test_good_distillation_specs_pass():
    spec = {"neighbour-graph": {"weight": 0.05, "anchors": 64}, "feature": {"weight": 0.1, "kind": "cosine",
            "on": "item", "schedule": {"name": "linear-warmup", "steps": 100}}, "ranking": 0.5}
    assert check_kd(spec) == spec


@pytest.mark.parametrize("train, message", [
    ({"lr": -1}, "train.lr: expected a number > 0, got -1"),
    ({"epochz": 3}, "train.epochz: unknown parameter of training (did you mean 'epochs'?)"),
    ({"sampler": "pop"}, "train.sampler: expected 'uniform' or 'popularity', got 'pop'"),
    ({"metric": "ndcg@5"}, "train: metric 'ndcg@5' must be <name>@<k>"),
])
def test_bad_training_options(train, message):
    with pytest.raises(ParamError) as error:
        check_train(train)
    assert message in str(error.value)


def test_split_params_follow_the_protocol_signature():
    assert check_split("cold-user", {"fraction": 0.2, "reveal": 5}) == {"fraction": 0.2, "reveal": 5}
    with pytest.raises(ParamError, match=r"split.params.frac: unknown parameter of split 'cold-user' "
                                         r"\(did you mean 'fraction'\?\)"):
        check_split("cold-user", {"frac": 0.2})
    with pytest.raises(ParamError, match=r"split.params.fraction: expected a number in \(0, 1\), got 1.5"):
        check_split("cold-item", {"fraction": 1.5})
    with pytest.raises(ParamError, match=r"split.params.ratios: expected a list of numbers, got 'abc'"):
        check_split("random", {"ratios": "abc"})
