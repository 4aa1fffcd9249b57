import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from distillrec.data.split import Split
from distillrec.errors import DataError, DistillrecError
from distillrec.evaluation import Evaluator, evaluate, rank_top_k

D2 = 1 / math.log2(3)  # discount of rank 2; rank 1 has 1


def _frame(pairs: list[tuple[int, int]]) -> pd.DataFrame:
    users, items = zip(*pairs) if pairs else ((), ())
    return pd.DataFrame({"user": np.array(users, np.int64), "item": np.array(items, np.int64),
                         "rating": np.ones(len(pairs), np.float32), "timestamp": np.zeros(len(pairs), np.int64)})


# 4 users x 6 items.   train        valid   test
#   user 0             {0}          {2}     {3, 4}
#   user 1             {1}          {3}     {0}
#   user 2             {0, 1}       {}      {5}
#   user 3             {2}          {}      {}      (nothing to evaluate: skipped)
SPLIT = Split("toy", train=_frame([(0, 0), (1, 1), (2, 0), (2, 1), (3, 2)]),
              valid=_frame([(0, 2), (1, 3)]), test=_frame([(0, 3), (0, 4), (1, 0), (2, 5)]),
              n_users=4, n_items=6)
SCORES = torch.tensor([
    [0.9, 0.6, 0.7, 0.8, 0.5, 0.1],   # user 0
    [0.5, 0.9, 0.5, 0.9, 0.5, 0.0],   # user 1: items 0, 2, 4 tie
    [1.0, 1.0, 1.0, 1.0, 1.0, 1.0],   # user 2: everything ties
    [0.0, 0.1, 0.2, 0.3, 0.4, 0.5],   # user 3
])


def scorer(users: torch.Tensor) -> torch.Tensor:
    return SCORES[users]


def test_test_part_masks_train_and_valid():
    result = evaluate(scorer, SPLIT, "test", ks=(2,))
    # user 0: masked {0, 2} -> ranking 3 (.8), 1 (.6), 4, 5 -> top-2 [3, 1], hit at rank 1;
    #   relevant {3, 4}: recall 1/2, ndcg 1/(1 + D2), mrr 1, precision 1/2, map 1/min(2, 2)
    # user 1: masked {1, 3} -> 0, 2, 4 tie at .5, lower index first -> [0, 2], hit at rank 1;
    #   relevant {0}: recall 1, ndcg 1, mrr 1, precision 1/2, map 1
    # user 2: masked {0, 1} -> 2, 3, 4, 5 tie -> [2, 3], relevant {5}: no hit, all 0
    # user 3: no test item -> skipped
    assert result == pytest.approx({
        "recall@2": (1 / 2 + 1 + 0) / 3, "ndcg@2": (1 / (1 + D2) + 1 + 0) / 3, "hit@2": 2 / 3,
        "mrr@2": 2 / 3, "precision@2": (1 / 2 + 1 / 2 + 0) / 3, "map@2": (1 / 2 + 1 + 0) / 3,
        "n_users": 3, "n_skipped": 1})
    # Without masking train, user 0 would rank item 0 first; without masking valid, user 1
    # would rank item 3 first: either way ndcg would fall below this value.


def test_valid_part_masks_train_only():
    result = evaluate(scorer, SPLIT, "valid", ks=(2,), metrics=("ndcg", "hit"))
    # user 0: masked {0} -> [3, 2]: relevant {2} at rank 2 -> ndcg D2 / 1
    #   (its test item 3 stays rankable; masking it would lift item 2 to rank 1)
    # user 1: masked {1} -> [3, 0]: relevant {3} at rank 1 -> ndcg 1
    # users 2 and 3 have no valid item -> skipped
    assert result == pytest.approx({"ndcg@2": (D2 + 1) / 2, "hit@2": 1.0, "n_users": 2, "n_skipped": 2})


