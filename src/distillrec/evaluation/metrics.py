"""Top-K metrics over ranked lists, vectorised over a batch of users and all K at once.

Accuracy metrics take a boolean hit matrix `hits[B, K_max]` (is the item at rank r relevant?)
and `n_relevant[B]` (how many relevant items each user has, at least 1). Each metric builds
its whole curve over ranks 1..K_max in one pass, and `ranking_metrics` reads the requested
K off it. Definitions follow RecBole's full-ranking metrics (`recbole/evaluator/metrics.py`):

  hit@K       1 if any of the top K is relevant
  mrr@K       1 / rank of the first relevant item, 0 if none is in the top K
  precision@K hits in top K / K
  recall@K    hits in top K / |relevant|
  ndcg@K      DCG@K / IDCG@K, binary gains, discount 1/log2(rank + 1), and the ideal list
              holding min(|relevant|, K) relevant items
  map@K       sum over ranks r <= K with a hit of precision@r, divided by min(|relevant|, K)

Beyond-accuracy metrics take the recommended items `top_items[B, K_max]`, where -1 marks an
empty slot (fewer than K_max items could be ranked, e.g. a small candidate set):

  coverage@K  fraction of the catalog appearing in at least one user's top K
  diversity@K intra-list diversity: mean over pairs in a user's top K of 1 - cosine(features)
  novelty@K   mean self-information -log2 p(i) of the items in a user's top K, with p(i) the
              fraction of users who interacted with i in train (see `item_popularity`)

All per-user functions return float64 values of shape [B] (or curves [B, K_max]), so the
evaluator can sum them over batches without losing precision.
"""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np
import pandas as pd
import torch

from distillrec.registry import Registry

