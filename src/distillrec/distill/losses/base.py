"""The input checks and reduction every distillation loss shares.

Every loss takes plain tensors and treats the teacher's side as a constant: it is detached
inside the loss, so no gradient can reach a teacher even if the caller forgot `no_grad`.
"""

from __future__ import annotations

from typing import Literal

import torch

from distillrec.errors import DistillrecError

#: per-sample losses return the batch mean ("mean") or one value per row ("none"), so the
#: objective can apply per-sample weights such as `confidence_weights` before averaging.
Reduction = Literal["mean", "none"]


def require(condition: bool, loss: str, problem: str) -> None:
    """Raise a DistillrecError naming the loss when its inputs are malformed: broadcasting
    would otherwise turn a shape mistake into a silently wrong loss."""
    if not condition:
        raise DistillrecError(f"{loss}: {problem}")


def require_same_shape(loss: str, student: torch.Tensor, teacher: torch.Tensor) -> None:
    require(student.shape == teacher.shape, loss,
            f"student shape {tuple(student.shape)} != teacher shape {tuple(teacher.shape)}")


def require_same_rows(loss: str, student: torch.Tensor, teacher: torch.Tensor) -> None:
    """Relation losses compare a batch with itself, so only the batch sizes must agree
    (student and teacher dimensions may differ: that is the point of relational KD)."""
    require(student.dim() == 2 and teacher.dim() == 2, loss,
            f"expected 2-D [batch, dim] inputs, got {student.dim()}-D and {teacher.dim()}-D")
    require(student.shape[0] == teacher.shape[0], loss,
            f"student batch {student.shape[0]} != teacher batch {teacher.shape[0]}")
    require(student.shape[0] >= 2, loss, "needs at least 2 rows to form pairs")


def reduce(per_sample: torch.Tensor, reduction: Reduction) -> torch.Tensor:
    if reduction == "mean":
        return per_sample.mean()
    if reduction == "none":
        return per_sample
    raise DistillrecError(f"unknown reduction {reduction!r}; expected 'mean' or 'none'")
