"""What every model (student or teacher) gives the one training loop: a loss and a scorer.

Like RecBole's `calculate_loss` / `full_sort_predict`, a model only says how to compute its
loss on a batch and how to score the full catalog for a batch of users; the Trainer does the
rest (epochs, early stopping, checkpoints, resume, progress).
"""

from __future__ import annotations

import pandas as pd
import torch
from torch import nn

from distillrec.registry import Registry

MODELS: Registry[type["Recommender"]] = Registry("model")


class Recommender(nn.Module):
    #: which batches the model trains on: "pairs" (user, positive item, sampled negatives)
    #: or "sequences" (each user's chronological history, next-item targets).
    batch_kind: str = "pairs"

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Scalar training loss for one batch (recommendation loss only; KD is added outside)."""
        raise NotImplementedError

    def set_history(self, interactions: "pd.DataFrame") -> None:
        """Everything the model may see before scoring (train for validation; train + valid
        for test; plus revealed interactions of cold users). History-based models (SASRec,
        attention pooling towers) build their inputs here; ID models ignore it."""

    def score(self, users: torch.Tensor) -> torch.Tensor:
        """Scores of every item for each user index in `users`: shape [len(users), n_items]."""
        raise NotImplementedError

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def size_bytes(self) -> int:
        tensors = list(self.parameters()) + list(self.buffers())
        return sum(t.numel() * t.element_size() for t in tensors)
