"""Distillation losses: plain functions of tensors, usable on their own.

Config does not name these: it names the methods of `distillrec.distill.objective.METHODS`,
each of which applies one of them to a student and the teacher's knowledge. All losses take
plain tensors and detach the teacher's side: gradients reach the student (and its projector) only.
"""

from distillrec.distill.losses.contrastive import info_nce
from distillrec.distill.losses.feature import Projector, feature_loss
from distillrec.distill.losses.ranking import (
    importance_weights,
    position_weights,
    rank_discrepancy_weights,
    ranking_distillation,
    relaxed_ranking,
    student_ranks,
)
from distillrec.distill.losses.relation import (
    neighbour_graph,
    rkd_angle,
    rkd_distance,
    similarity_preserving,
)
from distillrec.distill.losses.response import soft_target_kl

__all__ = [
    "Projector", "feature_loss", "importance_weights", "info_nce", "neighbour_graph",
    "position_weights", "rank_discrepancy_weights", "ranking_distillation", "relaxed_ranking",
    "rkd_angle", "rkd_distance", "similarity_preserving", "soft_target_kl", "student_ranks",
]
