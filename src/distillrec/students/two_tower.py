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

from distillrec.data.dataset import Dataset
from distillrec.data.split import Split
from distillrec.errors import DistillrecError
from distillrec.students.base import MODELS, Recommender, blend
from distillrec.students.features import (
    DEFAULT_ITEM_COLUMNS, DEFAULT_USER_COLUMNS, FeatureColumn, FeatureEncoder, trained_id_masks,
)
from distillrec.students.towers import (FeatureTable, Tower, TowerGraph, restore_feature_model, tower_inputs,
                                       tower_similarity)
from distillrec.train.losses import REC_LOSSES

Similarity = Literal["dot", "cosine"]


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
    new_user_inputs = ("attributes", "recent_items")
    encodes_new_items = True

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
        self.similarity_kind, self.temperature, self.rec_loss = similarity, temperature, rec_loss
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

    def n_users_known(self) -> int:
        return len(self.user_has_id)

    # --- scores --------------------------------------------------------------------------

    def similarity(self, user_vectors: torch.Tensor, item_vectors: torch.Tensor) -> torch.Tensor:
        return tower_similarity(user_vectors, item_vectors, self.similarity_kind, self.temperature)

    def pair_scores(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """users [B], items [B, C] -> [B, C]."""
        item_vectors = self.item_vectors(items.reshape(-1)).reshape(*items.shape, -1)
        return self.similarity(self.user_vectors(users), item_vectors)

    def score(self, users: torch.Tensor) -> torch.Tensor:
        return self.similarity(self.user_vectors(users), self.item_vectors())

    # --- new users and items, transfer, serving --------------------------------------------

    def encode_new_user(self, *, attributes=None, recent_items=None) -> torch.Tensor:
        """The profile through the user tower and/or the mean of the recent items' vectors;
        with both, the direction halfway between them (as the served bundle does)."""
        parts = []
        if attributes:
            parts.append(self.encode_users(self.user_encoder.encode_records([dict(attributes)]))[0])
        if recent_items is not None and len(recent_items):
            items = self.item_vectors(recent_items)
            parts.append((F.normalize(items, dim=-1) if self.similarity_kind == "cosine" else items).mean(dim=0))
        if not parts:
            raise DistillrecError("a new user needs attributes and/or recent_items")
        return blend(parts, float(self.representations()["user"].norm(dim=-1).median()))

    def encode_new_item(self, records) -> torch.Tensor:
        if self.content is not None:
            raise DistillrecError("this two-tower student's item tower needs a content vector (language-model "
                                  "text embedding) for new items; use a student without a content slot")
        return self.encode_items(self.item_encoder.encode_records(records))

    def id_tables(self) -> dict[str, torch.Tensor]:
        tables = {side: tower.ids.weight.data for side, tower in (("user", self.user_tower), ("item", self.item_tower))
                  if tower.ids is not None}
        return tables or super().id_tables()

    def serving_vectors(self) -> dict[str, torch.Tensor]:
        """Cosine towers are normalised, users scaled by 1/temperature: then dot = score."""
        vectors = super().serving_vectors()
        if self.similarity_kind == "cosine":
            vectors = {"user": F.normalize(vectors["user"], dim=-1) / self.temperature,
                       "item": F.normalize(vectors["item"], dim=-1)}
        return vectors

    def serving_spec(self) -> dict[str, Any]:
        return {**super().serving_spec(), "similarity": self.similarity_kind, "temperature": self.temperature,
                "towers": True, "content_dim": None if self.content is None else int(self.content.shape[1])}

    def export_graphs(self):
        """The towers over (ids, has_id, feature columns[, content]) -> vector."""
        index = torch.tensor([0, 1])
        item_inputs = tower_inputs(self.item_table, self.item_has_id, index)
        if self.content is not None:
            item_inputs["content"] = self.content[index]
        return {"user_tower": (TowerGraph(self.user_tower, self.user_table.names, False),
                               tower_inputs(self.user_table, self.user_has_id, index)),
                "item_tower": (TowerGraph(self.item_tower, self.item_table.names, self.content is not None), item_inputs)}

    def saved_state(self) -> dict[str, Any]:
        return {"encoders": {"user": self.user_encoder.to_dict(), "item": self.item_encoder.to_dict()}}

    @classmethod
    def restore(cls, params, tensors, state) -> "TwoTower":
        return restore_feature_model(cls, params, tensors, state, content=tensors.get("content"))
