"""Lightweight student recommenders: MF, two-tower with side features, sequential (SASRec,
GRU4Rec), content (hashed title n-grams + attributes: scores new items without an ID).

Importing this package registers every student in `MODELS` by name.
"""

from distillrec.students import content, gru4rec, mf, sasrec, two_tower  # noqa: F401  (registration)
from distillrec.students.base import MODELS, Recommender

__all__ = ["MODELS", "Recommender"]
