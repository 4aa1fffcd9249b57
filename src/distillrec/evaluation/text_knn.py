"""Text item-kNN: classic item-kNN whose item similarities come from a language model's text
embeddings instead of co-occurrence, so a new item with no interaction at all gets a score.

    score(u, j) = sum over the distinct items h of u's history of  sim(h, j),
    sim(h, j)   = cos(text_h, text_j) if j is among h's k nearest items (h itself excluded), else 0.

The neighbour lists are built once, in chunks of items (memory: chunk x n_items); scoring is
a sparse [n_items, n_items] matrix (n_items x k entries) times each chunk of users' history
(memory: chunk x n_items). Ties among the k-th nearest go to the lower item index
(`rank_top_k`), so the lists, and the scores, do not depend on torch's topk order.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from distillrec.errors import DistillrecError
from distillrec.evaluation.evaluator import rank_top_k, rows_per_chunk


class TextKNNScorer:
    """users (LongTensor [B]) -> scores [B, n_items] by text item-kNN (see the module docstring).

    text_embeddings: [n_items, t] (e.g. the teacher's MiniLM vectors; normalised here, a zero
        row has cosine 0 with everything); history: the (user, item) interactions the scorer may
        see, e.g. `split.history("test")` (repeats count once); k_neighbours: nearest items
        kept per history item (at most n_items - 1); chunk_size: users (and items, when building
        the neighbour lists) computed at once, capped so a chunk stays within MAX_SCORE_CELLS.
    A user without history scores 0 everywhere.
    """

    def __init__(self, text_embeddings: torch.Tensor, history: pd.DataFrame, k_neighbours: int = 50,
                 chunk_size: int = 1024):
        text = torch.as_tensor(text_embeddings).detach().float().cpu()
        if text.dim() != 2 or len(text) < 2:
            raise DistillrecError(f"text-kNN needs text embeddings [n_items >= 2, t], got {tuple(text.shape)}")
        if k_neighbours < 1 or chunk_size < 1:
            raise DistillrecError(f"text-kNN: k_neighbours and chunk_size must be >= 1, "
                                  f"got {k_neighbours} and {chunk_size}")
        self.n_items = n_items = len(text)
        self.k = min(int(k_neighbours), n_items - 1)
        self.chunk_size = rows_per_chunk(chunk_size, n_items)
        self.neighbours, self.similarities = self._neighbour_lists(F.normalize(text, dim=1))
        # sim as a sparse matrix transposed: row j holds sim(h, j) for every h with j among its neighbours.
        rows = self.neighbours.reshape(-1)
        columns = torch.arange(n_items).repeat_interleave(self.k)
        self._sim_t = torch.sparse_coo_tensor(torch.stack([rows, columns]), self.similarities.reshape(-1),
                                              (n_items, n_items), check_invariants=True).coalesce()
        self._history = self._history_pairs(history)

    def _neighbour_lists(self, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(indices, cosines), each [n_items, k]: every item's k nearest other items."""
        indices, values = [], []
        for start in range(0, self.n_items, self.chunk_size):
            cosines = text[start:start + self.chunk_size] @ text.T
            own = torch.arange(start, start + len(cosines))
            cosines[torch.arange(len(cosines)), own] = float("-inf")  # an item is not its own neighbour
            nearest = rank_top_k(cosines, self.k)
            indices.append(nearest)
            values.append(cosines.gather(1, nearest))
        return torch.cat(indices), torch.cat(values)

    def _history_pairs(self, history: pd.DataFrame) -> tuple[torch.Tensor, torch.Tensor]:
        """(users, items): the distinct pairs, sorted by user."""
        users = torch.tensor(history["user"].to_numpy(np.int64))
        items = torch.tensor(history["item"].to_numpy(np.int64))
        if len(items) and (int(items.min()) < 0 or int(items.max()) >= self.n_items or int(users.min()) < 0):
            raise DistillrecError(f"text-kNN: history indices out of range (items must be in 0..{self.n_items - 1})")
        keys = torch.unique(users * self.n_items + items)  # sorted
        return keys // self.n_items, keys % self.n_items

    def __call__(self, users: torch.Tensor) -> torch.Tensor:
        users = torch.as_tensor(users, dtype=torch.int64).cpu()
        history_users, history_items = self._history
        out = torch.empty(len(users), self.n_items)
        for start in range(0, len(users), self.chunk_size):
            chunk = users[start:start + self.chunk_size]
            begin = torch.searchsorted(history_users, chunk)
            counts = torch.searchsorted(history_users, chunk, right=True) - begin
            rows = torch.arange(len(chunk)).repeat_interleave(counts)
            # each pair's place in the history: its user's first pair + its rank among the user's pairs
            rank = torch.arange(int(counts.sum())) - (torch.cumsum(counts, 0) - counts).repeat_interleave(counts)
            positions = begin.repeat_interleave(counts) + rank
            seen = torch.zeros(self.n_items, len(chunk))
            seen[history_items[positions], rows] = 1.0
            out[start:start + len(chunk)] = torch.sparse.mm(self._sim_t, seen).T
        return out
