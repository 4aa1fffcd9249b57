import pytest
import torch

from distillrec.train import keyset
from distillrec.train.keyset import KeySet


def members(keys: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
    reference = set(keys.tolist())
    return torch.tensor([q in reference for q in queries.reshape(-1).tolist()], dtype=torch.bool).view(queries.shape)


@pytest.mark.parametrize("n", [1, 2, 3, 7, 100, 5000])
def test_membership_matches_a_python_set_with_duplicates(n):
    generator = torch.Generator().manual_seed(n)
    keys = torch.randint(0, 4 * n, (n,), generator=generator)
    keys = torch.cat([keys, keys[: n // 2 + 1]])  # every other key twice, some three times
    queries = torch.randint(0, 5 * n, (3 * n + 10,), generator=generator)
    found = KeySet(keys).contains(queries)
    assert torch.equal(found, members(keys, queries))
    assert KeySet(keys).contains(keys).all()
    assert len(KeySet(keys)) == len(set(keys.tolist()))


def test_table_is_a_power_of_two_at_most_half_full():
    for n in (0, 1, 2, 3, 4, 5, 1000, 1024, 1025):
        table = KeySet(torch.arange(n))._table
        size = table.numel()
        assert size & (size - 1) == 0 and size >= max(2, 2 * n) and (size < 4 * n or n == 0)


def test_empty_set_holds_nothing():
    empty = KeySet(torch.empty(0, dtype=torch.long))
    assert len(empty) == 0
    assert not empty.contains(torch.arange(100)).any()
    assert empty.contains(torch.empty(0, dtype=torch.long)).shape == (0,)


def test_queries_keep_their_shape_and_negatives_are_never_members():
    keys = torch.tensor([0, 5, 9, 2**62])
    queries = torch.tensor([[0, 1, -1], [2**62, 9, -5]])
    assert KeySet(keys).contains(queries).tolist() == [[True, False, False], [True, True, False]]


def test_negative_keys_are_rejected():
    with pytest.raises(ValueError, match=">= 0"):
        KeySet(torch.tensor([3, -1]))


@pytest.mark.parametrize("home", ["first", "last"])
def test_heavy_collisions_form_one_long_probe_chain(home):
    # 60 keys with the same home slot (the last slot: the chain wraps round to slot 0), and
    # 40 others: chains far longer than one lookup window (keyset._WINDOW).
    n = 100
    bits = KeySet(torch.arange(n))._bits
    candidates = torch.arange(2_000_000)
    slots = KeySet(torch.arange(n))._hash(candidates)
    target = 0 if home == "first" else (1 << bits) - 1
    colliding = candidates[slots == target][:60]
    assert colliding.numel() == 60 and 60 > 2 * keyset._WINDOW
    others = candidates[slots != target][:40]
    keys = torch.cat([colliding, others, colliding[:10]])
    table = KeySet(keys)
    assert table._bits == bits
    # Members, and non-members that share the crowded home slot (probe the whole chain).
    queries = torch.cat([keys, candidates[slots == target][60:200], candidates[slots != target][40:400]])
    assert torch.equal(table.contains(queries), members(keys, queries))


def test_large_random_queries_take_both_probe_modes():
    generator = torch.Generator().manual_seed(0)
    keys = torch.randint(0, 10**9, (200_000,), generator=generator)
    queries = torch.cat([torch.randint(0, 10**9, (300_000,), generator=generator), keys[::3]])
    queries = queries[torch.randperm(queries.numel(), generator=generator)]
    assert queries.numel() > 50 * keyset._FEW  # single-slot rounds first, then windowed ones
    found = KeySet(keys).contains(queries)
    assert torch.equal(found, members(keys, queries))
    assert found.sum() >= keys[::3].numel()
