import pandas as pd
import pytest
import torch

from distillrec.errors import DistillrecError
from distillrec.students.mf import MatrixFactorization
from distillrec.students.sasrec import SASRec
from distillrec.train.batches import NegativeSampler, PairBatches, SequenceBatches, make_batches, sequence_windows


def interactions(pairs, timestamps=None):
    users, items = zip(*pairs)
    return pd.DataFrame({"user": users, "item": items, "rating": 1.0,
                         "timestamp": timestamps or list(range(len(pairs)))})


TRAIN = interactions([(0, 0), (0, 1), (0, 2), (1, 3), (2, 0), (2, 3)])


@pytest.mark.parametrize("distribution", ["uniform", "popularity"])
def test_sampled_negatives_are_never_training_positives(distribution):
    sampler = NegativeSampler(TRAIN, n_items=5, distribution=distribution)
    users = torch.tensor([0, 1, 2]).repeat(200)
    negatives = sampler.sample(users, 4, torch.Generator().manual_seed(0))
    assert negatives.shape == (600, 4)
    assert not sampler.is_positive(users.unsqueeze(1).expand(-1, 4), negatives).any()
    assert set(negatives[users == 0].flatten().tolist()) <= {3, 4}


def test_popularity_sampler_never_draws_items_unseen_in_training():
    sampler = NegativeSampler(TRAIN, n_items=5, distribution="popularity")
    negatives = sampler.sample(torch.tensor([1] * 500), 2, torch.Generator().manual_seed(0))
    assert 4 not in negatives.tolist()  # item 4 has no training interaction


def test_sampler_reports_users_without_any_negative():
    everything = interactions([(0, 0), (0, 1)])
    sampler = NegativeSampler(everything, n_items=2)
    with pytest.raises(DistillrecError, match=r"users \[0\]"):
        sampler.sample(torch.tensor([0]), 1, torch.Generator().manual_seed(0))


def test_unknown_sampler_is_rejected():
    with pytest.raises(DistillrecError, match="uniform or popularity"):
        NegativeSampler(TRAIN, n_items=5, distribution="zipf")


def test_pair_epoch_visits_each_interaction_once_and_repeats_by_seed():
    batches = PairBatches(TRAIN, n_negatives=2, sampler=NegativeSampler(TRAIN, 5))
    epoch = list(batches.epoch(4, torch.Generator().manual_seed(3)))
    assert [len(b["user"]) for b in epoch] == [4, 2]
    assert all(b["neg"].shape == (len(b["user"]), 2) for b in epoch)
    seen = sorted(zip(torch.cat([b["user"] for b in epoch]).tolist(), torch.cat([b["pos"] for b in epoch]).tolist()))
    assert seen == sorted(zip(TRAIN["user"], TRAIN["item"]))
    again = list(batches.epoch(4, torch.Generator().manual_seed(3)))
    assert all(torch.equal(a[k], b[k]) for a, b in zip(epoch, again) for k in a)


def test_sequence_windows_cover_long_histories_newest_first():
    history = interactions([(0, i) for i in range(7)] + [(1, 3), (2, 4), (2, 5)])
    users, windows, steps = sequence_windows(history, n_users=4, length=4)
    assert users.tolist() == [0, 0, 2]
    # item index + 1, left-padded; windows overlap by one item so each target appears once.
    assert windows.tolist() == [[4, 5, 6, 7], [1, 2, 3, 4], [0, 0, 5, 6]]
    # rows of the history sorted by user and time: user 0 holds 0-6, user 1 row 7, user 2 8-9
    assert steps.tolist() == [[3, 4, 5, 6], [0, 1, 2, 3], [-1, -1, 8, 9]]


def test_sequence_windows_follow_time_not_table_order():
    history = interactions([(0, 1), (0, 2), (0, 3)], timestamps=[30, 10, 20])
    _, windows, steps = sequence_windows(history, 1, 4)
    assert windows.tolist() == [[0, 3, 4, 2]]
    assert steps.tolist() == [[-1, 0, 1, 2]]  # steps count in time order too


def test_sequence_batches_flag_each_users_newest_window_whatever_the_order():
    history = interactions([(0, i) for i in range(7)] + [(1, 3), (2, 4), (2, 5)])
    batches = SequenceBatches(history, n_users=4, max_len=3)
    (batch,) = list(batches.epoch(16, torch.Generator().manual_seed(1)))
    last_item = {0: 6 + 1, 2: 5 + 1}  # item index + 1 of each user's most recent interaction
    flags = {(u, tuple(w)): bool(n) for u, w, n in zip(batch["user"].tolist(), batch["seq"].tolist(),
                                                        batch["newest"].tolist())}
    assert len(flags) == 3 and sum(flags.values()) == 2
    for (user, window), newest in flags.items():
        assert newest == (window[-1] == last_item[user])
    # "step": each slot's row in the history sorted by user and time, the key of per-step knowledge
    ordered = history.sort_values(["user", "timestamp"], kind="stable")["item"].to_numpy() + 1
    filled = batch["seq"] > 0
    assert torch.equal(batch["step"] >= 0, filled)
    assert (torch.from_numpy(ordered)[batch["step"][filled]] == batch["seq"][filled]).all()


