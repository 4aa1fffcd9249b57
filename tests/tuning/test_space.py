"""Search spaces: what a study may change, the errors a bad space gets, and how an assignment
is written back over a model's params, training options and distillation terms."""

import optuna
import pytest
import torch

from distillrec.errors import DistillrecError
from distillrec.students.base import model_class
from distillrec.tuning import search_space
from distillrec.tuning.space import SAMPLED_LOSSES, apply, kd_space, model_space, parse_space, sample
from distillrec.tuning.study import selected_assignment


def _trial(seed=0):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed)).ask()


@pytest.mark.parametrize("spec, where, fragment", [
    ({"foo.lr": 0.1}, "tune.space.mf.foo.lr", "is not a setting path"),
    ({"train": 0.1}, "tune.space.mf.train", "is not a setting path"),
    ({"kd.ranking": 0.1}, "tune.space.mf.kd.ranking", "kd.<method>.<option>"),
    ({"kd.ranking.weight.x": 0.1}, "tune.space.mf.kd.ranking.weight.x", "is not a setting path"),
    ({"params.dim": {"choices": [8, 16]}}, "tune.space.mf.params.dim", "is fixed"),
    ({"train.seed": 3}, "tune.space.mf.train.seed", "is fixed"),
    ({"train.lr": {"low": 0.1, "high": 0.1}}, "tune.space.mf.train.lr", "expected low < high"),
    ({"train.lr": {"low": 0.2, "high": 0.1}}, "tune.space.mf.train.lr", "got low 0.2, high 0.1"),
    ({"train.lr": {"low": 0.0, "high": 0.1, "log": True}}, "tune.space.mf.train.lr", "low > 0 (log scale)"),
    ({"train.lr": {"low": -1, "high": 0.1, "log": True}}, "tune.space.mf.train.lr", "low > 0 (log scale)"),
    ({"train.lr": {"low": 1e-4, "high": 0.1, "step": 2}}, "tune.space.mf.train.lr", "unknown key(s) step"),
    ({"train.lr": {"low": "small", "high": 0.1}}, "tune.space.mf.train.lr.low", "expected a number"),
    ({"train.lr": {"low": 1e-4}}, "tune.space.mf.train.lr.high", "expected a number, got None"),
    ({"train.lr": {"low": 1e-4, "high": 0.1, "log": "yes"}}, "tune.space.mf.train.lr.log", "true or false"),
    ({"train.batch_size": {"choices": []}}, "tune.space.mf.train.batch_size", "non-empty list"),
    ({"train.batch_size": {"choices": [1, 2], "low": 1}}, "tune.space.mf.train.batch_size", "alone"),
    ({"train.n_negatives": {"low": 1, "high": 8, "when": {"params.rec_loss": "bpr"}}},
     "tune.space.mf.train.n_negatives.when", "lists of values"),
    ({"train.n_negatives": {"low": 1, "high": 8, "when": {"params.rec_loss": ["bpr"]}}},
     "tune.space.mf.train.n_negatives.when", "refers to params.rec_loss"),
])
def test_a_bad_space_names_the_key_path(spec, where, fragment):
    with pytest.raises(DistillrecError) as error:
        parse_space(spec, "tune.space.mf")
    message = str(error.value)
    assert message.startswith(where + ":"), message
    assert fragment in message


def test_when_must_refer_to_a_dimension_declared_before_it():
    negatives = {"low": 1, "high": 8, "when": {"params.rec_loss": ["bpr"]}}
    loss = {"choices": ["bpr", "softmax"]}
    with pytest.raises(DistillrecError, match=r"not declared before it"):
        parse_space({"train.n_negatives": negatives, "params.rec_loss": loss}, "s")
    space = parse_space({"params.rec_loss": loss, "train.n_negatives": negatives}, "s")
    assert [d.path for d in space] == ["params.rec_loss", "train.n_negatives"]
    assert space[1].when == {"params.rec_loss": ("bpr",)}


def test_dimensions_parse_to_floats_ints_choices_and_fixed_values():
    lr, batch, epochs, wd, fixed = parse_space({
        "train.lr": {"low": "1e-4", "high": "1e-2", "log": True},  # YAML 1.1 reads 1e-4 as a string
        "train.batch_size": {"choices": [256, 512]},
        "train.epochs": {"low": 2, "high": 9},
        "train.weight_decay": {"low": 0, "high": 1},
        "params.rec_loss": "softmax",
    }, "s")
    assert (lr.low, lr.high, lr.log, lr.is_int) == (1e-4, 1e-2, True, False)
    assert batch.choices == (256, 512) and not batch.is_int
    assert epochs.is_int and not wd.log
    assert fixed.fixed == "softmax" and fixed.low is None and fixed.choices is None
    assert fixed.to_json() == "softmax"
    assert lr.to_json() == {"low": 1e-4, "high": 1e-2, "log": True}
    assert batch.to_json() == {"choices": [256, 512]}


