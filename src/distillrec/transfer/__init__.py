"""Transfer learning: seed a student's parameters from a teacher's representations."""

from distillrec.transfer.init import INIT_METHODS, init_from_teacher

__all__ = ["INIT_METHODS", "init_from_teacher"]
