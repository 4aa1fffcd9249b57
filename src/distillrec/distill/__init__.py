"""Knowledge distillation: the methods config names (`METHODS`, in objective), their tensor
losses (distill.losses) and their weighting."""

from distillrec.distill.objective import METHODS
from distillrec.distill.weighting import SCHEDULES, WEIGHTINGS

__all__ = ["METHODS", "SCHEDULES", "WEIGHTINGS"]
