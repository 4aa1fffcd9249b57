import math

import pandas as pd
import pytest
import torch

from distillrec.data.dataset import build_dataset
from distillrec.data.sources import load_raw
from distillrec.data.splitting import random_split
from distillrec.errors import DistillrecError
from distillrec.evaluation.evaluator import evaluate
from distillrec.students.base import MODELS
from distillrec.students.mf import MatrixFactorization
from distillrec.train import TrainConfig, Trainer
from distillrec.train.losses import REC_LOSSES


def test_pair_scores_agree_with_full_catalog_scores():
    model = MatrixFactorization(4, 6, dim=3)
    users = torch.tensor([0, 3, 1])
    items = torch.tensor([[5, 0], [2, 2], [1, 4]])
    assert torch.allclose(model.pair_scores(users, items), model.score(users).gather(1, items))


@pytest.mark.parametrize("n_negatives", [1, 3])
def test_margins_and_bpr_gradients_match_the_two_score_form(n_negatives):
    """MF's one-dot-product margins u . (p - n) are the generic s_pos - s_neg, and the BPR
    loss trained through them has the same value and gradients."""
    torch.manual_seed(0)
    model = MatrixFactorization(5, 7, dim=4)
    batch = {"user": torch.tensor([0, 4, 2]), "pos": torch.tensor([6, 1, 3]),
             "neg": torch.randint(7, (3, n_negatives))}
    generic = super(MatrixFactorization, model).pair_margins(batch["user"], batch["pos"], batch["neg"])
    assert torch.allclose(model.pair_margins(batch["user"], batch["pos"], batch["neg"]), generic, atol=1e-6)

    model.loss(batch).backward()
    fast = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    candidates = torch.cat([batch["pos"].unsqueeze(1), batch["neg"]], dim=1)
    scores = model.pair_scores(batch["user"], candidates)
    REC_LOSSES.get("bpr")(scores[:, 0], scores[:, 1:]).backward()
    for got, expected in zip(fast, [p.grad for p in model.parameters()]):
        assert torch.allclose(got, expected, atol=1e-6)


def test_bpr_loss_on_a_hand_computed_case():
    model = MatrixFactorization(1, 2, dim=1)
    with torch.no_grad():
        model.user_embedding.weight.fill_(2.0)
        model.item_embedding.weight.copy_(torch.tensor([[1.0], [0.5]]))
    batch = {"user": torch.tensor([0]), "pos": torch.tensor([0]), "neg": torch.tensor([[1]])}
    # scores 2.0 and 1.0: -log sigmoid(1)
    assert model.loss(batch).item() == pytest.approx(math.log1p(math.exp(-1.0)), rel=1e-6)


def test_softmax_loss_scores_the_whole_catalog_without_negatives():
    model = MatrixFactorization(1, 3, dim=1, rec_loss="softmax")
    with torch.no_grad():
        model.user_embedding.weight.fill_(1.0)
        model.item_embedding.weight.copy_(torch.tensor([[1.0], [2.0], [3.0]]))
    loss = model.loss({"user": torch.tensor([0]), "pos": torch.tensor([2])})
    assert loss.item() == pytest.approx(-math.log(math.exp(3) / (math.exp(1) + math.exp(2) + math.exp(3))), rel=1e-6)


def test_init_is_seeded_xavier_normal():
    first, second, other = (MatrixFactorization(300, 500, dim=64, seed=s) for s in (3, 3, 4))
    assert torch.equal(first.item_embedding.weight, second.item_embedding.weight)
    assert not torch.equal(first.item_embedding.weight, other.item_embedding.weight)
    # xavier normal on a [500, 64] matrix: std = sqrt(2 / (500 + 64))
    assert first.item_embedding.weight.std().item() == pytest.approx(math.sqrt(2 / 564), rel=0.05)


def test_representations_are_the_embeddings():
    model = MatrixFactorization(4, 6, dim=3)
    vectors = model.representations()
    assert vectors["user"].shape == (4, 3) and vectors["item"].shape == (6, 3)
    assert vectors["item"] is model.item_embedding.weight


def test_unknown_rec_loss_fails_at_construction():
    with pytest.raises(DistillrecError, match="recommendation loss 'warp'"):
        MatrixFactorization(2, 2, rec_loss="warp")


def test_mf_learns_on_a_slice_of_ml100k():
    raw = load_raw("ml-100k")
    first_users = sorted(raw.interactions["user_id"].unique(), key=int)[:200]
    raw.interactions = raw.interactions[raw.interactions["user_id"].isin(first_users)]
    dataset = build_dataset(raw)
    split = random_split(dataset, seed=0)
    model = MODELS.get("mf").build(dataset, split, dim=32)
    untrained = evaluate(model.score, split, "valid")["ndcg@10"]
    result = Trainer(model, split, TrainConfig(epochs=20, batch_size=512, lr=0.01, num_threads=1),
                     progress=False).fit()
    assert result.best_valid["ndcg@10"] > untrained + 0.1
    with torch.no_grad():
        assert evaluate(model.score, split, "test")["ndcg@10"] > untrained + 0.1