def test_mask_history_false_keeps_seen_items_in_the_ranking():
    # RecBole's SASRec convention: seen items stay rankable (only non-candidates are removed).
    result = evaluate(scorer, SPLIT, "test", ks=(2,), metrics=("ndcg", "hit"), mask_history=False)
    # user 0: nothing masked -> [0 (.9), 3 (.8)]: relevant {3, 4}, hit at rank 2 -> ndcg D2 / (1 + D2)
    # user 1: 1 and 3 tie at .9 -> [1, 3]: relevant {0} missed (masked, it would be [0, 2])
    # user 2: everything ties -> [0, 1]: relevant {5} missed
    assert result == pytest.approx({"ndcg@2": D2 / (1 + D2) / 3, "hit@2": 1 / 3, "n_users": 3, "n_skipped": 1})
    unmasked = Evaluator(SPLIT, ks=(2,), metrics=("ndcg", "hit"), mask_history=False)
    assert unmasked.evaluate(scorer, "test") == result


def test_revealed_interactions_are_masked_in_both_parts():
    split = replace(SPLIT, revealed=_frame([(2, 2), (2, 3)]))
    result = evaluate(scorer, split, "test", ks=(2,), metrics=("ndcg",), users=[2])
    # user 2: masked {0, 1} + revealed {2, 3} -> [4, 5]: relevant {5} at rank 2
    assert result == pytest.approx({"ndcg@2": D2, "n_users": 1, "n_skipped": 0})


def test_users_subset_counts_skipped_users():
    result = evaluate(scorer, SPLIT, "test", ks=(2,), metrics=("recall",), users=np.array([3, 0, 0]))
    # user 0 once (duplicates evaluated once), user 3 has no test item
    assert result == {"recall@2": 0.5, "n_users": 1, "n_skipped": 1}


def test_repeated_rows_count_once():
    doubled = replace(SPLIT, test=pd.concat([SPLIT.test, SPLIT.test]), train=pd.concat([SPLIT.train, SPLIT.train]))
    assert evaluate(scorer, doubled, "test", ks=(2,)) == evaluate(scorer, SPLIT, "test", ks=(2,))


def test_candidates_restrict_ranking_and_ground_truth():
    result = evaluate(scorer, SPLIT, "test", ks=(2,), metrics=("recall", "map", "coverage"),
                      candidates=[3, 4, 5])
    # only items 3, 4, 5 are ranked; user 1's relevant item 0 is no candidate -> skipped.
    # user 0: masked {0, 2} -> [3 (.8), 4 (.5)], both relevant: recall 1, map (1 + 1) / 2 = 1
    # user 2: 3, 4, 5 tie -> [3, 4], relevant {5}: 0
    # coverage: {3, 4} of 3 candidates
    assert result == pytest.approx({"recall@2": 0.5, "map@2": 0.5, "coverage@2": 2 / 3,
                                    "n_users": 2, "n_skipped": 2})


def test_fewer_rankable_items_than_k_leave_empty_slots():
    result = evaluate(scorer, SPLIT, "test", ks=(4,), metrics=("precision", "ndcg", "coverage", "novelty"),
                      candidates=[4, 5])
    # user 0: [4, 5, -, -], relevant {4} at rank 1: precision 1/4 (hits / K, as RecBole), ndcg 1
    # user 2: [4, 5, -, -], relevant {5} at rank 2: precision 1/4, ndcg D2
    # novelty: items 4 and 5 have no train interaction, p = 1/4 users -> -log2 = 2 each
    assert result == pytest.approx({"precision@4": 0.25, "ndcg@4": (1 + D2) / 2, "coverage@4": 1.0,
                                    "novelty@4": 2.0, "n_users": 2, "n_skipped": 2})


def test_beyond_accuracy_metrics_through_the_evaluator():
    features = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [1.0, 1.0], [1.0, 1.0]])
    result = evaluate(scorer, SPLIT, "test", ks=(2,), metrics=("coverage", "diversity", "novelty"),
                      item_features=features)
    # top-2 lists: user 0 [3, 1], user 1 [0, 2], user 2 [2, 3] -> coverage {0, 1, 2, 3} / 6
    # diversity: 1 - cos: [3, 1] -> 1, [0, 2] -> 1, [2, 3] -> 0
    # train popularity of items 0..5: 2/4, 2/4, 1/4, 1/4 (floor), ... -> -log2: 1, 1, 2, 2
    #   novelty: [3, 1] -> 1.5, [0, 2] -> 1.5, [2, 3] -> 2
    assert result == pytest.approx({"coverage@2": 4 / 6, "diversity@2": 2 / 3, "novelty@2": 5 / 3,
                                    "n_users": 3, "n_skipped": 1})


