import pytest
import torch

from distillrec.distill.losses import soft_target_kl
from distillrec.errors import DistillrecError


def _zero_mean_logits(rows: int, columns: int, seed: int) -> torch.Tensor:
    logits = torch.randn(rows, columns, generator=torch.Generator().manual_seed(seed))
    return logits - logits.mean(dim=1, keepdim=True)


@pytest.mark.parametrize("temperature", [0.5, 1.0, 4.0])
def test_zero_when_student_reproduces_teacher_and_positive_otherwise(temperature):
    teacher = _zero_mean_logits(4, 7, seed=0)
    assert soft_target_kl(teacher.clone(), teacher, temperature).item() == pytest.approx(0.0, abs=1e-6)
    assert soft_target_kl(_zero_mean_logits(4, 7, seed=1), teacher, temperature).item() > 0.01
    # A constant shift per row changes no softmax: still a perfect student.
    assert soft_target_kl(teacher + 3.0, teacher, temperature).item() == pytest.approx(0.0, abs=1e-5)


def test_low_temperature_matches_only_the_top_item_high_temperature_the_whole_distribution():
    teacher = torch.tensor([[6.0, 3.0, 2.0, 1.0, 0.0]])
    # Right top item, the rest of the teacher's order reversed: only "dark knowledge" is wrong.
    student = torch.tensor([[6.0, 0.0, 1.0, 2.0, 3.0]])
    sharp = soft_target_kl(student, teacher, temperature=0.2).item()
    soft = soft_target_kl(student, teacher, temperature=4.0).item()
    assert sharp < 1e-4
    assert soft > 0.5


def test_temperature_squared_keeps_gradient_magnitude_comparable():
    teacher = _zero_mean_logits(8, 20, seed=2)
    student = _zero_mean_logits(8, 20, seed=3)
    norms = {}
    for temperature in (4.0, 8.0, 16.0):
        scores = student.clone().requires_grad_()
        soft_target_kl(scores, teacher, temperature).backward()
        norms[temperature] = scores.grad.norm().item()
    # With the T^2 factor the gradient tends to (z_s - z_t) / C as T grows (Hinton et al.):
    assert norms[16.0] / norms[4.0] == pytest.approx(1.0, abs=0.1)
    # without it, it would shrink by (16 / 4)^2.
    unscaled_ratio = (norms[16.0] / 16.0 ** 2) / (norms[4.0] / 4.0 ** 2)
    assert unscaled_ratio == pytest.approx(1 / 16, rel=0.1)


def test_high_temperature_limit_is_logit_matching():
    teacher = _zero_mean_logits(3, 10, seed=4)
    student = _zero_mean_logits(3, 10, seed=5)
    # Hinton et al.: for zero-mean logits T^2 KL -> sum (z_s - z_t)^2 / (2 C) as T -> infinity.
    expected = ((student - teacher) ** 2).sum(dim=1).mean() / (2 * 10)
    assert soft_target_kl(student, teacher, temperature=200.0).item() == pytest.approx(expected.item(), rel=0.02)


def test_gradients_reach_the_student_never_the_teacher():
    student = torch.randn(4, 6, requires_grad=True)
    teacher = torch.randn(4, 6, requires_grad=True)
    soft_target_kl(student, teacher, temperature=2.0).backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert teacher.grad is None


def test_per_sample_reduction_and_bad_inputs():
    student, teacher = torch.randn(5, 6), torch.randn(5, 6)
    per_sample = soft_target_kl(student, teacher, 2.0, reduction="none")
    assert per_sample.shape == (5,) and (per_sample >= 0).all()
    assert per_sample.mean().item() == pytest.approx(soft_target_kl(student, teacher, 2.0).item())
    with pytest.raises(DistillrecError, match="student shape"):
        soft_target_kl(torch.randn(5, 6), torch.randn(5, 7))
    with pytest.raises(DistillrecError, match="temperature must be > 0"):
        soft_target_kl(student, teacher, 0.0)
