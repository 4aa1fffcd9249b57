"""Knowledge distillation on tensors: losses (registered in `KD_LOSSES`) and their weighting."""

from distillrec.distill.losses import KD_LOSSES
from distillrec.distill.weighting import SCHEDULES, WEIGHTINGS

__all__ = ["KD_LOSSES", "SCHEDULES", "WEIGHTINGS"]
