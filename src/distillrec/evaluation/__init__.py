"""Evaluation: top-K metrics, the full-ranking evaluator, and reference scorers."""

from distillrec.evaluation.baselines import PopularityScorer, RandomScorer
from distillrec.evaluation.evaluator import Evaluator, Scorer, evaluate, rank_top_k

__all__ = ["Evaluator", "PopularityScorer", "RandomScorer", "Scorer", "evaluate", "rank_top_k"]
