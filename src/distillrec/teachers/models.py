"""The LM-enhanced teacher recommender: language-model item texts + interactions, one score.

Item tower: the language model's embedding of each item's text (title, year, genres through
a template) goes with the item's ID embedding and attribute features (genres, year bucket)
into an MLP adapter -> d.
User tower: attention pooling over the user's history items (their item-tower vectors, a
learned query per head, padding masked), with the user's ID embedding and attributes
(gender, age, occupation) -> MLP -> d.
Score: cosine similarity / temperature between the two towers' vectors (`temperature=None`:
plain dot product), plus a full-rank item-to-item term over the same history (EASE / SLIM
weights learned by the same loss; `item_item=False` leaves it out). The towers carry the
language model's knowledge and give the user/item representations students distil; the
item-to-item term holds the co-occurrence detail a d-dimensional bottleneck cannot, and is
what lifts the teacher clearly above MF on MovieLens.
Loss: full-catalog softmax by default (catalogs here are thousands of items, so the exact
softmax is cheap and beats sampled losses), or any registered loss.

While training, the target item is removed from its user's pooled history: otherwise the
model learns to find the answer in its input, which at evaluation time (where history items
are masked) it never can. With `cold_dropout` > 0 that share of training rows is encoded as a new
user's (no ID, no history: the profile alone), so the profile-only path that scores a new user
with nothing revealed is trained too; with `cold_history` = n > 0 such a row keeps its first m
history items (m uniform in 0..n), the path that scores a new user from its first few ratings.

Modes (transfer learning):
  frozen            the language model runs once; its embeddings are a fixed buffer (the default).
  lora/adalora/full the language model is part of the model for the first `lm_steps`
                    training steps: each step re-encodes (with gradients) up to
                    `lm_items_per_step` of the batch's positive items and splices them into the
                    embedding table; the whole table is re-encoded once before scoring
                    (validation) and once when those steps are spent.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Literal, Mapping, Sequence

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from distillrec.data.dataset import Dataset
from distillrec.data.split import Split
from distillrec.errors import DistillrecError
from distillrec.students.base import MODELS, Recommender
from distillrec.students.features import (DEFAULT_ITEM_COLUMNS, DEFAULT_USER_COLUMNS, FeatureColumn,
                                          FeatureEncoder, trained_id_masks)
from distillrec.students.towers import PADDING, FeatureTable, Tower, recent_history
from distillrec.teachers.cache import encode_cached
from distillrec.teachers.encoders import TextEncoder
from distillrec.teachers.templates import DEFAULT_ITEM_TEMPLATE, TextTemplate
from distillrec.train.losses import REC_LOSSES

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

Mode = Literal["frozen", "lora", "adalora", "full"]
MODES: tuple[str, ...] = ("frozen", "lora", "adalora", "full")
_ENCODE_BATCH = 64
DEFAULT_LM_STEPS = 50
_USER_CHUNK = 1024  # users pooled at once by `representations` (memory ~ chunk x history x d)


class AttentionPooling(nn.Module):
    """Pool each user's history over a catalog of item vectors into `heads` weighted means.

    Additive attention with one learned query per head: weight_i ∝ exp(q · tanh(W v_i)).
    The logit depends on the item alone, so it is computed once per catalog item and then
    gathered, not recomputed for every history slot (ten times cheaper on CPU). Padding slots
    get exactly zero weight, and a history with no item at all pools to zero.
    """

    def __init__(self, dim: int, heads: int = 1):
        super().__init__()
        if heads < 1:
            raise DistillrecError(f"attention pooling needs heads >= 1, got {heads}")
        self.keys = nn.Linear(dim, dim)
        self.query = nn.Parameter(torch.randn(heads, dim) / dim ** 0.5)
        self.heads, self.out_dim = heads, heads * dim

    def forward(self, catalog: torch.Tensor, history: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """catalog [n_items, d]; history [B, N] item indices; present [B, N] bool (False:
        padding, whatever index it holds) -> [B, heads * d]."""
        item_logits = torch.tanh(self.keys(catalog)) @ self.query.T           # [n_items, heads]
        history = history.clamp(min=0)
        logits = item_logits[history]                                        # [B, N, heads]
        mask = present.unsqueeze(-1)
        # The dtype's lowest value, not -inf: a row of padding only then gives finite
        # (uniform) weights, which the mask sets to zero; real rows are unaffected, since
        # exp(lowest - max) is exactly 0.
        weights = logits.masked_fill(~mask, torch.finfo(logits.dtype).min).softmax(dim=1) * mask
        pooled = torch.einsum("bnh,bnd->bhd", weights, catalog[history])
        return pooled.reshape(len(history), self.out_dim)


def _real_slots(history: torch.Tensor, exclude: torch.Tensor | None) -> torch.Tensor:
    """[B, N] bool: the history slots that hold an item, other than each row's `exclude` item."""
    real = history != PADDING
    if exclude is not None:
        real &= history != exclude.unsqueeze(1)
    return real


