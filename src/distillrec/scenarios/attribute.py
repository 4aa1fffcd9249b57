"""Item attributes: complete the hidden ones, and recommend them to users.

(a) Completion. The genres of a random `hide_fraction` of the items that have genres are hidden
    (per seed). They are predicted, multi-label, by a ridge probe (closed form: no training
    loop) fitted on the visible items, from: the language model's embedding of the item text
    rendered with the hidden items' genres blanked (default template: the title alone), the
    undistilled MF student's item embeddings (interactions only), or both. Ridge strength and
    the decision threshold are chosen on 20% of the visible items. Baseline: the label prior
    (every item gets the genres frequent enough to pass the tuned threshold). Micro / macro F1
    and mAP (per genre, ranking the hidden items) on the hidden items.
(b) Recommendation. Each test user's held-out genre preference is the number of their test
    items in each genre (graded relevance); NDCG@k of a ranked list of genres. Scores: the genre
    mass of a student's top-N item list (rank-discounted), for the MF student trained alone and
    distilled from the teacher, and of the teacher's own list (a reference); against genre
    popularity in train and the user's own history.
Distilled item embeddings are not used for (a): the teacher reads every item's genres, so they
would leak the hidden labels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from pydantic import Field

from distillrec.errors import DistillrecError
from distillrec.scenarios import SCENARIOS, ScenarioContext, ScenarioResult, mean_std
from distillrec.scenarios.common import StrictParams, encode_texts, item_texts, parse_params

COMPLETION_METRICS = ("micro-f1", "macro-f1", "map")


class StudentParams(StrictParams):
    dim: int = Field(64, ge=1)
    params: dict[str, Any] = Field(default_factory=dict)
    train: dict[str, Any] = Field(default_factory=lambda: {"patience": 20, "num_threads": 1})


class AttributeParams(StrictParams):
    column: str = Field("genres", description="the item attribute (a list column) to complete and recommend")
    hide_fraction: float = Field(0.2, gt=0, lt=1)
    template: str = Field("{title}", description="item text for completion; the hidden attribute is blanked")
    encoder: str | None = None
    ridge: list[float] = Field(default_factory=lambda: [0.1, 1.0, 10.0], min_length=1)
    student: StudentParams = Field(default_factory=StudentParams)
    kd: dict[str, Any] = Field(default_factory=lambda: {"neighbour-graph": 0.05,
                                                        "feature": {"weight": 0.1, "kind": "cosine"}})
    top_n: int = Field(50, ge=1, description="items of a student's list aggregated into genre scores")
    k: int = Field(3, ge=1, description="NDCG@k of the recommended genres")


@SCENARIOS.register("attribute")
def run(context: ScenarioContext) -> ScenarioResult:
    from distillrec.params import make_train_config

    params = parse_params(AttributeParams, context.params, "attribute")
    make_train_config(params.student.train, 0)
    if context.teacher_dir is None:
        raise DistillrecError("scenario 'attribute' compares a distilled student: the config needs a teacher")
    dataset, split = context.dataset, context.split
    labels, vocabulary = attribute_labels(dataset.items, params.column)
    completion: dict[str, list[dict]] = {}
    recommendation: dict[str, list[dict]] = {}
    for seed in context.seeds:
        students = _students(context, params, seed)
        for name, result in genre_recommendation(students, split, labels, params.top_n, params.k).items():
            recommendation.setdefault(name, []).append({"seed": seed, **result})
        mf_items = students["mf"].representations()["item"].detach().numpy()
        for name, result in attribute_completion(dataset.items, labels, params, seed, mf_items).items():
            completion.setdefault(name, []).append({"seed": seed, **result})
    recommendation["LM teacher"] = [{"seed": context.config.seed, **_teacher_genres(context, labels, params)}]
    table = ([_row("completion", name, runs, COMPLETION_METRICS) for name, runs in completion.items()]
             + [_row("recommendation", name, runs, (f"ndcg@{params.k}", "item ndcg@10"))
                for name, runs in recommendation.items()])
    notes = (f"(a) the {params.column} of {params.hide_fraction:.0%} of items hidden per seed and predicted "
             f"from template {params.template!r} (hidden values blanked) by a ridge probe; micro/macro F1 and "
             f"per-{params.column} mAP on the hidden items. (b) {params.column} ranked for each test user, NDCG@"
             f"{params.k} against the {params.column} of their test items; student scores = {params.column} mass "
             f"of its top-{params.top_n} list. Mean and std over seeds {context.seeds} (hidden items and "
             "students vary; one teacher, fitted once with seed 0).")
    details = {"vocabulary": vocabulary, "completion": completion, "recommendation": recommendation}
    return ScenarioResult(table=table, notes=notes, details=details)


def _row(task: str, name: str, runs: list[dict], metrics: tuple[str, ...]) -> dict:
    row: dict[str, Any] = {"task": task, "model": name}
    for metric in metrics:
        values = [r[metric] for r in runs if r.get(metric) is not None]
        if values:
            row[metric], row[f"{metric} std"] = mean_std(values)
    return row


# --- labels and hiding ------------------------------------------------------------------

def attribute_labels(items: pd.DataFrame, column: str) -> tuple[np.ndarray, list[str]]:
    """Multi-hot [n_items, n_values] of a list column, and its sorted vocabulary."""
    if column not in items.columns:
        raise DistillrecError(f"scenario 'attribute': the item table has no column {column!r} "
                              f"(it has: {', '.join(map(str, items.columns))})")
    values = items[column].map(lambda v: list(v) if isinstance(v, (list, tuple, np.ndarray)) else [])
    vocabulary = sorted({v for row in values for v in row})
    if len(vocabulary) < 2:
        raise DistillrecError(f"scenario 'attribute': column {column!r} has {len(vocabulary)} distinct "
                              "values, expected at least 2")
    index = {v: j for j, v in enumerate(vocabulary)}
    labels = np.zeros((len(items), len(vocabulary)), dtype=np.float32)
    for row, row_values in enumerate(values):
        labels[row, [index[v] for v in row_values]] = 1.0
    return labels, vocabulary


def hide_items(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Sorted indices of `fraction` of the items that have at least one value (rounded, >= 1)."""
    eligible = np.flatnonzero(labels.sum(1) > 0)
    count = max(1, int(round(fraction * len(eligible))))
    return np.sort(np.random.default_rng(seed).choice(eligible, size=count, replace=False))


