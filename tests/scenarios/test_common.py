import torch

from distillrec.scenarios.common import blend_scorer, zscore


def test_blend_of_z_scores():
    model = lambda users: torch.tensor([[3.0, 1.0, 2.0]]).repeat(len(users), 1)  # noqa: E731
    popularity = lambda users: torch.tensor([[0.0, 10.0, 5.0]]).repeat(len(users), 1)  # noqa: E731
    assert zscore(model(torch.tensor([0]))).tolist() == [[1.0, -1.0, 0.0]]
    assert zscore(torch.ones(1, 3)).tolist() == [[0.0, 0.0, 0.0]]
    users = torch.tensor([0])
    assert blend_scorer(model, popularity, 0.0)(users).argsort(descending=True).tolist() == [[0, 2, 1]]
    assert blend_scorer(model, popularity, 0.75)(users).argsort(descending=True).tolist() == [[1, 2, 0]]
    assert torch.allclose(blend_scorer(model, popularity, 0.5)(users), torch.zeros(1, 3, dtype=torch.float64))
