"""Two-tower student: ID embeddings plus side features plus a content slot, one MLP per side.

user tower: [ID embedding | gender, occupation, age-bucket embeddings]          -> MLP -> d
item tower: [ID embedding | mean genre embedding, year-bucket embedding | W·content] -> MLP -> d
score:      dot product, or cosine / temperature

The content slot takes a dense [n_items, d_c] matrix (e.g. distilled language-model text
embeddings). IDs are optional and only entities seen in training get one: the ID part of any
other user or item is zero, which is also what ID dropout shows the MLP during training, so
the feature path learns to stand alone and `encode_users` / `encode_items` score brand-new
users and items from their raw attributes.
"""

from __future__ import annotations

from typing import Any, Literal, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from distillrec.data.dataset import Dataset
from distillrec.data.split import Split
from distillrec.errors import DistillrecError
from distillrec.students.base import MODELS, Recommender
from distillrec.students.features import (
    DEFAULT_ITEM_COLUMNS, DEFAULT_USER_COLUMNS, FeatureColumn, FeatureEncoder, trained_id_masks,
)
from distillrec.train.losses import REC_LOSSES

Similarity = Literal["dot", "cosine"]


class FeatureEmbedder(nn.Module):
    """One embedding table per fitted column, outputs concatenated: [B, n_columns * dim].
    Multi-valued columns average their values' embeddings; padding and unknown values (index
    0) are left out of the mean, so an item with no known genre gets a zero genre vector."""

    def __init__(self, encoder: FeatureEncoder, dim: int):
        super().__init__()
        self.names = encoder.names
        self.tables = nn.ModuleDict({
            name: nn.EmbeddingBag(encoder.cardinality(name), dim, mode="mean", padding_idx=0)
            if encoder.kind(name) == "multi" else nn.Embedding(encoder.cardinality(name), dim)
            for name in self.names})
        self.out_dim = dim * len(self.names)

    def forward(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        missing = [name for name in self.names if name not in features]
        if missing:
            raise DistillrecError(f"feature tensors missing for column(s) {', '.join(missing)}; "
                                  f"expected {self.names} (FeatureEncoder.encode_records gives them)")
        return torch.cat([self.tables[name](features[name]) for name in self.names], dim=-1)


class Tower(nn.Module):
    """[ID embedding | feature embeddings | projected content] -> Linear-ReLU-Linear -> dim."""

    def __init__(self, *, n_ids: int, encoder: FeatureEncoder, content_dim: int, dim: int,
                 feature_dim: int, hidden: int, id_dropout: float):
        super().__init__()
        self.ids = nn.Embedding(n_ids, dim) if n_ids else None
        if self.ids is not None:
            nn.init.normal_(self.ids.weight, std=0.1)
        self.features = FeatureEmbedder(encoder, feature_dim)
        self.content = nn.Linear(content_dim, dim) if content_dim else None
        in_dim = (dim if self.ids is not None else 0) + self.features.out_dim + (dim if self.content is not None else 0)
        if in_dim == 0:
            raise DistillrecError("a tower has no inputs: enable IDs, give feature columns the "
                                  "table has, or give a content matrix")
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, dim))
        self.id_dropout = id_dropout

    def forward(self, features: Mapping[str, torch.Tensor], content: torch.Tensor | None = None,
                ids: torch.Tensor | None = None, has_id: torch.Tensor | None = None) -> torch.Tensor:
        """ids: None encodes from features (and content) alone. has_id: bool per row, False
        where the ID embedding was never trained (the ID part is then zero)."""
        batch = self._batch_size(features, content, ids)
        parts = []
        if self.ids is not None:
            parts.append(self._id_part(ids, has_id, batch))
        if self.features.names:
            parts.append(self.features(features))
        if self.content is not None:
            if content is None:
                raise DistillrecError("this tower has a content slot: give the content rows "
                                      f"([batch, {self.content.in_features}]) of the entities to encode")
            parts.append(self.content(content))
        return self.mlp(torch.cat(parts, dim=-1))

    def _id_part(self, ids: torch.Tensor | None, has_id: torch.Tensor | None, batch: int) -> torch.Tensor:
        if ids is None:
            return self.ids.weight.new_zeros(batch, self.ids.embedding_dim)
        keep = torch.ones(batch, dtype=torch.bool, device=ids.device) if has_id is None else has_id
        if self.training and self.id_dropout > 0:
            keep = keep & (torch.rand(batch, device=ids.device) >= self.id_dropout)
        return self.ids(ids) * keep.unsqueeze(-1).to(self.ids.weight.dtype)

    @staticmethod
    def _batch_size(features, content, ids) -> int:
        for tensor in (ids, content, *features.values()):
            if tensor is not None:
                return len(tensor)
        raise DistillrecError("nothing to encode: give IDs, feature tensors or content rows")


