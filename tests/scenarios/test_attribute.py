"""Attribute scenario: hidden genres never reach the text, the metrics against hand-computed
values, and a tiny end-to-end run through the pipeline (real MiniLM teacher, real Trainer)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from distillrec.config import parse_config
from distillrec.errors import DistillrecError
from distillrec.pipeline import run_experiment
from distillrec.scenarios.attribute import (attribute_labels, average_precision, completion_texts,
                                            f1_scores, genre_relevance, hide_items, ndcg_at_k, predict, ridge)

GENRES = ["Action", "Comedy", "Drama", "Horror", "Romance"]


def items_table(n: int = 30) -> pd.DataFrame:
    return pd.DataFrame({"item_id": [f"i{i}" for i in range(n)], "title": [f"Film {i}" for i in range(n)],
                         "year": [1990.0 + i for i in range(n)],
                         "genres": [[GENRES[i % 5], GENRES[(i * 3 + 1) % 5]] if i % 7 else [] for i in range(n)]})


def test_hidden_genres_never_reach_the_text():
    items = items_table()
    labels, vocabulary = attribute_labels(items, "genres")
    assert vocabulary == sorted(GENRES) and labels.shape == (30, 5)
    hidden = hide_items(labels, 0.2, seed=0)
    assert len(hidden) == round(0.2 * (labels.sum(1) > 0).sum()) and (labels[hidden].sum(1) > 0).all()
    assert not np.array_equal(hidden, hide_items(labels, 0.2, seed=1))
    # A template that names the genres: hidden items still get none, visible ones keep theirs.
    texts = completion_texts(items, hidden, "{title}.[ Genres: {genres}.]", "genres")
    for i, text in enumerate(texts):
        if i in hidden:
            assert text == f"Film {i}." and not any(g in text for g in GENRES)
        elif items["genres"][i]:
            assert "Genres: " + ", ".join(items["genres"][i]) in text
    assert completion_texts(items, hidden, "{title}", "genres") == list(items["title"])
    assert items["genres"][hidden[0]]  # the table itself is left untouched


def test_completion_metrics_by_hand():
    truth = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 1]], dtype=bool)
    predicted = np.array([[1, 1, 0], [1, 0, 0], [0, 0, 0]], dtype=bool)
    micro, macro = f1_scores(predicted, truth)
    assert micro == pytest.approx(2 * 2 / (2 * 2 + 1 + 2))
    assert macro == pytest.approx(np.mean([1.0, 0.0, 0.0]))
    assert average_precision(np.array([0.9, 0.8, 0.1]), np.array([1, 0, 1])) == pytest.approx((1 + 2 / 3) / 2)
    assert average_precision(np.full(4, 0.3), np.array([0, 1, 0, 0])) == pytest.approx(0.25)  # ties: the rate
    assert predict(np.array([[0.1, 0.2], [0.6, 0.4]]), 0.5).tolist() == [[False, True], [True, False]]


def test_ridge_recovers_a_linear_map():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 5))
    w = rng.normal(size=(5, 2))
    fitted = ridge(x, x @ w + 3.0, strength=1e-6)
    assert np.allclose(fitted[:5], w, atol=1e-4) and np.allclose(fitted[5], 3.0, atol=1e-4)


def test_genre_relevance_and_ndcg():
    labels = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 1]], dtype=np.float32)
    test = pd.DataFrame({"user": [0, 0, 1], "item": [0, 1, 2]})
    relevance = genre_relevance(test, labels, n_users=2)
    assert relevance.tolist() == [[2, 1, 0], [0, 0, 1]]
    perfect = ndcg_at_k(relevance, relevance, k=3)
    assert perfect.tolist() == [1.0, 1.0]
    reversed_order = ndcg_at_k(np.array([[0, 1, 2], [1, 1, 0]]), relevance, k=1)
    assert reversed_order.tolist() == [0.0, 0.0]


def write_tiny_recbole(folder, n_users=40, n_items=30, per_user=12):
    folder.mkdir()
    rng = np.random.default_rng(0)
    lines = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    for u in range(n_users):
        for t, i in enumerate(rng.choice(n_items, per_user, replace=False)):
            lines.append(f"u{u}\ti{i}\t4\t{t}")
    (folder / "tiny.inter").write_text("\n".join(lines) + "\n")
    items = items_table(n_items)
    rows = ["item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq"]
    rows += [f"{r.item_id}\t{r.title}\t{int(r.year)}\t{' '.join(r.genres)}" for r in items.itertuples()]
    (folder / "tiny.item").write_text("\n".join(rows) + "\n")


def test_tiny_end_to_end_run(tmp_path):
    write_tiny_recbole(tmp_path / "tiny")
    fast = {"epochs": 1, "batch_size": 64, "patience": 1, "num_threads": 1}
    config = parse_config({
        "name": "tiny-attribute", "data": {"dataset": str(tmp_path / "tiny")}, "baselines": [], "students": [],
        "teacher": {"params": {"dim": 8, "hidden": 16}, "train": fast, "top_k": 10, "knn": 10},
        "scenario": {"name": "attribute", "seeds": [2],
                     "params": {"student": {"dim": 8, "train": fast}, "top_n": 10}}})
    metrics = run_experiment(config, tmp_path / "run", progress=False)
    scenario = metrics["scenarios"]["attribute"]
    rows = {(row["task"], row["model"]): row for row in scenario["table"]}
    assert {m for t, m in rows if t == "completion"} == {
        "label prior", "ridge on LM text", "ridge on MF item embeddings", "ridge on LM text + MF"}
    assert {m for t, m in rows if t == "recommendation"} == {
        "genre popularity", "user's own history", "mf", "mf distilled", "LM teacher"}
    for (task, _), row in rows.items():
        for metric in ("micro-f1", "macro-f1", "map") if task == "completion" else ("ndcg@3",):
            assert 0 <= row[metric] <= 1 and row[f"{metric} std"] >= 0
    assert [r["seed"] for r in scenario["details"]["completion"]["label prior"]] == [2]
    assert "attribute" in (tmp_path / "run" / "report.html").read_text()


def test_a_missing_teacher_or_column_is_refused(tmp_path):
    from distillrec.scenarios import SCENARIOS, ScenarioContext

    config = parse_config({"teacher": None, "students": [], "baselines": [], "scenario": {"name": "attribute"}})
    context = ScenarioContext(config, None, None, None, tmp_path, progress=False)
    with pytest.raises(DistillrecError, match="needs a teacher"):
        SCENARIOS.get("attribute")(context)
    with pytest.raises(DistillrecError, match="no column 'genres'"):
        attribute_labels(pd.DataFrame({"item_id": ["a"]}), "genres")
