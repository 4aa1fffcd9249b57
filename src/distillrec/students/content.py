"""Content student: item vectors from title text and attributes, so a new item needs no ID.

item tower: [ID embedding | genre, year-bucket embeddings | W·bag(hashed title n-grams)] -> MLP -> d
user tower: [ID embedding | gender, occupation, age-bucket embeddings | W·mean(history item vectors)] -> MLP -> d
score:      cosine / temperature (or dot), trained with the full-catalog softmax

The title goes through hashed word unigrams, word bigrams and character trigrams into one
`EmbeddingBag` (mean): no vocabulary to fit and no language model at encode time, so a title
never seen before still lands in the space through the n-grams it shares with known titles.
Distilled with the `feature` term (distill_student(..., {"feature": ...})), the item vectors
learn to predict the teacher's item representations; the term only sees a batch's positive
items and users, which are training interactions, so the teacher's vectors of cold items and
cold users are never used.

Items and users without training interactions never enter the loss, not even as negatives
(the softmax is restricted to trained items): a new item is unknown until it arrives. ID
dropout and a random per-row history cut show the feature path zero IDs and short histories
in training, which is what new items and new users look like at serving time.
"""

from __future__ import annotations

import re
import zlib
from typing import Any, Literal, Mapping, Sequence

import pandas as pd
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
from distillrec.students.towers import (
    PADDING, FeatureTable, TitleTowerGraph, Tower, TowerGraph, recent_history, restore_feature_model, tower_inputs,
    tower_similarity,
)
from distillrec.train.losses import REC_LOSSES

_WORD = re.compile(r"\w+")


# --------------------------------------------------------------------------- hashed n-grams

def title_ngrams(title: str) -> list[str]:
    """Word unigrams, word bigrams and character trigrams of a lower-cased title (each word
    framed by '#', so prefixes and suffixes are their own trigrams)."""
    words = _WORD.findall(str(title).lower())
    grams = [f"w:{w}" for w in words] + [f"b:{a} {b}" for a, b in zip(words, words[1:])]
    for word in words:
        framed = f"#{word}#"
        grams += [f"c:{framed[i:i + 3]}" for i in range(len(framed) - 2)]
    return grams


def hash_titles(titles: Sequence[Any], buckets: int, max_tokens: int = 128) -> torch.Tensor:
    """[len(titles), width] bucket ids in 1..buckets-1, padded with 0. crc32, not Python's
    salted hash(): the same title gets the same ids in every process."""
    rows = [[1 + zlib.crc32(g.encode("utf-8")) % (buckets - 1) for g in title_ngrams(t)][:max_tokens]
            for t in titles]
    width = max([len(r) for r in rows] + [1])
    out = torch.zeros(len(rows), width, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, :len(row)] = torch.tensor(row, dtype=torch.long)
    return out


# --------------------------------------------------------------------------- the model

