"""Ranking distillation: the student learns the teacher's top-K list, not its raw scores.

The teacher's contribution is an ordering (which items, in which order), so these losses
take only student scores, already gathered in the teacher's order; weights derived from the
teacher are constants.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from distillrec.distill.losses.base import Reduction, reduce, require

#: DLLM2Rec's published mix of (position, confidence, consistency) weights.
DLLM2REC_MIX = (0.3, 0.5, 0.1)


def position_weights(k: int, lam: float = 1.0, device: torch.device | str | None = None) -> torch.Tensor:
    """Tang & Wang's position importance: w_r proportional to exp(-r / lam), r = 1..k, sum 1.
    Small `lam` concentrates the weight on the teacher's first items."""
    require(lam > 0, "position_weights", f"lam must be > 0, got {lam}")
    weights = torch.exp(-torch.arange(1, k + 1, dtype=torch.float32, device=device) / lam)
    return weights / weights.sum()


def student_ranks(candidate_scores: torch.Tensor, reference_scores: torch.Tensor,
                  catalogue_size: int | None = None) -> torch.Tensor:
    """0-based rank the student gives each candidate [B, K]: how many reference items [B, M]
    it scores strictly higher. With `reference_scores` the full catalogue this is exact; with a
    uniform sample of M items, pass `catalogue_size` to scale the count up, as Tang & Wang do
    (floor(N * count / M)). `student_ranks(...) < K` is the "in the student's top-K" mask."""
    require(candidate_scores.shape[0] == reference_scores.shape[0], "student_ranks",
            f"candidate batch {candidate_scores.shape[0]} != reference batch {reference_scores.shape[0]}")
    above = (reference_scores.detach()[:, None, :] > candidate_scores.detach()[:, :, None]).sum(dim=-1)
    if catalogue_size is None:
        return above.float()
    return torch.floor(catalogue_size * above.float() / reference_scores.shape[1])


def rank_discrepancy_weights(student_rank: torch.Tensor, lam: float = 1.0, mu: float = 0.1) -> torch.Tensor:
    """Tang & Wang's hybrid weights [B, K]: position weight x tanh(max(mu * (r_student - r), 0)).

    The dynamic factor is zero for items the student already ranks at or above the teacher's
    position r (0-based) and grows toward 1 for items it ranks far below, so training effort
    goes where the student disagrees. As in the authors' code, the product is not renormalised.
    """
    k = student_rank.shape[-1]
    teacher_rank = torch.arange(k, dtype=student_rank.dtype, device=student_rank.device)
    dynamic = torch.tanh((mu * (student_rank.detach() - teacher_rank)).clamp_min(0))
    return position_weights(k, lam, student_rank.device) * dynamic


def importance_weights(ranks: torch.Tensor, teacher_conf: torch.Tensor, in_student_topk: torch.Tensor,
                       mix: tuple[float, float, float] = DLLM2REC_MIX, beta: float = 1.0) -> torch.Tensor:
    """DLLM2Rec's importance-aware weights [B, K] for the teacher's top-K (Cui et al. 2024).

    Three per-row distributions over the K items, mixed by `mix` = (a, b, c) and renormalised:
      position:    exp(-rank / beta), `ranks` 1-based positions in the teacher's list;
      confidence:  softmax(teacher_conf); DLLM2Rec passes minus the distance between the LLM's
                   generated item and the item, so higher means more confident;
      consistency: uniform over the items that are also in the student's current top-K
                   (`in_student_topk`, bool); zero for a row with none.
    Unlike DLLM2Rec's code, which mixes the raw 0/1 consistency indicator, each component
    sums to one before mixing, so `mix` states the components' relative importance directly.
    Inputs broadcast to [B, K]; the result is a constant ready for `ranking_distillation`.
    """
    a, b, c = mix
    require(min(mix) >= 0 and sum(mix) > 0, "importance_weights", f"mix must be non-negative, not all zero: {mix}")
    require(beta > 0, "importance_weights", f"beta must be > 0, got {beta}")
    ranks, teacher_conf, in_student_topk = torch.broadcast_tensors(
        ranks.detach().float(), teacher_conf.detach().float(), in_student_topk.detach().float())
    position = torch.exp(-ranks / beta)
    position = position / position.sum(dim=-1, keepdim=True)
    confidence = teacher_conf.softmax(dim=-1)
    consistency = in_student_topk / in_student_topk.sum(dim=-1, keepdim=True).clamp_min(1)
    mixed = a * position + b * confidence + c * consistency
    # A row can only sum to zero when a = b = 0 and it has no consistent item: it then
    # contributes no distillation rather than NaN.
    return mixed / mixed.sum(dim=-1, keepdim=True).clamp_min(1e-12)


def ranking_distillation(student_scores_topk: torch.Tensor, weights: torch.Tensor | None = None,
                         lam: float = 1.0, reduction: Reduction = "mean") -> torch.Tensor:
    """Student scores [B, K] of the teacher's top-K items (teacher order) as weighted positives.

    Tang & Wang 2018: -sum_r w_r log sigmoid(s_r), per row. Without `weights` the position
    weights exp(-r / lam) are used; pass `rank_discrepancy_weights` for the hybrid scheme or
    `importance_weights` for DLLM2Rec's.
    """
    k = student_scores_topk.shape[-1]
    if weights is None:
        weights = position_weights(k, lam, student_scores_topk.device)
    else:
        require(weights.shape == student_scores_topk.shape, "ranking-distillation",
                f"weights shape {tuple(weights.shape)} != scores shape {tuple(student_scores_topk.shape)}")
        weights = weights.detach()
    per_sample = -(weights * F.logsigmoid(student_scores_topk)).sum(dim=-1)
    return reduce(per_sample, reduction)


def relaxed_ranking(student_scores_topk: torch.Tensor, student_scores_rest: torch.Tensor,
                    reduction: Reduction = "mean") -> torch.Tensor:
    """Student scores [B, K] of the teacher's top-K (teacher order) and [B, M] of sampled others.

    DE-RRD (Kang et al. 2020): negative Plackett-Luce log-likelihood of the teacher's order of
    the K "interesting" items, each drawn ahead of all later ones and of every "uninteresting"
    item, whose own order is left free:
        -sum_k [ s_k - log( sum_{i>=k} exp s_i + sum_j exp u_j ) ].
    """
    require(student_scores_topk.shape[0] == student_scores_rest.shape[0], "relaxed-ranking",
            f"top-K batch {student_scores_topk.shape[0]} != rest batch {student_scores_rest.shape[0]}")
    # logsumexp over s_k..s_K for every k: a reversed cumulative logsumexp (stable for any scale).
    suffix = student_scores_topk.flip(-1).logcumsumexp(dim=-1).flip(-1)
    rest = student_scores_rest.logsumexp(dim=-1, keepdim=True)
    per_sample = -(student_scores_topk - torch.logaddexp(suffix, rest)).sum(dim=-1)
    return reduce(per_sample, reduction)
