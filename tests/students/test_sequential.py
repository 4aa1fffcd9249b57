"""What SequentialRecommender gives every next-item model (the loss over every window position,
scoring from the history and new users), checked on each family: expected values are computed by
hand from the model's own encoder."""

import pandas as pd
import pytest
import torch

from distillrec.data.sequences import user_sequences

from distillrec.students.gru4rec import GRU4Rec
from distillrec.students.sasrec import SASRec

FAMILIES = {
    "sasrec": lambda **p: SASRec(n_users=3, n_items=10, dim=8, n_heads=2, inner_size=16, max_len=5, **p).eval(),
    "gru4rec": lambda **p: GRU4Rec(n_users=3, n_items=10, dim=8, hidden_size=12, max_len=5, **p).eval(),
}


@pytest.mark.parametrize("family", FAMILIES)
def test_softmax_loss_is_cross_entropy_at_every_real_position(family):
    model = FAMILIES[family]()
    seq = torch.tensor([[0, 0, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6]])
    hidden = model.encode(seq[:, :-1])
    keep = seq[:, :-1] > 0
    logits = hidden[keep] @ model.item_embedding.weight[1:].T
    expected = torch.nn.functional.cross_entropy(logits, seq[:, 1:][keep] - 1)
    assert model.loss({"user": torch.tensor([0, 1]), "seq": seq}).item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_bpr_loss_uses_the_per_position_negatives(family):
    model = FAMILIES[family](rec_loss="bpr")
    seq = torch.tensor([[0, 0, 3, 4, 5, 6]])
    neg = torch.full((1, 5, 1), 8)
    hidden = model.encode(seq[:, :-1])[0, 2:]                 # positions with a real input
    pos_scores = (hidden * model.item_embedding.weight[[4, 5, 6]]).sum(-1)
    neg_scores = hidden @ model.item_embedding.weight[9]
    expected = -torch.nn.functional.logsigmoid(pos_scores - neg_scores).mean()
    loss = model.loss({"user": torch.tensor([0]), "seq": seq, "neg": neg})
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_scores_follow_the_history_and_stay_finite_without_one(family):
    model = FAMILIES[family]()
    history = pd.DataFrame({"user": [0, 0, 1], "item": [2, 3, 7], "timestamp": [1, 2, 1]})
    model.set_history(history)
    assert torch.equal(model.history, user_sequences(history, 3, 5))
    scores = model.score(torch.tensor([0, 1, 2]))  # user 2 has no history
    assert scores.shape == (3, 10) and torch.isfinite(scores).all()
    assert not torch.allclose(scores[0], scores[1])
    new_user = model.encode_new_user(recent_items=[2, 3])  # the same items, oldest first
    assert torch.allclose(new_user @ model.item_embedding.weight[1:].T, scores[0], atol=1e-6)
