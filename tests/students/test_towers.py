"""rows_of: a plain table's lookup through index_select gives nn.Embedding's values and
gradients; tables whose options only the module implements still go through it."""

import torch
from torch import nn

from distillrec.students.towers import rows_of


def _table(**options) -> nn.Embedding:
    torch.manual_seed(0)
    return nn.Embedding(7, 3, **options)


def _lookup_and_grad(table: nn.Embedding, ids: torch.Tensor, through_module: bool):
    table.weight.grad = None
    out = table(ids) if through_module else rows_of(table, ids)
    (out * torch.arange(out.numel(), dtype=out.dtype).view_as(out)).sum().backward()
    return out.detach(), table.weight.grad


def test_a_plain_table_matches_the_module_in_values_and_gradients():
    table = _table()
    ids = torch.tensor([[0, 3], [3, 6], [0, 0]])  # repeated rows: their gradients add up
    ours, our_grad = _lookup_and_grad(table, ids, through_module=False)
    theirs, their_grad = _lookup_and_grad(table, ids, through_module=True)
    assert ours.shape == (3, 2, 3)
    assert torch.equal(ours, theirs)
    torch.testing.assert_close(our_grad, their_grad, rtol=0, atol=1e-6)
    assert torch.equal(our_grad[[1, 2, 4, 5]], torch.zeros(4, 3))  # rows never looked up


def test_a_sparse_table_keeps_its_sparse_gradient():
    table = _table(sparse=True)
    _, grad = _lookup_and_grad(table, torch.tensor([1, 2, 2]), through_module=False)
    assert grad.is_sparse


def test_a_padding_row_still_gets_no_gradient():
    table = _table(padding_idx=0)
    _, grad = _lookup_and_grad(table, torch.tensor([0, 0, 5]), through_module=False)
    assert torch.equal(grad[0], torch.zeros(3)) and grad[5].abs().sum() > 0
