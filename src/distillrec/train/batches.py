"""Training batches built with whole-tensor ops: one permutation per epoch, negatives drawn for
a whole batch in one call, positives looked up in a dense bool matrix or a hash set. No
per-example Python and no DataLoader workers: for models this small, Python overhead, not
arithmetic, sets the speed.

Every random draw comes from the `torch.Generator` the caller passes in, so an epoch's batches
depend only on that generator's seed (the Trainer seeds it from config.seed + epoch, which is
what makes a resumed run identical to an uninterrupted one).
"""

from __future__ import annotations

from typing import Iterator, Literal

import numpy as np
import pandas as pd
import torch

from distillrec.errors import DistillrecError
from distillrec.train.keyset import KeySet
from distillrec.train.losses import REC_LOSSES

Batch = dict[str, torch.Tensor]
SamplerName = Literal["uniform", "popularity"]

# Rejection rounds before giving up: each round redraws only the collisions, so even a user
# who has seen 99% of the catalog clears in a few hundred rounds.
_MAX_REJECTION_ROUNDS = 1000
# Negatives drawn per sampler call (8 MB of indices): enough for a whole ML-100K epoch.
_DRAWS_PER_CALL = 1 << 20
# Up to this many (user, item) cells, membership is a lookup in a dense bool matrix (64 MB):
# one gather, 4-20x faster per lookup than the hash set on ML-100K/ML-1M. Larger logs use the
# hash set (`KeySet`: linear set-up, O(1) expected probes per draw, whatever the log size).
_DENSE_LOOKUP_CELLS = 1 << 26


