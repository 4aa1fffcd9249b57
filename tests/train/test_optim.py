"""make_optimizer: AdamW as before for "dense"; for "sparse", sparse table gradients and a lazy
AdamW that touches only the batch's rows, catches skipped rows up to AdamW, and steps dense
gradients exactly as AdamW does."""

import copy
import functools

import pytest
import torch
from pydantic import ValidationError
from torch import nn

from distillrec.params import ParamError, check_train
from distillrec.students.mf import MatrixFactorization
from distillrec.train import TrainConfig
from distillrec.train.checkpoint import load_latest_checkpoint, save_checkpoint
from distillrec.train.optim import LazyAdamW, make_optimizer

pytestmark = pytest.mark.usefixtures("single_thread")

N_IDS, N_BAG = 6, 5


class Tables(nn.Module):
    """An id table, a bag table and a dense layer: each kind of parameter a model has."""

    def __init__(self, bag_mode: str = "sum"):
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.ids = nn.Embedding(N_IDS, 4)
        self.bag = nn.EmbeddingBag(N_BAG, 4, mode=bag_mode)
        self.head = nn.Linear(4, 1)
        for param in self.parameters():
            nn.init.normal_(param, generator=generator)

    def forward(self, batch):
        ids, bags = batch
        return self.head(self.ids(ids) + self.bag(bags)).square().mean()


def batches(n: int, every_row: bool, seed: int = 0):
    """n batches of 8 ids and 8 bags of 3; every_row: each batch holds every row of both tables."""
    generator = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        ids = torch.randint(N_IDS, (8,), generator=generator)
        bags = torch.randint(N_BAG, (8, 3), generator=generator)
        if every_row:
            ids[:N_IDS] = torch.arange(N_IDS)
            bags[:N_BAG, 0] = torch.arange(N_BAG)
        out.append((ids, bags))
    return out


def train(module, optimizer, data, loss=None):
    for batch in data:
        optimizer.zero_grad(set_to_none=True)
        (loss or module)(batch).backward()
        optimizer.step()


def test_dense_is_torch_fused_adamw_bit_for_bit():
    ours, theirs = Tables(), Tables()
    optimizer = make_optimizer(ours, lr=0.05, weight_decay=0.1, embedding_updates="dense")
    assert type(optimizer) is torch.optim.AdamW and optimizer.defaults["fused"]
    data = batches(5, every_row=False)
    train(ours, optimizer, data)
    train(theirs, torch.optim.AdamW(theirs.parameters(), lr=0.05, weight_decay=0.1, fused=True), data)
    assert not ours.ids.sparse and not ours.bag.sparse
    for (name, a), b in zip(ours.named_parameters(), theirs.parameters()):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_sparse_equals_adamw_when_every_row_is_in_every_batch(weight_decay):
    lazy, dense = Tables(), Tables()
    data = batches(10, every_row=True)
    train(lazy, make_optimizer(lazy, lr=0.05, weight_decay=weight_decay, embedding_updates="sparse"), data)
    train(dense, make_optimizer(dense, lr=0.05, weight_decay=weight_decay, embedding_updates="dense"), data)
    assert lazy.ids.weight.grad.is_sparse and lazy.bag.weight.grad.is_sparse
    for (name, a), b in zip(lazy.named_parameters(), dense.parameters()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0, msg=name)


def test_a_step_leaves_rows_outside_the_batch_untouched_even_with_weight_decay():
    model = Tables()
    optimizer = make_optimizer(model, lr=0.05, weight_decay=0.1, embedding_updates="sparse")
    train(model, optimizer, batches(2, every_row=True))  # every row has momentum by now
    state = optimizer.state[model.ids.weight]
    before = {"weight": model.ids.weight.detach().clone(),
              **{name: state[name].clone() for name in ("exp_avg", "exp_avg_sq")}}
    train(model, optimizer, [(torch.tensor([0, 1, 1]), torch.tensor([[0, 1, 2]]))])
    after = {"weight": model.ids.weight, "exp_avg": state["exp_avg"], "exp_avg_sq": state["exp_avg_sq"]}
    for name in before:
        assert torch.equal(after[name][2:], before[name][2:]), name
        assert not torch.equal(after[name][:2], before[name][:2]), name


def test_a_table_also_read_through_its_weight_takes_a_dense_gradient_and_an_adamw_step():
    def scores(table):  # a lookup and the whole table, like MF's full-softmax scores
        return lambda ids: (table(ids) @ table.weight.T).logsumexp(-1).mean()

    table = nn.Embedding(N_IDS, 4)
    optimizer = make_optimizer(table, lr=0.05, weight_decay=0.1, embedding_updates="sparse")
    reference = copy.deepcopy(table)  # sparse lookups too, so both get the very same gradients
    data = [ids for ids, _ in batches(5, every_row=False)]
    train(table, optimizer, data, loss=scores(table))
    train(reference, torch.optim.AdamW(reference.parameters(), lr=0.05, weight_decay=0.1, fused=True), data,
          loss=scores(reference))
    assert not table.weight.grad.is_sparse
    assert torch.equal(table.weight, reference.weight)