def test_sampling_respects_ranges_fixed_values_and_conditions():
    space = parse_space({"train.lr": {"low": 1e-4, "high": 1e-2, "log": True},
                         "train.epochs": {"low": 2, "high": 9},
                         "train.patience": 3,
                         "params.rec_loss": {"choices": ["softmax", "bpr"]},
                         "train.n_negatives": {"low": 1, "high": 64, "when": {"params.rec_loss": ["bpr"]}}}, "s")
    seen_losses = set()
    for seed in range(12):
        chosen = sample(_trial(seed), space)
        assert 1e-4 <= chosen["train.lr"] <= 1e-2
        assert isinstance(chosen["train.epochs"], int) and 2 <= chosen["train.epochs"] <= 9
        assert chosen["train.patience"] == 3
        seen_losses.add(chosen["params.rec_loss"])
        if chosen["params.rec_loss"] == "bpr":
            assert isinstance(chosen["train.n_negatives"], int) and 1 <= chosen["train.n_negatives"] <= 64
        else:
            assert "train.n_negatives" not in chosen
        assert list(chosen) == [d.path for d in space if d.path in chosen]
    assert seen_losses == {"softmax", "bpr"}


def test_fixed_values_are_part_of_the_selection_though_optuna_does_not_store_them():
    space = parse_space({"train.lr": {"low": 1e-4, "high": 1e-2}, "train.epochs": 7,
                         "params.rec_loss": {"choices": ["softmax", "bpr"]},
                         "train.n_negatives": {"low": 1, "high": 8, "when": {"params.rec_loss": ["bpr"]}},
                         "train.patience": {"low": 1, "high": 2, "when": {"params.rec_loss": ["bpr"]}}}, "s")
    assert selected_assignment({"train.lr": 0.001, "params.rec_loss": "softmax"}, space) == {
        "train.lr": 0.001, "train.epochs": 7, "params.rec_loss": "softmax"}
    assert selected_assignment({"train.lr": 0.001, "params.rec_loss": "bpr", "train.n_negatives": 3,
                                "train.patience": 2}, space) == {
        "train.lr": 0.001, "train.epochs": 7, "params.rec_loss": "bpr", "train.n_negatives": 3, "train.patience": 2}


def test_mf_searches_training_its_loss_and_negatives_only_for_sampled_losses():
    spec = model_space(model_class("mf"))
    assert {"train.lr", "train.weight_decay", "train.batch_size", "params.rec_loss", "train.n_negatives"} <= set(spec)
    assert "params.dim" not in spec
    assert set(spec["params.rec_loss"]["choices"]) >= {"bpr", "sampled-softmax", "softmax"}
    assert spec["train.n_negatives"]["when"] == {"params.rec_loss": list(SAMPLED_LOSSES)}
    dims = {d.path: d for d in parse_space(spec, "mf")}
    assert dims["train.n_negatives"].is_int and dims["train.lr"].log
    assert [p for p in dims].index("params.rec_loss") < [p for p in dims].index("train.n_negatives")


@pytest.mark.parametrize("name", ["sasrec", "gru4rec", "lm-seq-teacher"])
def test_sequential_models_search_window_batches_and_dropout(name):
    spec = model_space(model_class(name))
    assert set(spec) == {"train.lr", "train.weight_decay", "train.batch_size", "params.dropout"}
    assert max(spec["train.batch_size"]["choices"]) <= 256  # windows of max_len targets, not pairs
    dims = {d.path: d for d in parse_space(spec, name)}
    assert dims["params.dropout"].low < 0.5 < dims["params.dropout"].high  # SASRec's default inside


def test_ease_searches_only_its_ridge():
    spec = model_space(model_class("ease"))
    assert list(spec) == ["params.l2"]
    (l2,) = parse_space(spec, "ease")
    assert l2.log and 0 < l2.low < 500.0 < l2.high  # the default l2 lies inside the range


