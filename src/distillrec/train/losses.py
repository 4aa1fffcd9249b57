"""Recommendation losses, registered by name so a model's `rec_loss` is a config string.

Two kinds, told apart by `RecLoss.candidates`:
  "sampled": fn(pos [N], neg [N, n_neg]) -> scalar; the batch carries sampled negatives.
  "full":    fn(logits [N, n_items], target [N]) -> scalar; scores the whole catalog, so the
             batch needs no negatives.
A model computes the scores its way (dot products, a transformer's hidden states) and hands
them to the loss, so pairs and sequence models share one set of losses. A sampled loss that
reads the scores only through the margins s_pos - s_neg (BPR) also has `margin_fn(margins
[N, n_neg])`: a model that computes margins more cheaply than two scores (MF: one dot product
u . (p - n) instead of two) trains through it (`Recommender.pair_margins`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import torch
import torch.nn.functional as F

from distillrec.registry import Registry


@dataclass(frozen=True)
class RecLoss:
    candidates: Literal["sampled", "full"]
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    margin_fn: Callable[[torch.Tensor], torch.Tensor] | None = None

    def __call__(self, scores: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        return self.fn(scores, other)


REC_LOSSES: Registry[RecLoss] = Registry("recommendation loss")


def _register(name: str, candidates: Literal["sampled", "full"], margin_fn=None):
    def decorator(fn):
        REC_LOSSES.register(name)(RecLoss(candidates, fn, margin_fn))
        return fn
    return decorator


def bpr_margin_loss(margins: torch.Tensor) -> torch.Tensor:
    """BPR from the margins s_pos - s_neg [N, n_neg]: -log sigmoid, averaged over every pair."""
    return -F.logsigmoid(margins).mean()


@_register("bpr", "sampled", margin_fn=bpr_margin_loss)
def bpr_loss(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """BPR: -log sigmoid(s_pos - s_neg), averaged over every (positive, negative) pair.
    With one negative this is RecBole's BPRLoss (logsigmoid instead of log(1e-10 + sigmoid):
    the same value, without the underflow)."""
    return bpr_margin_loss(pos.unsqueeze(-1) - neg)


@_register("sampled-softmax", "sampled")
def sampled_softmax_loss(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the positive against itself plus its sampled negatives (no logQ
    correction: with uniform negatives it would be a constant shift)."""
    logits = torch.cat([pos.unsqueeze(-1), neg], dim=-1)
    return -F.log_softmax(logits, dim=-1)[..., 0].mean()


@_register("softmax", "full")
def softmax_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Full-catalog cross-entropy (RecBole's SASRec "CE" loss)."""
    return F.cross_entropy(logits, target)
