import itertools

import pytest
import torch
import torch.nn.functional as F

from distillrec.distill.losses import neighbour_graph, rkd_angle, rkd_distance, similarity_preserving
from distillrec.errors import DistillrecError


def _orthogonal(d_in: int, d_out: int, seed: int) -> torch.Tensor:
    """A [d_in, d_out] matrix with orthonormal rows: an isometric embedding of R^d_in."""
    q, _ = torch.linalg.qr(torch.randn(d_out, d_out, generator=torch.Generator().manual_seed(seed)))
    return q[:d_in]


@pytest.fixture
def teacher() -> torch.Tensor:
    return torch.randn(10, 8, generator=torch.Generator().manual_seed(1))


# Reference implementations straight from the papers' definitions (loops, no tricks), to
# check the vectorised Gram-matrix versions.
def _rkd_distance_reference(student, teacher):
    def normalised(x):
        d = torch.stack([(x[i] - x[j]).norm() for i, j in itertools.permutations(range(len(x)), 2)])
        return d / d.mean()
    return F.smooth_l1_loss(normalised(student), normalised(teacher))


def _rkd_angle_reference(student, teacher):
    def cosines(x):
        return torch.stack([F.cosine_similarity(x[i] - x[j], x[k] - x[j], dim=0)
                            for j, i, k in itertools.permutations(range(len(x)), 3)])
    return F.smooth_l1_loss(cosines(student), cosines(teacher))


def test_rkd_matches_the_papers_definition():
    student, teacher = torch.randn(6, 3) + 5.0, torch.randn(6, 7)
    assert rkd_distance(student, teacher).item() == pytest.approx(
        _rkd_distance_reference(student, teacher).item(), rel=1e-4)
    assert rkd_angle(student, teacher).item() == pytest.approx(
        _rkd_angle_reference(student, teacher).item(), rel=1e-4)


@pytest.mark.parametrize("loss", [rkd_distance, rkd_angle, similarity_preserving])
def test_zero_for_an_isometric_copy_in_another_dimension_and_positive_otherwise(loss, teacher):
    student = teacher @ _orthogonal(8, 12, seed=2)
    assert loss(student, teacher).item() == pytest.approx(0.0, abs=1e-5)
    assert loss(torch.randn(10, 12), teacher).item() > 1e-3


@pytest.mark.parametrize("loss", [rkd_distance, rkd_angle, similarity_preserving])
def test_invariant_to_a_global_scale_of_the_teacher(loss, teacher):
    student = torch.randn(10, 4)
    assert loss(student, 7.5 * teacher).item() == pytest.approx(loss(student, teacher).item(), rel=1e-4)


@pytest.mark.parametrize("loss", [rkd_distance, rkd_angle])
def test_rkd_invariant_to_a_translation_of_the_teacher(loss, teacher):
    # A large common offset is where Gram-matrix distances lose float32 precision.
    student = torch.randn(10, 4)
    assert loss(student, teacher + 1000.0).item() == pytest.approx(loss(student, teacher).item(), rel=1e-3)


def test_similarity_preserving_invariant_to_rotations_of_student_space(teacher):
    student = torch.randn(10, 5)
    rotated = student @ _orthogonal(5, 5, seed=3)
    assert similarity_preserving(rotated, teacher).item() == pytest.approx(
        similarity_preserving(student, teacher).item(), rel=1e-5)


def test_similarity_preserving_matches_the_papers_definition():
    student, teacher = torch.randn(5, 3), torch.randn(5, 4)
    g_s = student @ student.T
    g_t = teacher @ teacher.T
    g_s = g_s / g_s.norm(dim=1, keepdim=True)
    g_t = g_t / g_t.norm(dim=1, keepdim=True)
    expected = ((g_s - g_t) ** 2).sum() / 25
    assert similarity_preserving(student, teacher).item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize("loss", [rkd_distance, rkd_angle, similarity_preserving])
def test_gradients_reach_the_student_never_the_teacher(loss):
    student = torch.randn(6, 3, requires_grad=True)
    teacher = torch.randn(6, 5, requires_grad=True)
    loss(student, teacher).backward()
    assert student.grad is not None and torch.isfinite(student.grad).all() and student.grad.abs().sum() > 0
    assert teacher.grad is None


def test_relation_losses_refuse_mismatched_batches():
    with pytest.raises(DistillrecError, match="student batch 4 != teacher batch 5"):
        rkd_distance(torch.randn(4, 3), torch.randn(5, 3))
    with pytest.raises(DistillrecError, match="at least 3 rows"):
        rkd_angle(torch.randn(2, 3), torch.randn(2, 3))