def test_batch_size_and_repeated_calls_do_not_change_results():
    metrics = ("recall", "ndcg", "mrr", "map", "coverage", "novelty")
    one_by_one = Evaluator(SPLIT, ks=(1, 3), metrics=metrics, batch_size=1)
    together = Evaluator(SPLIT, ks=(1, 3), metrics=metrics, batch_size=64)
    first = together.evaluate(scorer, "test")
    assert one_by_one.evaluate(scorer, "test") == first
    assert together.evaluate(scorer, "valid") != first
    assert together.evaluate(scorer, "test") == first


def test_scorer_output_is_not_modified():
    scores = SCORES.clone()
    # The evaluated users are 0, 1, 2 in one batch: a slice is a view holding their rows.
    evaluate(lambda users: scores[: len(users)], SPLIT, "test", ks=(2,))
    assert torch.equal(scores, SCORES)


def test_rank_top_k_breaks_ties_by_lower_index():
    scores = torch.tensor([[1.0, 3.0, 3.0, 3.0, 2.0],
                           [0.0, 0.0, 0.0, 0.0, 0.0],
                           [5.0, 4.0, 3.0, 2.0, 1.0]])
    assert rank_top_k(scores, 2).tolist() == [[1, 2], [0, 1], [0, 1]]
    assert rank_top_k(scores, 4).tolist() == [[1, 2, 3, 4], [0, 1, 2, 3], [0, 1, 2, 3]]
    assert rank_top_k(scores, 5).tolist() == [[1, 2, 3, 4, 0], [0, 1, 2, 3, 4], [0, 1, 2, 3, 4]]


def test_rank_top_k_matches_a_stable_sort_on_heavy_ties():
    generator = torch.Generator().manual_seed(1)
    scores = torch.randint(0, 4, (300, 50), generator=generator).float()
    scores[::7, 10:] = float("-inf")  # rows with fewer than k finite scores
    expected = torch.from_numpy(np.argsort(-scores.numpy(), axis=1, kind="stable")[:, :20])
    assert torch.equal(rank_top_k(scores, 20), expected)


def test_nan_scores_are_rejected():
    nan_scorer = lambda users: torch.full((len(users), 6), float("nan"))  # noqa: E731
    with pytest.raises(DistillrecError, match="NaN"):
        evaluate(nan_scorer, SPLIT, "test", ks=(2,))


@pytest.mark.parametrize("kwargs, message", [
    ({"part": "train"}, "cannot evaluate on split part 'train'"),
    ({"ks": (7,)}, "ks must be integers in 1..n_items=6"),
    ({"metrics": ("ndcg", "auc")}, "unknown metrics \\['auc'\\]"),
    ({"metrics": ("diversity",)}, "needs item_features"),
    ({"item_features": torch.ones(5, 2)}, "item_features must have shape"),
    ({"users": [3]}, "no user to evaluate"),
    ({"users": [4]}, "users must be a non-empty set of indices in 0..3"),
    ({"candidates": [1.5]}, "candidates must be a 1-D array of integer indices"),
    ({"candidates": [1]}, "no user to evaluate: .* among the candidates"),
])
def test_bad_arguments_raise_clear_errors(kwargs, message):
    with pytest.raises(DistillrecError, match=message):
        evaluate(scorer, SPLIT, **{"part": "test", "ks": (2,), **kwargs})


def test_empty_part_has_no_user_to_evaluate():
    with pytest.raises(DistillrecError, match="none of the 4 users has an item in split part 'valid'"):
        evaluate(scorer, replace(SPLIT, valid=_frame([])), "valid", ks=(2,))


def test_wrong_score_shape_is_rejected():
    with pytest.raises(DistillrecError, match=r"shape \(3, 5\); expected \[batch users=3, n_items=6\]"):
        evaluate(lambda users: torch.zeros(len(users), 5), SPLIT, "test", ks=(2,))


def test_out_of_range_split_indices_raise_data_error():
    broken = replace(SPLIT, valid=_frame([(0, 2), (1, 9)]))
    with pytest.raises(DataError, match="split part 'valid', field 'item': row 1: index 9 out of range"):
        evaluate(scorer, broken, "test", ks=(2,))


