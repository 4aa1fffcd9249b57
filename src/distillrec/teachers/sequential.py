"""The LM-enhanced sequential teacher: SASRec whose item vectors carry the language model.

Each item's vector, used both as the encoder's input and as the output it is scored against,
is its ID embedding plus an MLP adapter over the item's frozen text embedding (title, year,
genres through a template; MiniLM by default, any Hugging Face encoder by path):

    v_i = id_i + adapter(text_i)

Items with no training interaction have no ID (their row is kept at zero), so an item never
seen in training is scored from its text alone. `id_dropout` drops items' ID parts during
training (the same items for the whole batch) so the adapter must learn to stand on its own,
which is what such items need. The teacher is meant to be larger than its students (dim 256,
several blocks by default) and trains with a full softmax, like SASRec.

Everything else (causal self-attention blocks, loss over every window position, scoring,
distillation hooks) is SASRec's.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from distillrec.data.dataset import Dataset
from distillrec.data.split import Split
from distillrec.errors import DistillrecError
from distillrec.students.base import MODELS
from distillrec.students.features import trained_id_masks
from distillrec.students.sasrec import SASRec
from distillrec.teachers.cache import encode_cached
from distillrec.teachers.encoders import TextEncoder
from distillrec.teachers.templates import DEFAULT_ITEM_TEMPLATE, TextTemplate


@MODELS.register("lm-seq-teacher")
class LMSequentialTeacher(SASRec):
    def __init__(self, n_users: int, n_items: int, *, text_embeddings: torch.Tensor, item_has_id: torch.Tensor,
                 dim: int = 256, n_layers: int = 3, n_heads: int = 4, inner_size: int | None = None,
                 max_len: int = 50, dropout: float = 0.3, attn_dropout: float = 0.3, adapter_hidden: int = 512,
                 item_ids: bool = True, text: bool = True, id_dropout: float = 0.0, rec_loss: str = "softmax",
                 template: str = DEFAULT_ITEM_TEMPLATE, seed: int = 0):
        if text_embeddings.shape[0] != n_items or item_has_id.shape != (n_items,):
            raise DistillrecError(f"lm-seq-teacher: {n_items} items, but text embeddings "
                                  f"{tuple(text_embeddings.shape)} and ID mask {tuple(item_has_id.shape)}")
        if not (item_ids or text):
            raise DistillrecError("lm-seq-teacher: item_ids and text cannot both be off (no item vectors)")
        if not 0 <= id_dropout < 1:
            raise DistillrecError(f"lm-seq-teacher: id_dropout must be in [0, 1), got {id_dropout}")
        super().__init__(n_users, n_items, dim=dim, n_layers=n_layers, n_heads=n_heads,
                         inner_size=4 * dim if inner_size is None else inner_size, max_len=max_len,
                         dropout=dropout, attn_dropout=attn_dropout, rec_loss=rec_loss, seed=seed)
        self.item_ids, self.text, self.id_dropout, self.template = item_ids, text, id_dropout, template
        # clone: a fresh encode comes from inference mode, which autograd cannot save
        self.register_buffer("text_embeddings", text_embeddings.detach().float().clone())
        # Row 0 is padding; untrained items keep a zero ID, so their vector is their text's.
        self.register_buffer("id_mask", torch.cat([torch.zeros(1), item_has_id.float()]).unsqueeze(1))
        generator = torch.Generator().manual_seed(seed + 1)
        self.adapter = nn.Sequential(nn.Linear(text_embeddings.shape[1], adapter_hidden), nn.GELU(),
                                     nn.Linear(adapter_hidden, dim))
        for layer in (self.adapter[0], self.adapter[2]):
            nn.init.normal_(layer.weight, std=0.02, generator=generator)
            nn.init.zeros_(layer.bias)

    params_schema = {**SASRec.params_schema, "adapter_hidden": {"ge": 1}, "id_dropout": {"ge": 0, "lt": 1}}

    @classmethod
    def build(cls, dataset: Dataset, split: Split, *, encoder: str | None = None,
              template: str = DEFAULT_ITEM_TEMPLATE, cache_dir: str | os.PathLike | None = None,
              device: str = "cpu", **params) -> "LMSequentialTeacher":
        """Encode the item texts (`template` over `dataset.items`) with `encoder` (None: the
        bundled MiniLM; cached by content hash in `cache_dir`); give ID rows to the items with
        training interactions; read the training history. `params` go to the constructor."""
        texts = TextTemplate(template).render(dataset.items, "item")
        text_encoder = TextEncoder(encoder, device=device)
        embeddings, info = encode_cached(text_encoder, texts, cache_dir, template=template, progress=False)
        _, item_has_id = trained_id_masks(split)
        model = cls(split.n_users, split.n_items, text_embeddings=embeddings, item_has_id=item_has_id,
                    template=template, **params)
        model.text_cost = {"lm_parameters": text_encoder.num_parameters, "text_dim": text_encoder.dim,
                           "encode_seconds": info.seconds, "cache_hit": info.hit, "n_texts": len(texts),
                           "text_used": model.text}
        model.set_history(split.history("valid"))
        return model

    def item_table(self) -> torch.Tensor:
        """[n_items + 1, d]: ID (where the item has one) + adapted text; row 0 stays zero."""
        table = torch.zeros_like(self.item_embedding.weight)
        if self.item_ids:
            mask = self.id_mask
            if self.training and self.id_dropout > 0:
                mask = mask * (torch.rand_like(mask) >= self.id_dropout)
            table = table + self.item_embedding.weight * mask
        if self.text:
            text = self.item_text_vectors(self.text_embeddings)
            table = table + torch.cat([text.new_zeros(1, text.shape[1]), text])
        return table

    def item_text_vectors(self, text_embeddings: torch.Tensor) -> torch.Tensor:
        """The adapter's vectors [n, d] of language-model text embeddings [n, t]: how an item
        the teacher never trained on is represented."""
        return self.adapter(text_embeddings.to(self.adapter[0].weight.dtype))

    def id_tables(self) -> dict[str, torch.Tensor]:
        raise DistillrecError("lm-seq-teacher is a teacher: students are initialised from its knowledge")
