"""Relational distillation: the student copies the *structure* of the teacher's batch
(distances, angles, similarities, neighbourhoods), not its coordinates, so student and
teacher dimensions may differ and no projector is needed."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from distillrec.distill.losses.base import require, require_same_rows

_EPS = 1e-12


def _gram(x: torch.Tensor) -> torch.Tensor:
    # Centring changes no difference x_i - x_j but keeps the Gram-matrix identities below
    # from cancelling catastrophically when all rows share a large offset.
    x = x - x.mean(dim=0, keepdim=True)
    return x @ x.T


def _distances(gram: torch.Tensor) -> torch.Tensor:
    """Euclidean distances from a Gram matrix: B x B instead of a B x B x d difference tensor.
    The clamp keeps sqrt differentiable on the diagonal (distance 0)."""
    sq = gram.diagonal()
    return (sq[:, None] + sq[None, :] - 2 * gram).clamp_min(_EPS).sqrt()


def _off_diagonal(n: int, device: torch.device) -> torch.Tensor:
    return ~torch.eye(n, dtype=torch.bool, device=device)


def _normalised_distances(x: torch.Tensor) -> torch.Tensor:
    """Pairwise distances (i != j) divided by their mean, as in RKD: scale-free."""
    distances = _distances(_gram(x))[_off_diagonal(len(x), x.device)]
    return distances / distances.mean().clamp_min(_EPS)


def rkd_distance(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Pairwise distances of a batch [B, d_s] vs [B, d_t], each normalised by its mean (RKD-D).

    Park et al. 2019: Huber loss between the two sets of mean-normalised distances over all
    ordered pairs i != j. Invariant to a global scale of either side.
    """
    require_same_rows("rkd-distance", student, teacher)
    return F.smooth_l1_loss(_normalised_distances(student), _normalised_distances(teacher.detach()))


def _triplet_cosines(x: torch.Tensor) -> torch.Tensor:
    """cos of the angle at vertex j between x_i and x_k, for all distinct (j, i, k).

    <x_i - x_j, x_k - x_j> = G_ik - G_ij - G_jk + G_jj, so the B^3 angles come from the Gram
    matrix without ever forming the B x B x d difference tensor Park et al.'s code builds.
    """
    gram = _gram(x)
    distances = _distances(gram)
    sq = gram.diagonal()
    inner = gram[None, :, :] - gram[:, :, None] - gram[:, None, :] + sq[:, None, None]
    cosines = inner / (distances[:, :, None] * distances[:, None, :])
    n = len(x)
    off = _off_diagonal(n, x.device)
    distinct = off[:, :, None] & off[:, None, :] & off[None, :, :]
    return cosines[distinct]


def rkd_angle(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Angles formed by every triplet of a batch [B, d_s] vs [B, d_t] (RKD-A).

    Park et al. 2019: Huber loss between cos angle(x_i - x_j, x_k - x_j) of student and teacher
    over distinct triplets. Costs O(B^3) memory: keep B in the low hundreds.
    """
    require_same_rows("rkd-angle", student, teacher)
    require(len(student) >= 3, "rkd-angle", "needs at least 3 rows to form triplets")
    return F.smooth_l1_loss(_triplet_cosines(student), _triplet_cosines(teacher.detach()))


def _row_normalised_gram(x: torch.Tensor) -> torch.Tensor:
    x = x.reshape(len(x), -1)
    return F.normalize(x @ x.T, p=2, dim=1)


def similarity_preserving(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Row-normalised Gram matrices of a batch [B, ...] vs [B, ...] (Tung & Mori 2019).

    ||G_s - G_t||_F^2 / B^2 with G = row-L2-normalise(A A^T): invariant to rotations of
    either representation space and to a global scale.
    """
    require(student.shape[0] == teacher.shape[0], "similarity-preserving",
            f"student batch {student.shape[0]} != teacher batch {teacher.shape[0]}")
    difference = _row_normalised_gram(student) - _row_normalised_gram(teacher.detach())
    return difference.pow(2).sum() / len(student) ** 2


def neighbour_graph(student_items: torch.Tensor, knn_index: torch.Tensor,
                    knn_weight: torch.Tensor | None = None, temperature: float = 0.1,
                    anchors: torch.Tensor | None = None) -> torch.Tensor:
    """Student item embeddings [n, d] vs the teacher's k-nearest-neighbour graph [n, k].

    For each anchor item i, a softmax over the cosine similarities (/ temperature) between
    i and every other item of `student_items` is the student's neighbour distribution; the
    teacher's is `knn_weight` (row-normalised; uniform over the k neighbours when None).
    The loss is their cross-entropy, averaged over anchors: it pulls i toward its teacher
    neighbours and pushes it from all other items (an NCA / SNE-style objective).

    Why all items as negatives rather than sampled ones: the loss is exact and deterministic,
    and one [b, n] similarity matrix is cheap for catalogues of a few thousand items. For a
    large catalogue pass `anchors` (LongTensor [b]) and `knn_index[anchors]`: only those
    rows are scored, each still against all n items (cost O(b * n * d)).
    """
    n = len(student_items)
    require(temperature > 0, "neighbour-graph", f"temperature must be > 0, got {temperature}")
    rows = torch.arange(n, device=student_items.device) if anchors is None else anchors
    _check_graph(n, rows, knn_index)
    target = _teacher_distribution(knn_index, knn_weight)

    normalised = F.normalize(student_items, dim=-1)
    logits = normalised[rows] @ normalised.T / temperature
    # An item is never its own neighbour candidate: its self-similarity is always maximal.
    logits = logits.masked_fill(F.one_hot(rows, n).bool(), float("-inf"))
    log_probs = logits.log_softmax(dim=1).gather(1, knn_index)
    return -(target * log_probs).sum(dim=1).mean()


def _check_graph(n: int, rows: torch.Tensor, knn_index: torch.Tensor) -> None:
    require(rows.dtype == torch.long and bool(((rows >= 0) & (rows < n)).all()), "neighbour-graph",
            f"anchors must be a LongTensor of item indices in [0, {n})")
    require(knn_index.dim() == 2 and knn_index.shape[0] == len(rows), "neighbour-graph",
            f"knn_index must be [{len(rows)}, k] (one row per anchor), got {tuple(knn_index.shape)}")
    require(knn_index.dtype == torch.long, "neighbour-graph",
            f"knn_index must be a LongTensor, got {knn_index.dtype}")
    require(bool(((knn_index >= 0) & (knn_index < n)).all()), "neighbour-graph",
            f"knn_index holds item indices outside [0, {n})")
    require(not bool((knn_index == rows[:, None]).any()), "neighbour-graph",
            "knn_index lists an item as its own neighbour; drop self-neighbours")


def _teacher_distribution(knn_index: torch.Tensor, knn_weight: torch.Tensor | None) -> torch.Tensor:
    """The teacher's neighbour distribution [b, k]: normalised weights, or uniform."""
    if knn_weight is None:
        return torch.full(knn_index.shape, 1.0 / knn_index.shape[1], device=knn_index.device)
    require(knn_weight.shape == knn_index.shape, "neighbour-graph",
            f"knn_weight shape {tuple(knn_weight.shape)} != knn_index shape {tuple(knn_index.shape)}")
    knn_weight = knn_weight.detach()
    require(bool((knn_weight >= 0).all()) and bool((knn_weight.sum(dim=1) > 0).all()),
            "neighbour-graph", "knn_weight must be non-negative with a positive sum per row")
    return knn_weight / knn_weight.sum(dim=1, keepdim=True)
