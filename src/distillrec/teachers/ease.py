"""EASE, optionally with the language model's item texts: a closed-form item-item teacher.

EASE (Steck, WWW 2019) learns one item-item weight matrix B with a zero diagonal by ridge
regression of the user-item matrix X on itself:

    B = I - P · diag(1 / diag(P)),   P = (XᵀX + l2·I)⁻¹,   score(u) = x_u B

On MovieLens-sized catalogues (thousands of items) the inverse takes seconds, and EASE is
among the strongest known models on these data (it is the reference "item-item model" the
fair-evidence issue asks for), so it makes a teacher clearly stronger than an MF student.

Text as side information (collective EASE): the Gram matrix gains `text_weight` times the
items' cosine similarities in the language model's space, G = XᵀX + α·T Tᵀ (T: normalised
MiniLM embeddings), as if every text dimension were an extra "user" who interacted with the
items in proportion to their text. α = 0 is plain, ID-only EASE: the same teacher with and
without the language model, which is how the text's share is measured.

The model has no trainable parameters: `build` solves it and the Trainer only validates.
`representations()` factorises B (truncated SVD, `rank` dimensions) so students can distil
user/item vectors whose dot products approximate EASE's scores.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import torch

from distillrec.data.dataset import Dataset
from distillrec.data.split import Split
from distillrec.errors import DistillrecError
from distillrec.students.base import MODELS, Recommender
from distillrec.teachers.cache import encode_cached
from distillrec.teachers.encoders import TextEncoder
from distillrec.teachers.templates import DEFAULT_ITEM_TEMPLATE, TextTemplate




def ease_weights(gram: np.ndarray, l2: float) -> np.ndarray:
    """EASE's closed form: B = I - P / diag(P) with P = (G + l2 I)^-1, diagonal zeroed."""
    if l2 <= 0:
        raise DistillrecError(f"ease: l2 must be > 0 (it keeps the inverse defined), got {l2}")
    gram = gram.astype(np.float64, copy=True)
    gram[np.diag_indices_from(gram)] += l2
    precision = np.linalg.inv(gram)
    weights = precision / -np.diag(precision)
    weights[np.diag_indices_from(weights)] = 0.0
    return weights


