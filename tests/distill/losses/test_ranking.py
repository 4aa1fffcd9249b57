import math

import pytest
import torch

from distillrec.distill.losses import (
    importance_weights,
    position_weights,
    rank_discrepancy_weights,
    ranking_distillation,
    relaxed_ranking,
    student_ranks,
)
from distillrec.errors import DistillrecError


def test_position_weights_decrease_with_rank_and_sum_to_one():
    weights = position_weights(5, lam=2.0)
    assert (weights[1:] < weights[:-1]).all()
    assert weights.sum().item() == pytest.approx(1.0)
    assert (weights[1] / weights[0]).item() == pytest.approx(math.exp(-1 / 2.0))
    # A smaller lambda concentrates the weight on the teacher's first items.
    assert position_weights(5, lam=0.5)[0] > weights[0]


def test_ranking_distillation_weights_the_teachers_first_items_most():
    scores = torch.zeros(1, 4, requires_grad=True)
    ranking_distillation(scores, lam=1.0).backward()
    pull = -scores.grad[0]  # descent direction: raise each item's score this much
    assert (pull > 0).all() and (pull[1:] < pull[:-1]).all()


def test_ranking_distillation_falls_as_the_student_scores_the_teachers_items_higher():
    low, high = torch.full((2, 5), -1.0), torch.full((2, 5), 8.0)
    assert ranking_distillation(high).item() < 1e-3 < ranking_distillation(low).item()


def test_ranking_distillation_with_explicit_weights():
    scores = torch.randn(3, 4)
    weights = torch.rand(3, 4, requires_grad=True)
    expected = -(weights.detach() * torch.log(torch.sigmoid(scores))).sum(dim=1).mean()
    loss = ranking_distillation(scores.requires_grad_(), weights)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    loss.backward()
    assert weights.grad is None and scores.grad is not None
    with pytest.raises(DistillrecError, match="weights shape"):
        ranking_distillation(scores, torch.ones(3, 5))


def test_student_ranks_exact_and_sampled():
    scores = torch.tensor([[0.9, 0.1, 0.5, 0.7]])
    candidates = scores[:, [2, 0]]
    assert student_ranks(candidates, scores).tolist() == [[2.0, 0.0]]
    # From a sample of 4 items out of a catalogue of 100: 2 of 4 above -> rank 50.
    assert student_ranks(candidates, scores, catalogue_size=100).tolist() == [[50.0, 0.0]]


def test_rank_discrepancy_weights_act_only_where_the_student_ranks_lower():
    student_rank = torch.tensor([[0.0, 40.0, 2.0, 0.0]])  # teacher ranks are 0, 1, 2, 3
    weights = rank_discrepancy_weights(student_rank, lam=1.0, mu=0.1)[0]
    assert weights[0] == 0 and weights[2] == 0  # ranked where the teacher ranks them
    assert weights[3] == 0  # ranked higher than the teacher does
    expected = position_weights(4, 1.0)[1] * math.tanh(0.1 * 39)
    assert weights[1].item() == pytest.approx(expected.item(), rel=1e-5)


def _mix(a, b, c, **inputs):
    return importance_weights(mix=(a, b, c), **inputs)


def test_importance_weights_components():
    ranks = torch.tensor([1.0, 2.0, 3.0])
    conf = torch.tensor([[0.0, 2.0, 1.0]])
    in_topk = torch.tensor([[True, False, True]])
    inputs = dict(ranks=ranks, teacher_conf=conf, in_student_topk=in_topk, beta=1.0)
    position = torch.exp(-ranks)
    assert torch.allclose(_mix(1, 0, 0, **inputs), (position / position.sum())[None])
    assert torch.allclose(_mix(0, 1, 0, **inputs), conf.softmax(dim=1))
    assert torch.allclose(_mix(0, 0, 1, **inputs), torch.tensor([[0.5, 0.0, 0.5]]))
    mixed = importance_weights(ranks, conf, in_topk, mix=(0.3, 0.5, 0.1))
    assert mixed.shape == (1, 3)
    assert mixed.sum().item() == pytest.approx(1.0)


def test_importance_weights_favour_confident_and_consistent_items():
    ranks = torch.ones(1, 2)  # same position: only confidence / consistency differ
    confident = importance_weights(ranks, torch.tensor([[3.0, 0.0]]), torch.tensor([[False, False]]))
    assert confident[0, 0] > confident[0, 1]
    consistent = importance_weights(ranks, torch.zeros(1, 2), torch.tensor([[False, True]]))
    assert consistent[0, 1] > consistent[0, 0]


def test_importance_weights_edge_cases_and_use_in_ranking_distillation():
    nothing_consistent = _mix(0, 0, 1, ranks=torch.arange(1.0, 4.0), teacher_conf=torch.zeros(2, 3),
                              in_student_topk=torch.zeros(2, 3, dtype=torch.bool))
    assert torch.equal(nothing_consistent, torch.zeros(2, 3))
    weights = importance_weights(torch.arange(1.0, 4.0), torch.randn(2, 3), torch.rand(2, 3) > 0.5)
    assert ranking_distillation(torch.randn(2, 3), weights).isfinite()
    with pytest.raises(DistillrecError, match="mix must be non-negative"):
        importance_weights(torch.ones(3), torch.ones(3), torch.ones(3, dtype=torch.bool), mix=(1, -1, 0))


def test_relaxed_ranking_prefers_the_teachers_order():
    topk = torch.tensor([[3.0, 2.0, 1.0, 0.0]])
    rest = torch.tensor([[-1.0, -2.0]])
    assert relaxed_ranking(topk, rest) < relaxed_ranking(topk.flip(-1), rest)
    # Interesting items below the uninteresting ones are worse still.
    assert relaxed_ranking(topk, rest) < relaxed_ranking(topk - 5.0, rest)


def test_relaxed_ranking_is_the_plackett_luce_likelihood_and_leaves_the_rest_unordered():
    topk, rest = torch.tensor([[2.0, 0.5]]), torch.tensor([[1.0, -1.0, 0.0]])
    e = torch.exp
    denominator_first = e(topk[0, 0]) + e(topk[0, 1]) + e(rest).sum()
    denominator_second = e(topk[0, 1]) + e(rest).sum()
    expected = -(torch.log(e(topk[0, 0]) / denominator_first) + torch.log(e(topk[0, 1]) / denominator_second))
    assert relaxed_ranking(topk, rest).item() == pytest.approx(expected.item(), rel=1e-5)
    assert relaxed_ranking(topk, rest.flip(-1)).item() == pytest.approx(expected.item(), rel=1e-5)


def test_relaxed_ranking_is_stable_for_large_scores():
    loss = relaxed_ranking(torch.tensor([[500.0, 400.0]]), torch.tensor([[300.0]]))
    assert loss.isfinite() and loss.item() < 1e-6


def test_relaxed_ranking_trains_both_the_interesting_and_the_uninteresting_scores():
    topk = torch.zeros(2, 3, requires_grad=True)
    rest = torch.zeros(2, 4, requires_grad=True)
    relaxed_ranking(topk, rest).backward()
    assert (topk.grad[:, 0] < 0).all()  # descent raises the teacher's first item
    assert (rest.grad > 0).all()  # and lowers every uninteresting one
