import math

import pytest
import torch

from distillrec.errors import DistillrecError
from distillrec.train.losses import REC_LOSSES


def test_bpr_averages_every_positive_negative_pair():
    pos = torch.tensor([2.0])
    neg = torch.tensor([[0.0, 1.0]])
    # -log sigmoid(x) = log(1 + e^-x); differences 2 and 1.
    expected = (math.log1p(math.exp(-2.0)) + math.log1p(math.exp(-1.0))) / 2
    assert REC_LOSSES.get("bpr")(pos, neg).item() == pytest.approx(expected, rel=1e-6)


def test_bpr_matches_recbole_single_negative_form():
    pos, neg = torch.tensor([0.3, -1.2]), torch.tensor([[0.1], [0.4]])
    recbole = -torch.log(1e-10 + torch.sigmoid(pos - neg.squeeze(1))).mean()
    assert REC_LOSSES.get("bpr")(pos, neg).item() == pytest.approx(recbole.item(), rel=1e-6)


def test_bpr_offers_its_margin_form():
    pos, neg = torch.tensor([0.3, -1.2]), torch.tensor([[0.1, 2.0], [0.4, -3.0]])
    bpr = REC_LOSSES.get("bpr")
    assert bpr.margin_fn(pos.unsqueeze(-1) - neg).item() == pytest.approx(bpr(pos, neg).item(), rel=1e-6)
    assert REC_LOSSES.get("softmax").margin_fn is None  # a full-catalog loss has no negatives


def test_sampled_softmax_is_cross_entropy_over_positive_and_negatives():
    pos = torch.tensor([1.0])
    neg = torch.tensor([[0.0, 0.0]])
    expected = -math.log(math.e / (math.e + 2.0))
    assert REC_LOSSES.get("sampled-softmax")(pos, neg).item() == pytest.approx(expected, rel=1e-6)


def test_softmax_is_full_catalog_cross_entropy():
    logits = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    target = torch.tensor([2, 0])
    first = -math.log(math.exp(3) / (math.exp(1) + math.exp(2) + math.exp(3)))
    second = math.log(3.0)
    assert REC_LOSSES.get("softmax")(logits, target).item() == pytest.approx((first + second) / 2, rel=1e-6)


def test_losses_declare_what_candidates_they_score():
    assert {name: REC_LOSSES.get(name).candidates for name in REC_LOSSES.names()} == {
        "bpr": "sampled", "sampled-softmax": "sampled", "softmax": "full"}


def test_unknown_loss_names_the_known_ones():
    with pytest.raises(DistillrecError, match="bpr"):
        REC_LOSSES.get("hinge")
