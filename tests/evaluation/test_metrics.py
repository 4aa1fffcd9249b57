import math

import pandas as pd
import pytest
import torch

from distillrec.errors import DistillrecError
from distillrec.evaluation.metrics import (coverage, intra_list_diversity, item_popularity, novelty,
                                          ranking_metrics)

ALL = ("hit", "mrr", "precision", "recall", "ndcg", "map")
D2, D3, D4, D5 = (1 / math.log2(r + 1) for r in (2, 3, 4, 5))  # rank discounts; D1 = 1


def test_hand_computed_values_at_several_k():
    # user A: hits at ranks 2 and 4 of 4, |relevant| = 3
    # user B: hit at rank 1 only, |relevant| = 1 (fewer relevant items than K)
    hits = torch.tensor([[False, True, False, True],
                         [True, False, False, False]])
    out = ranking_metrics(hits, torch.tensor([3, 1]), ks=(1, 2, 4), names=ALL)
    expected = {
        "hit@1": [0, 1], "hit@2": [1, 1], "hit@4": [1, 1],
        "mrr@1": [0, 1], "mrr@2": [1 / 2, 1], "mrr@4": [1 / 2, 1],      # first hit at rank 2 / 1
        "precision@1": [0, 1], "precision@2": [1 / 2, 1 / 2], "precision@4": [2 / 4, 1 / 4],
        "recall@1": [0, 1], "recall@2": [1 / 3, 1], "recall@4": [2 / 3, 1],
        # A@2: DCG = D2; ideal holds min(3, 2) = 2 hits -> 1 + D2
        # A@4: DCG = D2 + D4; ideal holds min(3, 4) = 3 hits -> 1 + D2 + D3
        # B: the ideal list holds min(1, K) = 1 hit, DCG = 1 -> 1 at every K
        "ndcg@1": [0, 1], "ndcg@2": [D2 / (1 + D2), 1], "ndcg@4": [(D2 + D4) / (1 + D2 + D3), 1],
        # A@2: precision at the hit rank 2 is 1/2, divided by min(3, 2) = 2 -> 0.25
        # A@4: (1/2 + 2/4) / min(3, 4) = 1/3;  B: precision@1 = 1, divided by min(1, K) = 1
        "map@1": [0, 1], "map@2": [0.25, 1], "map@4": [1 / 3, 1],
    }
    assert set(out) == set(expected)
    for key, values in expected.items():
        assert out[key].tolist() == pytest.approx(values), key
    assert out["ndcg@4"][0].item() == pytest.approx(0.4981893, abs=1e-6)  # 1.0616064 / 2.1309298


def test_no_hit_gives_zero_everywhere():
    out = ranking_metrics(torch.zeros(1, 3, dtype=torch.bool), torch.tensor([2]), ks=(3,), names=ALL)
    assert all(value.item() == 0 for value in out.values())


def _reference(hits_row: list[bool], n_relevant: int, k: int) -> dict[str, float]:
    """Per-user metrics written from the definitions with plain loops."""
    top = hits_row[:k]
    n_hits = sum(top)
    first = next((r for r, h in enumerate(top, start=1) if h), None)
    dcg = sum(1 / math.log2(r + 1) for r, h in enumerate(top, start=1) if h)
    idcg = sum(1 / math.log2(r + 1) for r in range(1, min(n_relevant, k) + 1))
    ap = sum(sum(top[:r]) / r for r, h in enumerate(top, start=1) if h)
    return {"hit": float(n_hits > 0), "mrr": 1 / first if first else 0.0, "precision": n_hits / k,
            "recall": n_hits / n_relevant, "ndcg": dcg / idcg, "map": ap / min(n_relevant, k)}


