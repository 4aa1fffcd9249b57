import pandas as pd
import pytest
import torch

from distillrec.data.dataset import build_dataset
from distillrec.data.sources import load_raw
from distillrec.data.split import Split
from distillrec.data.splitting import leave_one_out
from distillrec.evaluation.evaluator import evaluate
from distillrec.students.base import MODELS
from distillrec.students.sasrec import SASRec
from distillrec.train import TrainConfig, Trainer


def tiny_model(n_users=3, **params):
    return SASRec(n_users=n_users, n_items=10, dim=8, n_heads=2, inner_size=16, max_len=5, **params).eval()


def test_a_position_never_sees_later_items():
    model = tiny_model()
    seq = torch.tensor([[0, 3, 4, 5, 6]])
    changed = torch.tensor([[0, 3, 4, 9, 1]])
    assert torch.allclose(model.encode(seq)[:, :3], model.encode(changed)[:, :3])
    assert not torch.allclose(model.encode(seq)[:, 3:], model.encode(changed)[:, 3:])


def test_padding_is_invisible_to_real_positions():
    model = tiny_model()
    seq = torch.tensor([[0, 0, 3, 4, 5]])
    hidden = model.encode(seq)
    with torch.no_grad():  # changing the padding row's embedding must not move real positions
        model.item_embedding.weight[0] += 1.0
    assert torch.allclose(model.encode(seq)[:, 2:], hidden[:, 2:])


def test_last_only_encoding_equals_the_full_pass_at_the_last_position():
    model = SASRec(n_users=3, n_items=10, dim=8, n_heads=2, inner_size=16, max_len=5, n_layers=3).eval()
    seq = torch.tensor([[0, 0, 3, 4, 5], [1, 2, 3, 4, 5], [0, 0, 0, 0, 7]])
    last = model.encode(seq, last_only=True)
    assert last.shape == (3, 1, 8)
    assert torch.allclose(last[:, 0], model.encode(seq)[:, -1], atol=1e-6)


def tiny_sequence_split() -> Split:
    rows = [(user, (user + step) % 10, 1.0, step) for user in range(6) for step in range(8)]
    frame = pd.DataFrame(rows, columns=["user", "item", "rating", "timestamp"])
    return Split("loo", frame[frame.timestamp < 6], frame[frame.timestamp == 6], frame[frame.timestamp == 7], 6, 10)


def test_resume_is_exact_with_dropout(tmp_path):
    split = tiny_sequence_split()
    config = TrainConfig(epochs=4, batch_size=2, lr=0.01, eval_ks=(5,), metric="ndcg@5", num_threads=1)
    straight = tiny_model(6, dropout=0.3, attn_dropout=0.3)
    expected = Trainer(straight, split, config, run_dir=tmp_path / "a", progress=False).fit()

    def kill(record):
        if record["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Trainer(tiny_model(6, dropout=0.3, attn_dropout=0.3), split, config, run_dir=tmp_path / "b",
                progress=False, callbacks=[kill]).fit()
    torch.manual_seed(12345)  # whatever happened to the global RNG meanwhile must not matter
    resumed = tiny_model(6, dropout=0.3, attn_dropout=0.3)
    result = Trainer(resumed, split, config, run_dir=tmp_path / "b", progress=False).fit(resume=True)
    # Losses of the epochs after the kill differ unless the dropout RNG was restored.
    assert [r["loss"] for r in result.history] == [r["loss"] for r in expected.history]
    for name, tensor in straight.state_dict().items():
        assert torch.equal(tensor, resumed.state_dict()[name]), name


def test_sasrec_learns_on_a_slice_of_ml100k():
    raw = load_raw("ml-100k")
    first_users = sorted(raw.interactions["user_id"].unique(), key=int)[:200]
    raw.interactions = raw.interactions[raw.interactions["user_id"].isin(first_users)]
    dataset = build_dataset(raw)
    split = leave_one_out(dataset)
    model = MODELS.get("sasrec").build(dataset, split, dim=32, n_layers=1, max_len=20, dropout=0.2,
                                       attn_dropout=0.2)
    model.eval()
    model.set_history(split.history("test"))
    with torch.no_grad():
        untrained = evaluate(model.score, split, "test")["hit@20"]
    Trainer(model, split, TrainConfig(epochs=10, lr=0.005, batch_size=64, patience=20, num_threads=1),
            progress=False).fit()
    model.eval()
    model.set_history(split.history("test"))
    with torch.no_grad():
        trained = evaluate(model.score, split, "test")["hit@20"]
    assert trained > untrained + 0.1
