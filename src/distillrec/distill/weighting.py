"""How the distillation terms are weighted: fixed or learned per-loss weights, per-sample
confidence weights, and schedules that scale a weight over training.

A weighting is an nn.Module mapping {loss name: scalar loss} to the weighted total, so the
objective treats fixed and learned weights alike (a learned one's parameters must join the
optimiser). A schedule is a callable step -> multiplier; the caller decides whether a step
is an optimiser step or an epoch.
"""

from __future__ import annotations

import bisect
import math
from typing import Callable, Mapping, Sequence

import torch
from torch import nn

from distillrec.errors import DistillrecError
from distillrec.registry import Registry

WEIGHTINGS: Registry[type[nn.Module]] = Registry("loss weighting")

Schedule = Callable[[int], float]
SCHEDULES: Registry[Callable[..., Schedule]] = Registry("weight schedule")


def _require_names(kind: str, expected: Sequence[str], losses: Mapping[str, torch.Tensor]) -> None:
    if set(losses) != set(expected):
        raise DistillrecError(f"{kind} weighting is configured for losses {sorted(expected)} "
                              f"but was given {sorted(losses)}")


@WEIGHTINGS.register("fixed")
class FixedWeights(nn.Module):
    """Constant weights from config: total = sum_i lambda_i * L_i."""

    def __init__(self, weights: Mapping[str, float]):
        super().__init__()
        if not weights:
            raise DistillrecError("fixed weighting needs at least one loss weight")
        self._weights = dict(weights)

    def forward(self, losses: Mapping[str, torch.Tensor]) -> torch.Tensor:
        _require_names("fixed", list(self._weights), losses)
        return sum(self._weights[name] * loss for name, loss in losses.items())

    def weights(self) -> dict[str, float]:
        return dict(self._weights)


@WEIGHTINGS.register("uncertainty")
class UncertaintyWeighting(nn.Module):
    """Learned weights (Kendall et al. 2018): total = sum_i exp(-s_i) * L_i + s_i.

    s_i is a learned log-variance per loss. At the optimum exp(-s_i) = 1 / L_i, so a loss
    that stays large (noisy, hard to fit) is down-weighted, and the + s_i term stops every
    weight from collapsing to zero.
    """

    def __init__(self, names: Sequence[str], initial_log_variance: float = 0.0):
        super().__init__()
        if not names or len(set(names)) != len(names):
            raise DistillrecError(f"uncertainty weighting needs distinct loss names, got {list(names)}")
        self.names = list(names)
        self.log_variances = nn.Parameter(torch.full((len(names),), float(initial_log_variance)))

    def forward(self, losses: Mapping[str, torch.Tensor]) -> torch.Tensor:
        _require_names("uncertainty", self.names, losses)
        stacked = torch.stack([losses[name] for name in self.names])
        return (torch.exp(-self.log_variances) * stacked + self.log_variances).sum()

    def weights(self) -> dict[str, float]:
        """Current effective weights exp(-s_i), for logging."""
        return dict(zip(self.names, torch.exp(-self.log_variances.detach()).tolist()))


def confidence_weights(teacher_probs: torch.Tensor) -> torch.Tensor:
    """Per-sample weights [B] from the teacher's predictive distributions [B, C], mean 1.

    Confidence is 1 - H(p) / log C (1 for a one-hot prediction, 0 for a uniform one): it
    uses the whole distribution, not only the top probability. Multiply a per-sample loss
    (reduction="none") by these weights before averaging. A batch where the teacher is
    uniform everywhere gets weight 1 for every sample.
    """
    if teacher_probs.dim() != 2 or teacher_probs.shape[1] < 2:
        raise DistillrecError(f"confidence_weights expects teacher probabilities [B, C >= 2], "
                              f"got shape {tuple(teacher_probs.shape)}")
    probs = teacher_probs.detach()
    if bool((probs < 0).any()) or not torch.allclose(probs.sum(dim=1), torch.ones(len(probs), dtype=probs.dtype,
                                                                                  device=probs.device), atol=1e-4):
        raise DistillrecError("confidence_weights expects rows of non-negative probabilities summing to 1 "
                              "(apply softmax to scores first)")
    entropy = -(probs * probs.clamp_min(1e-12).log()).sum(dim=1)
    confidence = (1 - entropy / math.log(probs.shape[1])).clamp_min(0)
    mean = confidence.mean()
    if mean <= 0:
        return torch.ones_like(confidence)
    return confidence / mean


def _require_positive(name: str, value: float) -> None:
    if value <= 0:
        raise DistillrecError(f"schedule {name} must be > 0, got {value}")


@SCHEDULES.register("constant")
def constant(value: float = 1.0) -> Schedule:
    """The same multiplier at every step."""
    return lambda step: value


@SCHEDULES.register("linear-warmup")
def linear_warmup(steps: int) -> Schedule:
    """Ramps from 0 at step 0 to 1 at `steps`, then stays at 1: min(1, step / steps)."""
    _require_positive("steps", steps)
    return lambda step: min(1.0, step / steps)


@SCHEDULES.register("cosine-anneal")
def cosine_anneal(start: float, end: float, steps: int) -> Schedule:
    """Half a cosine from `start` at step 0 to `end` at `steps`, then stays at `end`."""
    _require_positive("steps", steps)

    def schedule(step: int) -> float:
        progress = min(step, steps) / steps
        return end + (start - end) * (1 + math.cos(math.pi * progress)) / 2
    return schedule


@SCHEDULES.register("step")
def step_schedule(milestones: Sequence[int], gamma: float = 0.1, start: float = 1.0) -> Schedule:
    """`start`, multiplied by `gamma` at each milestone reached (step >= milestone)."""
    bounds = list(milestones)
    if bounds != sorted(bounds):
        raise DistillrecError(f"step schedule milestones must be ascending, got {bounds}")
    return lambda step: start * gamma ** bisect.bisect_right(bounds, step)