def completion_texts(items: pd.DataFrame, hidden: np.ndarray, template: str, column: str) -> list[str]:
    """Item texts in which the hidden items' `column` is blank: whatever the template, a hidden
    value never reaches the language model."""
    blanked = items.copy()
    hidden_set = set(hidden.tolist())
    blanked[column] = [[] if i in hidden_set else v for i, v in enumerate(blanked[column])]
    return item_texts(blanked, template)


# --- (a) completion ---------------------------------------------------------------------

def attribute_completion(items: pd.DataFrame, labels: np.ndarray, params: AttributeParams, seed: int,
                         mf_items: np.ndarray | None = None) -> dict[str, dict]:
    hidden = hide_items(labels, params.hide_fraction, seed)
    visible = np.setdiff1d(np.flatnonzero(labels.sum(1) > 0), hidden)
    rng = np.random.default_rng(seed + 1)
    tune = np.sort(rng.choice(visible, size=max(1, len(visible) // 5), replace=False))
    fit = np.setdiff1d(visible, tune)

    text = _unit_rows(encode_texts(completion_texts(items, hidden, params.template, params.column),
                                   params.template, params.encoder).numpy())
    features = {"ridge on LM text": text}
    if mf_items is not None:
        features["ridge on MF item embeddings"] = _unit_rows(mf_items)
        features["ridge on LM text + MF"] = np.hstack([text, _unit_rows(mf_items)])

    prior = labels[fit].mean(0, keepdims=True)
    threshold = best_threshold(np.repeat(prior, len(tune), 0), labels[tune])
    results = {"label prior": completion_metrics(np.repeat(labels[visible].mean(0, keepdims=True), len(hidden), 0),
                                                 labels[hidden], threshold)}
    for name, x in features.items():
        scores, threshold = ridge_probe(x, labels, fit, tune, visible, hidden, params.ridge)
        results[name] = completion_metrics(scores, labels[hidden], threshold)
    return results


def _unit_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def ridge(x: np.ndarray, y: np.ndarray, strength: float) -> np.ndarray:
    """Closed-form ridge with an unpenalised bias: W [d + 1, n_labels]."""
    x1 = np.hstack([x, np.ones((len(x), 1))])
    penalty = strength * np.eye(x1.shape[1])
    penalty[-1, -1] = 0.0
    return np.linalg.solve(x1.T @ x1 + penalty, x1.T @ y)


def _apply(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    return np.hstack([x, np.ones((len(x), 1))]) @ w


def ridge_probe(x, labels, fit, tune, visible, hidden, strengths) -> tuple[np.ndarray, float]:
    """Scores of the hidden items and the decision threshold; strength and threshold are
    chosen on `tune` with the probe fitted on `fit`, then the probe is refitted on all visible."""
    best = max(strengths, key=lambda s: mean_average_precision(_apply(x[tune], ridge(x[fit], labels[fit], s)),
                                                               labels[tune]))
    threshold = best_threshold(_apply(x[tune], ridge(x[fit], labels[fit], best)), labels[tune])
    return _apply(x[hidden], ridge(x[visible], labels[visible], best)), threshold


def predict(scores: np.ndarray, threshold: float) -> np.ndarray:
    """Labels at or above the threshold; an item with none gets its best-scored label."""
    predicted = scores >= threshold
    empty = ~predicted.any(1)
    predicted[empty, scores[empty].argmax(1)] = True
    return predicted


def best_threshold(scores: np.ndarray, truth: np.ndarray) -> float:
    candidates = np.unique(np.quantile(scores, np.linspace(0, 1, 201)))
    return float(max(candidates, key=lambda t: f1_scores(predict(scores, t), truth)[0]))


def f1_scores(predicted: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """(micro F1, macro F1 over the labels with at least one true item)."""
    truth = truth.astype(bool)
    tp = (predicted & truth).sum(0).astype(np.float64)
    fp = (predicted & ~truth).sum(0)
    fn = (~predicted & truth).sum(0)
    micro = 2 * tp.sum() / max(2 * tp.sum() + fp.sum() + fn.sum(), 1)
    present = truth.any(0)
    per_label = 2 * tp / np.maximum(2 * tp + fp + fn, 1)
    return float(micro), float(per_label[present].mean())


def average_precision(scores: np.ndarray, truth: np.ndarray) -> float:
    """AP of ranking by `scores`; tied scores form one threshold (as scikit-learn), so a
    constant scorer gets the positive rate, not a lucky or unlucky order."""
    order = np.argsort(-scores, kind="stable")
    ordered, hits = scores[order], truth[order].astype(np.float64)
    tp = np.cumsum(hits)
    last = np.r_[np.flatnonzero(np.diff(ordered) != 0), len(ordered) - 1]
    precision, recall = tp[last] / (last + 1), tp[last] / tp[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def mean_average_precision(scores: np.ndarray, truth: np.ndarray) -> float:
    present = np.flatnonzero(truth.any(0))
    return float(np.mean([average_precision(scores[:, j], truth[:, j]) for j in present]))


def completion_metrics(scores: np.ndarray, truth: np.ndarray, threshold: float) -> dict[str, float]:
    micro, macro = f1_scores(predict(scores, threshold), truth)
    return {"micro-f1": micro, "macro-f1": macro, "map": mean_average_precision(scores, truth)}


# --- (b) recommendation -----------------------------------------------------------------

def _students(context: ScenarioContext, params: AttributeParams, seed: int) -> dict:
    """The MF student trained alone and distilled from the teacher (one Trainer, one seed)."""
    from distillrec import runs
    from distillrec.distill.runner import distill_student

    models = {}
    for name, kd in (("mf", None), ("mf distilled", params.kd)):
        out = context.out / f"seed-{seed}" / name.replace(" ", "-")
        distill_student(context.teacher_dir, "mf", kd, dim=params.student.dim, seed=seed,
                        model_params=params.student.params, train_params=params.student.train, out=out,
                        progress=context.progress)
        _, _, model, metrics = runs.load_run(out)
        model.item_ndcg10 = next(iter(metrics["models"].values()))["test"]["ndcg@10"]
        models[name] = model.eval()
    return models


def _teacher_genres(context: ScenarioContext, labels: np.ndarray, params: AttributeParams) -> dict:
    """The teacher's own genre ranking (one model, fitted with the config's seed): a reference."""
    from distillrec import runs

    _, split, teacher, metrics = runs.load_run(context.teacher_dir)
    entry = next(e for e in metrics["models"].values() if e.get("role") == "teacher")
    with torch.no_grad():
        scores = list_genre_scores(teacher, split, labels, _test_users(split, labels), params.top_n)
    truth = genre_relevance(split.test, labels, split.n_users)[_test_users(split, labels)]
    return {f"ndcg@{params.k}": float(ndcg_at_k(scores, truth, params.k).mean()),
            "item ndcg@10": entry["test"]["ndcg@10"]}


def _test_users(split, labels: np.ndarray) -> np.ndarray:
    return np.flatnonzero(genre_relevance(split.test, labels, split.n_users).sum(1) > 0)


def genre_relevance(part: pd.DataFrame, labels: np.ndarray, n_users: int) -> np.ndarray:
    """[n_users, n_values]: how many of each user's interactions in `part` carry each value."""
    relevance = np.zeros((n_users, labels.shape[1]))
    np.add.at(relevance, part["user"].to_numpy(), labels[part["item"].to_numpy()])
    return relevance


def ndcg_at_k(scores: np.ndarray, relevance: np.ndarray, k: int) -> np.ndarray:
    """Per row: NDCG@k of the values ranked by `scores` (ties: lower index first), linear gains."""
    k = min(k, scores.shape[1])
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    ranked = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    dcg = (np.take_along_axis(relevance, ranked, 1) * discount).sum(1)
    ideal = (-np.sort(-relevance, axis=1)[:, :k] * discount).sum(1)
    return dcg / np.where(ideal > 0, ideal, 1)


def list_genre_scores(model, split, labels: np.ndarray, users: np.ndarray, top_n: int) -> np.ndarray:
    """Rank-discounted genre mass of each user's top-N items (train and valid items masked)."""
    from distillrec.evaluation.evaluator import rank_top_k
    from distillrec.evaluation.scoring import model_scorer

    seen = split.history("test")
    scorer = model_scorer(model, split, "test")
    scores = scorer(torch.as_tensor(users)).clone()
    mask = pd.DataFrame({"row": pd.Index(users).get_indexer(seen["user"]), "item": seen["item"]})
    mask = mask[mask["row"] >= 0]
    scores[torch.tensor(mask["row"].to_numpy()), torch.tensor(mask["item"].to_numpy())] = -torch.inf
    top = rank_top_k(scores, min(top_n, scores.shape[1])).numpy()
    discount = 1.0 / np.log2(np.arange(2, top.shape[1] + 2))
    return np.einsum("utg,t->ug", labels[top], discount)


def genre_recommendation(students: dict, split, labels: np.ndarray, top_n: int, k: int) -> dict[str, dict]:
    relevance = genre_relevance(split.test, labels, split.n_users)
    users = np.flatnonzero(relevance.sum(1) > 0)
    truth = relevance[users]
    metric = f"ndcg@{k}"
    popularity = genre_relevance(split.train, labels, split.n_users).sum(0, keepdims=True)
    history = genre_relevance(pd.concat([split.train, split.valid]), labels, split.n_users)[users]
    results = {"genre popularity": {metric: float(ndcg_at_k(np.repeat(popularity, len(users), 0), truth, k).mean())},
               "user's own history": {metric: float(ndcg_at_k(history, truth, k).mean())}}
    for name, model in students.items():
        with torch.no_grad():
            scores = list_genre_scores(model, split, labels, users, top_n)
        results[name] = {metric: float(ndcg_at_k(scores, truth, k).mean()),
                         "item ndcg@10": getattr(model, "item_ndcg10", None)}
    return results
