import pytest
import torch

from distillrec.distill.losses import Projector, feature_loss
from distillrec.errors import DistillrecError


@pytest.mark.parametrize("kind", ["mse", "cosine"])
def test_zero_when_student_reproduces_teacher_and_positive_otherwise(kind):
    teacher = torch.randn(8, 6, generator=torch.Generator().manual_seed(0))
    assert feature_loss(teacher.clone(), teacher, kind=kind).item() == pytest.approx(0.0, abs=1e-6)
    assert feature_loss(torch.randn(8, 6), teacher, kind=kind).item() > 0.1


def test_cosine_ignores_the_teachers_norm_but_mse_does_not():
    student = torch.randn(5, 4)
    assert feature_loss(student, 3.0 * student, kind="cosine").item() == pytest.approx(0.0, abs=1e-6)
    assert feature_loss(student, 3.0 * student, kind="mse").item() > 0.5


@pytest.mark.parametrize("hidden_dim", [None, 16])
def test_projector_learns_to_map_student_space_onto_teacher_space(hidden_dim):
    torch.manual_seed(0)
    student = torch.randn(64, 4)
    teacher = student @ torch.randn(4, 10)  # a linear image of the student: reachable
    projector = Projector(4, 10, hidden_dim)
    optimiser = torch.optim.Adam(projector.parameters(), lr=0.05)
    initial = feature_loss(student, teacher, projector).item()
    for _ in range(300):
        optimiser.zero_grad()
        feature_loss(student, teacher, projector).backward()
        optimiser.step()
    assert feature_loss(student, teacher, projector).item() < 0.05 * initial


@pytest.mark.parametrize("kind", ["mse", "cosine"])
def test_gradients_reach_student_and_projector_never_the_teacher(kind):
    student = torch.randn(6, 3, requires_grad=True)
    teacher = torch.randn(6, 5, requires_grad=True)
    projector = Projector(3, 5)
    feature_loss(student, teacher, projector, kind=kind).backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert projector.net.weight.grad is not None
    assert teacher.grad is None


def test_per_sample_reduction_averages_to_the_scalar():
    student, teacher = torch.randn(7, 4), torch.randn(7, 4)
    per_sample = feature_loss(student, teacher, reduction="none")
    assert per_sample.shape == (7,)
    assert per_sample.mean().item() == pytest.approx(feature_loss(student, teacher).item())


def test_mismatched_dimensions_without_projector_are_refused():
    with pytest.raises(DistillrecError, match="feature: student shape"):
        feature_loss(torch.randn(4, 3), torch.randn(4, 5))
    with pytest.raises(DistillrecError, match="unknown kind"):
        feature_loss(torch.randn(4, 3), torch.randn(4, 3), kind="l1")