def test_large_catalogs_are_scored_in_smaller_chunks_with_the_same_metrics(monkeypatch):
    from distillrec.evaluation import evaluator as module

    expected = Evaluator(SPLIT, ks=(1, 3)).evaluate(scorer, "test")
    monkeypatch.setattr(module, "MAX_SCORE_CELLS", 2 * SPLIT.n_items)  # at most 2 users x 6 items
    seen = []
    capped = Evaluator(SPLIT, ks=(1, 3), batch_size=1024)
    assert capped.batch_size == 2 and module.rows_per_chunk(1024, 10**9) == 1
    assert capped.evaluate(lambda users: seen.append(len(users)) or scorer(users), "test") == expected
    assert max(seen) == 2 and sum(seen) == expected["n_users"]


def test_per_user_values_average_to_evaluate():
    evaluator = Evaluator(SPLIT, ks=(1, 2), batch_size=2)  # two batches: [0, 1], [2]
    users, values = evaluator.per_user(scorer, "test", "ndcg@2")
    # per-user ndcg@2 as in test_test_part_masks_train_and_valid; user 3 is skipped
    assert users.dtype == np.int64 and values.dtype == np.float64
    assert users.tolist() == [0, 1, 2]
    assert values == pytest.approx([1 / (1 + D2), 1.0, 0.0])
    for metric in ("ndcg@2", "recall@2", "map@1", "hit@1"):
        assert evaluator.per_user(scorer, "test", metric)[1].mean() == pytest.approx(
            evaluator.evaluate(scorer, "test")[metric])
    subset_users, subset_values = evaluator.per_user(scorer, "valid", "ndcg@2", users=[1, 3, 0, 1])
    assert subset_users.tolist() == [0, 1] and subset_values == pytest.approx([D2, 1.0])
    assert subset_values.mean() == pytest.approx(evaluator.evaluate(scorer, "valid", users=[1, 3, 0, 1])["ndcg@2"])


def test_per_user_within_candidates_averages_to_evaluate_within_them():
    evaluator = Evaluator(SPLIT, ks=(1, 2))
    compared = 0
    for candidates in ([0, 2, 3, 5], [1, 4]):
        try:
            expected = evaluator.evaluate(scorer, "test", candidates=candidates)
        except Exception as error:  # no user has truth among these candidates: both refuse alike
            with pytest.raises(type(error)):
                evaluator.per_user(scorer, "test", "ndcg@2", candidates=candidates)
            continue
        users, values = evaluator.per_user(scorer, "test", "ndcg@2", candidates=candidates)
        assert len(users) == expected["n_users"] and values.mean() == pytest.approx(expected["ndcg@2"])
        compared += 1
    assert compared >= 1


def test_per_user_computes_accuracy_metrics_the_evaluator_was_not_built_with():
    evaluator = Evaluator(SPLIT, ks=(2,), metrics=("coverage",))
    assert evaluator.per_user(scorer, "test", "recall@2")[1] == pytest.approx([0.5, 1.0, 0.0])


@pytest.mark.parametrize("metric", ["ndcg@5", "coverage@2", "ndcg", "auc@2", "ndcg@two"])
def test_per_user_rejects_what_is_not_an_accuracy_metric_at_a_known_k(metric):
    with pytest.raises(DistillrecError, match=r"accuracy metric 'name@k' with name in .* and k in \(2,\)"):
        Evaluator(SPLIT, ks=(2,)).per_user(scorer, "test", metric)


def test_per_interaction_hits_by_hand():
    evaluator = Evaluator(SPLIT, ks=(1, 3))
    # test ranking (train + valid masked): user 0 -> 3, 1, 4, 5; user 1 -> 0, 2, 4 (ties, lower
    # index first); user 2 -> 2, 3, 4, 5 (all tie). Test pairs: (0, 3), (0, 4), (1, 0), (2, 5).
    users, items, hits = evaluator.per_interaction(scorer, "test", 1)
    assert users.tolist() == [0, 0, 1, 2] and items.tolist() == [3, 4, 0, 5]
    assert hits.tolist() == [True, False, True, False]
    assert evaluator.per_interaction(scorer, "test", 3)[2].tolist() == [True, True, True, False]
    # Their mean is the micro-averaged recall: 3 of the 4 test interactions are in a top-3.
    with pytest.raises(DistillrecError, match="per_interaction needs k in"):
        evaluator.per_interaction(scorer, "test", 10)
