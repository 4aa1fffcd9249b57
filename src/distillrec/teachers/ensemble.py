"""An ensemble teacher: fitted models blended by per-user standardised scores.

Strong teachers on MovieLens come cheapest as blends: the LM teacher knows the items' texts,
a closed-form item-item model (EASE) the co-occurrences, a wide MF the low-rank structure.
Each component is an ordinary fitted run (trained through the one loop, hash-verified on
load); the ensemble reads them, standardises each one's scores per user (z-scores over the
catalogue, so models with different score scales mix) and adds them with weights chosen on
the validation part only (a grid over the simplex). Test is never read here.

The ensemble trains nothing itself; its Knowledge is extracted like any teacher's:
- scores and rankings: the blend;
- user/item representations: each component's vectors side by side, scaled by sqrt(weight)
  and the user's score spread, so user · item reproduces the blend's ranking of a user's items
  up to the item-item terms the components' vectors cannot carry;
- text: the item texts encoded by the language model (cached), as for every teacher.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from distillrec.data.dataset import Dataset
from distillrec.data.split import Split
from distillrec.errors import DistillrecError
from distillrec.evaluation.evaluator import Evaluator
from distillrec.students.base import MODELS, Recommender
from distillrec.teachers.cache import encode_cached
from distillrec.teachers.encoders import TextEncoder
from distillrec.teachers.templates import DEFAULT_ITEM_TEMPLATE, TextTemplate



_EPS = 1e-8


def standardised(scores: torch.Tensor) -> torch.Tensor:
    """Per-row z-scores [B, N]: each user's scores minus their mean, over their spread."""
    mean = scores.mean(dim=1, keepdim=True)
    return (scores - mean) / scores.std(dim=1, keepdim=True).clamp(min=_EPS)


def simplex_grid(n: int, step: float) -> list[tuple[float, ...]]:
    """Every weight vector of n non-negative multiples of `step` summing to 1."""
    units = round(1 / step)
    if not np.isclose(units * step, 1.0) or units < 1:
        raise DistillrecError(f"ensemble: grid_step must divide 1 (e.g. 0.1, 0.25), got {step}")
    return [tuple(c / units for c in combo) for combo in itertools.product(range(units + 1), repeat=n)
            if sum(combo) == units]


@MODELS.register("ensemble")
class EnsembleTeacher(Recommender):
    def __init__(self, components: Sequence[Recommender], weights: Sequence[float], text_embeddings: torch.Tensor):
        super().__init__()
        if len(components) != len(weights) or not components:
            raise DistillrecError(f"ensemble: {len(components)} components and {len(weights)} weights")
        self.components = nn.ModuleList(components)
        for component in self.components:
            component.requires_grad_(False)  # fitted already: the ensemble trains nothing
        self.register_buffer("blend_weights", torch.tensor(list(weights), dtype=torch.float32))
        self.register_buffer("text_embeddings", text_embeddings.float().contiguous())

    @classmethod
    def build(cls, dataset: Dataset, split: Split, *, component_runs: Sequence[str], weights: Sequence[float] | None = None,
              grid_step: float = 0.1, encoder: str | None = None, template: str = DEFAULT_ITEM_TEMPLATE,
              cache_dir: str | os.PathLike | None = None, seed: int = 0) -> "EnsembleTeacher":
        """Load the fitted `component_runs` (same split as `split`) and blend them with
        `weights`, or with the weights whose blend has the best validation NDCG@10."""
        from distillrec import runs

        if not component_runs:
            raise DistillrecError("ensemble: component_runs lists no fitted runs")
        components = []
        for path in component_runs:
            _, run_split, model, _ = runs.load_run(Path(path))
            _check_same_split(path, run_split, split)
            components.append(model)
        texts = TextTemplate(template).render(dataset.items, "item")
        embeddings, info = encode_cached(TextEncoder(encoder), texts, cache_dir, template=template, progress=False)
        if weights is None:
            weights, valid = choose_weights(components, split, grid_step)
        elif len(weights) != len(components) or min(weights) < 0 or not np.isclose(sum(weights), 1.0):
            raise DistillrecError(f"ensemble: weights must be {len(components)} non-negative numbers summing to 1, "
                                  f"got {list(weights)}")
        else:
            valid = None
        model = cls(components, weights, embeddings)
        model.selection = {"weights": [float(w) for w in weights], "valid_ndcg@10": valid,
                           "components": [str(p) for p in component_runs], "grid_step": grid_step}
        model.text_cost = {"encode_seconds": info.seconds, "cache_hit": info.hit, "n_texts": len(texts)}
        model.set_history(split.history("valid"))
        return model

    def read_history(self, interactions: pd.DataFrame) -> None:
        for component in self.components:
            component.set_history(interactions)

    def score(self, users: torch.Tensor) -> torch.Tensor:
        return sum(w * standardised(c.score(users)) for w, c in zip(self.blend_weights.tolist(), self.components))

    def pair_scores(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self.score(users).gather(1, items)

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        raise DistillrecError("ensemble blends fitted runs; it has no training loss of its own")

    def representations(self) -> dict[str, torch.Tensor]:
        users, items = [], []
        for weight, component in zip(self.blend_weights.tolist(), self.components):
            if weight == 0:
                continue
            reps = component.representations()
            all_users = torch.arange(reps["user"].shape[0])
            # A user's z-score divides by the spread of their scores: fold it into the user side.
            spread = torch.cat([component.score(chunk).std(dim=1) for chunk in all_users.split(1024)])
            users.append(reps["user"] * (weight ** 0.5) / spread.clamp(min=_EPS).unsqueeze(1))
            items.append(reps["item"] * weight ** 0.5)
        return {"user": torch.cat(users, dim=1), "item": torch.cat(items, dim=1)}

    def num_parameters(self) -> int:
        return sum(c.num_parameters() for c in self.components)


def choose_weights(components: Sequence[Recommender], split: Split, step: float) -> tuple[tuple[float, ...], float]:
    """The grid weights with the best validation NDCG@10 (ties: the first in grid order)."""
    evaluator = Evaluator(split, ks=(10,))
    visible = split.history("valid")
    users = torch.arange(split.n_users)
    standardised_scores = []
    with torch.no_grad():
        for component in components:
            component.eval()
            component.set_history(visible)
            standardised_scores.append(torch.cat([standardised(component.score(chunk).float())
                                                  for chunk in users.split(1024)]))
    best, best_value = None, -1.0
    for weights in simplex_grid(len(components), step):
        def scorer(batch, w=weights):
            return sum(wi * s[batch] for wi, s in zip(w, standardised_scores) if wi)
        value = evaluator.evaluate(scorer, "valid")["ndcg@10"]
        if value > best_value:
            best, best_value = weights, value
    return best, best_value


def _check_same_split(path, run_split: Split, split: Split) -> None:
    same = (run_split.n_users, run_split.n_items) == (split.n_users, split.n_items) and all(
        run_split.part(p)[["user", "item"]].reset_index(drop=True).equals(split.part(p)[["user", "item"]].reset_index(drop=True))
        for p in ("train", "valid", "test"))
    if not same:
        raise DistillrecError(f"ensemble: {path} was fitted on another split than this teacher's "
                              "(same data, split and seed are required)")