class NegativeSampler:
    """Draws items a user has NOT interacted with in `interactions` (unlike RecBole's optional
    collision-tolerant mode, a sampled negative is never one of the user's training positives).

    distribution: "uniform" over the catalog, or "popularity" (proportional to each item's
    training count, so items never seen in training are never drawn).
    """

    def __init__(self, interactions: pd.DataFrame, n_items: int,
                 distribution: SamplerName = "uniform", device: str | torch.device = "cpu"):
        users, items = _column(interactions, "user", device), _column(interactions, "item", device)
        self.n_items = n_items
        self.distribution = distribution
        self._device = users.device
        keys = users * n_items + items  # (user, item) keys; repeats of a pair are harmless
        self._dense, self._positive_set = None, None
        n_users = int(users.max()) + 1 if users.numel() else 0
        if n_users * n_items <= _DENSE_LOOKUP_CELLS:
            self._dense = torch.zeros(n_users * n_items + 1, dtype=torch.bool, device=self._device)
            self._dense[keys] = True
        else:
            self._positive_set = KeySet(keys)
        if distribution == "popularity":
            self._weights = torch.bincount(items, minlength=n_items).double()
        elif distribution != "uniform":
            raise DistillrecError(f"unknown negative sampler {distribution!r}; expected uniform or popularity")

    def sample(self, users: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
        """Negatives of shape [*users.shape, n], none of them a training positive of its user."""
        shape = (*users.shape, n)
        flat_users = users.unsqueeze(-1).expand(shape).reshape(-1)
        items = self._draw(flat_users.numel(), generator)
        todo = torch.nonzero(self.is_positive(flat_users, items)).squeeze(1)
        for _ in range(_MAX_REJECTION_ROUNDS):
            if todo.numel() == 0:
                return items.view(shape)
            items[todo] = self._draw(todo.numel(), generator)
            todo = todo[self.is_positive(flat_users[todo], items[todo])]
        stuck = sorted(set(flat_users[todo].tolist()))[:5]
        raise DistillrecError(
            f"could not draw {self.distribution} negatives for users {stuck}: they have interacted "
            "with (nearly) every item that can be sampled; drop them or use another sampler")

    def is_positive(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        keys = users * self.n_items + items
        if self._dense is not None:
            # Users beyond the training set (no positives) map to the always-False last cell.
            return self._dense[keys.clamp(max=self._dense.numel() - 1)]
        # Users beyond the training set give keys no training pair has: never members.
        return self._positive_set.contains(keys)

    def _draw(self, count: int, generator: torch.Generator) -> torch.Tensor:
        if self.distribution == "uniform":
            return torch.randint(self.n_items, (count,), generator=generator, device=self._device)
        return torch.multinomial(self._weights, count, replacement=True, generator=generator)


class _EpochBatches:
    """Shuffled batches of rows; negatives for many batches are drawn in one call (at most
    _DRAWS_PER_CALL items), since each sampler call costs a few fixed kernel launches."""

    n_negatives: int
    sampler: NegativeSampler | None
    _owners_per_row: int  # negative slots per row, before the n_negatives dimension

    def __len__(self) -> int:
        raise NotImplementedError

    def _columns(self, rows: torch.Tensor) -> Batch:
        """The batch tensors of these rows, negatives aside."""
        raise NotImplementedError

    def _negative_owners(self, columns: Batch) -> torch.Tensor:
        """The user of each negative slot (without the trailing n_negatives dimension)."""
        raise NotImplementedError

    def epoch(self, batch_size: int, generator: torch.Generator) -> Iterator[Batch]:
        order = torch.randperm(len(self), generator=generator, device=self._device)
        draws_per_row = max(1, self.n_negatives * self._owners_per_row)
        rows_per_call = batch_size * max(1, _DRAWS_PER_CALL // (batch_size * draws_per_row))
        for chunk in order.split(rows_per_call):
            columns = self._columns(chunk)
            if self.n_negatives:
                columns["neg"] = self.sampler.sample(self._negative_owners(columns), self.n_negatives, generator)
            for start in range(0, len(chunk), batch_size):
                yield {name: values[start:start + batch_size] for name, values in columns.items()}


class PairBatches(_EpochBatches):
    """(user, positive item, negatives) batches over every training interaction, reshuffled
    each epoch: {"user": [B], "pos": [B]} plus "neg": [B, n_negatives] when n_negatives > 0."""

    def __init__(self, interactions: pd.DataFrame, n_negatives: int = 0,
                 sampler: NegativeSampler | None = None, device: str | torch.device = "cpu"):
        if n_negatives > 0 and sampler is None:
            raise ValueError("n_negatives > 0 needs a NegativeSampler")
        self.users = _column(interactions, "user", device)
        self.items = _column(interactions, "item", device)
        self.n_negatives, self.sampler, self._device = n_negatives, sampler, device
        self._owners_per_row = 1

    def __len__(self) -> int:
        return self.users.numel()

    def _columns(self, rows: torch.Tensor) -> Batch:
        return {"user": self.users[rows], "pos": self.items[rows]}

    def _negative_owners(self, columns: Batch) -> torch.Tensor:
        return columns["user"]


class SequenceBatches(_EpochBatches):
    """Chronological windows of each user's training items for next-item models:
    {"user": [B], "seq": [B, max_len + 1]} (item index + 1, 0 = padding, left-padded, the
    `distillrec.data.sequences.user_sequences` convention); the model reads seq[:, :-1] and
    predicts seq[:, 1:] at every position. Histories longer than max_len + 1 are cut into
    several windows from the most recent end, so every training item is a target once (the
    first item of a user's history has no context and is never a target).
    "newest": [B] bool, the window that ends at the user's last training item: the only one
    whose final state predicts what the teacher's per-user knowledge (top-K from the whole
    training history) speaks about, so distillation's per-user terms read only those rows.
    "step": [B, max_len + 1] each slot's training step: its row in the training interactions
    sorted by user and time (-1 for padding), the key of the teacher's per-step knowledge.
    With n_negatives > 0, "neg": [B, max_len, n_negatives] item indices (no +1 shift)."""

    def __init__(self, interactions: pd.DataFrame, n_users: int, max_len: int, n_negatives: int = 0,
                 sampler: NegativeSampler | None = None, device: str | torch.device = "cpu"):
        if n_negatives > 0 and sampler is None:
            raise ValueError("n_negatives > 0 needs a NegativeSampler")
        users, windows, steps = sequence_windows(interactions, n_users, max_len + 1)
        newest = torch.ones(len(users), dtype=torch.bool)  # windows come newest first per user
        newest[1:] = users[1:] != users[:-1]
        self.users, self.windows, self.newest = users.to(device), windows.to(device), newest.to(device)
        self.steps = steps.to(device)
        self.max_len, self.n_negatives, self.sampler, self._device = max_len, n_negatives, sampler, device
        self._owners_per_row = max_len

    def __len__(self) -> int:
        return self.users.numel()

    def _columns(self, rows: torch.Tensor) -> Batch:
        return {"user": self.users[rows], "seq": self.windows[rows], "newest": self.newest[rows],
                "step": self.steps[rows]}

    def _negative_owners(self, columns: Batch) -> torch.Tensor:
        return columns["user"].unsqueeze(1).expand(-1, self.max_len)


def _column(frame: pd.DataFrame, name: str, device: str | torch.device) -> torch.Tensor:
    return torch.tensor(frame[name].to_numpy(np.int64), dtype=torch.long, device=device)


def sequence_windows(interactions: pd.DataFrame, n_users: int,
                     length: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cut each user's time-ordered items into windows of `length` (item + 1, left-padded with 0)
    that overlap by one item, newest window first. Returns (users [W], windows [W, length],
    steps [W, length]): a slot's step is its row in `interactions` sorted by user and time
    (stable), -1 for padding. Users with fewer than two items get no window: there is nothing
    to predict."""
    ordered = interactions.sort_values(["user", "timestamp"], kind="stable")
    users = ordered["user"].to_numpy(np.int64)
    items = ordered["item"].to_numpy(np.int64) + 1
    counts = np.bincount(users, minlength=n_users)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    stride = length - 1
    n_windows = np.where(counts >= 2, -(-(counts - 1) // stride), 0)
    window_user = np.repeat(np.arange(n_users), n_windows)
    rank = np.arange(n_windows.sum()) - np.repeat(np.cumsum(n_windows) - n_windows, n_windows)
    end = starts[window_user] + counts[window_user] - rank * stride  # exclusive, global row
    first = starts[window_user]
    index = end[:, None] - length + np.arange(length)[None, :]
    filled = index >= first[:, None]
    windows = np.where(filled, items[np.clip(index, 0, None)], 0)
    steps = np.where(filled, index, -1)
    return torch.from_numpy(window_user), torch.from_numpy(windows.astype(np.int64)), torch.from_numpy(steps)


def make_batches(model, interactions: pd.DataFrame, n_users: int, n_items: int, *, n_negatives: int,
                 sampler: SamplerName, device: str | torch.device = "cpu") -> PairBatches | SequenceBatches:
    """The batch source a model trains on: its `batch_kind` picks pairs or sequences, and its
    `rec_loss` decides whether negatives are drawn (full-catalog losses need none)."""
    needs_negatives = REC_LOSSES.get(model.rec_loss).candidates == "sampled"
    if needs_negatives and n_negatives < 1:
        raise DistillrecError(f"rec_loss {model.rec_loss!r} needs n_negatives >= 1 (got {n_negatives})")
    n_negatives = n_negatives if needs_negatives else 0
    negative_sampler = NegativeSampler(interactions, n_items, sampler, device) if needs_negatives else None
    if model.batch_kind == "pairs":
        return PairBatches(interactions, n_negatives, negative_sampler, device)
    if model.batch_kind == "sequences":
        return SequenceBatches(interactions, n_users, model.max_len, n_negatives, negative_sampler, device)
    raise DistillrecError(f"unknown batch_kind {model.batch_kind!r}; expected pairs or sequences")