def test_sequence_batches_draw_a_negative_per_position():
    history = interactions([(0, i) for i in range(6)] + [(1, 2), (1, 3)])
    batches = SequenceBatches(history, n_users=2, max_len=3, n_negatives=2, sampler=NegativeSampler(history, 8))
    (batch,) = list(batches.epoch(16, torch.Generator().manual_seed(0)))
    assert batch["seq"].shape == (3, 4) and batch["neg"].shape == (3, 3, 2)
    user_zero_negatives = batch["neg"][batch["user"] == 0].flatten()
    assert set(user_zero_negatives.tolist()) <= {6, 7}


def test_make_batches_skips_negatives_for_full_catalog_losses():
    sampled = make_batches(MatrixFactorization(3, 5, dim=4), TRAIN, 3, 5, n_negatives=3, sampler="uniform")
    full = make_batches(MatrixFactorization(3, 5, dim=4, rec_loss="softmax"), TRAIN, 3, 5,
                        n_negatives=3, sampler="uniform")
    sequences = make_batches(SASRec(3, 5, dim=4, n_heads=1, max_len=3), TRAIN, 3, 5, n_negatives=1,
                             sampler="uniform")
    generator = torch.Generator().manual_seed(0)
    assert next(sampled.epoch(8, generator))["neg"].shape == (6, 3)
    assert "neg" not in next(full.epoch(8, generator))
    assert isinstance(sequences, SequenceBatches) and "neg" not in next(sequences.epoch(8, generator))


def test_sampled_loss_without_negatives_is_rejected():
    with pytest.raises(DistillrecError, match="n_negatives >= 1"):
        make_batches(MatrixFactorization(3, 5, dim=4), TRAIN, 3, 5, n_negatives=0, sampler="uniform")


def random_log(n_users, n_items, n, seed):
    generator = torch.Generator().manual_seed(seed)
    users = torch.randint(0, n_users, (n,), generator=generator)
    items = torch.randint(0, n_items, (n,), generator=generator)
    return interactions(list(zip(users.tolist(), items.tolist())))  # repeated pairs included


def reference_sample(log, n_items, distribution, users, n, generator):
    """The sampler before the hash set: the same draws, membership by searchsorted over the
    sorted unique (user, item) keys."""
    keys = torch.unique(torch.tensor(log["user"].to_numpy()) * n_items + torch.tensor(log["item"].to_numpy()))
    weights = torch.bincount(torch.tensor(log["item"].to_numpy()), minlength=n_items).double()

    def draw(count):
        if distribution == "uniform":
            return torch.randint(n_items, (count,), generator=generator)
        return torch.multinomial(weights, count, replacement=True, generator=generator)

    def positive(u, i):
        query = u * n_items + i
        return keys[torch.searchsorted(keys, query).clamp_(max=keys.numel() - 1)] == query

    shape = (*users.shape, n)
    flat_users = users.unsqueeze(-1).expand(shape).reshape(-1)
    items = draw(flat_users.numel())
    todo = torch.nonzero(positive(flat_users, items)).squeeze(1)
    while todo.numel():
        items[todo] = draw(todo.numel())
        todo = todo[positive(flat_users[todo], items[todo])]
    return items.view(shape)


@pytest.fixture(params=["dense", "hash"])
def lookup(request, monkeypatch):
    if request.param == "hash":  # force the hash set on a small log
        monkeypatch.setattr("distillrec.train.batches._DENSE_LOOKUP_CELLS", 0)
    return request.param


def test_membership_matches_brute_force_on_a_random_log(lookup):
    log = random_log(50, 40, 900, seed=1)
    sampler = NegativeSampler(log, n_items=40)
    assert (sampler._dense is None) == (lookup == "hash")
    seen = set(zip(log["user"], log["item"]))
    users, items = torch.meshgrid(torch.arange(55), torch.arange(40), indexing="ij")  # users 50-54: unseen
    expected = torch.tensor([(u, i) in seen for u, i in zip(users.flatten().tolist(), items.flatten().tolist())])
    assert torch.equal(sampler.is_positive(users, items), expected.view(users.shape))


@pytest.mark.parametrize("distribution", ["uniform", "popularity"])
def test_draws_equal_the_sorted_keys_sampler_for_a_fixed_seed(lookup, distribution):
    log = random_log(60, 30, 1000, seed=2)  # dense users: many first draws are rejected
    sampler = NegativeSampler(log, n_items=30, distribution=distribution)
    users = torch.randint(0, 62, (700,), generator=torch.Generator().manual_seed(5))
    drawn = sampler.sample(users, 3, torch.Generator().manual_seed(7))
    expected = reference_sample(log, 30, distribution, users, 3, torch.Generator().manual_seed(7))
    assert torch.equal(drawn, expected)
    assert not sampler.is_positive(users.unsqueeze(1).expand(-1, 3), drawn).any()


def test_hash_lookup_reports_users_without_any_negative(monkeypatch):
    monkeypatch.setattr("distillrec.train.batches._DENSE_LOOKUP_CELLS", 0)
    sampler = NegativeSampler(interactions([(0, 0), (0, 1), (1, 0)]), n_items=2)
    negatives = sampler.sample(torch.tensor([1, 2]), 50, torch.Generator().manual_seed(0))
    assert set(negatives[0].tolist()) == {1} and set(negatives[1].tolist()) == {0, 1}  # user 2: no positives
    with pytest.raises(DistillrecError, match=r"users \[0\]"):
        sampler.sample(torch.tensor([0, 1]), 1, torch.Generator().manual_seed(0))
