"""Text item-kNN: hand-computed scores on a 5-item toy, new items scored from text alone,
self-similarity excluded, tie order, and chunking that does not change a score."""

import numpy as np
import pandas as pd
import pytest
import torch

from distillrec.errors import DistillrecError
from distillrec.evaluation.text_knn import TextKNNScorer

# 2-D "text" vectors; item 1 has norm 2 (cosines do not depend on it).
#   cos  0     1     2     3     4
#   0    -    .6    0    -1    .8
#   1   .6     -   .8   -.6   .96
#   2    0    .8    -     0    .6
#   3   -1   -.6    0     -   -.8
#   4   .8   .96   .6   -.8    -
TEXT = torch.tensor([[1.0, 0.0], [1.2, 1.6], [0.0, 1.0], [-1.0, 0.0], [0.8, 0.6]])
# user 0 saw item 0 (twice: counts once) and item 2; user 1 nothing; user 2 item 1.
# Items 3 and 4 have no interaction at all.
HISTORY = pd.DataFrame({"user": [0, 0, 2, 0], "item": [0, 2, 1, 0]})


def test_scores_sum_the_history_items_k_nearest_cosines():
    scorer = TextKNNScorer(TEXT, HISTORY, k_neighbours=2)
    # nearest 2: item 0 -> 4 (.8), 1 (.6); item 1 -> 4 (.96), 2 (.8); item 2 -> 1 (.8), 4 (.6)
    assert scorer.neighbours.tolist() == [[4, 1], [4, 2], [1, 4], [2, 1], [1, 0]]
    scores = scorer(torch.tensor([0, 1, 2]))
    # user 0: items 0 and 2 -> item 1: .6 + .8, item 4: .8 + .6; item 0 is not among 2's nearest
    expected = torch.tensor([[0.0, 1.4, 0.0, 0.0, 1.4],
                             [0.0, 0.0, 0.0, 0.0, 0.0],   # no history: 0 everywhere
                             [0.0, 0.0, 0.8, 0.0, 0.96]])
    torch.testing.assert_close(scores, expected)
    # Item 4 has no interaction, yet its text puts it at the top for users 0 and 2.
    assert scores[0, 4] > 0 and scores[2, 4] == scores[2].max()


def test_an_item_is_never_its_own_neighbour():
    scorer = TextKNNScorer(TEXT, HISTORY, k_neighbours=10)  # more than n_items - 1: capped to 4
    assert scorer.k == 4
    assert not (scorer.neighbours == torch.arange(5).unsqueeze(1)).any()
    # user 2 saw item 1: every other item scores its cosine with 1, item 1 itself 0 (not 1).
    torch.testing.assert_close(scorer(torch.tensor([2]))[0], torch.tensor([0.6, 0.0, 0.8, -0.6, 0.96]))


def test_tied_neighbours_go_to_the_lower_index():
    text = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    scorer = TextKNNScorer(text, HISTORY.iloc[:0], k_neighbours=1)
    assert scorer.neighbours.squeeze(1).tolist() == [1, 0, 0, 0]


def test_chunks_and_batch_order_do_not_change_the_scores():
    rng = np.random.default_rng(0)
    text = torch.from_numpy(rng.normal(size=(40, 8)).astype(np.float32))
    history = pd.DataFrame({"user": rng.integers(0, 25, 200), "item": rng.integers(0, 40, 200)})
    users = torch.arange(30)  # users 25..29 have no history
    whole = TextKNNScorer(text, history, k_neighbours=5)(users)
    for chunk_size in (1, 7):
        torch.testing.assert_close(TextKNNScorer(text, history, k_neighbours=5, chunk_size=chunk_size)(users), whole)
    order = torch.randperm(30, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(TextKNNScorer(text, history, k_neighbours=5)(users[order]), whole[order])
    assert torch.equal(whole[25:], torch.zeros(5, 40)) and (whole[:25] != 0).any(dim=1).all()


def test_rejects_bad_inputs():
    with pytest.raises(DistillrecError, match="k_neighbours"):
        TextKNNScorer(TEXT, HISTORY, k_neighbours=0)
    with pytest.raises(DistillrecError, match="out of range"):
        TextKNNScorer(TEXT, pd.DataFrame({"user": [0], "item": [5]}))