def tower_similarity(user_vectors: torch.Tensor, item_vectors: torch.Tensor, similarity: str,
                     temperature: float) -> torch.Tensor:
    """Scores of user vectors [B, d] against item vectors: [B, C, d] -> [B, C] (per-user
    candidates) or [N, d] -> [B, N] (a shared catalog); "dot" or "cosine" / temperature."""
    if similarity == "cosine":
        user_vectors = F.normalize(user_vectors, dim=-1) / temperature
        item_vectors = F.normalize(item_vectors, dim=-1)
    if item_vectors.dim() == 3:
        return torch.einsum("bd,bcd->bc", user_vectors, item_vectors)
    return user_vectors @ item_vectors.T


class FeatureTable(nn.Module):
    """Per-entity feature tensors kept as buffers, so they follow .to(device) and are saved
    with the weights (a served model needs them). Buffer names are prefixed so a column
    called like a Module attribute ("training") cannot clash."""

    def __init__(self, features: Mapping[str, torch.Tensor]):
        super().__init__()
        self.names = list(features)
        for name, tensor in features.items():
            self.register_buffer(f"column_{name}", tensor)

    def rows(self, index: torch.Tensor) -> dict[str, torch.Tensor]:
        return {name: getattr(self, f"column_{name}")[index] for name in self.names}