#: name -> function(hits, n_relevant) returning the metric's curve over ranks 1..K_max.
RANKING_METRICS: Registry[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = Registry("ranking metric")


def _ranks(hits: torch.Tensor) -> torch.Tensor:
    """[K_max] float64 ranks 1..K_max on the device of `hits`."""
    return torch.arange(1, hits.shape[1] + 1, dtype=torch.float64, device=hits.device)


def _cumulative_hits(hits: torch.Tensor) -> torch.Tensor:
    return hits.to(torch.float64).cumsum(dim=1)


@RANKING_METRICS.register("hit")
def hit_curve(hits: torch.Tensor, n_relevant: torch.Tensor) -> torch.Tensor:
    return (_cumulative_hits(hits) > 0).to(torch.float64)


@RANKING_METRICS.register("mrr")
def mrr_curve(hits: torch.Tensor, n_relevant: torch.Tensor) -> torch.Tensor:
    # argmax returns the first maximal index, i.e. the rank of the first hit (0-based).
    first_hit = hits.to(torch.int8).argmax(dim=1, keepdim=True)
    reciprocal = 1.0 / (first_hit.to(torch.float64) + 1.0)
    return torch.where(_cumulative_hits(hits) > 0, reciprocal, 0.0)


@RANKING_METRICS.register("precision")
def precision_curve(hits: torch.Tensor, n_relevant: torch.Tensor) -> torch.Tensor:
    return _cumulative_hits(hits) / _ranks(hits)


@RANKING_METRICS.register("recall")
def recall_curve(hits: torch.Tensor, n_relevant: torch.Tensor) -> torch.Tensor:
    return _cumulative_hits(hits) / n_relevant.to(torch.float64).unsqueeze(1)


@RANKING_METRICS.register("ndcg")
def ndcg_curve(hits: torch.Tensor, n_relevant: torch.Tensor) -> torch.Tensor:
    discount = 1.0 / torch.log2(_ranks(hits) + 1.0)
    dcg = torch.where(hits, discount, 0.0).cumsum(dim=1)
    # The ideal list at cut-off K holds min(|relevant|, K) hits at the top ranks.
    ranks = torch.arange(1, hits.shape[1] + 1, device=hits.device)
    ideal_hits = torch.minimum(n_relevant.unsqueeze(1), ranks)
    idcg = discount.cumsum(dim=0)[ideal_hits - 1]
    return dcg / idcg


@RANKING_METRICS.register("map")
def map_curve(hits: torch.Tensor, n_relevant: torch.Tensor) -> torch.Tensor:
    precision_at_hits = torch.where(hits, precision_curve(hits, n_relevant), 0.0)
    normaliser = torch.minimum(n_relevant.unsqueeze(1).to(torch.float64), _ranks(hits))
    return precision_at_hits.cumsum(dim=1) / normaliser


def ranking_metrics(hits: torch.Tensor, n_relevant: torch.Tensor, ks: Iterable[int],
                    names: Iterable[str]) -> dict[str, torch.Tensor]:
    """Per-user values {"name@k": float64[B]} of the named accuracy metrics at each k.

    hits: bool [B, K_max], K_max >= max(ks); n_relevant: int [B], every entry >= 1.
    """
    ks = list(ks)
    if hits.dtype != torch.bool or hits.dim() != 2:
        raise ValueError(f"hits must be a 2-D bool tensor, got {hits.dtype} of shape {tuple(hits.shape)}")
    if max(ks) > hits.shape[1]:
        raise ValueError(f"k={max(ks)} exceeds the ranked list length {hits.shape[1]}")
    if bool((n_relevant < 1).any()):
        raise ValueError("every user needs at least one relevant item (skip the others before scoring)")
    n_relevant = n_relevant.to(device=hits.device, dtype=torch.int64)
    columns = torch.tensor([k - 1 for k in ks], device=hits.device)
    out = {}
    for name in names:
        curve = RANKING_METRICS.get(name)(hits, n_relevant)[:, columns]
        out.update({f"{name}@{k}": curve[:, j] for j, k in enumerate(ks)})
    return out


def coverage(top_items: torch.Tensor, k: int, catalog_size: int) -> float:
    """Fraction of the catalog recommended to at least one user within the top k.

    top_items: int [N, K_max] item indices over *all* evaluated users, -1 for an empty slot.
    """
    recommended = top_items[:, :k]
    distinct = torch.unique(recommended[recommended >= 0]).numel()
    return float(distinct / catalog_size)


def intra_list_diversity(top_items: torch.Tensor, item_features: torch.Tensor,
                         ks: Iterable[int]) -> dict[str, torch.Tensor]:
    """Per-user {"diversity@k": float64[B]}: mean over item pairs in the top k of 1 - cosine.

    Empty slots (-1) are left out of the pairs; a user with fewer than two items in the
    top k gets NaN (undefined), which the evaluator leaves out of the average. An all-zero
    feature row has cosine 0 with every item (dissimilarity 1).
    """
    valid = top_items >= 0
    vectors = torch.nn.functional.normalize(
        item_features[top_items.clamp(min=0)].to(torch.float64), dim=-1)
    dissimilarity = 1.0 - vectors @ vectors.transpose(1, 2)               # [B, K, K]
    k_max = top_items.shape[1]
    upper = torch.ones(k_max, k_max, dtype=torch.bool, device=top_items.device).triu(diagonal=1)
    pairs = upper & valid.unsqueeze(2) & valid.unsqueeze(1)               # pair (i, j), i < j
    # Pairs inside the top k are those with j < k: cumulative sums over j give every k at once.
    pair_sum = torch.where(pairs, dissimilarity, 0.0).sum(dim=1).cumsum(dim=1)
    pair_count = pairs.sum(dim=1).cumsum(dim=1).to(torch.float64)
    per_k = pair_sum / pair_count                                         # 0/0 -> NaN
    return {f"diversity@{k}": per_k[:, k - 1] for k in ks}


def novelty(top_items: torch.Tensor, popularity: torch.Tensor, ks: Iterable[int]) -> dict[str, torch.Tensor]:
    """Per-user {"novelty@k": float64[B]}: mean of -log2 p(i) over the items in the top k.

    popularity: float [n_items], every entry in (0, 1] (see `item_popularity`). Empty slots
    (-1) are left out; a user with no item in the top k gets NaN.
    """
    valid = top_items >= 0
    information = -torch.log2(popularity.to(torch.float64)[top_items.clamp(min=0)])
    total = torch.where(valid, information, 0.0).cumsum(dim=1)
    count = valid.cumsum(dim=1).to(torch.float64)
    per_k = total / count
    return {f"novelty@{k}": per_k[:, k - 1] for k in ks}


def item_popularity(interactions: pd.DataFrame, n_users: int, n_items: int) -> torch.Tensor:
    """p(i) = distinct users who interacted with item i / n_users, as float64 [n_items].

    Items nobody interacted with get 1 / n_users, the smallest nonzero popularity (as if one
    user had seen them): their novelty is the largest possible, log2(n_users), not infinite.
    """
    pairs = interactions[["user", "item"]].drop_duplicates()
    users_per_item = np.bincount(pairs["item"].to_numpy(), minlength=n_items)
    return torch.from_numpy(np.maximum(users_per_item, 1) / n_users)
