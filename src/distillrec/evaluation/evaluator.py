"""Full-ranking evaluation: score every item for each user, mask what they have seen, rank.

Protocol (RecBole's full ranking, so numbers are comparable):
  part "valid": ground truth = the user's valid items; masked = train (+ revealed) items.
  part "test":  ground truth = the user's test items;  masked = train + valid (+ revealed).
  `split.revealed` holds interactions of cold users shown to the model, never ground truth.
  Users with no ground-truth item are skipped and counted ("n_skipped").

Ties: items are ranked by score, highest first, and among equal scores the lower item
index first. The rule is applied exactly (see `rank_top_k`), never by perturbing scores.

mask_history=False keeps seen items in the ranking (RecBole's convention for sequential
models such as SASRec, whose full ranking masks only the padding id); use it to compare
with such published numbers, not as a protocol of its own.

A restricted candidate set (`candidates`, e.g. cold items) ranks only those items: every
other item is masked, and the ground truth is the user's relevant items *within* the
candidates (so recall can reach 1); coverage is then a fraction of the candidates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd
import torch

from distillrec.data.split import HISTORY_PARTS, Split  # noqa: F401  (HISTORY_PARTS: re-exported)
from distillrec.errors import DataError, DistillrecError
from distillrec.evaluation.metrics import (RANKING_METRICS, coverage, intra_list_diversity,
                                          item_popularity, novelty, ranking_metrics)

#: any callable from user indices (LongTensor [B], on CPU) to scores (float [B, n_items]).
Scorer = Callable[[torch.Tensor], torch.Tensor]

ACCURACY_METRICS = ("recall", "ndcg", "hit", "mrr", "precision", "map")
BEYOND_ACCURACY_METRICS = ("coverage", "diversity", "novelty")
EVALUATED_PARTS = ("valid", "test")
#: Most score cells (users x items) held at once: 16M floats, 64 MB, about 160 MB with the
#: mask, copy and top-K beside them. Large catalogs get fewer users per chunk, never a bigger matrix.
MAX_SCORE_CELLS = 1 << 24


def rows_per_chunk(requested: int, n_columns: int, max_cells: int | None = None) -> int:
    """Rows of a [rows, n_columns] score chunk: `requested`, fewer if that passes max_cells
    (default MAX_SCORE_CELLS)."""
    max_cells = MAX_SCORE_CELLS if max_cells is None else max_cells
    return max(1, min(requested, max_cells // max(1, n_columns)))


def rank_top_k(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices [B, k] of each row's k best items: higher score first, lower index on ties.

    torch.topk leaves the order of equal scores unspecified, so its choice is corrected
    exactly: where the k-th best score is shared with an item outside the list, the tied
    places go to the lowest indices; the list is then ordered by (score desc, index asc).
    Raises DistillrecError if a row holds NaN.
    """
    n_items = scores.shape[1]
    # One place more than needed tells whether the k-th best score continues past the list.
    values, items = scores.topk(min(k + 1, n_items), dim=1)
    if bool(torch.isnan(values[:, 0]).any()):  # topk ranks NaN above every number
        raise DistillrecError("scores contain NaN (did training diverge?)")
    if k < n_items:
        rows = (values[:, k] == values[:, k - 1]).nonzero().squeeze(1)
        values, items = values[:, :k], items[:, :k]
        if rows.numel():
            items[rows] = _lowest_index_ties(scores[rows], values[rows], items[rows])
    items = items.sort(dim=1).values
    by_score = scores.gather(1, items).sort(dim=1, descending=True, stable=True).indices
    return items.gather(1, by_score)


