import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from distillrec.data.split import Split
from distillrec.errors import DistillrecError
from distillrec.students.mf import MatrixFactorization
from distillrec.train import TrainConfig, Trainer
from distillrec.train.checkpoint import CHECKPOINTS

N_USERS, N_ITEMS, N_GROUPS = 40, 40, 4


def clustered_split() -> Split:
    """Users of group g interact with 8 of the 10 items of group g: easy to learn, not trivial."""
    rng = np.random.default_rng(0)
    rows = []
    for user in range(N_USERS):
        group = user % N_GROUPS
        items = rng.choice(np.arange(group * 10, group * 10 + 10), size=8, replace=False)
        rows += [(user, int(item), 1.0, t) for t, item in enumerate(items)]
    frame = pd.DataFrame(rows, columns=["user", "item", "rating", "timestamp"])
    position = frame.groupby("user").cumcount()
    return Split("random", frame[position < 6], frame[position == 6], frame[position == 7], N_USERS, N_ITEMS)


SPLIT = clustered_split()
FAST = dict(batch_size=32, lr=0.05, eval_ks=(5, 10), metric="ndcg@10", num_threads=1)


def fit(config: TrainConfig, resume: bool = False, **trainer_args):
    model = MatrixFactorization(N_USERS, N_ITEMS, dim=8, seed=1)
    result = Trainer(model, SPLIT, config, progress=False, **trainer_args).fit(resume)
    return model, result


def metrics(result):
    return [(r["epoch"], r["loss"], r["losses"], r.get("valid")) for r in result.history]


def test_training_learns_the_clusters():
    model, result = fit(TrainConfig(epochs=15, **FAST))
    assert result.best_valid["ndcg@10"] > 0.5
    assert result.history[-1]["loss"] < result.history[0]["loss"]


def test_same_config_gives_identical_metrics_and_weights():
    first_model, first = fit(TrainConfig(epochs=4, **FAST))
    second_model, second = fit(TrainConfig(epochs=4, **FAST))
    assert metrics(first) == metrics(second)
    assert all(torch.equal(a, b) for a, b in zip(first_model.state_dict().values(), second_model.state_dict().values()))


@pytest.mark.parametrize("updates", ["dense", "sparse"])
def test_a_run_killed_mid_training_resumes_to_the_uninterrupted_result(tmp_path, updates):
    config = TrainConfig(epochs=6, n_negatives=2, embedding_updates=updates, **FAST)
    straight_model, straight = fit(config, run_dir=tmp_path / "straight")
    again_model, again = fit(config)  # the seed fixes the run
    assert metrics(again) == metrics(straight)

    def kill_after_epoch_3(record):
        if record["epoch"] == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(config, run_dir=tmp_path / "killed", callbacks=[kill_after_epoch_3])
    resumed_model = MatrixFactorization(N_USERS, N_ITEMS, dim=8, seed=99)  # weights come from the checkpoint
    resumed = Trainer(resumed_model, SPLIT, config, run_dir=tmp_path / "killed", progress=False).fit(resume=True)

    assert metrics(resumed) == metrics(straight)
    assert resumed.best_epoch == straight.best_epoch and resumed.best_valid == straight.best_valid
    for name, tensor in straight_model.state_dict().items():
        assert torch.equal(tensor, again_model.state_dict()[name]), name
        assert torch.equal(tensor, resumed_model.state_dict()[name]), name


def test_checkpoints_are_safetensors_and_json_and_only_the_latest_is_kept(tmp_path):
    fit(TrainConfig(epochs=3, **FAST), run_dir=tmp_path)
    checkpoints = tmp_path / CHECKPOINTS
    assert sorted(p.name for p in checkpoints.iterdir()) == ["epoch-0003", "latest.json"]
    assert sorted(p.name for p in (checkpoints / "epoch-0003").iterdir()) == [
        "manifest.json", "model.safetensors", "state.json", "trainer.safetensors"]
    assert (tmp_path / "best.safetensors").exists()
    assert json.loads((tmp_path / "train.json").read_text())["best_epoch"] >= 1


def test_resume_refuses_a_changed_config_but_allows_more_epochs(tmp_path):
    fit(TrainConfig(epochs=2, **FAST), run_dir=tmp_path)
    with pytest.raises(DistillrecError, match="lr"):
        fit(TrainConfig(epochs=2, **{**FAST, "lr": 0.01}), run_dir=tmp_path, resume=True)
    _, longer = fit(TrainConfig(epochs=4, **FAST), run_dir=tmp_path, resume=True)
    assert [r["epoch"] for r in longer.history] == [1, 2, 3, 4]


def test_a_checkpoint_from_before_a_training_option_existed_resumes_at_its_default():
    from distillrec.train.trainer import _TrainState

    config = TrainConfig(epochs=2, **FAST)
    saved = _TrainState(epoch=1).to_saved(config)
    del saved["config"]["embedding_updates"]  # written before the option was added
    assert _TrainState.from_saved(saved, config).epoch == 1
    with pytest.raises(DistillrecError, match="embedding_updates: 'dense' -> 'sparse'"):
        _TrainState.from_saved(saved, TrainConfig(epochs=2, embedding_updates="sparse", **FAST))


