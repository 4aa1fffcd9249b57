import numpy as np
import pandas as pd
import pytest
import torch

from distillrec.data.dataset import RawData, build_dataset
from distillrec.data.sources import load_raw
from distillrec.data.splitting import cold_user_split, random_split
from distillrec.errors import DistillrecError
from distillrec.evaluation.baselines import PopularityScorer
from distillrec.evaluation.evaluator import Evaluator
from distillrec.students.base import MODELS
from distillrec.students.two_tower import TwoTower
from distillrec.train.trainer import Trainer, TrainConfig

N_USERS, N_ITEMS = 12, 9
GENRES = ["Action", "Comedy", "Drama", "Horror"]


def tiny_dataset(with_users: bool = True):
    """12 users x 9 items, every user rated 6 items; users and items carry MovieLens-style
    attributes."""
    rng = np.random.default_rng(0)
    rows = [(f"u{u}", f"i{i}", 4.0, t) for u in range(N_USERS)
            for t, i in enumerate(rng.choice(N_ITEMS, 6, replace=False))]
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    users = pd.DataFrame({"user_id": [f"u{u}" for u in range(N_USERS)],
                          "age": [18 + 4 * u for u in range(N_USERS)],
                          "gender": ["F", "M"] * (N_USERS // 2),
                          "occupation": ["writer", "artist", "doctor"] * (N_USERS // 3)})
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(N_ITEMS)],
                          "title": [f"Movie {i}" for i in range(N_ITEMS)],
                          "year": [1950.0 + 5 * i for i in range(N_ITEMS)],
                          "genres": [GENRES[i % 4: i % 4 + 2] for i in range(N_ITEMS)]})
    return build_dataset(RawData("tiny", inter, items=items, users=users if with_users else None))


@pytest.fixture(scope="module")
def dataset():
    return tiny_dataset()


@pytest.fixture(scope="module")
def split(dataset):
    return random_split(dataset, seed=0)


def build(dataset, split, **params) -> TwoTower:
    model = MODELS.get("two-tower").build(dataset, split, dim=8, feature_dim=4, hidden=16, **params)
    return model.eval()


def test_shapes_and_score_equals_pair_scores_over_all_items(dataset, split):
    for similarity in ("dot", "cosine"):
        model = build(dataset, split, similarity=similarity, content=np.random.rand(N_ITEMS, 5))
        users = torch.tensor([0, 3, 7])
        with torch.no_grad():
            full = model.score(users)
            pairs = model.pair_scores(users, torch.arange(N_ITEMS).repeat(3, 1))
            candidates = model.pair_scores(users, torch.tensor([[2, 0], [8, 8], [1, 5]]))
        assert full.shape == (3, N_ITEMS) and candidates.shape == (3, 2)
        torch.testing.assert_close(full, pairs)
        torch.testing.assert_close(candidates[0], full[0, [2, 0]])

        reps = model.representations()
        assert reps["user"].shape == (N_USERS, 8) and reps["item"].shape == (N_ITEMS, 8)


def test_cosine_scores_are_bounded_by_inverse_temperature(dataset, split):
    model = build(dataset, split, similarity="cosine", temperature=0.5)
    with torch.no_grad():
        scores = model.score(torch.arange(N_USERS))
    assert scores.abs().max() <= 2.0 + 1e-5


def test_cold_users_and_items_score_from_features_alone(dataset, split):
    content = torch.randn(N_ITEMS, 5)
    model = build(dataset, split, content=content)
    new_users = model.user_encoder.encode_records([
        {"age": 25, "gender": "F", "occupation": "writer"},
        {"age": 61, "gender": "M", "occupation": "doctor"},
        {"gender": "unheard-of"},
    ])
    new_items = model.item_encoder.encode_records([
        {"title": "New", "genres": ["Comedy"], "year": 1995},
        {"title": "Newer", "genres": ["Horror", "Action"], "year": 1951},
    ])
    with torch.no_grad():
        users = model.encode_users(new_users)
        items = model.encode_items(new_items, torch.randn(2, 5))
        scores = model.similarity(users, items)
        catalog = model.similarity(users, model.item_vectors())
    assert scores.shape == (3, 2) and torch.isfinite(scores).all() and torch.isfinite(catalog).all()
    assert not torch.allclose(catalog[0], catalog[1])  # different attributes, different scores
    assert not torch.allclose(scores[:, 0], scores[:, 1])
    with pytest.raises(DistillrecError, match="content slot"):
        model.encode_items(new_items)


def test_users_without_training_interactions_use_the_feature_path(dataset):
    split = cold_user_split(dataset, fraction=0.25, seed=0)
    model = build(dataset, split)
    cold, warm = int(split.cold_users[0]), int(split.train["user"].iloc[0])
    assert not model.user_has_id[cold] and model.user_has_id[warm]
    with torch.no_grad():
        as_new = [model.encode_users(model.user_encoder.encode(dataset.users.iloc[[u]])) for u in (cold, warm)]
        in_catalog = [model.user_vectors(torch.tensor([u])) for u in (cold, warm)]
    torch.testing.assert_close(in_catalog[0], as_new[0])
    assert not torch.allclose(in_catalog[1], as_new[1])  # a trained user adds its ID part


def test_id_dropout_zeroes_the_id_part_only_in_training(dataset, split):
    model = build(dataset, split, id_dropout=0.5)
    user = torch.tensor([int(split.train["user"].iloc[0])])
    with torch.no_grad():
        features_only = model.encode_users(model.user_table.rows(user))
        model.train()
        torch.manual_seed(0)
        dropped = [torch.allclose(model.user_vectors(user), features_only) for _ in range(200)]
        model.eval()
        assert not torch.allclose(model.user_vectors(user), features_only)
    assert 60 < sum(dropped) < 140


def test_loss_trains_every_part_of_both_towers(dataset, split):
    model = build(dataset, split, content=torch.randn(N_ITEMS, 5)).train()
    batch = {"user": torch.tensor([0, 1, 2]), "pos": torch.tensor([0, 1, 2]),
             "neg": torch.tensor([[3, 4], [5, 6], [7, 8]])}
    loss = model.loss(batch)
    loss.backward()
    assert loss.ndim == 0 and torch.isfinite(loss)
    untouched = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert untouched == []


def test_side_tables_and_content_count_in_model_size(dataset, split):
    plain, with_content = build(dataset, split), build(dataset, split, content=torch.zeros(N_ITEMS, 5))
    extra_parameters = (5 * 8 + 8) + 8 * 16  # the projection, and the MLP input it widens
    assert with_content.num_parameters() == plain.num_parameters() + extra_parameters
    assert with_content.size_bytes() - plain.size_bytes() == 4 * (N_ITEMS * 5 + extra_parameters)


def test_same_seed_same_model(dataset, split):
    first, second = build(dataset, split, seed=3), build(dataset, split, seed=3)
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))
    assert not torch.equal(build(dataset, split, seed=4).user_tower.mlp[0].weight, first.user_tower.mlp[0].weight)