def _lowest_index_ties(scores: torch.Tensor, values: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """Top lists [R, k] whose places at the k-th best score go to the lowest-index tied items."""
    n_items, k = scores.shape[1], values.shape[1]
    threshold = values[:, -1:]
    n_above = (values > threshold).sum(dim=1, keepdim=True)  # these items are certain
    # Rank the tied items by n_items - index (positive), everything else by 0.
    index_key = torch.arange(n_items, 0, -1, dtype=torch.int32, device=scores.device)
    lowest_ties = torch.where(scores == threshold, index_key, 0).topk(k, dim=1).indices
    slot = torch.arange(k, device=scores.device).expand_as(items)
    return torch.where(slot < n_above, items, lowest_ties.gather(1, (slot - n_above).clamp(min=0)))


@dataclass(frozen=True)
class _UserItemSets:
    """Each user's set of item indices, as (user, item) pairs sorted by user then item.

    A user's pairs are the slice indptr[u]:indptr[u + 1] of `users` and `items`.
    """

    users: torch.Tensor   # int64 [nnz]
    items: torch.Tensor   # int64 [nnz]
    indptr: torch.Tensor  # int64 [n_users + 1]
    n_items: int

    @classmethod
    def from_frames(cls, frames: Sequence[tuple[str, pd.DataFrame]], n_users: int, n_items: int) -> "_UserItemSets":
        users, items = [], []
        for name, frame in frames:
            u, i = frame["user"].to_numpy(np.int64), frame["item"].to_numpy(np.int64)
            for field, values, size in (("user", u, n_users), ("item", i, n_items)):
                bad = (values < 0) | (values >= size)
                if bad.any():
                    row = int(np.argmax(bad))
                    raise DataError(f"split part '{name}'", f"row {row}: index {values[row]} out of range",
                                    field=field, expected=f"0 <= index < {size}")
            users.append(u)
            items.append(i)
        # Sort and drop repeats by hand: np.unique's hash path is several times slower here.
        keys = np.sort(np.concatenate(users) * n_items + np.concatenate(items))
        first = np.ones(len(keys), dtype=bool)
        first[1:] = keys[1:] != keys[:-1]
        keys = keys[first]
        return cls._from_sorted(torch.from_numpy(keys // n_items), torch.from_numpy(keys % n_items), n_users, n_items)

    @classmethod
    def _from_sorted(cls, users: torch.Tensor, items: torch.Tensor, n_users: int, n_items: int) -> "_UserItemSets":
        counts = torch.bincount(users, minlength=n_users)
        indptr = torch.cat([torch.zeros(1, dtype=torch.int64), counts.cumsum(0)])
        return cls(users, items, indptr, n_items)

    @property
    def n_users(self) -> int:
        return len(self.indptr) - 1

    def counts(self, users: torch.Tensor) -> torch.Tensor:
        return self.indptr[users + 1] - self.indptr[users]

    def coordinates(self, users: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(row in `users`, item) of every pair held by the given distinct users."""
        row_of_user = torch.full((self.n_users,), -1, dtype=torch.int64)
        row_of_user[users] = torch.arange(len(users))
        # Batches are runs of sorted users, so the pairs between the smallest and the largest
        # user are few more than the batch's own.
        span = slice(int(self.indptr[users.min()]), int(self.indptr[users.max() + 1]))
        rows = row_of_user.index_select(0, self.users[span])
        held = (rows >= 0).nonzero().squeeze(1)
        return rows.index_select(0, held), self.items[span].index_select(0, held)

    def dense(self, users: torch.Tensor, device: torch.device) -> torch.Tensor:
        """Bool [len(users), n_items]: True where the user has the item."""
        rows, items = self.coordinates(users)
        out = torch.zeros(len(users), self.n_items, dtype=torch.bool, device=device)
        out[rows.to(device), items.to(device)] = True
        return out

    def restricted_to(self, keep: torch.Tensor) -> "_UserItemSets":
        """The same sets holding only items where `keep` (bool [n_items]) is True."""
        kept = keep[self.items]
        return self._from_sorted(self.users[kept], self.items[kept], self.n_users, self.n_items)


class Evaluator:
    """Evaluates scorers on one split; masks are built once, so calling it every epoch is cheap.

    ks: cut-offs K; metrics: names from ACCURACY_METRICS and BEYOND_ACCURACY_METRICS
    ("diversity" needs item_features [n_items, d], e.g. genre multi-hot or embeddings);
    batch_size: users scored at once (memory ~ batch_size x n_items floats; capped so that a
        chunk stays within MAX_SCORE_CELLS);
    mask_history: remove the user's seen items from the ranking (see the module docstring).
    The scorer runs under torch.no_grad(); putting a model in eval mode and giving it its
    history (`Recommender.set_history`) is the caller's job, as the scorer is any callable.
    """

    def __init__(self, split: Split, *, ks: Iterable[int] = (10, 20),
                 metrics: Iterable[str] = ACCURACY_METRICS, batch_size: int = 1024,
                 item_features: torch.Tensor | np.ndarray | None = None, mask_history: bool = True):
        self.split = split
        self.mask_history = mask_history
        self.ks = _check_ks(ks, split.n_items)
        self.metrics = _check_metrics(metrics)
        if batch_size < 1:
            raise DistillrecError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = rows_per_chunk(batch_size, split.n_items)
        self.item_features = None
        if item_features is not None:
            self.item_features = torch.as_tensor(np.asarray(item_features), dtype=torch.float32)
            if self.item_features.dim() != 2 or len(self.item_features) != split.n_items:
                raise DistillrecError(f"item_features must have shape [n_items={split.n_items}, d], "
                                      f"got {tuple(self.item_features.shape)}")
        if "diversity" in self.metrics and self.item_features is None:
            raise DistillrecError("metric 'diversity' needs item_features (e.g. genre multi-hot or embeddings)")
        self.popularity = (item_popularity(split.train, split.n_users, split.n_items)
                           if "novelty" in self.metrics else None)
        self._sets: dict[str, tuple[_UserItemSets, _UserItemSets]] = {}

    def evaluate(self, scorer: Scorer, part: str = "test", *, candidates=None, users=None) -> dict[str, float]:
        """{"ndcg@10": ..., ..., "n_users": evaluated users, "n_skipped": users without ground truth}.

        candidates: item indices to rank (all items if None); users: user indices to
        evaluate (all if None; duplicates are evaluated once).
        """
        history, truth = self._part_sets(part)
        truth, non_candidates = self._restricted(truth, candidates)
        catalog_size = self.split.n_items if non_candidates is None else int((~non_candidates).sum())
        pool, evaluated = self._users_with_truth(truth, part, users, candidates is not None)

        totals: dict[str, float] = {}
        defined: dict[str, int] = {}   # users over which each metric is defined (NaN-free)
        top_lists = []
        with torch.no_grad():
            for start in range(0, len(evaluated), self.batch_size):
                batch = evaluated[start:start + self.batch_size]
                per_user, top_items = self._evaluate_batch(scorer, batch, history, truth, non_candidates)
                for key, values in per_user.items():
                    finite = ~torch.isnan(values)
                    totals[key] = totals.get(key, 0.0) + float(values[finite].sum())
                    defined[key] = defined.get(key, 0) + int(finite.sum())
                if "coverage" in self.metrics:
                    top_lists.append(top_items.cpu())

        result: dict[str, float] = {}
        for name in self.metrics:
            for k in self.ks:
                key = f"{name}@{k}"
                if name == "coverage":
                    result[key] = coverage(torch.cat(top_lists), k, catalog_size)
                else:
                    result[key] = totals[key] / defined[key] if defined[key] else float("nan")
        result["n_users"] = len(evaluated)
        result["n_skipped"] = len(pool) - len(evaluated)
        return result

    def per_user(self, scorer: Scorer, part: str = "test", metric: str = "ndcg@10", *,
                 candidates=None, users=None) -> tuple[np.ndarray, np.ndarray]:
        """(evaluated users, int64 ascending; their values of the accuracy metric "name@k", float64).

        For paired significance tests (`distillrec.evaluation.significance`): the values' mean
        is `evaluate(scorer, part, candidates=candidates, users=users)[metric]`.
        """
        name, _, k = metric.partition("@")
        if name not in ACCURACY_METRICS or not k.isdigit() or int(k) not in self.ks:
            raise DistillrecError(f"per_user needs an accuracy metric 'name@k' with name in {ACCURACY_METRICS} "
                                  f"and k in {self.ks}, got {metric!r}")
        history, truth = self._part_sets(part)
        truth, non_candidates = self._restricted(truth, candidates)
        _, evaluated = self._users_with_truth(truth, part, users, candidates is not None)
        values = []
        with torch.no_grad():
            for start in range(0, len(evaluated), self.batch_size):
                batch = evaluated[start:start + self.batch_size]
                values.append(self._evaluate_batch(scorer, batch, history, truth, non_candidates,
                                                   (name,))[0][metric].cpu())
        return evaluated.numpy().astype(np.int64), torch.cat(values).numpy().astype(np.float64)

    def per_interaction(self, scorer: Scorer, part: str = "test", k: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(users, items, hit): every (user, item) pair of `part`, and whether the item is in the
        user's full-ranking top-k (seen items masked). Grouped by item, the hit rate is the
        item group's recall@k: how often the model puts those items where users see them.
        Over all pairs, hit.sum() / len(hit) is the micro-averaged recall@k."""
        if k not in self.ks:
            raise DistillrecError(f"per_interaction needs k in {self.ks}, got {k}")
        history, truth = self._part_sets(part)
        _, evaluated = self._users_with_truth(truth, part, None, False)
        users, items, hits = [], [], []
        with torch.no_grad():
            for start in range(0, len(evaluated), self.batch_size):
                batch = evaluated[start:start + self.batch_size]
                _, top_items = self._evaluate_batch(scorer, batch, history, truth, None, ())
                rows, truth_items = truth.coordinates(batch)
                top = top_items[:, :k].cpu()
                users.append(batch[rows])
                items.append(truth_items)
                hits.append((top[rows] == truth_items.unsqueeze(1)).any(1))
        return (torch.cat(users).numpy().astype(np.int64), torch.cat(items).numpy().astype(np.int64),
                torch.cat(hits).numpy())

    def _restricted(self, truth: _UserItemSets, candidates) -> tuple[_UserItemSets, torch.Tensor | None]:
        """(truth within the candidates, mask of the items that are not candidates); both
        unchanged / None when every item is a candidate."""
        if candidates is None:
            return truth, None
        keep = torch.zeros(self.split.n_items, dtype=torch.bool)
        keep[_check_indices(candidates, self.split.n_items, "candidates")] = True
        return truth.restricted_to(keep), ~keep

    def _users_with_truth(self, truth: _UserItemSets, part: str, users, restricted: bool):
        """(pool, evaluated): the distinct requested users (all if None), sorted, and those of
        them with ground truth; raises if there is none."""
        pool = (torch.arange(self.split.n_users) if users is None
                else torch.unique(_check_indices(users, self.split.n_users, "users")))
        evaluated = pool[truth.counts(pool) > 0]
        if len(evaluated) == 0:
            raise DistillrecError(f"no user to evaluate: none of the {len(pool)} users has an item "
                                  f"in split part '{part}'" + (" among the candidates" if restricted else ""))
        return pool, evaluated

    def _evaluate_batch(self, scorer: Scorer, batch: torch.Tensor, history: _UserItemSets,
                        truth: _UserItemSets, non_candidates: torch.Tensor | None,
                        metrics: Sequence[str] | None = None):
        """Per-user metric values for one batch, and its top-K items (-1 for an empty slot).

        metrics: those to compute (default self.metrics); coverage is the caller's.
        """
        metrics = self.metrics if metrics is None else metrics
        scores = scorer(batch)
        _check_scores(scores, len(batch), self.split.n_items)
        device = scores.device
        scores = scores.clone()  # masked below; the scorer's tensor may be shared
        if self.mask_history:
            rows, seen = history.coordinates(batch)
            scores[rows.to(device), seen.to(device)] = float("-inf")
        if non_candidates is not None:
            scores.masked_fill_(non_candidates.to(device), float("-inf"))
        ranked = rank_top_k(scores, max(self.ks))
        # A masked (-inf) item only fills the list when fewer than K items could be ranked.
        filled = scores.gather(1, ranked) > float("-inf")
        hits = truth.dense(batch, device).gather(1, ranked) & filled
        top_items = ranked.masked_fill(~filled, -1)

        accuracy = [m for m in metrics if m in RANKING_METRICS]
        per_user = ranking_metrics(hits, truth.counts(batch), self.ks, accuracy)
        if "diversity" in metrics:
            per_user.update(intra_list_diversity(top_items, self.item_features.to(device), self.ks))
        if "novelty" in metrics:
            per_user.update(novelty(top_items, self.popularity.to(device), self.ks))
        return per_user, top_items

    def _part_sets(self, part: str) -> tuple[_UserItemSets, _UserItemSets]:
        """(masked history, ground truth) of a part, built on first use and kept."""
        if part not in EVALUATED_PARTS:
            raise DistillrecError(f"cannot evaluate on split part {part!r}; expected one of {EVALUATED_PARTS}")
        if part not in self._sets:
            split = self.split
            seen = split.history_parts(part)  # what each part masks: Split.history's pieces
            self._sets[part] = (_UserItemSets.from_frames(seen, split.n_users, split.n_items),
                                _UserItemSets.from_frames([(part, split.part(part))], split.n_users, split.n_items))
        return self._sets[part]


def evaluate(scorer: Scorer, split: Split, part: str = "test", ks: Iterable[int] = (10, 20),
             metrics: Iterable[str] = ACCURACY_METRICS, batch_size: int = 1024,
             item_features: torch.Tensor | np.ndarray | None = None, candidates=None,
             users=None, mask_history: bool = True) -> dict[str, float]:
    """One-off full-ranking evaluation; see `Evaluator` (reuse one to evaluate repeatedly)."""
    evaluator = Evaluator(split, ks=ks, metrics=metrics, batch_size=batch_size, item_features=item_features,
                          mask_history=mask_history)
    return evaluator.evaluate(scorer, part, candidates=candidates, users=users)


def _check_ks(ks: Iterable[int], n_items: int) -> tuple[int, ...]:
    ks = tuple(ks)
    if not ks or any(not isinstance(k, (int, np.integer)) or not 1 <= k <= n_items for k in ks):
        raise DistillrecError(f"ks must be integers in 1..n_items={n_items}, got {ks}")
    return tuple(int(k) for k in ks)


def _check_metrics(metrics: Iterable[str]) -> tuple[str, ...]:
    metrics = tuple(metrics)
    known = ACCURACY_METRICS + BEYOND_ACCURACY_METRICS
    unknown = [m for m in metrics if m not in known]
    if unknown or not metrics:
        raise DistillrecError(f"unknown metrics {unknown}; expected a non-empty selection of {known}")
    return metrics


def _check_indices(indices, size: int, what: str) -> torch.Tensor:
    indices = torch.as_tensor(np.asarray(indices.cpu() if isinstance(indices, torch.Tensor) else indices))
    if indices.dim() != 1 or (indices.numel() and indices.is_floating_point()):
        raise DistillrecError(f"{what} must be a 1-D array of integer indices, got shape "
                              f"{tuple(indices.shape)} and dtype {indices.dtype}")
    indices = indices.to(torch.int64)
    if indices.numel() == 0 or bool(((indices < 0) | (indices >= size)).any()):
        raise DistillrecError(f"{what} must be a non-empty set of indices in 0..{size - 1}")
    return indices


def _check_scores(scores, n_users: int, n_items: int) -> None:
    if not isinstance(scores, torch.Tensor) or not scores.is_floating_point():
        raise DistillrecError(f"the scorer must return a float tensor, got {type(scores).__name__}"
                              + (f" of {scores.dtype}" if isinstance(scores, torch.Tensor) else ""))
    if tuple(scores.shape) != (n_users, n_items):
        raise DistillrecError(f"the scorer returned scores of shape {tuple(scores.shape)}; "
                              f"expected [batch users={n_users}, n_items={n_items}]")
