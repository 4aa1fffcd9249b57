"""SASRec: a causal self-attention encoder over each user's recent items (Kang & McAuley 2018),
laid out as RecBole's version (post-LayerNorm BERT blocks, GELU feed-forward, normal(0, 0.02)
init, full-softmax cross-entropy by default).

Unlike RecBole, which turns every prefix of a history into its own training example, we train
on all positions of a window at once (the original paper's way): one forward pass gives a
next-item prediction at each of the max_len positions, so an epoch costs one pass over the
data instead of one per prefix.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from distillrec.data.sequences import user_sequences
from distillrec.errors import DistillrecError
from distillrec.students.base import MODELS, Recommender
from distillrec.train.losses import REC_LOSSES

_LAYER_NORM_EPS = 1e-12  # RecBole / BERT


class SelfAttentionBlock(nn.Module):
    """Multi-head self-attention then a feed-forward layer, each followed by dropout, a
    residual connection and LayerNorm."""

    def __init__(self, dim: int, n_heads: int, inner_size: int, dropout: float, attn_dropout: float):
        super().__init__()
        if dim % n_heads:
            raise DistillrecError(f"SASRec dim {dim} must be divisible by n_heads {n_heads}")
        self.n_heads, self.attn_dropout = n_heads, attn_dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.attn_out = nn.Linear(dim, dim)
        self.attn_norm = nn.LayerNorm(dim, eps=_LAYER_NORM_EPS)
        self.feed_forward = nn.Sequential(nn.Linear(dim, inner_size), nn.GELU(), nn.Linear(inner_size, dim))
        self.ff_norm = nn.LayerNorm(dim, eps=_LAYER_NORM_EPS)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, attend: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """x [B, L, d]; attend [B, 1, L, L] bool, True where a query may look at a key.
        last_only: compute the output of the last position only ([B, 1, d]); its keys and
        values still come from every position, so the result equals the full pass's last row."""
        batch, length, dim = x.shape
        q, k, v = self.qkv(x).view(batch, length, 3, self.n_heads, dim // self.n_heads).permute(2, 0, 3, 1, 4)
        if last_only:
            q, attend, x = q[:, :, -1:], attend[:, :, -1:], x[:, -1:]
        attended = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attend, dropout_p=self.attn_dropout if self.training else 0.0)
        attended = attended.transpose(1, 2).reshape(batch, q.size(2), dim)
        x = self.attn_norm(x + self.dropout(self.attn_out(attended)))
        return self.ff_norm(x + self.dropout(self.feed_forward(x)))


