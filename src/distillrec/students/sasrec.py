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

from distillrec.errors import DistillrecError
from distillrec.students.base import MODELS
from distillrec.students.sequential import SequentialRecommender
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
class SASRec(SequentialRecommender):
    def __init__(self, n_users: int, n_items: int, dim: int = 64, n_layers: int = 2, n_heads: int = 2,
                 inner_size: int = 256, max_len: int = 50, dropout: float = 0.5,
                 attn_dropout: float = 0.5, rec_loss: str = "softmax", seed: int = 0):
        super().__init__(n_users, n_items, dim, max_len, rec_loss)
        self.position_embedding = nn.Embedding(max_len, dim)
        self.input_norm = nn.LayerNorm(dim, eps=_LAYER_NORM_EPS)
        self.input_dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            SelfAttentionBlock(dim, n_heads, inner_size, dropout, attn_dropout) for _ in range(n_layers))
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

    def encode(self, sequences: torch.Tensor, table: torch.Tensor | None = None,
               last_only: bool = False) -> torch.Tensor:
        """Hidden state at every position: [B, max_len] padded item sequences -> [B, max_len, d].
        Position t sees items at positions <= t only, and never padding. last_only: the final
        block computes the last position only (-> [B, 1, d]), all that scoring a user needs."""
        length = sequences.size(1)
        table = self.item_table() if table is None else table
        x = table[sequences] + self.position_embedding.weight[:length]
        x = self.input_dropout(self.input_norm(x))
        causal = torch.ones(length, length, dtype=torch.bool, device=sequences.device).tril()
        # A padding query sees only itself, so no attention row is empty (which would give NaN).
        real_keys = (sequences > 0).unsqueeze(1) | torch.eye(length, dtype=torch.bool, device=sequences.device)
        attend = (causal & real_keys).unsqueeze(1)
        for depth, block in enumerate(self.blocks, start=1):
            x = block(x, attend, last_only=last_only and depth == len(self.blocks))
        return x
