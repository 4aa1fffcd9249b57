"""Initialising a student's ID embeddings from the teacher's representations."""

from __future__ import annotations

import pytest
import torch

from distillrec.errors import DistillrecError
from distillrec.students.mf import MatrixFactorization
from distillrec.students.sasrec import SASRec
from distillrec.teachers.knowledge import Knowledge
from distillrec.transfer import init_from_teacher

N_USERS, N_ITEMS, TEACHER_DIM = 60, 80, 16
#: the teacher's spectrum: 3 strong directions, then a weak tail.
SCALES = torch.tensor([8.0, 6.0, 4.0] + [0.3] * (TEACHER_DIM - 3))


def knowledge_with(user: torch.Tensor, item: torch.Tensor) -> Knowledge:
    n_users, n_items = len(user), len(item)
    return Knowledge({"user": user, "item": item, "text": torch.zeros(n_items, 2),
                      "top_items": torch.zeros(n_users, 1, dtype=torch.long), "top_scores": torch.zeros(n_users, 1),
                      "top_confidence": torch.zeros(n_users, 1), "knn_items": torch.ones(n_items, 1, dtype=torch.long),
                      "knn_similarity": torch.zeros(n_items, 1)})


@pytest.fixture(scope="module")
def teacher():
    generator = torch.Generator().manual_seed(0)
    rotation, _ = torch.linalg.qr(torch.randn(TEACHER_DIM, TEACHER_DIM, generator=generator))
    user = (torch.randn(N_USERS, TEACHER_DIM, generator=generator) * SCALES) @ rotation
    item = (torch.randn(N_ITEMS, TEACHER_DIM, generator=generator) * SCALES) @ rotation
    return knowledge_with(user, item), rotation


def test_pca_keeps_the_teachers_top_directions_at_the_students_dim_and_scale(teacher):
    knowledge, rotation = teacher
    student = MatrixFactorization(N_USERS, N_ITEMS, dim=3)
    init_std = student.item_embedding.weight.std().item()
    report = init_from_teacher(student, knowledge, "pca")
    assert report["method"] == "pca" and report["student_dim"] == 3 and report["teacher_dim"] == TEACHER_DIM
    assert report["tables"] == ["item", "user"]
    stacked = torch.cat([knowledge.tensors["user"], knowledge.tensors["item"]])
    energy = torch.linalg.svdvals(stacked).pow(2)
    assert report["explained_variance"] == pytest.approx(float(energy[:3].sum() / energy.sum()), rel=1e-4)
    assert report["explained_variance"] > 0.95  # the 3 strong directions hold almost everything
    assert student.item_embedding.weight.shape == (N_ITEMS, 3)
    assert student.item_embedding.weight.std().item() == pytest.approx(init_std, rel=1e-4)
    # Up to scale, the student's item vectors are the teacher's coordinates in its top-3 subspace:
    # a linear map from the student's 3 dims reproduces the teacher's projection on that subspace.
    top = rotation[:3]  # the strong directions (rows of the rotation)
    teacher_top = knowledge.tensors["item"] @ top.T
    fit = torch.linalg.lstsq(student.item_embedding.weight.detach(), teacher_top).solution
    residual = (student.item_embedding.weight.detach() @ fit - teacher_top).pow(2).sum() / teacher_top.pow(2).sum()
    assert residual < 0.02


def test_pca_preserves_the_teachers_ranking_of_items_for_each_user(teacher):
    knowledge, _ = teacher
    student = MatrixFactorization(N_USERS, N_ITEMS, dim=8)
    init_from_teacher(student, knowledge, "pca")
    teacher_best = (knowledge.tensors["user"] @ knowledge.tensors["item"].T).argmax(dim=1)
    student_best = student.score(torch.arange(N_USERS)).argmax(dim=1)
    assert (teacher_best == student_best).float().mean() > 0.9


def test_projection_maps_the_teacher_onto_the_students_current_embeddings(teacher):
    knowledge, _ = teacher
    student = MatrixFactorization(N_USERS, N_ITEMS, dim=4)
    with torch.no_grad():  # a student that already lives in a linear image of the teacher's space
        mapping = torch.randn(TEACHER_DIM, 4, generator=torch.Generator().manual_seed(1))
        student.user_embedding.weight.copy_(knowledge.tensors["user"] @ mapping)
        student.item_embedding.weight.copy_(knowledge.tensors["item"] @ mapping)
    before = student.item_embedding.weight.detach().clone()
    report = init_from_teacher(student, knowledge, "projection")
    assert report["r2"] == pytest.approx(1.0, abs=1e-4)
    torch.testing.assert_close(student.item_embedding.weight, before, atol=1e-3, rtol=1e-3)


def test_sasrec_items_are_initialised_and_its_padding_row_kept(teacher):
    knowledge, _ = teacher
    student = SASRec(N_USERS, N_ITEMS, dim=4, n_heads=1, max_len=5)
    report = init_from_teacher(student, knowledge, "pca")
    assert report["tables"] == ["item"]
    assert torch.all(student.item_embedding.weight[0] == 0)
    assert student.item_embedding.weight[1:].std().item() == pytest.approx(0.02, rel=0.2)


def test_bad_requests_are_refused(teacher):
    knowledge, _ = teacher
    with pytest.raises(DistillrecError, match="unknown init 'svd'; expected one of: pca, projection"):
        init_from_teacher(MatrixFactorization(N_USERS, N_ITEMS, dim=4), knowledge, "svd")
    with pytest.raises(DistillrecError, match="the student has 59 users, the teacher's knowledge 60"):
        init_from_teacher(MatrixFactorization(N_USERS - 1, N_ITEMS, dim=4), knowledge, "pca")
    with pytest.raises(DistillrecError, match="student dimension 32 exceeds"):
        init_from_teacher(MatrixFactorization(N_USERS, N_ITEMS, dim=32), knowledge, "pca")
