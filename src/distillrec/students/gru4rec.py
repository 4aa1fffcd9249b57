"""GRU4Rec: a recurrent encoder over each user's recent items (Hidasi et al. 2016), laid out as
RecBole 1.2.1's version: item embedding -> embedding dropout -> a bias-free nn.GRU (n_layers,
hidden_size) -> a linear layer back to the embedding dim, scored against the item table;
full-softmax cross-entropy by default. Init as RecBole: xavier_normal for the item embedding,
xavier_uniform for the first GRU layer's weights; the other GRU layers and the dense layer keep
PyTorch's default init, drawn here from the seeded generator so that a seed fixes every weight.

As SASRec here (and unlike RecBole, which trains on one prefix per example), a window is
trained at all of its positions at once: one GRU pass gives a next-item prediction at each.

Sequences are left-padded with 0. A GRU reads left to right, so it is causal by construction,
but the padding steps before a short history would still be run and move the state (with
biases, or a nonzero padding row). Padding is made invisible instead of merely small: each row
is rotated so that its real items come first, the GRU runs on a packed batch of the real items
only (`pack_padded_sequence`: every sequence starts from the zero state at its first real
item), and the outputs are rotated back. Real positions therefore get exactly the state they
would get with no padding at all; padding positions get the zero state (what the GRU starts
from), as does a row with no items.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from distillrec.students.base import MODELS
from distillrec.students.sequential import SequentialRecommender
from distillrec.train.losses import REC_LOSSES


@MODELS.register("gru4rec")
class GRU4Rec(SequentialRecommender):
    def __init__(self, n_users: int, n_items: int, dim: int = 64, hidden_size: int = 128, n_layers: int = 1,
                 dropout: float = 0.3, max_len: int = 50, rec_loss: str = "softmax", seed: int = 0):
        super().__init__(n_users, n_items, dim, max_len, rec_loss)
        self.embedding_dropout = nn.Dropout(dropout)
        self.gru = nn.GRU(input_size=dim, hidden_size=hidden_size, num_layers=n_layers,
                          bias=False, batch_first=True)
        self.dense = nn.Linear(hidden_size, dim)
        self._init_weights(torch.Generator().manual_seed(seed))

    #: what the type hints of `__init__` (where build's **params go) cannot say; see distillrec.params
    params_schema = {"dim": {"ge": 1}, "hidden_size": {"ge": 1}, "n_layers": {"ge": 1}, "max_len": {"ge": 1},
                     "dropout": {"ge": 0, "lt": 1}, "rec_loss": {"choices": REC_LOSSES.names}}

    @classmethod
    def build(cls, dataset, split, **params) -> "GRU4Rec":
        return cls(split.n_users, split.n_items, **params)

    def _init_weights(self, generator: torch.Generator) -> None:
        with torch.no_grad():
            nn.init.xavier_normal_(self.item_embedding.weight, generator=generator)
            self.item_embedding.weight[0].zero_()  # padding: never read, kept at zero for clarity
            bound = 1.0 / math.sqrt(self.gru.hidden_size)
            for name, weight in self.gru.named_parameters():
                if name in ("weight_ih_l0", "weight_hh_l0"):
                    nn.init.xavier_uniform_(weight, generator=generator)
                else:  # PyTorch's GRU default, which RecBole leaves on the deeper layers
                    nn.init.uniform_(weight, -bound, bound, generator=generator)
            # PyTorch's Linear default (RecBole leaves the dense layer at it)
            nn.init.kaiming_uniform_(self.dense.weight, a=math.sqrt(5), generator=generator)
            bound = 1.0 / math.sqrt(self.dense.in_features)
            nn.init.uniform_(self.dense.bias, -bound, bound, generator=generator)

    def encode(self, sequences: torch.Tensor, table: torch.Tensor | None = None,
               last_only: bool = False) -> torch.Tensor:
        """Hidden state at every position: [B, L] left-padded item sequences -> [B, L, d].
        Position t sees items at positions <= t only, and never padding. last_only: the dense
        layer maps the last position only (-> [B, 1, d]); the GRU still reads the whole row."""
        batch, length = sequences.shape
        table = self.item_table() if table is None else table
        real = sequences > 0
        # Real items run from the first nonzero slot to the end (left padding).
        n_real = torch.where(real.any(1), length - real.int().argmax(1), 0)
        # Rotate each row left by its padding count: real items first, padding after.
        shift = (length - n_real).unsqueeze(1)
        steps = torch.arange(length, device=sequences.device).unsqueeze(0)
        to_front = (steps + shift) % length
        x = table[sequences] * real.unsqueeze(-1)  # the padding row's value never enters
        x = self.embedding_dropout(x.gather(1, to_front.unsqueeze(-1).expand(-1, -1, x.size(-1))))
        # A row with no items runs one zero step (packing needs length >= 1); masked below.
        packed = pack_padded_sequence(x, n_real.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.gru(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=length)
        # Rotate back: position t of the original row is step t - shift of the packed run.
        back = (steps - shift) % length
        out = out.gather(1, back.unsqueeze(-1).expand(-1, -1, out.size(-1))) * real.unsqueeze(-1)
        if last_only:
            out = out[:, -1:]
        return self.dense(out)
