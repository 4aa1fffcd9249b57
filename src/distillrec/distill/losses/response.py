"""Response distillation (Hinton et al. 2015): match the teacher's softened score distribution."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from distillrec.distill.losses.base import Reduction, reduce, require, require_same_shape


def soft_target_kl(student_scores: torch.Tensor, teacher_scores: torch.Tensor, temperature: float = 1.0,
                   reduction: Reduction = "mean") -> torch.Tensor:
    """Student scores [B, C] vs teacher scores [B, C] as softmax(scores / T) distributions.

    T^2 * KL(p_teacher || p_student), summed over the C candidates. The candidates are the
    full catalogue or any sampled subset (the caller gathers both sides on the same items).
    Higher T gives softer targets; since the gradient of the softened KL shrinks as 1/T^2,
    the T^2 factor keeps its magnitude comparable across temperatures (Hinton et al.).
    Scores must be finite: mask excluded items by leaving them out, not with -inf.
    """
    require_same_shape("soft-target-kl", student_scores, teacher_scores)
    require(temperature > 0, "soft-target-kl", f"temperature must be > 0, got {temperature}")
    student_log_probs = F.log_softmax(student_scores / temperature, dim=-1)
    teacher_log_probs = F.log_softmax(teacher_scores.detach() / temperature, dim=-1)
    per_sample = (teacher_log_probs.exp() * (teacher_log_probs - student_log_probs)).sum(dim=-1)
    return reduce(per_sample * temperature ** 2, reduction)