@MODELS.register("sasrec")
class SASRec(Recommender):
    batch_kind = "sequences"
    # Each row is a whole window of up to max_len targets, so far fewer rows than pairs.
    default_batch_size = 128

    def __init__(self, n_users: int, n_items: int, dim: int = 64, n_layers: int = 2, n_heads: int = 2,
                 inner_size: int = 256, max_len: int = 50, dropout: float = 0.5,
                 attn_dropout: float = 0.5, rec_loss: str = "softmax", seed: int = 0):
        super().__init__()
        REC_LOSSES.get(rec_loss)  # fail on an unknown loss name now, not at the first batch
        self.n_users, self.n_items, self.max_len, self.rec_loss = n_users, n_items, max_len, rec_loss
        self.item_embedding = nn.Embedding(n_items + 1, dim, padding_idx=0)  # row 0: padding
        self.position_embedding = nn.Embedding(max_len, dim)
        self.input_norm = nn.LayerNorm(dim, eps=_LAYER_NORM_EPS)
        self.input_dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            SelfAttentionBlock(dim, n_heads, inner_size, dropout, attn_dropout) for _ in range(n_layers))
        # Per-user input for `score`: the last max_len items seen, set by `set_history`.
        self.register_buffer("history", torch.zeros(n_users, max_len, dtype=torch.long), persistent=False)
        self._init_weights(torch.Generator().manual_seed(seed))

    #: what the type hints of `__init__` (where build's **params go) cannot say; see distillrec.params
    params_schema = {"dim": {"ge": 1}, "n_layers": {"ge": 1}, "n_heads": {"ge": 1}, "inner_size": {"ge": 1},
                     "max_len": {"ge": 1}, "dropout": {"ge": 0, "lt": 1}, "attn_dropout": {"ge": 0, "lt": 1},
                     "rec_loss": {"choices": REC_LOSSES.names}}

    @classmethod
    def build(cls, dataset, split, **params) -> "SASRec":
        return cls(split.n_users, split.n_items, **params)

    def _init_weights(self, generator: torch.Generator) -> None:
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02, generator=generator)
            if isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)
        with torch.no_grad():
            self.item_embedding.weight[0].zero_()

    def encode(self, sequences: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """Hidden state at every position: [B, max_len] padded item sequences -> [B, max_len, d].
        Position t sees items at positions <= t only, and never padding. last_only: the final
        block computes the last position only (-> [B, 1, d]), all that scoring a user needs."""
        length = sequences.size(1)
        x = self.item_embedding(sequences) + self.position_embedding.weight[:length]
        x = self.input_dropout(self.input_norm(x))
        causal = torch.ones(length, length, dtype=torch.bool, device=sequences.device).tril()
        # A padding query sees only itself, so no attention row is empty (which would give NaN).
        real_keys = (sequences > 0).unsqueeze(1) | torch.eye(length, dtype=torch.bool, device=sequences.device)
        attend = (causal & real_keys).unsqueeze(1)
        for depth, block in enumerate(self.blocks, start=1):
            x = block(x, attend, last_only=last_only and depth == len(self.blocks))
        return x

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        inputs, targets = batch["seq"][:, :-1], batch["seq"][:, 1:]
        keep = inputs > 0  # the first item of a history has no context to predict it from
        hidden = self.encode(inputs)[keep]        # [N, d]
        target_items = targets[keep]              # [N], item index + 1
        rec = REC_LOSSES.get(self.rec_loss)
        if rec.candidates == "full":
            return rec(hidden @ self.item_embedding.weight[1:].T, target_items - 1)
        positive = (hidden * self.item_embedding(target_items)).sum(-1)
        negatives = self.item_embedding(batch["neg"][keep] + 1)  # [N, n_neg, d]
        return rec(positive, torch.einsum("nd,nkd->nk", hidden, negatives))

    def read_history(self, interactions) -> None:
        self.history = user_sequences(interactions, self.n_users, self.max_len).to(self.history.device)

    def user_vectors(self, users: torch.Tensor) -> torch.Tensor:
        """The encoder's output after each user's last history item: [B, d]."""
        return self.encode(self.history[users], last_only=True)[:, -1]

    def score(self, users: torch.Tensor) -> torch.Tensor:
        return self.user_vectors(users) @ self.item_embedding.weight[1:].T

    def representations(self) -> dict[str, torch.Tensor]:
        users = torch.arange(self.n_users, device=self.history.device)
        return {"user": self.user_vectors(users), "item": self.item_embedding.weight[1:]}

    def item_vectors(self, items: torch.Tensor | None = None) -> torch.Tensor:
        table = self.item_embedding.weight[1:]  # row 0 is padding
        return table if items is None else table[items]

    def n_users_known(self) -> int:
        return self.n_users

    def encode_new_user(self, *, attributes=None, recent_items=None) -> torch.Tensor:
        """The encoder's state after the recent items, in the order given (oldest first)."""
        if attributes:
            raise DistillrecError("SASRec reads no user attributes: give recent_items")
        if recent_items is None or not len(recent_items):
            raise DistillrecError("a new user needs recent_items (ids of items they interacted with, oldest first)")
        sequence = torch.zeros(1, self.max_len, dtype=torch.long, device=self.history.device)
        recent = torch.as_tensor(recent_items, dtype=torch.long)[-self.max_len:] + 1
        sequence[0, self.max_len - len(recent):] = recent
        return self.encode(sequence, last_only=True)[0, -1]

    # --- what distillation and transfer read: a batch row is a training window ---------------

    def distill_user_vectors(self, batch) -> torch.Tensor:
        """The state after the window's last item: seq[:, 1:] is the window without its oldest slot."""
        return self.encode(batch["seq"][:, 1:], last_only=True)[:, -1]

    def distill_items(self, batch) -> torch.Tensor:
        seq = batch["seq"]
        return (seq[seq > 0] - 1).unique()

    def id_tables(self) -> dict[str, torch.Tensor]:
        return {"item": self.item_embedding.weight.data[1:]}

    def saved_state(self) -> dict:
        return {"n_users": self.n_users, "n_items": self.n_items}
