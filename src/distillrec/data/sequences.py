"""Chronological per-user item sequences, the input of sequential models."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch


def user_sequences(interactions: pd.DataFrame, n_users: int, max_len: int) -> torch.Tensor:
    """[n_users, max_len] int64: each user's last `max_len` items in time order, as item
    index + 1, left-padded with 0 (so 0 means "no item"). Ties in time keep table order."""
    out = np.zeros((n_users, max_len), dtype=np.int64)
    if len(interactions):
        ordered = interactions.sort_values(["user", "timestamp"], kind="stable")
        users = ordered["user"].to_numpy()
        items = ordered["item"].to_numpy() + 1
        starts = np.searchsorted(users, np.arange(n_users), side="left")
        ends = np.searchsorted(users, np.arange(n_users), side="right")
        for user in np.nonzero(ends > starts)[0]:
            seq = items[max(starts[user], ends[user] - max_len):ends[user]]
            out[user, max_len - len(seq):] = seq
    return torch.from_numpy(out)
