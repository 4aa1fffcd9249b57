"""Contrastive alignment (RLMRec, Ren et al. 2024): each student representation must pick out
its own teacher representation among the batch's."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from distillrec.distill.losses.base import Reduction, reduce, require, require_same_shape


def info_nce(student_proj: torch.Tensor, teacher_proj: torch.Tensor, temperature: float = 0.1,
             symmetric: bool = False, reduction: Reduction = "mean") -> torch.Tensor:
    """Projected student [B, d] vs teacher [B, d] representations of the same rows, InfoNCE.

    Cosine similarities / temperature; row i's positive is teacher row i, the other B - 1
    teacher rows are its in-batch negatives. `symmetric` also classifies each teacher row
    among the student rows and averages the two directions (CLIP-style). The teacher side
    is a constant, so project the student into the teacher space (a `Projector`).
    """
    require_same_shape("info-nce", student_proj, teacher_proj)
    require(temperature > 0, "info-nce", f"temperature must be > 0, got {temperature}")
    logits = F.normalize(student_proj, dim=-1) @ F.normalize(teacher_proj.detach(), dim=-1).T / temperature
    targets = torch.arange(len(logits), device=logits.device)
    per_sample = F.cross_entropy(logits, targets, reduction="none")
    if symmetric:
        per_sample = (per_sample + F.cross_entropy(logits.T, targets, reduction="none")) / 2
    return reduce(per_sample, reduction)