def test_matches_loop_reference_on_random_lists():
    generator = torch.Generator().manual_seed(0)
    hits = torch.rand(200, 20, generator=generator) < 0.2
    n_relevant = hits.sum(dim=1) + torch.randint(1, 30, (200,), generator=generator)
    ks = (1, 5, 10, 20)
    out = ranking_metrics(hits, n_relevant, ks, ALL)
    for user in range(200):
        for k in ks:
            ref = _reference(hits[user].tolist(), int(n_relevant[user]), k)
            for name in ALL:
                assert out[f"{name}@{k}"][user].item() == pytest.approx(ref[name], abs=1e-12)


def test_rejects_users_without_relevant_items_and_too_large_k():
    hits = torch.zeros(2, 3, dtype=torch.bool)
    with pytest.raises(ValueError, match="at least one relevant"):
        ranking_metrics(hits, torch.tensor([1, 0]), ks=(3,), names=ALL)
    with pytest.raises(ValueError, match="exceeds"):
        ranking_metrics(hits, torch.tensor([1, 1]), ks=(4,), names=ALL)
    with pytest.raises(DistillrecError, match="unknown ranking metric 'auc'"):
        ranking_metrics(hits, torch.tensor([1, 1]), ks=(3,), names=("auc",))


# The 3-user toy for beyond-accuracy metrics: 4 items, -1 marks an empty slot.
TOP_ITEMS = torch.tensor([[0, 1, 2],
                          [0, 2, -1],
                          [3, -1, -1]])
# item 0 = [1, 0], item 1 = [0, 1], item 2 = [1, 1], item 3 has no feature (all zero).
FEATURES = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0]])
C = 1 - 1 / math.sqrt(2)  # dissimilarity of items 0-2 and 1-2 (cosine 1/sqrt(2)); 0-1 is 1


def test_coverage_counts_distinct_recommended_items_over_the_catalog():
    assert coverage(TOP_ITEMS, k=1, catalog_size=4) == 2 / 4   # {0, 3}
    assert coverage(TOP_ITEMS, k=2, catalog_size=4) == 4 / 4   # {0, 1, 2, 3}; -1 is no item
    assert coverage(TOP_ITEMS[:2], k=3, catalog_size=8) == 3 / 8


def test_intra_list_diversity_on_toy():
    out = intra_list_diversity(TOP_ITEMS, FEATURES, ks=(2, 3))
    # user 0 @2: pair (0,1) -> 1;  @3: pairs (0,1)=1, (0,2)=C, (1,2)=C -> (1 + 2C) / 3
    # user 1 @2 and @3: pair (0,2) only (slot 3 is empty) -> C
    # user 2: a single item, no pair -> undefined (NaN)
    assert out["diversity@2"][:2].tolist() == pytest.approx([1.0, C])
    assert out["diversity@3"][:2].tolist() == pytest.approx([(1 + 2 * C) / 3, C])
    assert math.isnan(out["diversity@2"][2]) and math.isnan(out["diversity@3"][2])


def test_zero_feature_item_is_fully_dissimilar():
    out = intra_list_diversity(torch.tensor([[0, 3]]), FEATURES, ks=(2,))
    assert out["diversity@2"].tolist() == [1.0]


def test_item_popularity_and_novelty_on_toy():
    # 4 users; item 0 seen by all 4, item 1 by 2 (one of them twice), item 2 by 1, item 3 by none.
    train = pd.DataFrame({"user": [0, 1, 2, 3, 0, 1, 1, 2], "item": [0, 0, 0, 0, 1, 1, 1, 2]})
    popularity = item_popularity(train, n_users=4, n_items=4)
    # item 3 gets the smallest nonzero popularity 1/4 instead of 0.
    assert popularity.tolist() == [1.0, 0.5, 0.25, 0.25]
    out = novelty(TOP_ITEMS, popularity, ks=(1, 3))
    # -log2 p = [0, 1, 2, 2]. user 0 @3: (0 + 1 + 2) / 3 = 1;  user 1 @3: (0 + 2) / 2 = 1 (empty
    # slot left out);  user 2: item 3 alone -> 2.
    assert out["novelty@1"].tolist() == [0.0, 0.0, 2.0]
    assert out["novelty@3"].tolist() == [1.0, 1.0, 2.0]
