"""Reference scorers that need no training, evaluated like any model."""

from __future__ import annotations

import numpy as np
import torch

from distillrec.data.split import Split


class PopularityScorer:
    """Scores every item by its number of train interactions, the same for every user."""

    def __init__(self, split: Split):
        counts = np.bincount(split.train["item"].to_numpy(np.int64), minlength=split.n_items)
        self.counts = torch.from_numpy(counts.astype(np.float32))

    def __call__(self, users: torch.Tensor) -> torch.Tensor:
        # A fresh tensor per call: callers may modify the scores in place.
        return self.counts.repeat(len(users), 1)


class RandomScorer:
    """Uniform random scores that depend only on (seed, user): the same user gets the same
    scores whatever the batch size or call order, so evaluations are reproducible."""

    def __init__(self, n_items: int, seed: int = 0):
        self.n_items, self.seed = n_items, seed

    def __call__(self, users: torch.Tensor) -> torch.Tensor:
        rows = [np.random.default_rng([self.seed, int(user)]).random(self.n_items, dtype=np.float32)
                for user in users.tolist()]
        return torch.from_numpy(np.stack(rows)) if rows else torch.empty(0, self.n_items)