@MODELS.register("lm-teacher")
class LMTeacher(Recommender):
    batch_kind = "pairs"
    default_batch_size = 1024
    new_user_inputs = ("attributes", "recent_items")

    def __init__(self, *, text_embeddings: torch.Tensor, user_encoder: FeatureEncoder,
                 item_encoder: FeatureEncoder, user_features: Mapping[str, torch.Tensor],
                 item_features: Mapping[str, torch.Tensor], user_has_id: torch.Tensor,
                 item_has_id: torch.Tensor, dim: int = 128, feature_dim: int = 16, hidden: int = 256,
                 heads: int = 2, max_history: int = 100, history_dropout: float = 0.5,
                 id_dropout: float = 0.0, cold_dropout: float = 0.0, cold_history: int = 0, user_ids: bool = True,
                 item_item: bool = True, temperature: float | None = 0.1,
                 rec_loss: str = "softmax", template: str = DEFAULT_ITEM_TEMPLATE,
                 text_encoder: TextEncoder | None = None, language_model: "SentenceTransformer | None" = None,
                 item_texts: Sequence[str] | None = None, mode: Mode = "frozen", lm_steps: int = DEFAULT_LM_STEPS,
                 lm_items_per_step: int = 32, seed: int = 0):
        super().__init__()
        REC_LOSSES.get(rec_loss)  # an unknown loss fails now, not at the first batch
        if mode not in MODES:
            raise DistillrecError(f"lm-teacher: unknown mode {mode!r}; expected one of {', '.join(MODES)}")
        if (mode == "frozen") != (language_model is None):
            raise DistillrecError(f"lm-teacher: mode {mode!r} " + ("takes no language model" if mode == "frozen"
                                  else "needs the language model to tune (LMTeacher.build loads it)"))
        if language_model is not None and (item_texts is None or len(item_texts) != len(item_has_id)):
            raise DistillrecError("lm-teacher: tuning the language model needs one text per item (item_texts)")
        if not 0.0 <= history_dropout < 1.0:
            raise DistillrecError(f"lm-teacher: history_dropout {history_dropout} must be in [0, 1)")
        if not 0.0 <= cold_dropout < 1.0:
            raise DistillrecError(f"lm-teacher: cold_dropout {cold_dropout} must be in [0, 1)")
        if isinstance(cold_history, bool) or int(cold_history) != cold_history or cold_history < 0:
            raise DistillrecError(f"lm-teacher: cold_history {cold_history} must be an integer >= 0")
        if temperature is not None and temperature <= 0:
            raise DistillrecError(f"lm-teacher: temperature must be > 0 (or None for dot products), got {temperature}")
        if max_history < 1:
            raise DistillrecError(f"lm-teacher: max_history must be >= 1, got {max_history}")
        n_users, n_items = len(user_has_id), len(item_has_id)
        if text_embeddings.shape[0] != n_items:
            raise DistillrecError(f"lm-teacher: {text_embeddings.shape[0]} text embeddings for {n_items} items")
        self.rec_loss, self.mode, self.template = rec_loss, mode, template
        self.max_history, self.history_dropout, self.temperature = max_history, history_dropout, temperature
        # The share of training rows seen as a new user's: no ID, no history, the profile alone.
        # Without it that path never trains (history dropout keeps some of a user's >= 20 items).
        # cold_history > 0: a new user's row keeps its first m of its history items, m drawn
        # uniformly from 0..cold_history, so the path that scores a new user from the few items
        # it has rated so far trains too (with 0 only the profile-alone path does).
        self.cold_dropout, self.cold_history = cold_dropout, int(cold_history)
        self.user_encoder, self.item_encoder = user_encoder, item_encoder
        self.user_table = FeatureTable(user_features)
        self.item_table = FeatureTable(item_features)
        self.register_buffer("user_has_id", user_has_id.bool())
        self.register_buffer("item_has_id", item_has_id.bool())
        self.register_buffer("text_embeddings", text_embeddings.float().clone())
        # Not saved with the weights: history is an input (train for validation, train + valid
        # for test), set by `set_history` before every evaluation.
        self.register_buffer("history", torch.full((n_users, max_history), PADDING, dtype=torch.long),
                             persistent=False)
        shared = dict(dim=dim, feature_dim=feature_dim, hidden=hidden, id_dropout=id_dropout)
        with torch.random.fork_rng(devices=[]):  # seeded init that leaves the global stream alone
            torch.manual_seed(seed)
            self.item_tower = Tower(n_ids=n_items, encoder=item_encoder,
                                    content_dim=text_embeddings.shape[1], **shared)
            self.pooling = AttentionPooling(dim, heads)
            # user_ids=False: a user is its history and attributes alone (no per-user parameters
            # to memorise training items with).
            self.user_tower = Tower(n_ids=n_users if user_ids else 0, encoder=user_encoder,
                                    content_dim=self.pooling.out_dim, **shared)
            # Full-rank item-to-item weights over the history (EASE / SLIM learned by the same
            # softmax), added to the towers' similarity: what a d-dimensional bottleneck cannot
            # hold. Zero at the start, so training begins from the towers alone.
            self.item_item = nn.EmbeddingBag(n_items, n_items, mode="sum") if item_item else None
            if self.item_item is not None:
                nn.init.zeros_(self.item_item.weight)
        # Transfer modes: the language model itself, tuned for a bounded number of steps.
        self._text_encoder = text_encoder  # frozen mode: encodes new item texts (cached)
        self.language_model = language_model
        self.item_texts = list(item_texts) if item_texts is not None else None
        self.lm_steps, self.lm_items_per_step = lm_steps, lm_items_per_step
        self.register_buffer("lm_steps_done", torch.zeros((), dtype=torch.long))
        self._text_stale = False  # the LM moved since `text_embeddings` was computed
        self._item_cache: tuple | None = None  # (what it was computed from, item vectors), see _item_vectors
        #: the language model's side of the cost (set by `build`: size, encoding time, cache hit).
        self.text_cost: dict[str, Any] = {}

    #: what the type hints of build and `__init__` (where **params go) cannot say; None: set by
    #: build itself, not a config parameter (see distillrec.params)
    params_schema = {"lora_r": {"ge": 1}, "lora_alpha": {"gt": 0}, "lora_dropout": {"ge": 0, "lt": 1},
                     "dim": {"ge": 1}, "feature_dim": {"ge": 1}, "hidden": {"ge": 1}, "heads": {"ge": 1},
                     "max_history": {"ge": 1}, "history_dropout": {"ge": 0, "lt": 1}, "id_dropout": {"ge": 0, "lt": 1},
                     "cold_dropout": {"ge": 0, "lt": 1}, "cold_history": {"ge": 0},
                     "temperature": {"gt": 0}, "rec_loss": {"choices": REC_LOSSES.names}, "lm_steps": {"ge": 0},
                     "lm_items_per_step": {"ge": 1}, "text_encoder": None, "language_model": None, "item_texts": None}

    @classmethod
    def build(cls, dataset: Dataset, split: Split, *, mode: Mode = "frozen", encoder: str | None = None,
              template: str = DEFAULT_ITEM_TEMPLATE, cache_dir: str | os.PathLike | None = None,
              device: str = "cpu", lora_r: int = 8, lora_alpha: int = 16, lora_dropout: float = 0.1,
              user_columns: Sequence[FeatureColumn | Mapping[str, Any]] = DEFAULT_USER_COLUMNS,
              item_columns: Sequence[FeatureColumn | Mapping[str, Any]] = DEFAULT_ITEM_COLUMNS,
              **params) -> "LMTeacher":
        """Encode the item texts (`template` over `dataset.items`) with `encoder` (None: the
        bundled MiniLM; cached by content hash in `cache_dir`), fit the attribute vocabularies,
        give ID embeddings to entities with training interactions, and set the history to the
        training interactions. `params` go to the constructor (dim, heads, lm_steps ...).
        The language model's size and encoding time are kept in `model.text_cost`."""
        from distillrec.teachers import finetune  # peft and sentence-transformers load lazily

        texts = TextTemplate(template).render(dataset.items, "item")
        text_encoder = TextEncoder(encoder, device=device)
        embeddings, info = encode_cached(text_encoder, texts, cache_dir, template=template, progress=False)
        language_model = None
        if mode != "frozen":
            language_model = finetune.load_sentence_transformer(encoder, device=device)
            if mode == "full":
                finetune.unfreeze_all(language_model)
            else:
                finetune.apply_peft(language_model, mode, r=lora_r, alpha=lora_alpha, dropout=lora_dropout,
                                    total_steps=params.get("lm_steps", DEFAULT_LM_STEPS))
        user_encoder = FeatureEncoder.fit(dataset.users, user_columns)
        item_encoder = FeatureEncoder.fit(dataset.items, item_columns)
        user_has_id, item_has_id = trained_id_masks(split)
        model = cls(text_embeddings=embeddings, user_encoder=user_encoder, item_encoder=item_encoder,
                    user_features=user_encoder.encode(dataset.users), item_features=item_encoder.encode(dataset.items),
                    user_has_id=user_has_id, item_has_id=item_has_id, template=template,
                    text_encoder=text_encoder, language_model=language_model,
                    item_texts=texts if language_model is not None else None, mode=mode, **params)
        model.text_cost = {"lm_parameters": text_encoder.num_parameters, "text_dim": text_encoder.dim,
                           "encode_seconds": info.seconds, "cache_hit": info.hit, "n_texts": len(texts)}
        model.set_history(split.history("valid"))  # train (+ revealed): what training sees
        return model

    # --- history ---------------------------------------------------------------------------

    def read_history(self, interactions: pd.DataFrame) -> None:
        """Each user's last `max_history` items by time (most recent last), padded with -1."""
        self.history = recent_history(interactions, len(self.user_has_id), self.max_history).to(self.history.device)

    # --- vectors ---------------------------------------------------------------------------

    def item_vectors(self, items: torch.Tensor | None = None) -> torch.Tensor:
        """[len(items), d] (every item when None) through the item tower."""
        vectors = self._item_vectors(self._current_text())
        return vectors if items is None else vectors[items]

    def _item_vectors(self, text: torch.Tensor | None = None) -> torch.Tensor:
        """[n_items, d]: every item through the item tower (`text`: the embedding table to use)."""
        items = torch.arange(len(self.item_has_id), device=self.item_has_id.device)
        content = self.text_embeddings if text is None else text
        if self.training or torch.is_grad_enabled() or torch.is_inference_mode_enabled() or content.is_inference():
            return self.item_tower(self.item_table.rows(items), content, ids=items, has_id=self.item_has_id)
        # Scoring (eval, no grad): every request and evaluation chunk would run the same item
        # tower over the whole catalogue; keep its output while nothing it depends on changed
        # (a tensor's _version counts its in-place updates: optimiser steps, load_state_dict;
        # inference-mode tensors keep no version, so they are never cached).
        key = (content.data_ptr(), content._version, *(p._version for p in self.item_tower.parameters()))
        if self._item_cache is None or self._item_cache[0] != key:
            self._item_cache = (key, self.item_tower(self.item_table.rows(items), content, ids=items,
                                                     has_id=self.item_has_id))
        return self._item_cache[1]

    def user_vectors(self, users: torch.Tensor, item_vectors: torch.Tensor | None = None) -> torch.Tensor:
        """[B, d] for user indices, pooling their history over `item_vectors` ([n_items, d])."""
        item_vectors = self.item_vectors() if item_vectors is None else item_vectors
        history, present = self._visible_history(users)
        return self._user_vectors(users, item_vectors, history, present)

    def _visible_history(self, users: torch.Tensor, exclude: torch.Tensor | None = None
                         ) -> tuple[torch.Tensor, torch.Tensor]:
        """History item indices [B, N] and which slots count [B, N]. exclude: one item per
        user left out (the training target); while training, slots also drop at random."""
        history = self.history[users]
        present = _real_slots(history, exclude)
        if self.training and self.history_dropout > 0:
            present &= torch.rand(history.shape, device=history.device) >= self.history_dropout
        return history, present

    def _user_vectors(self, users: torch.Tensor, item_vectors: torch.Tensor, history: torch.Tensor,
                      present: torch.Tensor, cold: torch.Tensor | None = None) -> torch.Tensor:
        """cold: rows to encode as new users (no ID; their history is already hidden in `present`)."""
        pooled = self.pooling(item_vectors, history, present)
        has_id = self.user_has_id[users] if cold is None else self.user_has_id[users] & ~cold
        return self.user_tower(self.user_table.rows(users), pooled, ids=users, has_id=has_id)

    def _cold_rows(self, users: torch.Tensor) -> torch.Tensor | None:
        """While training with cold_dropout: which rows of the batch play new users."""
        if not (self.training and self.cold_dropout > 0):
            return None
        return torch.rand(len(users), device=users.device) < self.cold_dropout

    def _first_items(self, history: torch.Tensor, exclude: torch.Tensor | None) -> torch.Tensor:
        """[B, N] bool: each row's first m history items in time order (never `exclude`, no
        history dropout), m uniform in 0..cold_history: what a new user has rated so far."""
        real = _real_slots(history, exclude)
        if self.cold_history == 0:
            return torch.zeros_like(real)
        shown = torch.randint(0, self.cold_history + 1, (len(history), 1), device=history.device)
        return real & (real.cumsum(1) <= shown)

    def _scores(self, users: torch.Tensor, item_vectors: torch.Tensor, candidates: torch.Tensor | None = None,
                exclude: torch.Tensor | None = None) -> torch.Tensor:
        """Scores of every item [B, n_items], or of per-user `candidates` [B, C]: the towers'
        similarity plus the item-to-item term over the same visible history."""
        history, present = self._visible_history(users, exclude)
        cold = self._cold_rows(users)
        if cold is not None:  # the item-to-item term sees the same (short or empty) history
            present = torch.where(cold.unsqueeze(1), self._first_items(history, exclude), present)
        user_vectors = self._user_vectors(users, item_vectors, history, present, cold)
        scores = self.similarity(user_vectors, item_vectors if candidates is None else item_vectors[candidates])
        if self.item_item is not None:
            item_item = self.item_item_scores(history, present)
            scores = scores + (item_item if candidates is None else item_item.gather(1, candidates))
        return scores

    def item_item_scores(self, history: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """The item-to-item term [B, n_items] over history slots [B, N] where `present`: a sum
        scaled by 1/sqrt(length), so long histories neither vanish nor dominate the towers' term."""
        weights = present.float() / present.sum(1, keepdim=True).clamp(min=1).sqrt()
        scores = self.item_item(history.clamp(min=0), per_sample_weights=weights)
        if bool(self.item_has_id.all()):
            return scores
        # An item without training interactions has an untrained column (zeros), while the
        # trained columns mostly learned to be negative: left as is, every new item would beat
        # the warm ones. It gets the user's mean over trained items: the term knows nothing of it.
        trained = self.item_has_id
        return torch.where(trained, scores, scores[:, trained].mean(1, keepdim=True))

    def representations(self) -> dict[str, torch.Tensor]:
        """Output vectors of every user (from the current history) and every item."""
        items = self._item_vectors(self._current_text())
        users = torch.arange(len(self.user_has_id), device=items.device)
        return {"user": torch.cat([self.user_vectors(chunk, items) for chunk in users.split(_USER_CHUNK)]),
                "item": items}

    # --- the Recommender interface ---------------------------------------------------------

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        items = self._item_vectors(self._text_for_step(batch["pos"]))
        rec = REC_LOSSES.get(self.rec_loss)
        # Items without training interactions (held-out new items) are never negatives: the
        # model must not learn "this item is never chosen" about an item it may not know of.
        if rec.candidates == "full":
            scores = self._scores(batch["user"], items, exclude=batch["pos"])
            return rec(_hide(scores, ~self.item_has_id), batch["pos"])
        candidates = torch.cat([batch["pos"].unsqueeze(1), batch["neg"]], dim=1)
        scores = self._scores(batch["user"], items, candidates, exclude=batch["pos"])
        return rec(scores[:, 0], _hide(scores[:, 1:], ~self.item_has_id[batch["neg"]]))

    def pair_scores(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self._scores(users, self._item_vectors(self._current_text()), items)

    def score(self, users: torch.Tensor) -> torch.Tensor:
        return self._scores(users, self._item_vectors(self._current_text()))

    def n_users_known(self) -> int:
        return len(self.user_has_id)

    def serving_vectors(self) -> dict[str, torch.Tensor]:
        """The towers' term as a dot product (cosine: normalised, users / temperature); the
        item-to-item term is `history_scores`."""
        vectors = super().serving_vectors()
        if self.temperature is not None:
            vectors = {"user": F.normalize(vectors["user"], dim=-1) / self.temperature,
                       "item": F.normalize(vectors["item"], dim=-1)}
        return vectors

    def history_scores(self, users: torch.Tensor) -> torch.Tensor | None:
        return None if self.item_item is None else self.item_item_scores(*self._visible_history(users))

    def encode_new_user(self, *, attributes=None, recent_items=None) -> torch.Tensor:
        """The profile and the attention-pooled recent items through the user tower."""
        return self._new_user(attributes, recent_items)[0]

    def score_new_user(self, *, attributes=None, recent_items=None) -> torch.Tensor:
        """[n_items]: the towers' similarity plus the item-to-item term over the recent items."""
        vector, history, present, items = self._new_user(attributes, recent_items)
        scores = self.similarity(vector[None], items)[0]
        return scores + self.item_item_scores(history, present)[0] if self.item_item is not None else scores

    def _new_user(self, attributes, recent_items):
        if not attributes and (recent_items is None or not len(recent_items)):
            raise DistillrecError("a new user needs attributes and/or recent_items")
        items = self.item_vectors()
        recent = torch.as_tensor([] if recent_items is None else recent_items, dtype=torch.long)[-self.max_history:]
        history = torch.full((1, max(1, len(recent))), PADDING, dtype=torch.long, device=items.device)
        history[0, :len(recent)] = recent
        present = history != PADDING
        features = {k: v.to(items.device) for k, v in self.user_encoder.encode_records([dict(attributes or {})]).items()}
        pooled = self.pooling(items, history, present)
        return self.user_tower(features, pooled)[0], history, present, items

    def similarity(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Scores of user vectors [B, d] against items [N, d] (-> [B, N]) or per-user candidates
        [B, C, d] (-> [B, C]): dot products, or cosines / temperature when one is set."""
        if self.temperature is not None:
            users = F.normalize(users, dim=-1) / self.temperature
            items = F.normalize(items, dim=-1)
        if items.dim() == 3:
            return torch.einsum("bd,bcd->bc", users, items)
        return users @ items.T

    # --- the language model ----------------------------------------------------------------

    def item_text_embeddings(self, items: pd.DataFrame) -> torch.Tensor:
        """Text embeddings of item rows (the dataset's item table, or new items) rendered with
        this model's template and encoded by its language model as it is now."""
        texts = TextTemplate(self.template).render(items, "item")
        if self.language_model is not None:
            return self._encode_without_grad(texts)
        if self._text_encoder is None:
            self._text_encoder = TextEncoder(device=str(self.text_embeddings.device))
        return encode_cached(self._text_encoder, texts, template=self.template, progress=False)[0].to(
            self.text_embeddings.device)

    def refresh_text_embeddings(self) -> None:
        """Re-encode every item text with the language model as tuned so far."""
        self.text_embeddings = self._encode_without_grad(self.item_texts)
        self._text_stale = False

    def _current_text(self) -> torch.Tensor:
        if self._text_stale:
            self.refresh_text_embeddings()
        return self.text_embeddings

    def _text_for_step(self, positives: torch.Tensor) -> torch.Tensor:
        """The text table one training step sees: with fresh, differentiable rows for some of
        the batch's positive items while language-model steps remain; else the stored table."""
        tuning = self.language_model is not None and int(self.lm_steps_done) < self.lm_steps
        if not (self.training and tuning):
            return self._current_text()
        from distillrec.teachers.finetune import update_rank_budget

        if int(self.lm_steps_done) > 0:
            # The gradients of the previous step are still on the parameters here (the
            # Trainer clears them only after this loss is computed): AdaLoRA needs them.
            update_rank_budget(self.language_model, int(self.lm_steps_done) - 1)
        unique = positives.unique()
        chosen = unique[torch.randperm(len(unique), device=unique.device)[:self.lm_items_per_step]]
        fresh = self._encode_with_grad([self.item_texts[i] for i in chosen.tolist()])
        self.lm_steps_done += 1
        self._text_stale = True
        return self.text_embeddings.index_put((chosen,), fresh)

    def _encode_with_grad(self, texts: list[str]) -> torch.Tensor:
        # sentence-transformers 6 renamed `tokenize` to `preprocess` (the old name warns).
        prepare = getattr(self.language_model, "preprocess", None) or self.language_model.tokenize
        features = prepare(texts)
        features = {name: value.to(self.text_embeddings.device) if isinstance(value, torch.Tensor) else value
                    for name, value in features.items()}
        return F.normalize(self.language_model(features)["sentence_embedding"], dim=-1)

    def _encode_without_grad(self, texts: list[str]) -> torch.Tensor:
        was_training = self.language_model.training
        self.language_model.eval()
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))  # little padding per batch
        out = torch.empty(len(texts), self.text_embeddings.shape[1], device=self.text_embeddings.device)
        with torch.no_grad():
            for start in range(0, len(texts), _ENCODE_BATCH):
                index = order[start:start + _ENCODE_BATCH]
                out[torch.tensor(index)] = self._encode_with_grad([texts[i] for i in index])
        self.language_model.train(was_training)
        return out

    def cost(self) -> dict[str, int]:
        """Parameters of the language model and of the trainable recommender around it."""
        lm = sum(p.numel() for p in self.language_model.parameters()) if self.language_model is not None else 0
        return {"lm_parameters": lm or self.text_cost.get("lm_parameters", 0),
                "recommender_parameters": self.num_parameters() - lm,
                "trainable_parameters": sum(p.numel() for p in self.parameters() if p.requires_grad)}


def _hide(scores: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
    """`scores` with the `hidden` cells (broadcast) at the lowest float: out of every loss."""
    return scores.masked_fill(hidden, torch.finfo(scores.dtype).min) if bool(hidden.any()) else scores