def test_training_steps_run_with_deterministic_kernels_only():
    # With several threads, advanced indexing's backward (index_put_ with accumulate: the LM
    # teacher's history pooling) adds in thread order unless deterministic kernels are on; a
    # seed then fixed the teacher only on one thread (measured by hand on ML-100K).
    seen = []

    class Recording(MatrixFactorization):
        def loss(self, batch):
            seen.append((torch.are_deterministic_algorithms_enabled(),
                         torch.utils.deterministic.fill_uninitialized_memory))
            return super().loss(batch)

    model = Recording(N_USERS, N_ITEMS, dim=8, seed=1)
    Trainer(model, SPLIT, TrainConfig(epochs=1, **FAST), progress=False).fit()
    # deterministic kernels, without NaN-filling every new tensor (a quarter of an MF step)
    assert seen and all(seen_step == (True, False) for seen_step in seen)
    assert not torch.are_deterministic_algorithms_enabled()  # switched back once training is done
    assert torch.utils.deterministic.fill_uninitialized_memory


def test_resume_without_a_run_dir_is_an_error():
    with pytest.raises(DistillrecError, match="run_dir"):
        fit(TrainConfig(epochs=1, **FAST), resume=True)


def test_early_stopping_stops_after_patience_evaluations_without_improvement():
    # A learning rate this small cannot change any ranking, so the first validation stays best.
    model, result = fit(TrainConfig(epochs=50, patience=3, **{**FAST, "lr": 1e-12}))
    assert result.stopped_early
    assert [r["epoch"] for r in result.history] == [1, 2, 3, 4]
    assert result.best_epoch == 1


def test_evaluations_up_to_min_epochs_do_not_count_towards_patience():
    model, result = fit(TrainConfig(epochs=50, patience=3, min_epochs=5, **{**FAST, "lr": 1e-12}))
    assert result.stopped_early
    assert [r["epoch"] for r in result.history] == list(range(1, 9))  # 5 free, then 3 without improvement
    assert result.best_epoch == 1


def test_the_model_ends_with_its_best_weights(tmp_path):
    model = MatrixFactorization(N_USERS, N_ITEMS, dim=8, seed=1)
    trainer = Trainer(model, SPLIT, TrainConfig(epochs=8, eval_every=2, **FAST), run_dir=tmp_path, progress=False)
    result = trainer.fit()
    assert [r["epoch"] for r in result.history if "valid" in r] == [2, 4, 6, 8]
    assert trainer.validate() == result.best_valid


def test_extra_loss_terms_are_trained_and_logged():
    def shrink_items(model, batch):
        return {"l2": 0.5 * model.item_embedding.weight.pow(2).sum()}

    plain_model, _ = fit(TrainConfig(epochs=3, **FAST))
    shrunk_model, result = fit(TrainConfig(epochs=3, **FAST), extra_loss=shrink_items)
    assert set(result.history[0]["losses"]) == {"rec", "l2"}
    assert result.history[0]["loss"] == pytest.approx(sum(result.history[0]["losses"].values()))
    assert shrunk_model.item_embedding.weight.norm() < plain_model.item_embedding.weight.norm()


class LearnedShrink(torch.nn.Module):
    """An extra loss with a parameter of its own, like a distillation projector."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.tensor(1.0))

    def forward(self, model, batch):
        return (self.weight - 3.0) ** 2 + 0.01 * model.item_embedding.weight.pow(2).sum()


def test_an_extra_loss_module_is_trained_and_resumed_with_the_model(tmp_path):
    config = TrainConfig(epochs=4, **FAST)
    straight = LearnedShrink()
    fit(config, run_dir=tmp_path / "straight", extra_loss=straight)
    assert straight.weight.item() > 1.0

    def kill(record):
        if record["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(config, run_dir=tmp_path / "killed", extra_loss=LearnedShrink(), callbacks=[kill])
    resumed = LearnedShrink()
    fit(config, resume=True, run_dir=tmp_path / "killed", extra_loss=resumed)
    assert torch.equal(resumed.weight, straight.weight)


def test_split_history_of_test_includes_valid_and_revealed():
    assert len(SPLIT.history("valid")) == len(SPLIT.train)
    assert len(SPLIT.history("test")) == len(SPLIT.train) + len(SPLIT.valid)


def test_config_rejects_a_metric_that_is_not_evaluated():
    with pytest.raises(ValueError, match="eval_ks"):
        TrainConfig(metric="ndcg@50")
    with pytest.raises(ValueError, match="auc"):
        TrainConfig(metric="auc@10")


SPARSE = dict(FAST, embedding_updates="sparse", weight_decay=0.01)


@pytest.mark.parametrize("rec_loss", ["bpr", "softmax"])
def test_sparse_embedding_updates_learn_the_clusters(rec_loss):
    model = MatrixFactorization(N_USERS, N_ITEMS, dim=8, rec_loss=rec_loss, seed=1)
    result = Trainer(model, SPLIT, TrainConfig(epochs=15, **SPARSE), progress=False).fit()
    assert all(math.isfinite(r["loss"]) for r in result.history)
    assert result.best_valid["ndcg@10"] > 0.4  # random ranking: about 0.13
    assert model.user_embedding.sparse and model.item_embedding.sparse


