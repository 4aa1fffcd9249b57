"""Knowledge extraction and its artifact, on a tiny catalogue encoded by the real MiniLM."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from distillrec.data.dataset import RawData, build_dataset
from distillrec.data.splitting import random_split
from distillrec.errors import ArtifactError, DistillrecError
from distillrec.teachers.knowledge import Knowledge, extract_knowledge, nearest_items, top_k_rankings
from distillrec.teachers.models import LMTeacher
from distillrec.train.trainer import TrainConfig, Trainer

N_USERS, N_ITEMS = 12, 24
GENRES = ["Action", "Comedy", "Drama"]


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    rng = np.random.default_rng(0)
    rows = [(f"u{u}", f"i{i}", 4.0, t) for u in range(N_USERS)
            for t, i in enumerate(rng.choice(N_ITEMS, 10, replace=False))]
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(N_ITEMS)],
                          "title": [f"Film number {i}" for i in range(N_ITEMS)],
                          "year": [1980.0 + 2 * i for i in range(N_ITEMS)],
                          "genres": [[GENRES[i % 3]] for i in range(N_ITEMS)]})
    users = pd.DataFrame({"user_id": [f"u{u}" for u in range(N_USERS)], "gender": ["F", "M"] * (N_USERS // 2)})
    dataset = build_dataset(RawData("tiny", inter, items=items, users=users))
    split = random_split(dataset, seed=0)
    model = LMTeacher.build(dataset, split, cache_dir=tmp_path_factory.mktemp("cache"), dim=8, hidden=16)
    Trainer(model, split, TrainConfig(epochs=2, batch_size=32, lr=1e-2, eval_ks=(10,)), progress=False).fit()
    return dataset, split, model


@pytest.fixture(scope="module")
def knowledge(fitted):
    dataset, split, model = fitted
    return extract_knowledge(model, split, dataset, top_k=5, knn=3, chunk=5)


def test_top_k_excludes_train_items_and_matches_dense_brute_force(fitted, knowledge):
    _, split, model = fitted
    with torch.no_grad():
        dense = model.score(torch.arange(N_USERS))
    dense[torch.tensor(split.train["user"].to_numpy()), torch.tensor(split.train["item"].to_numpy())] = -torch.inf
    for user in range(N_USERS):
        # Brute force: sort by (score desc, index asc), keep the unseen items.
        order = sorted(range(N_ITEMS), key=lambda i: (-float(dense[user, i]), i))
        unseen = [i for i in order if dense[user, i] > -torch.inf]
        assert knowledge.tensors["top_items"][user].tolist() == unseen[:5]
        torch.testing.assert_close(knowledge.tensors["top_scores"][user], dense[user, unseen[:5]])
        probabilities = dense[user].softmax(0)
        torch.testing.assert_close(knowledge.tensors["top_confidence"][user], probabilities[unseen[:5]])
    train_pairs = set(zip(split.train["user"], split.train["item"]))
    assert not any((u, i) in train_pairs for u in range(N_USERS) for i in knowledge.tensors["top_items"][u].tolist())


def test_top_k_pads_users_with_fewer_candidates_than_k():
    seen = pd.DataFrame({"user": [0, 0, 0], "item": [0, 1, 2]})
    items, scores, confidence = top_k_rankings(lambda users: torch.zeros(len(users), 4), seen, 2, 4, k=3)
    assert items[0].tolist() == [3, -1, -1] and items[1].tolist() == [0, 1, 2]
    assert confidence[0].tolist() == [1.0, 0.0, 0.0] and torch.isinf(scores[0, 1:]).all()


def test_knn_excludes_self_and_is_sorted_by_cosine(knowledge):
    knn_items, similarity = knowledge.tensors["knn_items"], knowledge.tensors["knn_similarity"]
    assert knn_items.shape == (N_ITEMS, 3)
    assert not (knn_items == torch.arange(N_ITEMS).unsqueeze(1)).any()
    assert torch.all(similarity[:, :-1] >= similarity[:, 1:])
    vectors = torch.tensor([[1.0, 0.0], [2.0, 0.1], [0.0, 1.0], [-1.0, 0.0]])
    indices, sims = nearest_items(vectors, 2, chunk=3)
    assert indices[0].tolist() == [1, 2] and indices[3].tolist() == [2, 1]
    torch.testing.assert_close(sims[0, 1], torch.tensor(0.0))


def test_knowledge_holds_representations_and_importance(fitted, knowledge):
    _, _, model = fitted
    assert knowledge.tensors["user"].shape == (N_USERS, 8) and knowledge.tensors["item"].shape == (N_ITEMS, 8)
    assert torch.equal(knowledge.tensors["text"], model.text_embeddings)
    assert set(knowledge.importance) == {"user.gender", "item.genres", "item.year", "item.text",
                                         "item.text.title", "item.text.year", "item.text.genres"}
    assert all(np.isfinite(v) for v in knowledge.importance.values())
    assert knowledge.info["timings"]["top_k_seconds"] > 0
    with pytest.raises(DistillrecError, match="top_k"):
        extract_knowledge(model, fitted[1], fitted[0], top_k=0)


def test_save_load_round_trip_and_tampering_is_refused(knowledge, tmp_path):
    directory = knowledge.save(tmp_path / "knowledge")
    loaded = Knowledge.load(directory)
    assert loaded.tensors.keys() == knowledge.tensors.keys()
    for name, tensor in knowledge.tensors.items():
        assert torch.equal(loaded.tensors[name], tensor), name
    assert loaded.importance == pytest.approx(knowledge.importance)
    assert json.loads(json.dumps(loaded.info)) == loaded.info

    with pytest.raises(ArtifactError, match="not empty"):
        knowledge.save(directory)
    tensors_file = directory / "knowledge.safetensors"
    data = bytearray(tensors_file.read_bytes())
    data[-1] ^= 0xFF
    tensors_file.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="does not match the manifest"):
        Knowledge.load(directory)


# --- per-step rankings of a sequential teacher ------------------------------------------------

def sequential_teacher_and_train():
    """A SASRec as the sequential teacher (step_rankings reads only encode and the item
    table) and a training log: 3 users with 9, 1 and 5 items in time order."""
    from distillrec.students.sasrec import SASRec

    torch.manual_seed(0)
    model = SASRec(3, 8, dim=8, n_heads=1, inner_size=8, max_len=4).eval()
    rng = np.random.default_rng(1)
    rows = [(0, int(i), t) for t, i in enumerate(rng.integers(0, 8, 9))] + [(1, 3, 0)] + \
           [(2, int(i), t) for t, i in enumerate(rng.permutation(8)[:5])]
    train = pd.DataFrame(rows, columns=["user", "item", "timestamp"]).sample(frac=1.0, random_state=0)
    return model, train


def test_step_rankings_are_the_teachers_top_k_at_each_step_with_the_items_before_it_masked():
    from distillrec.teachers.knowledge import step_rankings
    from distillrec.train.batches import sequence_windows

    model, train = sequential_teacher_and_train()
    items, scores = step_rankings(model, train, n_users=3, n_items=8, k=3, max_cells=8 * 4 * 2)  # 2 windows a chunk
    ordered = train.sort_values(["user", "timestamp"], kind="stable")
    assert items.shape == (len(train), 3)
    first_steps = [0, 9, 10]  # each user's first item: nothing before it
    assert (items[first_steps] == -1).all() and torch.isinf(scores[first_steps]).all()
    _, windows, steps = sequence_windows(train, 3, model.max_len + 1)
    checked = 0
    for window, window_steps in zip(windows, steps):
        for position in range(model.max_len):  # the input at `position` predicts slot position + 1
            step, prefix = int(window_steps[position + 1]), window[:position + 1]
            if step < 0 or prefix[-1] == 0:
                continue
            with torch.no_grad():  # the teacher's state at this position of this window, as in training
                expected = model.encode(window[None, :-1])[0, position] @ model.item_table()[1:].T
            expected[prefix[prefix > 0] - 1] = float("-inf")
            top = expected.topk(3)
            assert items[step].tolist() == top.indices.tolist(), step
            torch.testing.assert_close(scores[step], top.values, atol=1e-5, rtol=0)
            checked += 1
    assert checked == len(train) - 3  # every step but the users' first ones
    assert int(ordered.iloc[1]["item"]) not in items[1].tolist()  # step 1 masks step 0's item


def test_step_top_k_needs_a_sequential_teacher(fitted):
    dataset, split, model = fitted
    with pytest.raises(DistillrecError, match="step_top_k needs a sequential teacher"):
        extract_knowledge(model, split, dataset, top_k=5, knn=3, step_top_k=3)


def test_the_per_step_rankings_are_saved_and_described(knowledge, tmp_path):
    from distillrec.teachers.knowledge import OPTIONAL_TENSOR_NAMES

    steps = {"step_top_items": torch.tensor([[-1, -1], [3, 1]]), "step_top_scores": torch.tensor([[-np.inf] * 2, [2.0, 1.0]])}
    with_steps = Knowledge({**knowledge.tensors, **steps}, knowledge.importance, knowledge.info)
    loaded = Knowledge.load(with_steps.save(tmp_path / "knowledge"))
    for name, tensor in steps.items():
        assert torch.equal(loaded.tensors[name], tensor)
    described = json.loads((tmp_path / "knowledge" / "knowledge.json").read_text())["tensors"]
    assert set(OPTIONAL_TENSOR_NAMES) <= set(described)
    plain = json.loads((knowledge.save(tmp_path / "plain") / "knowledge.json").read_text())["tensors"]
    assert not set(OPTIONAL_TENSOR_NAMES) & set(plain)