def test_kd_space_searches_weight_and_top_k_around_the_set_values():
    spec = kd_space({"ranking": 0.5})
    assert set(spec) == {"kd.ranking.weight", "kd.ranking.k"}
    weight, k = (d for d in parse_space(spec, "kd"))
    assert weight.low == pytest.approx(0.05) and weight.high == pytest.approx(5.0) and weight.log
    assert not weight.is_int
    assert (k.low, k.high, k.log, k.is_int) == (5, 80, True, True)
    # An option set in kd moves the range; the method is written as in kd.
    spec = kd_space({"soft-target-kl": {"weight": 2.0, "temperature": 2.0, "k": 8}})
    assert spec["kd.soft-target-kl.weight"] == {"low": 0.2, "high": 20.0, "log": True}
    assert spec["kd.soft-target-kl.temperature"]["low"] == pytest.approx(0.4)
    assert spec["kd.soft-target-kl.temperature"]["high"] == pytest.approx(10.0)
    assert spec["kd.soft-target-kl.k"] == {"low": 2, "high": 32, "log": True}


def test_a_distilled_space_contains_the_students_and_overrides_win():
    student = [d.path for d in search_space("mf")]
    distilled = search_space("mf", {"ranking": 0.5}, {"train.lr": 0.005}, {"kd.ranking.k": {"low": 10, "high": 20}})
    paths = [d.path for d in distilled]
    assert paths[:len(student)] == student and paths[len(student):] == ["kd.ranking.weight", "kd.ranking.k"]
    dims = {d.path: d for d in distilled}
    assert dims["train.lr"].fixed == 0.005 and dims["train.lr"].low is None
    assert (dims["kd.ranking.k"].low, dims["kd.ranking.k"].high) == (10, 20)
    with pytest.raises(DistillrecError, match=r"tune\.space\.params\.dim"):
        search_space("mf", None, {"params.dim": 16})


def test_apply_writes_values_over_params_train_and_kd_without_touching_the_inputs():
    params, train = {"dim": 8, "rec_loss": "bpr"}, {"epochs": 2, "lr": 0.1}
    kd = {"ranking": 0.5, "feature": {"weight": 1.0, "on": "item"}}
    new_params, new_train, new_kd = apply({"params.rec_loss": "softmax", "train.lr": 0.003, "train.batch_size": 512,
                                           "kd.ranking.weight": 2.0, "kd.ranking.k": 40, "kd.feature.weight": 0.1},
                                          params, train, kd)
    assert new_params == {"dim": 8, "rec_loss": "softmax"}
    assert new_train == {"epochs": 2, "lr": 0.003, "batch_size": 512}
    assert new_kd == {"ranking": {"weight": 2.0, "k": 40}, "feature": {"weight": 0.1, "on": "item"}}
    assert params == {"dim": 8, "rec_loss": "bpr"} and train == {"epochs": 2, "lr": 0.1}
    assert kd == {"ranking": 0.5, "feature": {"weight": 1.0, "on": "item"}}
    assert apply({}, params, train) == (params, train, {})


def test_apply_refuses_a_kd_path_naming_a_method_not_in_kd():
    with pytest.raises(DistillrecError, match=r"kd\.feature\.weight names method 'feature', "
                                              r"which is not in kd \(ranking\)"):
        apply({"kd.feature.weight": 1.0}, {}, {}, {"ranking": 0.5})
    with pytest.raises(DistillrecError, match=r"not in kd \(none\)"):
        apply({"kd.ranking.weight": 1.0}, {}, {})


def test_kd_space_stops_k_where_the_teachers_knowledge_does():
    from distillrec.teachers.knowledge import Knowledge

    n_users, n_items, top_k, knn = 4, 30, 12, 6
    knowledge = Knowledge({"user": torch.zeros(n_users, 2), "item": torch.zeros(n_items, 2),
                           "text": torch.zeros(n_items, 3),
                           "top_items": torch.zeros(n_users, top_k, dtype=torch.long),
                           "top_scores": torch.zeros(n_users, top_k), "top_confidence": torch.zeros(n_users, top_k),
                           "knn_items": torch.zeros(n_items, knn, dtype=torch.long),
                           "knn_similarity": torch.zeros(n_items, knn)})
    spec = kd_space({"graph": 0.05, "ranking": 0.5}, knowledge)
    assert spec["kd.graph.k"] == {"low": 2, "high": knn, "log": True}      # 10 x4 would be 40 > 6 neighbours
    assert spec["kd.ranking.k"] == {"low": 5, "high": top_k, "log": True}  # 20 x4 would be 80 > 12 ranked
    assert "kd.graph.k" not in kd_space({"graph": {"weight": 0.05, "k": 40}}, knowledge)  # no range left to search
    assert kd_space({"graph": 0.05})["kd.graph.k"]["high"] == 40  # without knowledge: the plain range
