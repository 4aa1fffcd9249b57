import pytest
import torch
import torch.nn.functional as F

from distillrec.distill.losses import info_nce
from distillrec.errors import DistillrecError


@pytest.fixture
def teacher() -> torch.Tensor:
    return torch.randn(16, 8, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("symmetric", [False, True])
def test_lower_for_aligned_than_for_shuffled_pairs(teacher, symmetric):
    shuffled = teacher[torch.roll(torch.arange(16), 1)]
    aligned = info_nce(teacher.clone(), teacher, temperature=0.1, symmetric=symmetric)
    assert aligned.item() < 0.05
    assert info_nce(shuffled, teacher, temperature=0.1, symmetric=symmetric) > 10 * aligned


def test_aligned_pairs_need_only_the_same_direction(teacher):
    assert info_nce(2.5 * teacher, teacher, temperature=0.1).item() == pytest.approx(
        info_nce(teacher, teacher, temperature=0.1).item(), rel=1e-5)


def test_symmetric_averages_both_directions(teacher):
    student = torch.randn(16, 8)
    logits = F.normalize(student, dim=1) @ F.normalize(teacher, dim=1).T / 0.2
    targets = torch.arange(16)
    expected = (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2
    assert info_nce(student, teacher, 0.2, symmetric=True).item() == pytest.approx(expected.item(), rel=1e-5)
    assert info_nce(student, teacher, 0.2).item() == pytest.approx(F.cross_entropy(logits, targets).item(), rel=1e-5)


@pytest.mark.parametrize("symmetric", [False, True])
def test_gradients_reach_the_student_never_the_teacher(symmetric):
    student = torch.randn(6, 4, requires_grad=True)
    teacher = torch.randn(6, 4, requires_grad=True)
    info_nce(student, teacher, 0.1, symmetric=symmetric).backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert teacher.grad is None


def test_per_sample_reduction_and_bad_inputs(teacher):
    per_sample = info_nce(torch.randn(16, 8), teacher, reduction="none")
    assert per_sample.shape == (16,)
    with pytest.raises(DistillrecError, match="student shape"):
        info_nce(torch.randn(16, 4), teacher)
    with pytest.raises(DistillrecError, match="temperature must be > 0"):
        info_nce(teacher, teacher, temperature=-1.0)
