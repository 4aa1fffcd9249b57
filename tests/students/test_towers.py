import pytest
import torch
from torch import nn

from distillrec.students.towers import Embedding
from distillrec.train.optim import make_optimizer


def _pair(n=50, dim=8):
    reference = nn.Embedding(n, dim)
    ours = Embedding(n, dim)
    ours.load_state_dict(reference.state_dict())
    return reference, ours


def test_embedding_matches_nn_embedding_forward_and_dense_gradient():
    reference, ours = _pair()
    index = torch.tensor([[3, 7, 3], [0, 49, 7]])  # repeats: their gradients must add up
    upstream = torch.randn(2, 3, 8, generator=torch.Generator().manual_seed(0))
    for table in (reference, ours):
        (table(index) * upstream).sum().backward()
    assert ours(index).shape == (2, 3, 8)
    assert torch.equal(ours(index), reference(index))
    assert not ours.weight.grad.is_sparse
    torch.testing.assert_close(ours.weight.grad, reference.weight.grad)
    assert list(ours.state_dict()) == ["weight"]


def test_embedding_keeps_sparse_gradients_when_switched_to_sparse_updates():
    table = Embedding(20, 4)
    make_optimizer(table, lr=1e-3, weight_decay=0.0, embedding_updates="sparse")
    table(torch.tensor([1, 5])).sum().backward()
    assert table.weight.grad.is_sparse
    assert sorted(table.weight.grad.coalesce().indices()[0].tolist()) == [1, 5]


@pytest.mark.parametrize("options", [{"padding_idx": 0}, {"max_norm": 1.0}])
def test_embedding_options_that_change_the_lookup_keep_nn_embeddings_path(options):
    reference = nn.Embedding(10, 4, **options)
    ours = Embedding(10, 4, **options)
    ours.load_state_dict(reference.state_dict())
    index = torch.tensor([0, 3, 3])
    torch.testing.assert_close(ours(index), reference(index))
    ours(index).sum().backward()
    reference(index).sum().backward()
    torch.testing.assert_close(ours.weight.grad, reference.weight.grad)
