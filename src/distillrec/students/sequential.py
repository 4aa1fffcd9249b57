"""What every next-item model shares: a padded item sequence goes in, a hidden state per
position comes out, and items are scored by a dot product with the item table.

A subclass gives `encode(sequences, table, last_only)` (the sequence encoder: self-attention,
a GRU ...) and, where its item vectors are more than an ID embedding, `item_table()` (the
LM-enhanced sequential teacher adds the items' text through an adapter). Training, scoring,
new users and the hooks distillation reads are written once, here.

Sequences hold item index + 1, left-padded with 0 (`distillrec.data.sequences`), so row 0 of
the item table is padding.
"""

from __future__ import annotations

import torch
from torch import nn

from distillrec.data.sequences import user_sequences
from distillrec.errors import DistillrecError
from distillrec.students.base import Recommender
from distillrec.train.losses import REC_LOSSES


class SequentialRecommender(Recommender):
    batch_kind = "sequences"
    # Each row is a whole window of up to max_len targets, so far fewer rows than pairs.
    default_batch_size = 128
    #: what `distillrec tune` searches: batch sizes count windows, not pairs (the pairs space's
    #: 256-2048 would be 1-10 steps an epoch on ML-100K's 2,412 windows), dropout is the main
    #: regulariser, and the full softmax stays (RecBole's SASRec and GRU4Rec default).
    tune_space = {
        "train.lr": {"low": 1e-4, "high": 1e-2, "log": True},
        "train.weight_decay": {"low": 1e-6, "high": 1e-1, "log": True},
        "train.batch_size": {"choices": [64, 128, 256]},
        "params.dropout": {"low": 0.1, "high": 0.6},
    }

    def __init__(self, n_users: int, n_items: int, dim: int, max_len: int, rec_loss: str):
        super().__init__()
        REC_LOSSES.get(rec_loss)  # fail on an unknown loss name now, not at the first batch
        self.n_users, self.n_items, self.max_len, self.rec_loss = n_users, n_items, max_len, rec_loss
        self.item_embedding = nn.Embedding(n_items + 1, dim, padding_idx=0)  # row 0: padding
        # Per-user input for `score`: the last max_len items seen, set by `set_history`.
        self.register_buffer("history", torch.zeros(n_users, max_len, dtype=torch.long), persistent=False)
        # The states `loss` computed for its batch, read once by `distill_step_states`.
        self._loss_states: tuple[torch.Tensor, torch.Tensor] | None = None

    # --- what a subclass provides ----------------------------------------------------------

    def encode(self, sequences: torch.Tensor, table: torch.Tensor | None = None,
               last_only: bool = False) -> torch.Tensor:
        """Hidden state at every position: [B, L] padded sequences -> [B, L, d]; position t
        sees items at positions <= t only. table: `item_table()` when the caller has it.
        last_only: only the last position is needed (-> [B, 1, d])."""
        raise NotImplementedError

    def item_table(self) -> torch.Tensor:
        """[n_items + 1, d]: the vector of each item as input and as output (row 0: padding)."""
        return self.item_embedding.weight

    # --- training ----------------------------------------------------------------------------

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        inputs, targets = batch["seq"][:, :-1], batch["seq"][:, 1:]
        keep = inputs > 0  # the first item of a history has no context to predict it from
        table = self.item_table()
        hidden = self.encode(inputs, table)[keep]  # [N, d]
        self._loss_states = (batch["seq"], hidden)
        target_items = targets[keep]              # [N], item index + 1
        rec = REC_LOSSES.get(self.rec_loss)
        if rec.candidates == "full":
            return rec(hidden @ table[1:].T, target_items - 1)
        positive = (hidden * table[target_items]).sum(-1)
        negatives = table[batch["neg"][keep] + 1]  # [N, n_neg, d]
        return rec(positive, torch.einsum("nd,nkd->nk", hidden, negatives))

    # --- scoring -----------------------------------------------------------------------------

    def read_history(self, interactions) -> None:
        self.history = user_sequences(interactions, self.n_users, self.max_len).to(self.history.device)

    def user_vectors(self, users: torch.Tensor) -> torch.Tensor:
        """The encoder's output after each user's last history item: [B, d]."""
        return self.encode(self.history[users], last_only=True)[:, -1]

    def score(self, users: torch.Tensor) -> torch.Tensor:
        table = self.item_table()
        return self.encode(self.history[users], table, last_only=True)[:, -1] @ table[1:].T

    def item_vectors(self, items: torch.Tensor | None = None) -> torch.Tensor:
        table = self.item_table()[1:]  # row 0 is padding
        return table if items is None else table[items]

    def n_users_known(self) -> int:
        return self.n_users

    def encode_new_user(self, *, attributes=None, recent_items=None) -> torch.Tensor:
        """The encoder's state after the recent items, in the order given (oldest first)."""
        if attributes:
            raise DistillrecError(f"{type(self).__name__} reads no user attributes: give recent_items")
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

    def distill_step_states(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """The state at each window position with context and the training step it predicts
        (`batch["step"]`, see SequenceBatches): ([N, d], [N]), the positions `loss` trains.
        Right after `loss` on the same batch these are its states (one encoder pass a step,
        one dropout draw, as DLLM2Rec's training shares them); otherwise they are computed."""
        inputs, steps = batch["seq"][:, :-1], batch["step"][:, 1:]
        keep = inputs > 0
        cached, self._loss_states = self._loss_states, None
        hidden = cached[1] if cached is not None and cached[0] is batch["seq"] else self.encode(inputs)[keep]
        return hidden, steps[keep]

    def distill_items(self, batch) -> torch.Tensor:
        seq = batch["seq"]
        return (seq[seq > 0] - 1).unique()

    def id_tables(self) -> dict[str, torch.Tensor]:
        return {"item": self.item_embedding.weight.data[1:]}

    def saved_state(self) -> dict:
        return {"n_users": self.n_users, "n_items": self.n_items}