def test_mf_under_full_softmax_mixes_a_sparse_user_and_a_dense_item_gradient():
    model = MatrixFactorization(8, 10, dim=4, rec_loss="softmax")
    optimizer = make_optimizer(model, lr=0.05, weight_decay=0.0, embedding_updates="sparse")
    model.loss({"user": torch.tensor([0, 3, 3]), "pos": torch.tensor([1, 2, 9])}).backward()
    assert model.user_embedding.weight.grad.is_sparse and not model.item_embedding.weight.grad.is_sparse
    optimizer.step()
    user_state, item_state = (optimizer.state[p] for p in (model.user_embedding.weight, model.item_embedding.weight))
    assert set(user_state) == {"step", "exp_avg", "exp_avg_sq", "row_step"}
    assert set(item_state) == {"step", "exp_avg", "exp_avg_sq"}  # AdamW's own: every row stepped


def test_a_max_bag_keeps_dense_gradients_and_still_trains():
    model = Tables(bag_mode="max")
    optimizer = make_optimizer(model, lr=0.05, weight_decay=0.0, embedding_updates="sparse")
    assert model.ids.sparse and not model.bag.sparse
    before = model.bag.weight.detach().clone()
    train(model, optimizer, batches(2, every_row=False))
    assert not torch.equal(model.bag.weight, before)


def test_lazy_state_survives_a_checkpoint_and_the_next_step_matches(tmp_path):
    model = Tables()
    optimizer = make_optimizer(model, lr=0.05, weight_decay=0.1, embedding_updates="sparse")
    data = batches(4, every_row=False)
    train(model, optimizer, data[:3])
    save_checkpoint(tmp_path, 3, model, optimizer, {})

    restored = Tables()
    restored_optimizer = make_optimizer(restored, lr=0.05, weight_decay=0.1, embedding_updates="sparse")
    assert isinstance(restored_optimizer, LazyAdamW)
    assert load_latest_checkpoint(tmp_path, restored, restored_optimizer) == {}
    saved, loaded = optimizer.state_dict()["state"], restored_optimizer.state_dict()["state"]
    assert saved.keys() == loaded.keys()
    for param in saved:
        assert loaded[param]["step"].dtype == torch.float32
        for name in saved[param]:
            assert torch.equal(saved[param][name], loaded[param][name]), (param, name)
    assert "row_step" in saved[0]  # the id table's
    train(model, optimizer, data[3:])
    train(restored, restored_optimizer, data[3:])
    for (name, a), b in zip(model.named_parameters(), restored.parameters()):
        assert torch.equal(a, b), name


def skipping_run(sparse: bool, schedule: list[list[int]], catch_up: bool = False) -> torch.Tensor:
    """A 3-row table stepped on `schedule` (the rows of each batch) with random gradients, by
    AdamW or by the lazy AdamW; betas (0.9, 0.99) so the bias correction settles early."""
    torch.manual_seed(0)
    table = nn.Embedding(3, 2, sparse=sparse)
    kind = LazyAdamW if sparse else functools.partial(torch.optim.AdamW, fused=True)
    optimizer = kind(table.parameters(), lr=0.01, weight_decay=0.1, betas=(0.9, 0.99))
    generator = torch.Generator().manual_seed(0)
    for rows in schedule:
        rows = torch.tensor(rows)
        optimizer.zero_grad(set_to_none=True)
        (table(rows) * torch.randn(len(rows), 2, generator=generator)).sum().backward()
        optimizer.step()
    if catch_up:
        optimizer.catch_up()
    return table.weight.detach()


# Rows 0 and 1 build momentum over 2,000 steps; then row 0 skips 30 steps; row 2 is never seen.
WARM_THEN_SKIP = [[0, 1]] * 2000 + [[1]] * 30


def test_catch_up_gives_every_row_its_adamw_weights_once_the_bias_correction_has_settled():
    adamw = skipping_run(False, WARM_THEN_SKIP)
    lazy = skipping_run(True, WARM_THEN_SKIP)
    assert (lazy[0] - adamw[0]).abs().max() > 1e-3  # skipped momentum and decay: what is caught up
    assert (lazy[2] - adamw[2]).abs().max() > 1e-1
    torch.testing.assert_close(skipping_run(True, WARM_THEN_SKIP, catch_up=True), adamw, atol=1e-5, rtol=0)


def test_a_skipped_row_is_caught_up_when_it_is_next_in_a_batch():
    schedule = WARM_THEN_SKIP + [[0, 1]] * 3
    adamw, lazy = skipping_run(False, schedule), skipping_run(True, schedule)
    torch.testing.assert_close(lazy[:2], adamw[:2], atol=1e-5, rtol=0)
    assert torch.equal(lazy[2], skipping_run(True, [[0]])[2])  # row 2 waits for catch_up()


def test_the_option_is_a_validated_training_setting():
    assert TrainConfig().embedding_updates == "dense"
    assert check_train({"embedding_updates": "sparse"}) == {"embedding_updates": "sparse"}
    with pytest.raises(ParamError, match=r"train\.embedding_updates.*'dense' or 'sparse'"):
        check_train({"embedding_updates": "lazy"})
    with pytest.raises(ValidationError):
        TrainConfig(embedding_updates="lazy")