@MODELS.register("content")
class ContentStudent(Recommender):
    """See the module docstring. `build(dataset, split, **params)` is the entry point.

    Parameters: dim (output size), text_dim (n-gram embedding size), buckets (hash space),
    feature_dim, hidden (MLP width), item_ids / user_ids (give trained entities an ID
    embedding), id_dropout, history (pool the user's history into the user tower),
    max_history, history_dropout (None: a per-row keep probability drawn uniformly, so
    training sees every history length; a number: that fixed drop rate), history_prior
    (pseudo-count shrinking short histories' mean toward zero), similarity
    ("cosine" / temperature, or "dot"), rec_loss (a full-catalog loss), seed.
    """

    batch_kind = "pairs"
    default_batch_size = 1024
    new_user_inputs = ("attributes", "recent_items")
    encodes_new_items = True

    def __init__(self, *, title_tokens: torch.Tensor, user_encoder: FeatureEncoder,
                 item_encoder: FeatureEncoder, user_features: Mapping[str, torch.Tensor],
                 item_features: Mapping[str, torch.Tensor], user_has_id: torch.Tensor,
                 item_has_id: torch.Tensor, dim: int = 64, text_dim: int = 64, buckets: int = 1 << 14,
                 feature_dim: int = 16, hidden: int = 128, item_ids: bool = True, user_ids: bool = True,
                 id_dropout: float = 0.3, history: bool = True, max_history: int = 50,
                 history_dropout: float | None = None, history_prior: float = 0.0,
                 similarity: Literal["cosine", "dot"] = "cosine",
                 temperature: float = 0.1, rec_loss: str = "softmax", seed: int = 0):
        super().__init__()
        if REC_LOSSES.get(rec_loss).candidates != "full":
            raise DistillrecError(f"content: rec_loss {rec_loss!r} samples negatives; use a full-catalog loss "
                                  "(softmax), which keeps items without training interactions out of the loss")
        if similarity not in ("cosine", "dot"):
            raise DistillrecError(f"content: unknown similarity {similarity!r}; expected cosine or dot")
        if history_dropout is not None and not 0.0 <= history_dropout < 1.0:
            raise DistillrecError(f"content: history_dropout {history_dropout} must be in [0, 1) or None")
        if buckets < 2 or max_history < 1:
            raise DistillrecError(f"content: buckets must be >= 2 and max_history >= 1, got {buckets}, {max_history}")
        n_users, n_items = len(user_has_id), len(item_has_id)
        if title_tokens.shape[0] != n_items:
            raise DistillrecError(f"content: {title_tokens.shape[0]} titles for {n_items} items")
        self.user_encoder, self.item_encoder = user_encoder, item_encoder
        self.buckets, self.similarity_kind, self.temperature = buckets, similarity, temperature
        self.rec_loss, self.history_dropout, self.max_history = rec_loss, history_dropout, max_history
        if history_prior < 0:
            raise DistillrecError(f"content: history_prior must be >= 0, got {history_prior}")
        self.history_prior = history_prior
        self.user_table = FeatureTable(user_features)
        self.item_table = FeatureTable(item_features)
        self.register_buffer("user_has_id", user_has_id.bool())
        self.register_buffer("item_has_id", item_has_id.bool())
        self.register_buffer("title_tokens", title_tokens.long())
        self.register_buffer("history", torch.full((n_users, max_history), PADDING, dtype=torch.long),
                             persistent=False)  # an input, set before every evaluation
        shared = dict(dim=dim, feature_dim=feature_dim, hidden=hidden, id_dropout=id_dropout)
        with torch.random.fork_rng(devices=[]):  # seeded init that leaves the global stream alone
            torch.manual_seed(seed)
            self.text = nn.EmbeddingBag(buckets, text_dim, mode="mean", padding_idx=0)
            self.item_tower = Tower(n_ids=n_items if item_ids else 0, encoder=item_encoder, content_dim=text_dim,
                                    **shared)
            self.user_tower = Tower(n_ids=n_users if user_ids else 0, encoder=user_encoder,
                                    content_dim=dim if history else 0, **shared)
        self.uses_history = history

    #: what the type hints of build and `__init__` (where **params go) cannot say; see distillrec.params
    params_schema = {"buckets": {"ge": 2}, "dim": {"ge": 1}, "text_dim": {"ge": 1}, "feature_dim": {"ge": 1},
                     "hidden": {"ge": 1}, "id_dropout": {"ge": 0, "lt": 1}, "max_history": {"ge": 1},
                     "history_dropout": {"ge": 0, "lt": 1}, "history_prior": {"ge": 0}, "temperature": {"gt": 0},
                     "rec_loss": {"choices": REC_LOSSES.names}}

    @classmethod
    def build(cls, dataset: Dataset, split: Split, *, buckets: int = 1 << 14,
              user_columns: Sequence[FeatureColumn | Mapping[str, Any]] = DEFAULT_USER_COLUMNS,
              item_columns: Sequence[FeatureColumn | Mapping[str, Any]] = DEFAULT_ITEM_COLUMNS,
              **params) -> "ContentStudent":
        """Hash the item titles, fit the attribute vocabularies on the side tables (no
        interactions: no leakage), give IDs to entities with training interactions and set
        the history to what training sees (train + revealed)."""
        if "title" not in dataset.items.columns:
            raise DistillrecError("content: the item table has no 'title' column; expected item titles "
                                  f"(columns: {', '.join(map(str, dataset.items.columns))})")
        user_encoder = FeatureEncoder.fit(dataset.users, user_columns)
        item_encoder = FeatureEncoder.fit(dataset.items, item_columns)
        user_has_id, item_has_id = trained_id_masks(split)
        model = cls(title_tokens=hash_titles(dataset.items["title"].tolist(), buckets),
                    user_encoder=user_encoder, item_encoder=item_encoder,
                    user_features=user_encoder.encode(dataset.users), item_features=item_encoder.encode(dataset.items),
                    user_has_id=user_has_id, item_has_id=item_has_id, buckets=buckets, **params)
        model.set_history(split.history("valid"))
        return model

    # --- vectors -------------------------------------------------------------------------

    def item_vectors(self, items: torch.Tensor | None = None) -> torch.Tensor:
        """[len(items), d] for item indices of the dataset (all items when None)."""
        if items is None:
            items = torch.arange(len(self.item_has_id), device=self.item_has_id.device)
        text = self.text(self.title_tokens[items])
        return self.item_tower(self.item_table.rows(items), text, ids=items, has_id=self.item_has_id[items])

    def encode_items(self, records: Sequence[Mapping[str, Any]]) -> torch.Tensor:
        """[len(records), d] item vectors of new items from their raw attributes alone.

        Each record is a mapping with "title" (str, required: e.g. "Heat"), "genres" (a list
        of genre names, e.g. ["Action", "Crime"]; optional) and "year" (a number, e.g. 1995;
        optional). Genres outside the training vocabulary and a missing year count as unknown.
        No ID and no language model are involved: cost is hashing plus a small MLP."""
        for index, record in enumerate(records):
            title = record.get("title") if isinstance(record, Mapping) else None
            if not isinstance(title, str) or not title.strip():
                raise DistillrecError(f"item record {index}: field 'title' must be a non-empty string, "
                                      f"got {title!r} (expected {{'title': str, 'genres': [str], 'year': int}})")
        if not records:
            return self.title_tokens.new_zeros(0, self.item_tower.mlp[-1].out_features, dtype=torch.float32)
        device = self.title_tokens.device
        tokens = hash_titles([r["title"] for r in records], self.buckets).to(device)
        features = {k: v.to(device) for k, v in self.item_encoder.encode_records(records).items()}
        with torch.no_grad():
            return self.item_tower(features, self.text(tokens))

    def encode_users(self, features: Mapping[str, torch.Tensor], history: torch.Tensor | None = None) -> torch.Tensor:
        """[B, d] for new users from profile tensors (`user_encoder.encode_records(...)`) and,
        optionally, the item indices they interacted with ([B, N], -1 padding)."""
        batch = len(next(iter(features.values())))
        if history is None:
            history = torch.full((batch, 1), PADDING, dtype=torch.long, device=self.history.device)
        pooled = self._pool(self.item_vectors(), history, history != PADDING) if self.uses_history else None
        return self.user_tower(features, pooled)

    def user_vectors(self, users: torch.Tensor, item_vectors: torch.Tensor | None = None) -> torch.Tensor:
        """[B, d] for user indices, pooling their history (`set_history`) over the items."""
        history = self.history[users]
        return self._user_vectors(users, item_vectors, history, history != PADDING)

    def _user_vectors(self, users, item_vectors, history, present) -> torch.Tensor:
        pooled = None
        if self.uses_history:
            pooled = self._pool(self.item_vectors() if item_vectors is None else item_vectors, history, present)
        return self.user_tower(self.user_table.rows(users), pooled, ids=users, has_id=self.user_has_id[users])

    def _pool(self, item_vectors: torch.Tensor, history: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """Mean of the present history items' vectors, shrunk toward zero by `history_prior`
        pseudo-items (sum / (count + prior)): one item says less than fifty. Zero when empty."""
        # A dense [B, n_items] weight matrix times the catalog: one matmul, several times
        # cheaper on CPU (forward and backward) than gathering [B, N, d] history vectors.
        present = present.to(item_vectors.dtype)
        weights = item_vectors.new_zeros(len(history), len(item_vectors)).scatter_add_(
            1, history.clamp(min=0), present)
        count = present.sum(1, keepdim=True) + self.history_prior
        return (weights / (count if self.history_prior else count.clamp(min=1))) @ item_vectors

    def representations(self) -> dict[str, torch.Tensor]:
        items = self.item_vectors()
        users = torch.arange(len(self.user_has_id), device=items.device)
        return {"user": torch.cat([self.user_vectors(chunk, items) for chunk in users.split(1024)]), "item": items}

    # --- the Recommender interface ---------------------------------------------------------

    def read_history(self, interactions: pd.DataFrame) -> None:
        self.history = recent_history(interactions, len(self.user_has_id), self.max_history).to(self.history.device)

    def similarity(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """users [B, d] against items [N, d] -> [B, N] or per-user candidates [B, C, d] -> [B, C]."""
        return tower_similarity(users, items, self.similarity_kind, self.temperature)

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        users, positives = batch["user"], batch["pos"]
        items = self.item_vectors()
        history = self.history[users]
        present = (history != PADDING) & (history != positives.unsqueeze(1))  # the answer is not an input
        if self.training:
            keep = (torch.rand(len(users), 1, device=users.device) if self.history_dropout is None
                    else torch.full((len(users), 1), 1.0 - self.history_dropout, device=users.device))
            present &= torch.rand(history.shape, device=users.device) < keep
        scores = self.similarity(self._user_vectors(users, items, history, present), items)
        scores = scores.masked_fill(~self.item_has_id, torch.finfo(scores.dtype).min)
        return REC_LOSSES.get(self.rec_loss)(scores, positives)

    def pair_scores(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        catalog = self.item_vectors()
        return self.similarity(self.user_vectors(users, catalog), catalog[items])

    def score(self, users: torch.Tensor) -> torch.Tensor:
        catalog = self.item_vectors()
        return self.similarity(self.user_vectors(users, catalog), catalog)

    # --- new users and items, transfer, serving --------------------------------------------

    def n_users_known(self) -> int:
        return len(self.user_has_id)

    def encode_new_user(self, *, attributes=None, recent_items=None) -> torch.Tensor:
        """The profile and the pooled recent items through the user tower, as in training."""
        if not attributes and (recent_items is None or not len(recent_items)):
            raise DistillrecError("a new user needs attributes and/or recent_items")
        features = self.user_encoder.encode_records([dict(attributes or {})])
        history = None
        if recent_items is not None and len(recent_items):
            history = torch.as_tensor(recent_items, dtype=torch.long)[-self.max_history:][None]
        return self.encode_users(features, history)[0]

    def encode_new_item(self, records) -> torch.Tensor:
        return self.encode_items(records)

    def id_tables(self) -> dict[str, torch.Tensor]:
        tables = {side: tower.ids.weight.data for side, tower in (("user", self.user_tower), ("item", self.item_tower))
                  if tower.ids is not None}
        return tables or super().id_tables()

    def serving_vectors(self) -> dict[str, torch.Tensor]:
        """Serving space (cosine: normalised, users / temperature) plus "item_raw", the item
        tower's outputs that the user tower pools over a new user's history."""
        vectors = super().serving_vectors()
        raw = vectors["item"]
        if self.similarity_kind == "cosine":
            vectors = {"user": F.normalize(vectors["user"], dim=-1) / self.temperature,
                       "item": F.normalize(vectors["item"], dim=-1)}
        return {**vectors, "item_raw": raw}

    def serving_spec(self) -> dict[str, Any]:
        return {**super().serving_spec(), "similarity": self.similarity_kind, "temperature": self.temperature,
                "towers": True, "pools_history": self.max_history if self.uses_history else None,
                "title_buckets": self.buckets}

    def export_graphs(self):
        """User tower over (ids, has_id, profile[, pooled history "content"]); item tower over
        (ids, has_id, attributes, hashed title tokens)."""
        index = torch.tensor([0, 1])
        user_inputs = tower_inputs(self.user_table, self.user_has_id, index)
        if self.uses_history:
            user_inputs["content"] = torch.zeros(2, self.user_tower.content.in_features)
        item_inputs = {**tower_inputs(self.item_table, self.item_has_id, index), "title_tokens": self.title_tokens[index]}
        return {"user_tower": (TowerGraph(self.user_tower, self.user_table.names, self.uses_history), user_inputs),
                "item_tower": (TitleTowerGraph(self.item_tower, self.item_table.names, self.text), item_inputs)}

    def saved_state(self) -> dict[str, Any]:
        return {"encoders": {"user": self.user_encoder.to_dict(), "item": self.item_encoder.to_dict()}}

    @classmethod
    def restore(cls, params, tensors, state) -> "ContentStudent":
        return restore_feature_model(cls, params, tensors, state, title_tokens=tensors["title_tokens"])
