import math

import pytest
import torch

from distillrec.distill.weighting import (
    SCHEDULES,
    WEIGHTINGS,
    FixedWeights,
    UncertaintyWeighting,
    confidence_weights,
    constant,
    cosine_anneal,
    linear_warmup,
    step_schedule,
)
from distillrec.errors import DistillrecError


def test_fixed_weights_sum_the_weighted_losses():
    weighting = FixedWeights({"feature": 0.5, "rkd-distance": 2.0})
    total = weighting({"feature": torch.tensor(4.0), "rkd-distance": torch.tensor(1.5)})
    assert total.item() == pytest.approx(0.5 * 4.0 + 2.0 * 1.5)
    assert weighting.weights() == {"feature": 0.5, "rkd-distance": 2.0}
    with pytest.raises(DistillrecError, match="configured for losses"):
        weighting({"feature": torch.tensor(1.0)})


def test_uncertainty_weighting_formula():
    weighting = UncertaintyWeighting(["a", "b"])
    with torch.no_grad():
        weighting.log_variances.copy_(torch.tensor([0.0, math.log(4.0)]))
    total = weighting({"a": torch.tensor(3.0), "b": torch.tensor(8.0)})
    assert total.item() == pytest.approx(3.0 + (8.0 / 4.0 + math.log(4.0)))
    assert weighting.weights() == pytest.approx({"a": 1.0, "b": 0.25})
    with pytest.raises(DistillrecError, match="distinct loss names"):
        UncertaintyWeighting(["a", "a"])


def test_uncertainty_weighting_settles_at_the_inverse_loss():
    # With constant losses the optimum of exp(-s) L + s is exp(-s) = 1 / L.
    weighting = UncertaintyWeighting(["small", "large"])
    optimiser = torch.optim.Adam(weighting.parameters(), lr=0.1)
    losses = {"small": torch.tensor(0.5), "large": torch.tensor(4.0)}
    for _ in range(200):
        optimiser.zero_grad()
        weighting(losses).backward()
        optimiser.step()
    assert weighting.weights() == pytest.approx({"small": 2.0, "large": 0.25}, rel=0.05)


def test_uncertainty_weighting_learns_a_smaller_weight_for_the_noisier_task():
    # Two regressions sharing one linear model; the second has ten times the label noise.
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(256, 3, generator=generator)
    truth = torch.tensor([1.0, -2.0, 0.5])
    y_clean = x @ truth + 0.1 * torch.randn(256, generator=generator)
    y_noisy = x @ truth + 1.0 * torch.randn(256, generator=generator)
    model = torch.nn.Linear(3, 1)
    weighting = UncertaintyWeighting(["clean", "noisy"])
    optimiser = torch.optim.Adam([*model.parameters(), *weighting.parameters()], lr=0.05)
    for _ in range(200):
        prediction = model(x).squeeze(-1)
        losses = {"clean": ((prediction - y_clean) ** 2).mean(), "noisy": ((prediction - y_noisy) ** 2).mean()}
        optimiser.zero_grad()
        weighting(losses).backward()
        optimiser.step()
    weights = weighting.weights()
    assert weights["noisy"] < 0.5 * weights["clean"]


def test_confidence_weights_favour_confident_teachers_and_average_one():
    probs = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25], [0.7, 0.1, 0.1, 0.1]])
    weights = confidence_weights(probs)
    assert weights.mean().item() == pytest.approx(1.0)
    assert weights[0] > weights[2] > weights[1]
    assert weights[1].item() == pytest.approx(0.0, abs=1e-6)


def test_confidence_weights_uniform_teacher_and_bad_inputs():
    assert torch.equal(confidence_weights(torch.full((3, 4), 0.25)), torch.ones(3))
    with pytest.raises(DistillrecError, match="apply softmax"):
        confidence_weights(torch.randn(3, 4))
    with pytest.raises(DistillrecError, match=r"\[B, C >= 2\]"):
        confidence_weights(torch.ones(3))


def test_schedules_at_hand_computed_steps():
    assert [constant(0.5)(step) for step in (0, 123)] == [0.5, 0.5]
    warmup = linear_warmup(10)
    assert [warmup(step) for step in (0, 5, 10, 20)] == [0.0, 0.5, 1.0, 1.0]
    anneal = cosine_anneal(1.0, 0.2, 10)
    assert [anneal(step) for step in (0, 5, 10, 30)] == pytest.approx([1.0, 0.6, 0.2, 0.2])
    assert anneal(2) == pytest.approx(0.2 + 0.8 * (1 + math.cos(math.pi * 0.2)) / 2)
    steps = step_schedule([10, 20], gamma=0.5, start=2.0)
    assert [steps(step) for step in (0, 9, 10, 19, 20, 100)] == [2.0, 2.0, 1.0, 1.0, 0.5, 0.5]


def test_schedules_refuse_bad_settings():
    with pytest.raises(DistillrecError, match="steps must be > 0"):
        linear_warmup(0)
    with pytest.raises(DistillrecError, match="ascending"):
        step_schedule([20, 10])


def test_registries_find_weightings_and_schedules_by_name():
    assert WEIGHTINGS.get("uncertainty") is UncertaintyWeighting
    assert SCHEDULES.get("cosine-anneal")(start=0.0, end=1.0, steps=4)(2) == pytest.approx(0.5)