# Neighbour graph: 3 clusters of 4 items; each item's teacher neighbours are its cluster mates.
def _clustered_graph():
    cluster = torch.arange(12) // 4
    knn_index = torch.stack([torch.nonzero((cluster == cluster[i]) & (torch.arange(12) != i)).flatten()
                             for i in range(12)])
    return cluster, knn_index


def test_neighbour_graph_is_lower_when_teacher_neighbours_are_close_in_student_space():
    cluster, knn_index = _clustered_graph()
    centres = torch.eye(3, 6) * 5
    clustered = centres[cluster] + 0.1 * torch.randn(12, 6)
    scattered = clustered[torch.randperm(12, generator=torch.Generator().manual_seed(0))]
    assert neighbour_graph(clustered, knn_index) < 0.5 * neighbour_graph(scattered, knn_index)


def test_neighbour_graph_pulls_student_items_toward_their_teacher_neighbours():
    torch.manual_seed(0)
    cluster, knn_index = _clustered_graph()
    items = torch.randn(12, 6, requires_grad=True)
    optimiser = torch.optim.Adam([items], lr=0.05)
    for _ in range(100):
        optimiser.zero_grad()
        neighbour_graph(items, knn_index).backward()
        optimiser.step()
    similarity = F.normalize(items.detach(), dim=1) @ F.normalize(items.detach(), dim=1).T
    same = (cluster[:, None] == cluster[None, :]) & ~torch.eye(12, dtype=torch.bool)
    assert similarity[same].mean() > 0.7  # from about 0 for random vectors
    assert similarity[~same & ~torch.eye(12, dtype=torch.bool)].mean() < 0.0


def test_neighbour_graph_matches_its_definition():
    items = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    knn_index = torch.tensor([[1], [2], [0]])
    temperature = 0.5
    cosine = items @ items.T  # unit rows
    expected = []
    for i, j in enumerate([1, 2, 0]):
        others = [m for m in range(3) if m != i]  # an item is never its own candidate
        expected.append(-(cosine[i, j] / temperature - torch.logsumexp(cosine[i, others] / temperature, 0)))
    assert neighbour_graph(items, knn_index, temperature=temperature).item() == pytest.approx(
        torch.stack(expected).mean().item(), rel=1e-5)


def test_neighbour_graph_weights_and_anchors():
    _, knn_index = _clustered_graph()
    items = torch.randn(12, 6)
    # All the teacher's weight on the first neighbour is the k = 1 graph of that neighbour.
    weight = torch.zeros(12, 3)
    weight[:, 0] = 2.0
    assert neighbour_graph(items, knn_index, weight).item() == pytest.approx(
        neighbour_graph(items, knn_index[:, :1]).item(), rel=1e-5)
    # Anchors score a subset of rows, each still against every item.
    anchors = [1, 7, 10]
    per_anchor = [neighbour_graph(items, knn_index[a:a + 1], anchors=torch.tensor([a])) for a in anchors]
    anchors = torch.tensor(anchors)
    assert neighbour_graph(items, knn_index[anchors], anchors=anchors).item() == pytest.approx(
        torch.stack(per_anchor).mean().item(), rel=1e-5)


def test_neighbour_graph_gradients_and_teacher_weights_stay_constant():
    _, knn_index = _clustered_graph()
    items = torch.randn(12, 6, requires_grad=True)
    weight = torch.rand(12, 3, requires_grad=True)
    neighbour_graph(items, knn_index, weight).backward()
    assert items.grad is not None and items.grad.abs().sum() > 0
    assert weight.grad is None


def test_neighbour_graph_refuses_a_malformed_graph():
    _, knn_index = _clustered_graph()
    items = torch.randn(12, 6)
    with pytest.raises(DistillrecError, match="own neighbour"):
        neighbour_graph(items, torch.arange(12)[:, None])
    with pytest.raises(DistillrecError, match=r"outside \[0, 12\)"):
        neighbour_graph(items, knn_index + 1)
    with pytest.raises(DistillrecError, match="one row per anchor"):
        neighbour_graph(items, knn_index[:5])
    with pytest.raises(DistillrecError, match="anchors must be"):
        neighbour_graph(items, knn_index[:1], anchors=torch.tensor([12]))
    with pytest.raises(DistillrecError, match="knn_weight shape"):
        neighbour_graph(items, knn_index, torch.ones(12, 2))
