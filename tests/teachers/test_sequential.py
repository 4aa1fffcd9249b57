"""The LM-enhanced sequential teacher: item vectors from ID + text, text-only for untrained
items, and a real fit on an ML-100K slice with MiniLM texts."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from distillrec.data.dataset import build_dataset
from distillrec.data.sources import load_raw
from distillrec.data.splitting import leave_one_out
from distillrec.errors import DistillrecError
from distillrec.evaluation.evaluator import evaluate
from distillrec.students.base import model_class
from distillrec.teachers.sequential import LMSequentialTeacher
from distillrec.train import TrainConfig, Trainer


def tiny(has_id=(True, True, True, False), **params):
    torch.manual_seed(0)
    return LMSequentialTeacher(2, 4, text_embeddings=torch.randn(4, 6), item_has_id=torch.tensor(has_id),
                               dim=8, n_layers=1, n_heads=2, max_len=5, adapter_hidden=16, **params).eval()


def test_an_item_without_training_interactions_is_its_text_alone():
    model = tiny()
    with torch.no_grad():
        model.item_embedding.weight.add_(1.0)  # give every ID row a visible value
        table = model.item_table()
        text = model.item_text_vectors(model.text_embeddings)
    assert torch.equal(table[0], torch.zeros(8))  # padding
    torch.testing.assert_close(table[4], text[3])  # item 3 has no ID
    torch.testing.assert_close(table[1:4], text[:3] + model.item_embedding.weight[1:4])


def test_the_id_only_and_text_only_variants_drop_the_other_part():
    with torch.no_grad():
        ids_only = tiny(text=False)
        assert torch.equal(ids_only.item_table()[1:4], ids_only.item_embedding.weight[1:4])
        assert torch.equal(ids_only.item_table()[4], torch.zeros(8))
        text_only = tiny(item_ids=False)
        torch.testing.assert_close(text_only.item_table()[1:], text_only.item_text_vectors(text_only.text_embeddings))
    with pytest.raises(DistillrecError, match="both be off"):
        tiny(item_ids=False, text=False)


def test_id_dropout_acts_in_training_only():
    model = tiny(id_dropout=0.9)
    with torch.no_grad():
        model.item_embedding.weight.add_(1.0)
        evaluation = model.item_table()
        model.train()
        torch.manual_seed(1)
        training = model.item_table()
    assert not torch.equal(training, evaluation)
    torch.testing.assert_close(model.eval().item_table(), evaluation)


def test_scores_come_from_the_combined_table():
    model = tiny()
    model.set_history(pd.DataFrame({"user": [0, 0, 1], "item": [2, 0, 3], "timestamp": [1, 2, 1]}))
    with torch.no_grad():
        scores = model.score(torch.tensor([0, 1]))
        expected = model.user_vectors(torch.tensor([0, 1])) @ model.item_table()[1:].T
    assert scores.shape == (2, 4)
    torch.testing.assert_close(scores, expected)


def test_it_is_registered_and_rejects_a_mismatched_catalogue():
    assert model_class("lm-seq-teacher") is LMSequentialTeacher
    with pytest.raises(DistillrecError, match="4 items"):
        LMSequentialTeacher(2, 4, text_embeddings=torch.randn(3, 6), item_has_id=torch.ones(4, dtype=torch.bool))


def test_it_learns_an_ml100k_slice_from_minilm_texts(tmp_path):
    raw = load_raw("ml-100k")
    first_users = sorted(raw.interactions["user_id"].unique(), key=int)[:150]
    raw.interactions = raw.interactions[raw.interactions["user_id"].isin(first_users)]
    dataset = build_dataset(raw)
    split = leave_one_out(dataset)
    model = model_class("lm-seq-teacher").build(dataset, split, cache_dir=tmp_path, dim=32, n_layers=1,
                                                n_heads=2, max_len=20, adapter_hidden=64, seed=0)
    assert model.text_embeddings.shape == (dataset.n_items, 384) and model.text_cost["lm_parameters"] > 20_000_000
    model.eval()
    model.set_history(split.history("test"))
    with torch.no_grad():
        untrained = evaluate(model.score, split, "test")["hit@20"]
    Trainer(model, split, TrainConfig(epochs=6, lr=0.005, batch_size=64, patience=20, num_threads=1),
            progress=False).fit()
    model.eval()
    model.set_history(split.history("test"))
    with torch.no_grad():
        trained = evaluate(model.score, split, "test")["hit@20"]
    assert trained > untrained + 0.05
