"""The service's verbs against the PyTorch student they were exported from."""

import numpy as np
import pytest
import torch

from distillrec.serving.bundle import load_bundle
from distillrec.serving.engine import Conflict, Engine, NotFound, RequestError


@pytest.fixture(scope="module")
def engines(bundles):
    return {name: (Engine.from_bundle(load_bundle(path)), load_bundle(path).load_model()) for name, path in bundles.items()}


def test_known_user_top_k_is_the_models_ranking_without_seen_items(engines):
    engine, model = engines["mf"]
    user = engine.user("1")
    with torch.no_grad():
        scores = model.score(torch.tensor([user]))[0].numpy()
    scores[engine.seen[user]] = -np.inf
    expected = [engine.item_ids[i] for i in np.argsort(-scores, kind="stable")[:10]]
    assert [r["item_id"] for r in engine.recommend("1", 10)] == expected
    with_seen = engine.recommend("1", engine.n_items, exclude_seen=False)
    assert {engine.item_ids[i] for i in engine.seen[user]} <= {r["item_id"] for r in with_seen}


def test_mf_cold_start_folds_in_the_mean_of_recent_items(engines):
    engine, _ = engines["mf"]
    recent = ["50", "181", "1"]
    vector = engine.item_vectors[[engine.item(i) for i in recent]].mean(axis=0)
    expected = [engine.item_ids[i] for i in np.argsort(-(engine.item_vectors @ vector), kind="stable")
                if engine.item_ids[i] not in recent][:5]
    assert [r["item_id"] for r in engine.recommend_new(recent_items=recent, k=5)] == expected
    with pytest.raises(RequestError, match="no user features"):
        engine.recommend_new(attributes={"age": 30})
    with pytest.raises(RequestError, match="cannot encode new items"):
        engine.add_item("new", {"genres": ["Comedy"]})


def test_two_tower_new_user_and_new_item_use_the_feature_towers(engines):
    engine, model = engines["two-tower"]
    attributes = {"age": 31, "gender": "F", "occupation": "writer"}
    with torch.no_grad():
        user = model.encode_users(model.user_encoder.encode_records([attributes]))[0].numpy()
        item = model.encode_items(model.item_encoder.encode_records([{"genres": ["Comedy"], "year": 1996}]))[0].numpy()
    got = engine.recommend_new(attributes=attributes, k=3)
    assert [r["item_id"] for r in got] == [engine.item_ids[i] for i in np.argsort(-(engine.item_vectors @ user))[:3]]
    np.testing.assert_allclose([r["score"] for r in got], np.sort(engine.item_vectors @ user)[::-1][:3], atol=1e-5)
    index = engine.add_item("brand-new", {"genres": ["Comedy"], "year": 1996}, title="Brand New")
    np.testing.assert_allclose(engine.item_vectors[index], item, atol=1e-5)
    assert engine.similar_items("brand-new", 3)[0]["item_id"] != "brand-new"
    assert "brand-new" in {r["item_id"] for r in engine.recommend("1", engine.n_items)}
    with pytest.raises(Conflict):
        engine.add_item("brand-new", {})
    with pytest.raises(RequestError, match="unknown attribute"):
        engine.recommend_new(attributes={"shoe_size": 42})


def test_explain_names_history_items_and_feature_effects(engines):
    engine, _ = engines["two-tower"]
    top = engine.recommend("1", 1)[0]["item_id"]
    explanation = engine.explain(top, user_id="1", n=3)
    assert explanation["score"] == pytest.approx(engine.recommend("1", 1)[0]["score"], abs=1e-5)
    history = {engine.item_ids[i] for i in engine.seen[engine.user("1")]}
    assert len(explanation["history"]) == 3 and {h["item_id"] for h in explanation["history"]} <= history
    similarities = [h["similarity"] for h in explanation["history"]]
    assert similarities == sorted(similarities, reverse=True)
    assert explanation["features"] and {f["side"] for f in explanation["features"]} <= {"user", "item"}
    assert any(f["name"] == "gender" and f["value"] in ("F", "M") for f in engine.explain(top, user_id="1", n=10)["features"])


def test_unknown_ids_are_not_found(engines):
    engine, _ = engines["mf"]
    with pytest.raises(NotFound, match="unknown user_id 'nobody'"):
        engine.recommend("nobody")
    with pytest.raises(NotFound, match="'x1', 'x2'"):
        engine.recommend_new(recent_items=["50", "x1", "x2"])


def test_content_student_new_items_from_title_and_new_users_from_profile_and_history(engines):
    engine, model = engines["content"]
    record = {"title": "Star Wars: The Return", "genres": ["Sci-Fi", "Action"], "year": 2025}
    with torch.no_grad():
        expected_item = model.encode_items([record])
    n_catalog = engine.n_items
    index = engine.add_item("sw-new", {"genres": record["genres"], "year": record["year"]}, title=record["title"])
    expected_item = torch.nn.functional.normalize(expected_item, dim=-1)[0].numpy()  # cosine: unit items
    np.testing.assert_allclose(engine.item_vectors[index], expected_item, atol=1e-5)
    with pytest.raises(RequestError, match="give a non-empty title"):
        engine.add_item("untitled", {"genres": ["Drama"]})
    recent = ["50", "181"]
    attributes = {"age": 40, "gender": "F"}
    with torch.no_grad():
        history = torch.tensor([[engine.item(i) for i in recent]])
        user = model.encode_users(model.user_encoder.encode_records([attributes]), history)
        user = (torch.nn.functional.normalize(user, dim=-1) / model.temperature)[0].numpy()
    got = engine.recommend_new(attributes=attributes, recent_items=recent, k=3)
    scores = engine.item_vectors[:n_catalog] @ user
    scores[history[0].numpy()] = -np.inf
    assert [r["item_id"] for r in got] == [engine.item_ids[i] for i in np.argsort(-scores, kind="stable")[:3]]
    explanation = engine.explain("50", user_id="1", n=10)
    assert {f["side"] for f in explanation["features"]} == {"user", "item"}


def test_a_model_served_from_memory_ranks_like_its_bundle(pipeline_run, engines):
    from distillrec import runs
    from distillrec.serving.bundle import resolve_model_dir

    model_dir, _ = resolve_model_dir(pipeline_run, "mf")
    dataset, split, _ = runs.load_run_data(model_dir)
    engine = Engine.from_model(runs.load_model(model_dir, dataset=dataset, split=split), dataset, split)
    bundled, _ = engines["mf"]
    for user in ("1", "7", "500"):
        assert [r["item_id"] for r in engine.recommend(user, 10)] == [r["item_id"] for r in bundled.recommend(user, 10)]
    assert engine.similar_items("50", 5) == bundled.similar_items("50", 5)