def test_dataset_without_user_table_uses_ids_alone(dataset):
    bare = tiny_dataset(with_users=False)
    split = random_split(bare, seed=0)
    model = build(bare, split)
    assert model.user_encoder.columns == ()
    with torch.no_grad():
        assert torch.isfinite(model.score(torch.arange(N_USERS))).all()
    with pytest.raises(DistillrecError, match="no inputs"):
        build(bare, split, use_ids=False)


def test_bad_parameters_raise(dataset, split):
    with pytest.raises(DistillrecError, match=r"content matrix has shape \(3, 5\)"):
        build(dataset, split, content=torch.zeros(3, 5))
    with pytest.raises(DistillrecError, match="content matrix has shape"):
        build(dataset, split, content=torch.zeros(N_ITEMS))
    with pytest.raises(DistillrecError, match="similarity"):
        build(dataset, split, similarity="euclid")
    with pytest.raises(DistillrecError, match="id_dropout"):
        build(dataset, split, id_dropout=1.0)
    with pytest.raises(DistillrecError, match="recommendation loss"):
        build(dataset, split, rec_loss="hinge")


@pytest.fixture
def restore_num_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.slow
def test_short_training_on_ml100k_beats_popularity(tmp_path, restore_num_threads):
    # An empty cache_dir, so the files come from the installed recbole wheel, never the network.
    ml100k = build_dataset(load_raw("ml-100k", cache_dir=tmp_path))
    split = random_split(ml100k, seed=0)
    model = TwoTower.build(ml100k, split, content=torch.randn(ml100k.n_items, 16))
    assert set(model.user_encoder.names) == {"gender", "occupation", "age"}
    assert set(model.item_encoder.names) == {"genres", "year"}
    # One thread: on busy shared cores, two threads of small ops spin against each other and
    # an epoch takes ~10x longer.
    config = TrainConfig(epochs=3, lr=3e-3, batch_size=2048, eval_ks=(10,), seed=0, num_threads=1)
    result = Trainer(model, split, config, progress=False).fit()

    popularity = Evaluator(split, ks=(10,)).evaluate(PopularityScorer(split), "valid")["ndcg@10"]
    assert result.best_valid["ndcg@10"] > popularity * 1.1
