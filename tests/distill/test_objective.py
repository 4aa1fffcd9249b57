"""The distillation objective on tiny hand-made knowledge: spec resolution, wiring of each term
to the right users and items, gradients, weighting, schedules, and the Trainer's logs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from distillrec.data.dataset import RawData, build_dataset
from distillrec.data.splitting import random_split
from distillrec.distill.losses import ranking_distillation, soft_target_kl, student_ranks
from distillrec.distill.objective import (ALIASES, METHODS, DistillObjective, catalogue_ranks, in_catalogue_top_k,
                                          normalise_spec, parse_spec)
from distillrec.errors import DistillrecError
from distillrec.students.mf import MatrixFactorization
from distillrec.students.sasrec import SASRec
from distillrec.students.two_tower import TwoTower
from distillrec.teachers.knowledge import Knowledge
from distillrec.train.trainer import TrainConfig, Trainer

N_USERS, N_ITEMS, TEACHER_DIM, TOP_K, KNN = 16, 30, 12, 20, 5
#: small k / anchors so every term fits the tiny catalog.
SMALL = {"ranking-distillation": {"k": 5}, "step-ranking-distillation": {"k": 5}, "relaxed-ranking": {"k": 5, "negatives": 7},
         "soft-target-kl": {"k": 5, "negatives": 7}, "neighbour-graph": {"k": 3, "anchors": 6},
         "rkd-angle": {"max_rows": 6}}


def make_knowledge(seed: int = 0) -> Knowledge:
    """A Knowledge whose rankings and graph are exactly those of its user and item vectors."""
    generator = torch.Generator().manual_seed(seed)
    user = torch.randn(N_USERS, TEACHER_DIM, generator=generator)
    item = torch.randn(N_ITEMS, TEACHER_DIM, generator=generator)
    top_scores, top_items = (user @ item.T).topk(TOP_K, dim=1)
    cosine = F.normalize(item, dim=1) @ F.normalize(item, dim=1).T
    cosine.fill_diagonal_(-2.0)
    knn_similarity, knn_items = cosine.topk(KNN, dim=1)
    return Knowledge({"user": user, "item": item, "text": torch.randn(N_ITEMS, 6, generator=generator),
                      "top_items": top_items, "top_scores": top_scores,
                      "top_confidence": top_scores.softmax(dim=1), "knn_items": knn_items,
                      "knn_similarity": knn_similarity})


@pytest.fixture(scope="module")
def knowledge() -> Knowledge:
    return make_knowledge()


def pairs_batch(seed: int = 0, size: int = 24) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {"user": torch.randint(N_USERS, (size,), generator=generator),
            "pos": torch.randint(N_ITEMS, (size,), generator=generator),
            "neg": torch.randint(N_ITEMS, (size, 1), generator=generator)}


def sequence_batch(seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    seq = torch.randint(1, N_ITEMS + 1, (10, 7), generator=generator)
    seq[:3, :2] = 0  # left padding
    return {"user": torch.randint(N_USERS, (10,), generator=generator), "seq": seq}


def tiny_dataset():
    rng = np.random.default_rng(0)
    rows = [(f"u{u}", f"i{i}", 4.0, t) for u in range(N_USERS) for t, i in enumerate(rng.choice(N_ITEMS, 9, replace=False))]
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(N_ITEMS)], "year": [1990.0 + i for i in range(N_ITEMS)],
                          "genres": [["Drama" if i % 2 else "Comedy"] for i in range(N_ITEMS)]})
    users = pd.DataFrame({"user_id": [f"u{u}" for u in range(N_USERS)], "gender": ["F", "M"] * (N_USERS // 2)})
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    return build_dataset(RawData("tiny", inter, items=items, users=users))


@pytest.fixture(scope="module")
def tiny():
    dataset = tiny_dataset()
    return dataset, random_split(dataset, seed=0)


def students(tiny):
    dataset, split = tiny
    # The tiny dataset's ids are reindexed; the knowledge must cover the same counts.
    assert (split.n_users, split.n_items) == (N_USERS, N_ITEMS)
    return {"mf": (MatrixFactorization(N_USERS, N_ITEMS, dim=4), pairs_batch()),
            "two-tower": (TwoTower.build(dataset, split, dim=4, feature_dim=2, hidden=8), pairs_batch()),
            "sasrec": (SASRec(N_USERS, N_ITEMS, dim=4, n_heads=1, inner_size=8, max_len=6), sequence_batch())}


@pytest.mark.parametrize("student_name", ["mf", "two-tower", "sasrec"])
def test_every_method_gives_a_finite_named_term_whose_gradient_reaches_the_student_only(knowledge, tiny, student_name):
    model, batch = students(tiny)[student_name]
    methods = METHODS.names()
    if student_name == "sasrec":  # per-step terms read the windows' steps in the teacher's per-step rankings
        batch = {**batch, "step": torch.arange(70).view(10, 7).masked_fill(batch["seq"] == 0, -1)}
        knowledge = with_step_rankings(knowledge, n_steps=70)
    else:
        methods = [name for name in methods if not name.startswith("step-")]
    before = {name: tensor.clone() for name, tensor in knowledge.tensors.items()}
    spec = {name: {"weight": 1.0, **SMALL.get(name, {})} for name in methods}
    objective = DistillObjective(spec, knowledge, model)
    terms = objective(model, batch)
    assert set(terms) == {f"kd/{name}" for name in methods}
    assert all(torch.isfinite(value) and value.dim() == 0 for value in terms.values())
    sum(terms.values()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in objective.terms["feature"].projector.parameters())
    item_table = model.item_embedding.weight if student_name != "two-tower" else model.item_tower.ids.weight
    assert item_table.grad.abs().sum() > 0
    for name, buffer in objective.knowledge.named_buffers():
        assert not buffer.requires_grad and buffer.grad is None
    # The knowledge is copied into non-persistent buffers: never trained, never checkpointed.
    assert not any(key.startswith("knowledge") for key in objective.state_dict())
    assert all(torch.equal(knowledge.tensors[name], before[name]) for name in before)


def test_ranking_term_scores_each_rows_teacher_top_k_with_position_weights(knowledge):
    model, batch = MatrixFactorization(N_USERS, N_ITEMS, dim=4), pairs_batch()
    objective = DistillObjective({"ranking": {"weight": 0.5, "k": 4, "lam": 2.0}}, knowledge, model)
    top = knowledge.tensors["top_items"][batch["user"], :4]
    scores = (model.user_embedding(batch["user"]).unsqueeze(1) * model.item_embedding(top)).sum(-1)
    expected = 0.5 * ranking_distillation(scores, lam=2.0)
    torch.testing.assert_close(objective(model, batch)["kd/ranking-distillation"], expected)


def with_step_rankings(knowledge: Knowledge, n_steps: int, k: int = 6) -> Knowledge:
    """`knowledge` plus per-step rankings: random distinct lists (step 0 has none, -1)."""
    generator = torch.Generator().manual_seed(5)
    items = torch.stack([torch.randperm(N_ITEMS, generator=generator)[:k] for _ in range(n_steps)])
    scores = torch.randn(n_steps, k, generator=generator).sort(dim=1, descending=True).values
    items[0], scores[0] = -1, float("-inf")
    return Knowledge({**knowledge.tensors, "step_top_items": items, "step_top_scores": scores})


def test_step_ranking_scores_each_positions_teacher_list_at_that_step(knowledge):
    model = SASRec(N_USERS, N_ITEMS, dim=4, n_heads=1, inner_size=8, max_len=6).eval()
    batch = sequence_batch()
    steps = torch.arange(1, 71).view(10, 7)  # distinct steps; padding slots -1
    batch["step"] = steps.masked_fill(batch["seq"] == 0, -1)
    stepped = with_step_rankings(knowledge, n_steps=71)
    objective = DistillObjective({"step-ranking-distillation": {"weight": 0.5, "k": 4, "weighting": "position",
                                                                "lam": 2.0}}, stepped, model)
    inputs, targets = batch["seq"][:, :-1], batch["step"][:, 1:]
    states = model.encode(inputs)
    rows = []
    for window in range(10):
        for position in range(6):
            if inputs[window, position] > 0:  # a position with context, as the rec loss trains
                top = stepped.tensors["step_top_items"][targets[window, position], :4]
                rows.append(states[window, position] @ model.item_vectors(top).T)
    expected = 0.5 * ranking_distillation(torch.stack(rows), lam=2.0)
    torch.testing.assert_close(objective(model, batch)["kd/step-ranking-distillation"], expected)
    dllm2rec = DistillObjective({"step-ranking-distillation": {"weight": 1.0, "k": 4}}, stepped, model)
    loss = dllm2rec(model, batch)["kd/step-ranking-distillation"]
    loss.backward()
    assert torch.isfinite(loss) and model.item_embedding.weight.grad.abs().sum() > 0


def test_step_states_reuse_the_rec_losss_encoder_pass_on_the_same_batch_only():
    model = SASRec(N_USERS, N_ITEMS, dim=4, n_heads=1, inner_size=8, max_len=6).eval()
    batch = {**sequence_batch(), "step": torch.arange(70).view(10, 7)}
    model.loss(batch)
    from_loss = model._loss_states[1]
    shared, _ = model.distill_step_states(batch)
    assert shared is from_loss
    again, _ = model.distill_step_states(batch)  # read once: a second call encodes afresh
    assert again is not shared
    torch.testing.assert_close(again, shared)  # the same states (no dropout in eval)
    model.loss(batch)
    from_loss = model._loss_states[1]
    other = {**batch, "seq": batch["seq"].clone()}  # another batch never reads them
    assert model.distill_step_states(other)[0] is not from_loss


def test_step_ranking_needs_per_step_knowledge_and_a_sequential_student(knowledge):
    model = SASRec(N_USERS, N_ITEMS, dim=4, n_heads=1, inner_size=8, max_len=6)
    with pytest.raises(DistillrecError, match="no per-step rankings.*--step-top-k"):
        DistillObjective({"step-ranking-distillation": 1.0}, knowledge, model)
    stepped = with_step_rankings(knowledge, n_steps=30)
    with pytest.raises(DistillrecError, match="k must be in 1..6"):
        DistillObjective({"step-ranking-distillation": {"weight": 1.0, "k": 7}}, stepped, model)
    mf = MatrixFactorization(N_USERS, N_ITEMS, dim=4)
    objective = DistillObjective({"step-ranking-distillation": {"weight": 1.0, "k": 4}}, stepped, mf)
    with pytest.raises(DistillrecError, match="MatrixFactorization has no per-step states"):
        objective(mf, pairs_batch())


def test_per_user_terms_read_only_each_users_newest_sequence_window(knowledge):
    # The teacher's top-K comes from a user's whole training history, so only the window that
    # ends there is its target: an older window's rows must not change the per-user terms.
    model = SASRec(N_USERS, N_ITEMS, dim=4, n_heads=1, inner_size=8, max_len=6).eval()
    spec = {"ranking": {"weight": 1.0, "k": 4}, "relaxed-ranking": {"weight": 1.0, "k": 4, "negatives": 5}}
    objective = DistillObjective(spec, knowledge, model)
    batch = sequence_batch()
    newest = torch.tensor([True, False] * 5)
    only_newest = {k: v[newest] for k, v in batch.items()}
    with_flags = objective(model, {**batch, "newest": newest})
    top = knowledge.tensors["top_items"][only_newest["user"], :4]
    student = model.encode(only_newest["seq"][:, 1:], last_only=True)[:, -1]
    expected = ranking_distillation((student.unsqueeze(1) * model.item_vectors(top)).sum(-1), lam=10.0)
    torch.testing.assert_close(with_flags["kd/ranking-distillation"], expected)
    scrambled = batch["seq"].clone()
    scrambled[~newest] = torch.randint(1, N_ITEMS + 1, scrambled[~newest].shape, generator=torch.Generator().manual_seed(9))
    objective.step.zero_()  # the same sampled negatives for the relaxed-ranking term
    again = objective(model, {**batch, "seq": scrambled, "newest": newest})
    for name in with_flags:
        torch.testing.assert_close(again[name], with_flags[name])
    # The user-level terms (feature on users, relations) take the newest windows' rows too.
    feature = DistillObjective({"feature": {"weight": 1.0, "on": "user"}}, knowledge, model)
    torch.testing.assert_close(feature(model, {**batch, "newest": newest})["kd/feature"],
                               feature(model, {**batch, "seq": scrambled, "newest": newest})["kd/feature"])
    objective.step.zero_()
    without = objective(model, batch)  # no flags (pairs, or older callers): every row counts
    assert not torch.allclose(without["kd/ranking-distillation"], with_flags["kd/ranking-distillation"])


def test_in_catalogue_top_k_is_catalogue_ranks_below_k_ties_included():
    generator = torch.Generator().manual_seed(3)
    catalogue = torch.randint(0, 6, (40, 25), generator=generator).float()  # many ties
    candidates = catalogue[:, :8]
    for k in (1, 3, 8):
        assert torch.equal(in_catalogue_top_k(candidates, catalogue, k), catalogue_ranks(candidates, catalogue) < k)


def test_catalogue_ranks_count_the_items_scored_strictly_higher_like_student_ranks():
    generator = torch.Generator().manual_seed(3)
    catalogue = torch.randint(0, 6, (5, 40), generator=generator).float()  # many ties
    candidates = catalogue[:, :7]
    torch.testing.assert_close(catalogue_ranks(candidates, catalogue), student_ranks(candidates, catalogue))


def test_pairwise_ranking_scores_each_top_item_against_a_seeded_random_item(knowledge):
    model, batch = MatrixFactorization(N_USERS, N_ITEMS, dim=4), pairs_batch()
    objective = DistillObjective({"ranking": {"k": 4, "lam": 2.0, "pairwise": True}}, knowledge, model, seed=0)
    # Step 0 of seed 0 draws from a generator seeded with (0 << 32) + 0.
    negatives = torch.randint(N_ITEMS, (len(batch["user"]), 4), generator=torch.Generator().manual_seed(0))
    top = knowledge.tensors["top_items"][batch["user"], :4]
    margins = model.pair_scores(batch["user"], top) - model.pair_scores(batch["user"], negatives)
    torch.testing.assert_close(objective(model, batch)["kd/ranking-distillation"], ranking_distillation(margins, lam=2.0))


def test_full_catalog_response_uses_the_teachers_dot_product_scores(knowledge):
    model, batch = MatrixFactorization(N_USERS, N_ITEMS, dim=4), pairs_batch()
    objective = DistillObjective({"response": {"candidates": "full", "k": 5, "temperature": 2.0}}, knowledge, model)
    teacher = knowledge.tensors["user"][batch["user"]] @ knowledge.tensors["item"].T
    expected = soft_target_kl(model.score(batch["user"]), teacher, temperature=2.0)
    torch.testing.assert_close(objective(model, batch)["kd/soft-target-kl"], expected)


def test_confidence_reweights_users_by_the_teachers_certainty(knowledge):
    model, batch = MatrixFactorization(N_USERS, N_ITEMS, dim=4), pairs_batch()
    plain = DistillObjective({"ranking": {"k": 5}}, knowledge, model)(model, batch)["kd/ranking-distillation"]
    weighted = DistillObjective({"ranking": {"k": 5}}, knowledge, model, confidence=True)(model, batch)
    top = knowledge.tensors["top_items"][batch["user"], :5]
    per_row = ranking_distillation(model.pair_scores(batch["user"], top), lam=10.0, reduction="none")
    probs = knowledge.tensors["top_scores"][batch["user"], :5].softmax(dim=1)
    confidence = 1 - (-(probs * probs.log()).sum(1)) / np.log(5)
    expected = (per_row * confidence / confidence.mean()).mean()
    torch.testing.assert_close(weighted["kd/ranking-distillation"], expected)
    assert not torch.isclose(weighted["kd/ranking-distillation"], plain)


def test_uncertainty_weighting_starts_at_the_spec_weight_and_is_learned(knowledge):
    model = MatrixFactorization(N_USERS, N_ITEMS, dim=4)
    objective = DistillObjective({"feature": 0.25, "ranking": 2.0}, knowledge, model, weighting="uncertainty")
    assert objective.current_weights() == pytest.approx({"feature": 0.25, "ranking-distillation": 2.0})
    assert sum(p.numel() for name, p in objective.named_parameters() if "log_variances" in name) == 2


def test_a_warmup_schedule_scales_a_term_from_zero_one_step_at_a_time(knowledge):
    model, batch = MatrixFactorization(N_USERS, N_ITEMS, dim=4), pairs_batch()
    objective = DistillObjective({"feature": {"weight": 1.0, "schedule": {"name": "linear-warmup", "steps": 4}}},
                                 knowledge, model)
    values = [objective(model, batch)["kd/feature"].item() for _ in range(6)]
    full = values[-1]
    assert values[0] == 0.0 and values[2] == pytest.approx(full / 2) and values[4] == pytest.approx(full)
    assert int(objective.step) == 6 and "step" in objective.state_dict()
    objective.eval()
    objective(model, batch)
    assert int(objective.step) == 6  # validation-time calls do not advance schedules


def test_terms_are_logged_by_the_trainer_and_the_projector_is_trained(knowledge, tiny):
    _, split = tiny
    model = MatrixFactorization(N_USERS, N_ITEMS, dim=4)
    objective = DistillObjective({"feature": 1.0, "ranking": {"weight": 0.5, "k": 5}}, knowledge, model)
    projector_before = objective.terms["feature"].projector.net.weight.detach().clone()
    result = Trainer(model, split, TrainConfig(epochs=2, batch_size=32, lr=1e-2, eval_ks=(10,)),
                     extra_loss=objective, progress=False).fit()
    losses = result.history[0]["losses"]
    assert {"rec", "kd/feature", "kd/ranking-distillation"} == set(losses)
    assert result.history[0]["loss"] == pytest.approx(sum(losses.values()), rel=1e-5)
    assert not torch.equal(objective.terms["feature"].projector.net.weight, projector_before)


@pytest.mark.parametrize("name", sorted(set(METHODS.names()) | set(ALIASES)))
def test_every_method_name_and_alias_resolves(name):
    canonical = ALIASES.get(name, name)
    assert normalise_spec({name: 0.5}) == {canonical: {"weight": 0.5}}


@pytest.mark.parametrize("spec, message", [
    ({"distance": 1.0}, "unknown distillation method 'distance'; expected one of: contrastive, feature,"),
    ({"feature": 0.0}, "weight must be a number > 0"),
    ({"feature": "high"}, "weight must be a number > 0"),
    ({"feature": {"kind": "cosine", "projector": 3}}, "feature: unknown option(s) projector; expected hidden, kind, on"),
    ({"ranking": {"k": 21}}, "ranking-distillation: k must be in 1..20"),
    ({"ranking": {"weighting": "linear"}}, "weighting must be position, hybrid or dllm2rec"),
    ({"feature": 1.0, "schedule": 1.0}, "unknown distillation method 'schedule'"),
    ({"feature": {"schedule": {"name": "linear-warmup"}}}, "bad options for schedule 'linear-warmup'"),
    ({}, "a distillation spec maps method names to weights"),
])
def test_bad_specs_fail_with_a_message_naming_the_problem(knowledge, spec, message):
    with pytest.raises(DistillrecError) as error:
        DistillObjective(spec, knowledge, MatrixFactorization(N_USERS, N_ITEMS, dim=4))
    assert message in str(error.value)


def test_the_student_must_cover_the_teachers_items(knowledge):
    with pytest.raises(DistillrecError, match="covers 30 items but the student has 29"):
        DistillObjective({"feature": 1.0}, knowledge, MatrixFactorization(N_USERS, N_ITEMS - 1, dim=4))


def test_command_line_specs_parse_as_weights_or_json():
    assert parse_spec("feature=1.0, ranking=0.5") == {"feature": {"weight": 1.0},
                                                      "ranking-distillation": {"weight": 0.5}}
    assert parse_spec('{"ranking": {"weight": 0.5, "k": 50}}') == {"ranking-distillation": {"weight": 0.5, "k": 50}}
    for text, message in [("feature", "'feature' is not of the form METHOD=WEIGHT"),
                          ("feature=x", "'feature=x' is not of the form METHOD=WEIGHT"),
                          ("{bad", "--kd: not a valid JSON object")]:
        with pytest.raises(DistillrecError, match=message.replace("(", r"\(")):
            parse_spec(text)


def test_projectors_depend_on_the_seed_only_and_leave_the_global_generator_alone(knowledge, tiny):
    student = MatrixFactorization(N_USERS, N_ITEMS, dim=8)
    spec = {"feature": 1.0, "info-nce": 0.5}
    torch.manual_seed(1)
    a = DistillObjective(spec, knowledge, student, seed=3)
    after_a = torch.rand(1)
    torch.manual_seed(1)
    torch.rand(5)  # the process drew something else before
    b = DistillObjective(spec, knowledge, student, seed=3)
    c = DistillObjective(spec, knowledge, student, seed=4)
    torch.manual_seed(1)
    assert torch.rand(1).equal(after_a)  # building `a` consumed nothing from the global generator
    for (name, x), y, z in zip(a.state_dict().items(), b.state_dict().values(), c.state_dict().values()):
        assert x.equal(y), name
    assert any(not x.equal(z) for x, z in zip(a.state_dict().values(), c.state_dict().values()))
