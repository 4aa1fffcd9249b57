"""ONNX towers against the PyTorch model (onnxruntime), trained-ID and new-entity paths."""

import numpy as np
import pytest
import torch

from distillrec.serving.bundle import load_bundle
from distillrec.serving.export import OnnxTower

TOLERANCE = 1e-5


def test_mf_lookups_equal_the_embeddings(bundles):
    bundle = load_bundle(bundles["mf"])
    model = bundle.load_model()
    users, items = np.arange(0, 943, 7), np.arange(0, 1682, 11)
    user_tower = OnnxTower(bundle.onnx_path("user_tower"), bundle.onnx_inputs("user_tower"))
    item_tower = OnnxTower(bundle.onnx_path("item_tower"), bundle.onnx_inputs("item_tower"))
    with torch.no_grad():
        np.testing.assert_allclose(user_tower(user=users), model.user_embedding(torch.from_numpy(users)).numpy(),
                                   atol=TOLERANCE)
        np.testing.assert_allclose(item_tower(item=items), model.item_embedding(torch.from_numpy(items)).numpy(),
                                   atol=TOLERANCE)


@pytest.mark.parametrize("side", ["user", "item"])
def test_two_tower_towers_equal_pytorch(bundles, side):
    bundle = load_bundle(bundles["two-tower"])
    model = bundle.load_model()
    tower = OnnxTower(bundle.onnx_path(f"{side}_tower"), bundle.onnx_inputs(f"{side}_tower"))
    table, has_id = (model.user_table, model.user_has_id) if side == "user" else (model.item_table, model.item_has_id)
    index = torch.arange(0, len(has_id), 5)
    features = table.rows(index)
    numpy_features = {k: v.numpy() for k, v in features.items()}
    with torch.no_grad():
        trained = (model.user_vectors(index) if side == "user" else model.item_vectors(index)).numpy()
        new = (model.encode_users(features) if side == "user" else model.encode_items(features)).numpy()
    got = tower(ids=index.numpy(), has_id=has_id[index].numpy(), **numpy_features)
    np.testing.assert_allclose(got, trained, atol=TOLERANCE)
    zeros = np.zeros(len(index), np.int64)
    np.testing.assert_allclose(tower(ids=zeros, has_id=zeros.astype(bool), **numpy_features), new, atol=TOLERANCE)
    assert np.abs(trained - new).max() > 1e-3  # the two paths differ, so the test can tell them apart


@pytest.mark.parametrize("side", ["user", "item"])
def test_content_student_towers_equal_pytorch(bundles, side):
    bundle = load_bundle(bundles["content"])
    model = bundle.load_model()
    tower = OnnxTower(bundle.onnx_path(f"{side}_tower"), bundle.onnx_inputs(f"{side}_tower"))
    index = torch.arange(0, len(model.user_has_id if side == "user" else model.item_has_id), 5)
    with torch.no_grad():
        if side == "user":
            expected = model.user_vectors(index).numpy()
            pooled = model._pool(model.item_vectors(), model.history[index], model.history[index] >= 0)
            inputs = {"ids": index.numpy(), "has_id": model.user_has_id[index].numpy(), "content": pooled.numpy(),
                      **{k: v.numpy() for k, v in model.user_table.rows(index).items()}}
        else:
            expected = model.item_vectors(index).numpy()
            inputs = {"ids": index.numpy(), "has_id": model.item_has_id[index].numpy(),
                      "title_tokens": model.title_tokens[index].numpy(),
                      **{k: v.numpy() for k, v in model.item_table.rows(index).items()}}
    np.testing.assert_allclose(tower(**inputs), expected, atol=TOLERANCE)