@MODELS.register("two-tower")
class TwoTower(Recommender):
    """Two towers over IDs, side features and content; see the module docstring.

    `build(dataset, split, **params)` is the usual entry point. Parameters: content
    ([n_items, d_c] tensor or array, or None: no content slot), use_ids, dim (output and ID
    embedding size), feature_dim (per feature column), hidden (MLP width), id_dropout
    (probability of zeroing a row's ID part in training), similarity ("dot" or "cosine",
    the latter divided by temperature), rec_loss, seed (initialisation).
    """

    batch_kind = "pairs"

    def __init__(self, *, user_encoder: FeatureEncoder, item_encoder: FeatureEncoder,
                 user_features: Mapping[str, torch.Tensor], item_features: Mapping[str, torch.Tensor],
                 user_has_id: torch.Tensor, item_has_id: torch.Tensor,
                 content: torch.Tensor | np.ndarray | None = None, use_ids: bool = True, dim: int = 64,
                 feature_dim: int = 16, hidden: int = 128, id_dropout: float = 0.1,
                 similarity: Similarity = "dot", temperature: float = 0.1, rec_loss: str = "bpr",
                 seed: int = 0):
        super().__init__()
        REC_LOSSES.get(rec_loss)  # fail on an unknown loss name now, not at the first batch
        if similarity not in ("dot", "cosine"):
            raise DistillrecError(f"two-tower: unknown similarity {similarity!r}; expected dot or cosine")
        if not 0.0 <= id_dropout < 1.0:
            raise DistillrecError(f"two-tower: id_dropout {id_dropout} must be in [0, 1)")
        n_users, n_items = len(user_has_id), len(item_has_id)
        content = None if content is None else torch.as_tensor(content, dtype=torch.float32)
        if content is not None and (content.dim() != 2 or content.shape[0] != n_items):
            raise DistillrecError(f"two-tower: content matrix has shape {tuple(content.shape)}, "
                                  f"expected [n_items={n_items}, d_c]")
        self.user_encoder, self.item_encoder = user_encoder, item_encoder
        self.similarity, self.temperature, self.rec_loss = similarity, temperature, rec_loss
        self.user_table = FeatureTable(user_features)
        self.item_table = FeatureTable(item_features)
        self.register_buffer("user_has_id", user_has_id.bool())
        self.register_buffer("item_has_id", item_has_id.bool())
        self.register_buffer("content", content)
        shared = dict(dim=dim, feature_dim=feature_dim, hidden=hidden, id_dropout=id_dropout)
        # Seeded initialisation that leaves the global random stream alone.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.user_tower = Tower(n_ids=n_users if use_ids else 0, encoder=user_encoder, content_dim=0, **shared)
            self.item_tower = Tower(n_ids=n_items if use_ids else 0, encoder=item_encoder,
                                    content_dim=0 if content is None else content.shape[1], **shared)

    #: what the type hints of build and `__init__` (where **params go) cannot say; see distillrec.params
    params_schema = {"dim": {"ge": 1}, "feature_dim": {"ge": 1}, "hidden": {"ge": 1},
                     "id_dropout": {"ge": 0, "lt": 1}, "temperature": {"gt": 0},
                     "rec_loss": {"choices": REC_LOSSES.names}}

    @classmethod
    def build(cls, dataset: Dataset, split: Split, *,
              user_columns: Sequence[FeatureColumn | Mapping[str, Any]] = DEFAULT_USER_COLUMNS,
              item_columns: Sequence[FeatureColumn | Mapping[str, Any]] = DEFAULT_ITEM_COLUMNS,
              **params) -> "TwoTower":
        """Fit the feature vocabularies on the dataset's side tables (attributes, not
        interactions, so no leakage) and give ID embeddings to the users and items that have
        training interactions. `params` go to the constructor (dim, id_dropout, content ...)."""
        user_encoder = FeatureEncoder.fit(dataset.users, user_columns)
        item_encoder = FeatureEncoder.fit(dataset.items, item_columns)
        user_has_id, item_has_id = trained_id_masks(split)
        return cls(user_encoder=user_encoder, item_encoder=item_encoder,
                   user_features=user_encoder.encode(dataset.users),
                   item_features=item_encoder.encode(dataset.items),
                   user_has_id=user_has_id, item_has_id=item_has_id, **params)

    # --- vectors -------------------------------------------------------------------------

    def user_vectors(self, users: torch.Tensor) -> torch.Tensor:
        """[len(users), d] for user indices of the dataset."""
        return self.user_tower(self.user_table.rows(users), ids=users, has_id=self.user_has_id[users])

    def item_vectors(self, items: torch.Tensor | None = None) -> torch.Tensor:
        """[len(items), d] for item indices of the dataset (all items when None)."""
        if items is None:
            items = torch.arange(len(self.item_has_id), device=self.item_has_id.device)
        content = None if self.content is None else self.content[items]
        return self.item_tower(self.item_table.rows(items), content, ids=items, has_id=self.item_has_id[items])

    def encode_users(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """[B, d] for new users from feature tensors (`user_encoder.encode_records(...)`)."""
        return self.user_tower(features)

    def encode_items(self, features: Mapping[str, torch.Tensor], content: torch.Tensor | None = None) -> torch.Tensor:
        """[B, d] for new items from feature tensors (`item_encoder.encode_records(...)`)
        and, when the model has a content slot, their content rows [B, d_c]."""
        return self.item_tower(features, content)

    def representations(self) -> dict[str, torch.Tensor]:
        """Output vectors of every user and item, for distillation and serving."""
        users = torch.arange(len(self.user_has_id), device=self.user_has_id.device)
        return {"user": self.user_vectors(users), "item": self.item_vectors()}

    # --- scores --------------------------------------------------------------------------

    def similarity_scores(self, user_vectors: torch.Tensor, item_vectors: torch.Tensor) -> torch.Tensor:
        return tower_similarity(user_vectors, item_vectors, self.similarity, self.temperature)

    def pair_scores(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """users [B], items [B, C] -> [B, C]."""
        item_vectors = self.item_vectors(items.reshape(-1)).reshape(*items.shape, -1)
        return self.similarity_scores(self.user_vectors(users), item_vectors)

    def score(self, users: torch.Tensor) -> torch.Tensor:
        return self.similarity_scores(self.user_vectors(users), self.item_vectors())