@MODELS.register("ease")
class EASETeacher(Recommender):
    #: what `distillrec tune` searches: the closed form has no training settings, only its ridge.
    tune_space = {"params.l2": {"low": 10.0, "high": 10000.0, "log": True}}

    def __init__(self, weights: torch.Tensor, text_embeddings: torch.Tensor, n_users: int, *, rank: int = 64):
        super().__init__()
        n_items = weights.shape[0]
        if weights.shape != (n_items, n_items) or text_embeddings.shape[0] != n_items:
            raise DistillrecError(f"ease: weights {tuple(weights.shape)} and text embeddings "
                                  f"{tuple(text_embeddings.shape)} do not describe one catalogue")
        if rank < 1:
            raise DistillrecError(f"ease: rank must be >= 1, got {rank}")
        self.n_users, self.n_items, self.rank = n_users, n_items, min(rank, n_items)  # at most full rank
        self.register_buffer("weights", weights.float().contiguous())
        self.register_buffer("text_embeddings", text_embeddings.float().contiguous())
        # The history as CSR rows (not saved: set from the split before every use).
        self.register_buffer("_indptr", torch.zeros(n_users + 1, dtype=torch.long), persistent=False)
        self.register_buffer("_indices", torch.zeros(0, dtype=torch.long), persistent=False)

    @classmethod
    def build(cls, dataset: Dataset, split: Split, *, l2: float = 500.0, text_weight: float = 0.0,
              rank: int = 64, encoder: str | None = None, template: str = DEFAULT_ITEM_TEMPLATE,
              cache_dir: str | os.PathLike | None = None, seed: int = 0) -> "EASETeacher":
        """Solve EASE on `split.train` (+ revealed), with `text_weight` × the items' text
        similarities added to the Gram matrix. `seed` is accepted for the shared build
        signature; the closed form draws nothing."""
        return cls.solve(dataset, split, cooccurrence=None, l2=l2, text_weight=text_weight, rank=rank,
                         encoder=encoder, template=template, cache_dir=cache_dir)

    @classmethod
    def solve(cls, dataset: Dataset, split: Split, *, cooccurrence: np.ndarray | None, l2: float,
              text_weight: float, rank: int, encoder: str | None, template: str,
              cache_dir: str | os.PathLike | None) -> "EASETeacher":
        """`build` with `cooccurrence` ([n_items, n_items] counts of users who interacted with
        both items, gathered elsewhere: the cross-domain source's users on the same titles)
        added to the Gram matrix, as if those users were more rows of the training matrix."""
        if text_weight < 0:
            raise DistillrecError(f"ease: text_weight must be >= 0, got {text_weight}")
        if cooccurrence is not None and cooccurrence.shape != (split.n_items, split.n_items):
            raise DistillrecError(f"ease: co-occurrence matrix {cooccurrence.shape} for {split.n_items} items; "
                                  "expected one row and column per item")
        texts = TextTemplate(template).render(dataset.items, "item")
        text_encoder = TextEncoder(encoder)
        embeddings, info = encode_cached(text_encoder, texts, cache_dir, template=template, progress=False)
        seen = split.history("valid")  # what training may use: train (+ revealed cold-user items)
        x = _interaction_matrix(seen, split.n_users, split.n_items)
        gram = x.T @ x
        if cooccurrence is not None:
            gram += cooccurrence
        if text_weight > 0:
            unit = torch.nn.functional.normalize(embeddings.double(), dim=1).numpy()
            gram += text_weight * (unit @ unit.T)
        model = cls(torch.from_numpy(ease_weights(gram, l2)), embeddings, split.n_users, rank=rank)
        model.text_cost = {"lm_parameters": text_encoder.num_parameters, "text_dim": text_encoder.dim,
                           "encode_seconds": info.seconds, "cache_hit": info.hit, "n_texts": len(texts),
                           "text_used": text_weight > 0}
        model.set_history(seen)
        return model

    def read_history(self, interactions: pd.DataFrame) -> None:
        users = interactions["user"].to_numpy(np.int64)
        items = interactions["item"].to_numpy(np.int64)
        order = np.lexsort((items, users))
        counts = np.bincount(users, minlength=self.n_users)
        self._indptr = torch.from_numpy(np.concatenate([[0], np.cumsum(counts)])).to(self.weights.device)
        self._indices = torch.from_numpy(items[order]).to(self.weights.device)

    def _history_rows(self, users: torch.Tensor) -> torch.Tensor:
        """Dense 0/1 history rows [B, n_items] of `users`."""
        starts, stops = self._indptr[users], self._indptr[users + 1]
        lengths = stops - starts
        rows = torch.repeat_interleave(torch.arange(len(users), device=users.device), lengths)
        offsets = torch.arange(int(lengths.sum()), device=users.device) - torch.repeat_interleave(
            torch.cumsum(lengths, 0) - lengths, lengths)
        out = torch.zeros(len(users), self.n_items, device=self.weights.device)
        out[rows, self._indices[torch.repeat_interleave(starts, lengths) + offsets]] = 1.0
        return out

    def score(self, users: torch.Tensor) -> torch.Tensor:
        return self._history_rows(users) @ self.weights

    def pair_scores(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self.score(users).gather(1, items)

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        raise DistillrecError("ease is solved in closed form by build(); it has no training loss")

    def representations(self) -> dict[str, torch.Tensor]:
        """B ≈ U S Vᵀ (rank `rank`): items V·S^½, users x_u·U·S^½, so user · item ≈ x_u B."""
        u, s, vh = torch.linalg.svd(self.weights.double())
        root = s[:self.rank].sqrt()
        left = (u[:, :self.rank] * root).float()
        items = (vh[:self.rank].T * root).float()
        users = torch.cat([self._history_rows(chunk) @ left
                           for chunk in torch.arange(self.n_users, device=left.device).split(1024)])
        return {"user": users, "item": items}

    def num_parameters(self) -> int:
        return self.weights.numel()


def _interaction_matrix(interactions: pd.DataFrame, n_users: int, n_items: int) -> np.ndarray:
    x = np.zeros((n_users, n_items), dtype=np.float64)
    x[interactions["user"].to_numpy(np.int64), interactions["item"].to_numpy(np.int64)] = 1.0
    return x
