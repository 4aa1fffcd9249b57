"""Feature distillation (FitNets, Romero et al. 2015): regress the teacher's hidden
representation from the student's through a small learned projector."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from distillrec.distill.losses.base import Reduction, reduce, require_same_shape
from distillrec.errors import DistillrecError


class Projector(nn.Module):
    """Maps student representations (dim `student_dim`) into the teacher's space.

    Linear by default (FitNets' regressor); with `hidden_dim` a 2-layer MLP, which helps
    when the teacher space is far from linear in the student's (e.g. a language model's).
    The projector is trained with the student and dropped when the student is served.
    """

    def __init__(self, student_dim: int, teacher_dim: int, hidden_dim: int | None = None):
        super().__init__()
        if hidden_dim is None:
            self.net: nn.Module = nn.Linear(student_dim, teacher_dim)
        else:
            self.net = nn.Sequential(nn.Linear(student_dim, hidden_dim), nn.ReLU(),
                                     nn.Linear(hidden_dim, teacher_dim))

    def forward(self, student: torch.Tensor) -> torch.Tensor:
        return self.net(student)


def feature_loss(student: torch.Tensor, teacher: torch.Tensor, projector: nn.Module | None = None,
                 kind: Literal["mse", "cosine"] = "mse", reduction: Reduction = "mean") -> torch.Tensor:
    """Student representations [B, d_s] (projected) vs teacher representations [B, d_t], row by row.

    "mse": mean squared error per row (FitNets); "cosine": 1 - cosine similarity per row,
    which ignores the teacher's norm (language-model embeddings often carry no meaning in it).
    Without a projector the two dimensions must already agree.
    """
    projected = student if projector is None else projector(student)
    require_same_shape("feature", projected, teacher)
    teacher = teacher.detach()
    if kind == "mse":
        per_sample = (projected - teacher).pow(2).mean(dim=-1)
    elif kind == "cosine":
        per_sample = 1.0 - F.cosine_similarity(projected, teacher, dim=-1)
    else:
        raise DistillrecError(f"feature: unknown kind {kind!r}; expected 'mse' or 'cosine'")
    return reduce(per_sample, reduction)
