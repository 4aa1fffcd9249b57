import pandas as pd
import pytest
import torch
from torch import nn

from distillrec.data.split import Split
from distillrec.evaluation.evaluator import evaluate
from distillrec.params import check_model_params
from distillrec.students.base import MODELS
from distillrec.students.gru4rec import GRU4Rec
from distillrec.train import TrainConfig, Trainer


def tiny_model(n_users=3, **params):
    params = {"dim": 8, "hidden_size": 12, "max_len": 5, **params}
    return GRU4Rec(n_users=n_users, n_items=10, **params).eval()


def with_gru_biases(model):
    """The same model with a biased GRU: a GRU fed zeros from the zero state then moves its
    state, so padding that is run (rather than skipped) would show at real positions."""
    gru = model.gru
    biased = nn.GRU(gru.input_size, gru.hidden_size, gru.num_layers, bias=True, batch_first=True)
    with torch.no_grad():
        for name, weight in gru.named_parameters():
            getattr(biased, name).copy_(weight)
        for name, bias in biased.named_parameters():
            if name.startswith("bias"):
                bias.uniform_(0.5, 1.0)
    model.gru = biased.eval()
    return model


def test_registered_with_checked_params():
    assert MODELS.get("gru4rec") is GRU4Rec
    assert check_model_params("gru4rec", {"dim": 32, "hidden_size": 64, "n_layers": 2, "dropout": 0.2}) == {
        "dim": 32, "hidden_size": 64, "n_layers": 2, "dropout": 0.2}
    with pytest.raises(Exception, match="dropout"):
        check_model_params("gru4rec", {"dropout": 1.0})
    with pytest.raises(Exception, match="rec_loss"):
        check_model_params("gru4rec", {"rec_loss": "nope"})


def test_a_position_never_sees_later_items():
    model = tiny_model(n_layers=2)
    seq = torch.tensor([[0, 3, 4, 5, 6]])
    changed = torch.tensor([[0, 3, 4, 9, 1]])
    assert torch.allclose(model.encode(seq)[:, :3], model.encode(changed)[:, :3])
    assert not torch.allclose(model.encode(seq)[:, 3:], model.encode(changed)[:, 3:])


@pytest.mark.parametrize("biased", [False, True])
def test_padding_is_invisible_to_real_positions(biased):
    model = tiny_model(n_layers=2)
    if biased:
        model = with_gru_biases(model)
    real = torch.tensor([[3, 4, 5]])
    expected = model.encode(real)
    for n_pads in (1, 2, 6):
        padded = torch.cat([torch.zeros(1, n_pads, dtype=torch.long), real], dim=1)
        assert torch.allclose(model.encode(padded)[:, n_pads:], expected, atol=1e-6), n_pads
    # ... nor in a batch whose rows have other amounts of padding, nor with another padding row
    batch = torch.tensor([[0, 0, 3, 4, 5], [1, 2, 3, 4, 5], [0, 0, 0, 0, 7]])
    hidden = model.encode(batch)
    assert torch.allclose(hidden[0, 2:], expected[0], atol=1e-6)
    assert torch.allclose(hidden[2, 4:], model.encode(torch.tensor([[7]]))[0], atol=1e-6)
    with torch.no_grad():
        model.item_embedding.weight[0] += 1.0
    assert torch.allclose(model.encode(batch), hidden, atol=1e-6)


def test_padding_positions_and_empty_rows_get_the_zero_state():
    model = with_gru_biases(tiny_model())
    hidden = model.encode(torch.tensor([[0, 0, 3, 4, 5], [0, 0, 0, 0, 0]]))
    assert torch.isfinite(hidden).all()
    zero_state = model.dense.bias.expand(5, -1)
    assert torch.allclose(hidden[1], zero_state) and torch.allclose(hidden[0, :2], zero_state[:2])


def test_last_only_encoding_equals_the_full_pass_at_the_last_position():
    model = tiny_model(n_layers=3)
    seq = torch.tensor([[0, 0, 3, 4, 5], [1, 2, 3, 4, 5], [0, 0, 0, 0, 7], [0, 0, 0, 0, 0]])
    last = model.encode(seq, last_only=True)
    assert last.shape == (4, 1, 8)
    assert torch.allclose(last[:, 0], model.encode(seq)[:, -1], atol=1e-6)


def test_a_seed_fixes_the_weights():
    def weights(**params):
        return tiny_model(n_layers=2, **params).state_dict()

    first, again, other = weights(seed=3), weights(seed=3), weights(seed=4)
    torch.manual_seed(999)  # the global RNG plays no part
    assert all(torch.equal(tensor, weights(seed=3)[name]) for name, tensor in first.items())
    assert all(torch.equal(tensor, again[name]) for name, tensor in first.items())
    assert not torch.equal(first["gru.weight_ih_l0"], other["gru.weight_ih_l0"])
    assert not torch.equal(first["dense.weight"], other["dense.weight"])
    assert torch.equal(first["item_embedding.weight"][0], torch.zeros(8))  # the padding row


def tiny_sequence_split() -> Split:
    rows = [(user, (user + step) % 10, 1.0, step) for user in range(6) for step in range(8)]
    frame = pd.DataFrame(rows, columns=["user", "item", "rating", "timestamp"])
    return Split("loo", frame[frame.timestamp < 6], frame[frame.timestamp == 6], frame[frame.timestamp == 7], 6, 10)


def test_training_through_the_trainer_lowers_the_loss(tmp_path):
    split = tiny_sequence_split()  # each user's next item is the last one + 1 (mod 10)
    model = MODELS.get("gru4rec").build(None, split, dim=16, hidden_size=16, max_len=5, dropout=0.1)

    def hit_at_1():
        model.eval()
        model.set_history(split.history("test"))
        with torch.no_grad():
            return evaluate(model.score, split, "test", ks=(1,))["hit@1"]  # among 3 unseen items

    untrained = hit_at_1()
    config = TrainConfig(epochs=12, batch_size=2, lr=0.02, eval_ks=(5,), metric="ndcg@5", patience=30,
                         num_threads=1)
    result = Trainer(model, split, config, run_dir=tmp_path, progress=False).fit()
    losses = [record["loss"] for record in result.history]
    assert losses[-1] < 0.2 * losses[0]
    trained = hit_at_1()
    assert trained > untrained + 0.3
