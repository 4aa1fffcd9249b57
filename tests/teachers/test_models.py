"""The LM-enhanced teacher: attention pooling, history, scoring, and a real (small) fit."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from distillrec.data.dataset import RawData, build_dataset
from distillrec.data.sources import load_raw
from distillrec.data.splitting import random_split
from distillrec.errors import DistillrecError
from distillrec.evaluation.baselines import PopularityScorer
from distillrec.evaluation.evaluator import evaluate
from distillrec.students.base import MODELS
from distillrec.teachers.models import PADDING, AttentionPooling, LMTeacher
from distillrec.train.trainer import TrainConfig, Trainer


def test_attention_pooling_ignores_padding_exactly():
    torch.manual_seed(0)
    pooling = AttentionPooling(dim=4, heads=2)
    catalog = torch.randn(5, 4)
    history = torch.tensor([[3, 1, PADDING]])
    mask = torch.tensor([[True, True, False]])
    expected = pooling(catalog, torch.tensor([[3, 1]]), torch.ones(1, 2, dtype=torch.bool))
    torch.testing.assert_close(pooling(catalog, history, mask), expected)
    # Whatever index a padding slot holds must not matter.
    torch.testing.assert_close(pooling(catalog, torch.tensor([[3, 1, 4]]), mask), expected)
    # A user without history pools to zeros, not NaN.
    assert torch.equal(pooling(catalog, history, torch.zeros(1, 3, dtype=torch.bool)), torch.zeros(1, 8))


def test_pooled_vector_is_a_convex_combination_per_head():
    pooling = AttentionPooling(dim=3, heads=1)
    pooled = pooling(torch.eye(3), torch.tensor([[0, 1, 2]]), torch.ones(1, 3, dtype=torch.bool))
    assert torch.all(pooled >= 0) and torch.isclose(pooled.sum(), torch.tensor(1.0))


# --- a tiny hand-made catalogue, text embeddings given directly -------------------------

def tiny_teacher(has_item: torch.Tensor | None = None, **params) -> tuple[LMTeacher, object]:
    rows = [(f"u{u}", f"i{(u + j) % 10}", 4.0, j) for u in range(8) for j in range(6)]
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(10)], "title": [f"Movie {i}" for i in range(10)],
                          "year": [1990.0 + i for i in range(10)], "genres": [["Drama"]] * 10})
    dataset = build_dataset(RawData("tiny", inter, items=items))
    split = random_split(dataset, seed=0)
    from distillrec.students.features import FeatureEncoder
    user_encoder = FeatureEncoder.fit(dataset.users, ())
    item_encoder = FeatureEncoder.fit(dataset.items, ())
    has_user = torch.ones(8, dtype=torch.bool)
    has_item = torch.ones(10, dtype=torch.bool) if has_item is None else has_item
    model = LMTeacher(text_embeddings=torch.randn(10, 6), user_encoder=user_encoder, item_encoder=item_encoder,
                      user_features={}, item_features={}, user_has_id=has_user, item_has_id=has_item,
                      dim=8, hidden=16, **params)
    model.set_history(split.train)
    return model, split


def _new_item(index: int = 7) -> torch.Tensor:
    trained = torch.ones(10, dtype=torch.bool)
    trained[index] = False
    return trained


def _train_item_item(model: LMTeacher) -> None:
    """Trained-looking item-item weights: mostly negative, as a softmax leaves them."""
    with torch.no_grad():
        model.item_item.weight.copy_(-torch.rand_like(model.item_item.weight))
        model.item_item.weight[:, ~model.item_has_id] = 0.0  # an untrained column stays at its init


def test_items_without_training_interactions_are_never_negatives():
    trained = _new_item()
    model, _ = tiny_teacher(has_item=trained, history_dropout=0.0)
    model.eval()
    users, targets = torch.tensor([0, 1, 2]), torch.tensor([1, 2, 3])
    with torch.no_grad():
        loss = model.loss({"user": users, "pos": targets})
        for user, target in zip(users.tolist(), targets.tolist()):  # the loss hides each target
            model.history[user][model.history[user] == target] = PADDING
        scores = model.score(users)
    expected = torch.nn.functional.cross_entropy(scores[:, trained], targets - (targets > 7).long())
    torch.testing.assert_close(loss, expected)


def test_a_sampled_new_item_adds_nothing_to_a_sampled_loss():
    model, _ = tiny_teacher(has_item=_new_item(), history_dropout=0.0, rec_loss="sampled-softmax")
    model.eval()
    users, targets = torch.tensor([0, 1]), torch.tensor([1, 2])
    with torch.no_grad():
        with_new = model.loss({"user": users, "pos": targets, "neg": torch.tensor([[4, 7], [5, 7]])})
        without = model.loss({"user": users, "pos": targets, "neg": torch.tensor([[4], [5]])})
    torch.testing.assert_close(with_new, without)


def test_a_new_item_gets_the_users_mean_item_item_score_not_the_untrained_zero():
    trained = _new_item()
    model, _ = tiny_teacher(has_item=trained)
    _train_item_item(model)
    model.eval()
    history = model.history[:4]
    present = history != PADDING
    with torch.no_grad():
        term = model.item_item_scores(history, present)
        raw = model.item_item(history.clamp(min=0), per_sample_weights=present.float()
                              / present.sum(1, keepdim=True).clamp(min=1).sqrt())
    torch.testing.assert_close(term[:, trained], raw[:, trained])
    torch.testing.assert_close(term[:, 7], raw[:, trained].mean(1))
    assert torch.all(raw[:, 7] > raw[:, trained].max(1).values)  # what the fix is for


def test_history_keeps_the_most_recent_items_in_time_order():
    model, split = tiny_teacher(max_history=3)
    user0 = split.train[split.train["user"] == 0].sort_values("timestamp")
    assert model.history[0].tolist() == user0["item"].tolist()[-3:]
    model.set_history(split.train[split.train["user"] != 0])
    assert model.history[0].tolist() == [PADDING] * 3


def test_score_matches_pair_scores_and_training_hides_the_target_from_history():
    model, split = tiny_teacher(history_dropout=0.0)
    model.eval()
    users = torch.tensor([0, 3])
    with torch.no_grad():
        full = model.score(users)
        pairs = model.pair_scores(users, torch.arange(10).repeat(2, 1))
    torch.testing.assert_close(full, pairs)
    # The loss sees the history without its target: the same as a history that never had it.
    target = model.history[0, 0].clone().reshape(1)
    with torch.no_grad():  # eval mode: no history dropout, so both sides are deterministic
        loss = model.loss({"user": torch.tensor([0]), "pos": target})
        model.history[0, 0] = PADDING
        expected = torch.nn.functional.cross_entropy(model.score(torch.tensor([0])), target)
    torch.testing.assert_close(loss, expected)


@pytest.mark.parametrize("params", [{"item_item": True, "temperature": 0.1}, {"item_item": False}])
def test_serving_vectors_plus_history_scores_equal_score(params):
    model, _ = tiny_teacher(history_dropout=0.0, **params)
    model.eval()
    if model.item_item is not None:  # zero at initialisation: give the term something to add
        torch.nn.init.normal_(model.item_item.weight, generator=torch.Generator().manual_seed(0))
    users = torch.arange(8)
    with torch.no_grad():
        vectors = model.serving_vectors()
        extra = model.history_scores(users)
        served = vectors["user"][users] @ vectors["item"].T + (0 if extra is None else extra)
        torch.testing.assert_close(served, model.score(users))
    assert (extra is None) == (not params["item_item"])


def test_cold_dropout_trains_rows_as_new_users_with_neither_id_nor_history():
    model, _ = tiny_teacher(history_dropout=0.0, cold_dropout=0.999999)  # every row drawn cold
    users, target = torch.tensor([0, 3]), torch.tensor([1, 4])
    torch.manual_seed(0)  # the draw is then fixed, not merely almost sure
    with torch.no_grad():
        model.train()
        loss = model.loss({"user": users, "pos": target})
        model.eval()  # the same rows encoded as a new user is: profile only, no ID, nothing revealed
        items = model.item_vectors()
        cold = model.user_tower(model.user_table.rows(users), torch.zeros(2, model.pooling.out_dim), ids=users,
                                has_id=torch.zeros(2, dtype=torch.bool))
        expected = torch.nn.functional.cross_entropy(model.similarity(cold, items), target)
        warm = torch.nn.functional.cross_entropy(model.score(users), target)
    torch.testing.assert_close(loss, expected)
    assert not torch.allclose(loss, warm)  # the warm path (ID + history) scores otherwise
    # off by default: a training step draws nothing more, so earlier fits are unchanged
    assert tiny_teacher()[0]._cold_rows(users) is None


def test_cold_history_keeps_a_prefix_of_up_to_n_items_never_the_target_or_padding():
    model, _ = tiny_teacher(history_dropout=0.0, cold_dropout=0.5, cold_history=3)
    history = torch.tensor([[5, 2, 7, 9, PADDING]] * 400)
    exclude = torch.full((400,), 7)
    torch.manual_seed(0)
    shown = model._first_items(history, exclude)
    real = torch.tensor([True, True, False, True, False])  # 7 is the target, the last slot padding
    assert not (shown & ~real).any()
    counts = shown.sum(1)
    assert sorted(set(counts.tolist())) == [0, 1, 2, 3]  # m uniform in 0..3: every count is drawn
    for row, m in zip(shown, counts.tolist()):  # the first m real items in time order, nothing else
        assert torch.equal(row, real & (real.cumsum(0) <= m))
    assert not tiny_teacher(cold_history=0)[0]._first_items(history, exclude).any()


def test_cold_rows_with_cold_history_score_as_a_new_user_shown_those_items():
    model, _ = tiny_teacher(history_dropout=0.0, cold_dropout=0.999999, cold_history=4)
    users, target = torch.tensor([0, 3, 5]), torch.tensor([1, 4, 6])
    masks = []
    first_items = model._first_items
    model._first_items = lambda history, exclude: masks.append(first_items(history, exclude)) or masks[-1]
    torch.manual_seed(1)
    with torch.no_grad():
        model.train()
        loss = model.loss({"user": users, "pos": target})
        model.eval()
        history, present = model.history[users], masks[0]
        assert present.sum(1).max() <= 4 and not (history[present] == target.repeat_interleave(present.sum(1))).any()
        items = model.item_vectors()
        cold = model.user_tower(model.user_table.rows(users), model.pooling(items, history, present), ids=users,
                                has_id=torch.zeros(3, dtype=torch.bool))
        scores = model.similarity(cold, items) + model.item_item_scores(history, present)
        expected = torch.nn.functional.cross_entropy(scores, target)
    torch.testing.assert_close(loss, expected)


def test_invalid_settings_are_refused():
    with pytest.raises(DistillrecError, match="unknown mode"):
        tiny_teacher(mode="prefix")
    with pytest.raises(DistillrecError, match="needs the language model"):
        tiny_teacher(mode="lora")
    with pytest.raises(DistillrecError, match="history_dropout"):
        tiny_teacher(history_dropout=1.0)
    with pytest.raises(DistillrecError, match="cold_dropout"):
        tiny_teacher(cold_dropout=1.0)
    for bad in (-1, 1.5, True):
        with pytest.raises(DistillrecError, match="cold_history"):
            tiny_teacher(cold_history=bad)


# --- a real fit: MiniLM texts of an ML-100K slice -----------------------------------------

@pytest.fixture(scope="module")
def ml100k_slice():
    """The first 100 users of ML-100K (by raw id), 10-core: a few hundred items."""
    raw = load_raw("ml-100k")
    users = sorted(raw.interactions["user_id"].unique(), key=int)[:100]
    raw.interactions = raw.interactions[raw.interactions["user_id"].isin(users)]
    dataset = build_dataset(raw, k_core=10)
    return dataset, random_split(dataset, seed=0)


def test_teacher_fits_an_ml100k_slice_and_beats_popularity(ml100k_slice, tmp_path):
    dataset, split = ml100k_slice
    model = MODELS.get("lm-teacher").build(dataset, split, cache_dir=tmp_path, dim=32, hidden=64)
    assert model.text_embeddings.shape == (dataset.n_items, 384)
    assert model.text_cost["lm_parameters"] > 20_000_000 and not model.text_cost["cache_hit"]
    result = Trainer(model, split, TrainConfig(epochs=3, batch_size=256, lr=3e-3), progress=False).fit()
    popularity = evaluate(PopularityScorer(split), split, "valid")["ndcg@10"]
    assert result.best_valid["ndcg@10"] > popularity
    cost = model.cost()
    assert cost["lm_parameters"] > 10 * cost["recommender_parameters"] > 0


def test_scoring_reuses_item_vectors_until_the_item_tower_changes():
    model, _ = tiny_teacher()
    model.eval()
    calls = []
    model.item_tower.register_forward_hook(lambda *args: calls.append(1))
    users = torch.tensor([0, 1])
    with torch.no_grad():
        first = model.score(users)
        torch.testing.assert_close(model.score(users), first)
        assert len(calls) == 1  # the second scoring reused the item vectors
        next(model.item_tower.parameters()).add_(1.0)  # what an optimiser step does
        moved = model.score(users)
    assert len(calls) == 2 and not torch.allclose(moved, first)
    model.load_state_dict(model.state_dict())  # same values, copied in place: recomputed, equal
    with torch.no_grad():
        torch.testing.assert_close(model.score(users), moved)
    assert len(calls) == 3
    model.score(users)  # with gradients (training-time scoring): never cached
    assert len(calls) == 4
