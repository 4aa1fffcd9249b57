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
from distillrec.train.losses import REC_LOSSES

MODELS: Registry[type["Recommender"]] = Registry("model")


class Recommender(nn.Module):
    #: which batches the model trains on: "pairs" (user, positive item, sampled negatives)
    #: or "sequences" (each user's chronological history, next-item targets).
    batch_kind: str = "pairs"
    #: name of the recommendation loss in `distillrec.train.losses.REC_LOSSES`.
    rec_loss: str = "bpr"
    #: batch size the Trainer uses when its config leaves it unset (RecBole's 2048 for pairs).
    default_batch_size: int = 2048

    @classmethod
    def build(cls, dataset, split, **params) -> "Recommender":
        """A model sized for `split` (n_users, n_items) that may read `dataset`'s user and item
        side tables; `params` are the model's own hyper-parameters from config."""
        raise NotImplementedError

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Scalar training loss for one batch (recommendation loss only; KD is added outside).

        The generic version serves "pairs" models: batch {"user": [B], "pos": [B]} plus
        "neg": [B, n_neg] for sampled losses. Sequence models override it."""
        rec = REC_LOSSES.get(self.rec_loss)
        if rec.candidates == "full":
            return rec(self.score(batch["user"]), batch["pos"])
        candidates = torch.cat([batch["pos"].unsqueeze(1), batch["neg"]], dim=1)
        scores = self.pair_scores(batch["user"], candidates)
        return rec(scores[:, 0], scores[:, 1:])

    def pair_scores(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Scores of candidate items per user: users [B], items [B, C] -> [B, C]."""
        raise NotImplementedError

    def set_history(self, interactions: "pd.DataFrame") -> None:
        """Everything the model may see before scoring (train for validation; train + valid
        for test; plus revealed interactions of cold users). History-based models (SASRec,
        attention pooling towers) build their inputs here; ID models ignore it."""

    def score(self, users: torch.Tensor) -> torch.Tensor:
        """Scores of every item for each user index in `users`: shape [len(users), n_items]."""
        raise NotImplementedError

    def representations(self) -> dict[str, torch.Tensor]:
        """{"user": [n_users, d], "item": [n_items, d]} for embedding models (distillation,
        serving). History-based models give the user vectors of the last `set_history`."""
        raise NotImplementedError(f"{type(self).__name__} has no user/item representations")

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def size_bytes(self) -> int:
        tensors = list(self.parameters()) + list(self.buffers())
        return sum(t.numel() * t.element_size() for t in tensors)
