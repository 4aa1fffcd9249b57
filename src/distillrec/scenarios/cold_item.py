"""Cold-start items: new items known only by their title, genres and year.

Protocol (split `cold-item`): the held-out items have no training interaction; half of them
are new at validation, the other half at test time. On the test part each model is scored
four ways, all with Recall@K and NDCG@K (ALDI's cold / warm / all settings, plus catalog):
  cold     ranking within the test's cold items (ground truth: interactions with them);
  catalog  ranking over the full catalog, ground truth still the cold-item interactions only
           (can a new item beat the warm items a user would otherwise get?);
  warm     the warm test interactions ranked within the warm items: what the same model does
           for the items it was trained on, so a cold-start gain paid for on warm is visible;
  all      every test interaction (warm and cold items alike) ranked over the full catalog,
           new and old items together: the mixed catalogue a deployed model serves.
Models: popularity; text-kNN (evaluation/text_knn.py: item-kNN over the teacher's language-model
text embeddings, the training-free content baseline); the content student (students/content.py)
without and with feature distillation from the teacher's item representations; the teacher
with its language model. Plus the per-item encoding cost of a new item: the content student's
`encode_items` against the language model encoding the item text (which text-kNN needs too),
both on 1 thread, batches of the same size.

The students are trained per seed; the teacher is the pipeline's (seed-0) teacher stage,
shared by all seeds, so its row, text-kNN's (its text embeddings) and popularity's have no
spread across seeds.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import replace
from functools import cache
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch

from distillrec import artifacts, runs
from distillrec.data.split import Split
from distillrec.errors import ArtifactError, DistillrecError
from distillrec.evaluation.significance import format_p, paired_users
from distillrec.scenarios import SCENARIOS, ScenarioContext, ScenarioResult, mean_std

#: content-student settings used unless the config's scenario params say otherwise.
DEFAULT_MODEL: dict[str, Any] = {"dim": 64}
DEFAULT_TRAIN: dict[str, Any] = {"epochs": 20, "patience": 3, "lr": 0.003, "batch_size": 1024}
#: feature KD on the items: the batch's positive (warm) items against the teacher's item vectors.
DEFAULT_KD: dict[str, Any] = {"feature": {"weight": 1.0, "kind": "cosine", "on": "item"}}
UNDISTILLED, DISTILLED, TEACHER = "content", "content-kd", "teacher (language model)"
TEXT_KNN = "text-kNN (language model)"
#: nearest items kept per history item by text-kNN unless the params' text_knn_neighbours says otherwise.
DEFAULT_TEXT_KNN_NEIGHBOURS = 50


# --------------------------------------------------------------------------- shared with cold_user

def teacher_run(context: ScenarioContext):
    """The pipeline's teacher as a TeacherRun over the context's dataset (no reload of the data),
    its files verified against the manifest."""
    from distillrec.distill.runner import TeacherRun
    from distillrec.teachers.knowledge import Knowledge

    if context.teacher_dir is None:
        raise DistillrecError(f"scenario {context.config.scenario.name!r} needs a teacher "
                              "(the config's teacher: is null; expected a teacher section)")
    directory = Path(context.teacher_dir)
    artifacts.verify_manifest(directory)
    metrics = artifacts.read_json(directory / "metrics.json")
    if metrics.get("data_fingerprint") != context.dataset.fingerprint:
        raise ArtifactError(f"{directory}: the teacher was fitted on other data than the scenario's")
    return TeacherRun(directory, context.dataset, Split.load(directory / "split"),
                      Knowledge.load(directory / "knowledge"), metrics)


def train_students(context: ScenarioContext, teacher, kd: Mapping[str, Any]) -> dict[str, list]:
    """{UNDISTILLED: [model per seed], DISTILLED: [...]}: the content student trained through
    `distill_student` (the one Trainer), without and with `kd`. A finished run directory is
    reused, so an interrupted scenario continues; a partial one is started over."""
    from distillrec.distill.runner import distill_student

    params = context.params
    model_params = {**DEFAULT_MODEL, **params.get("model", {})}
    dim = model_params.pop("dim")
    train_params = {**DEFAULT_TRAIN, **params.get("train", {})}
    models: dict[str, list] = {}
    for label, spec in ((UNDISTILLED, None), (DISTILLED, kd)):
        for seed in context.seeds:
            run_dir = context.out / "runs" / f"{label}-s{seed}"
            if not (run_dir / artifacts.MANIFEST).exists():
                if run_dir.exists():
                    shutil.rmtree(run_dir)
                # The objective's projector is initialised from the global generator: seed it,
                # so a run does not depend on what this process trained before.
                torch.manual_seed(seed)
                distill_student(teacher, "content", spec, dim=dim, seed=seed, model_params=model_params,
                                train_params=train_params, out=run_dir, progress=context.progress)
            models.setdefault(label, []).append(runs.load_model(run_dir, dataset=teacher.dataset, split=teacher.split))
    return models


def summarise(label: str, per_seed: list[dict[str, float]]) -> dict:
    """One table row: each metric's mean and, in "<metric> std", its spread over seeds."""
    row: dict[str, Any] = {"model": label}
    for key in per_seed[0]:
        row[key], row[f"{key} std"] = mean_std([values[key] for values in per_seed])
    return row


# --------------------------------------------------------------------------- protocol

def cold_item_sets(split: Split) -> tuple[np.ndarray, np.ndarray]:
    """(cold items of the test part, warm items): raises if a cold item has a training
    interaction, the protocol's one invariant."""
    if split.name != "cold-item" or len(split.cold_items) == 0:
        raise DistillrecError(f"the cold-item scenario needs the 'cold-item' split, got {split.name!r}")
    leaked = np.intersect1d(split.cold_items, split.train["item"].to_numpy())
    if len(leaked):
        raise DistillrecError(f"cold-item split: {len(leaked)} cold item(s) have training interactions "
                              f"(e.g. item index {int(leaked[0])}); expected none")
    test_cold = np.intersect1d(split.cold_items, split.test["item"].to_numpy())
    if len(test_cold) == 0:
        raise DistillrecError("cold-item split: no cold item has a test interaction; expected a larger fraction")
    return test_cold, np.unique(split.train["item"].to_numpy())


class ColdItemProtocol:
    """The four test rankings of the module docstring, for any scorer (users -> [B, n_items])."""

    def __init__(self, split: Split, ks: tuple[int, ...] = (20,)):
        from distillrec.evaluation.evaluator import Evaluator

        self.test_cold, self.warm = cold_item_sets(split)
        cold_truth = replace(split, test=split.test[split.test["item"].isin(split.cold_items)].reset_index(drop=True))
        self.ks = ks
        self._test_truth = Evaluator(split, ks=ks)  # every test interaction; candidates restrict it
        self._cold_truth = Evaluator(cold_truth, ks=ks)

    def evaluate(self, scorer: Callable) -> dict[str, float]:
        """{"<ranking> <recall|ndcg>@k"} for the rankings cold, catalog, warm and all."""
        results = {"cold": self._test_truth.evaluate(scorer, "test", candidates=self.test_cold),
                   "catalog": self._cold_truth.evaluate(scorer, "test"),
                   "warm": self._test_truth.evaluate(scorer, "test", candidates=self.warm),
                   "all": self._test_truth.evaluate(scorer, "test")}
        return {f"{where} {metric}@{k}": results[where][f"{metric}@{k}"]
                for where in results for k in self.ks for metric in ("recall", "ndcg")}

    def per_user(self, scorer: Callable, ranking: str = "cold", metric: str = "ndcg") -> tuple[np.ndarray, np.ndarray]:
        """(users, metric@k in `ranking`: "cold", "catalog" or "warm") for paired tests between models."""
        key = f"{metric}@{self.ks[0]}"
        if ranking == "catalog":
            return self._cold_truth.per_user(scorer, "test", key)
        if ranking not in ("cold", "warm"):
            raise DistillrecError(f"cold-item: no per-user ranking {ranking!r}; expected cold, catalog or warm")
        candidates = self.test_cold if ranking == "cold" else self.warm
        return self._test_truth.per_user(scorer, "test", key, candidates=candidates)


# --------------------------------------------------------------------------- encoding cost

def encoding_speed(model, items, template: str, encoder: str | None, n: int, batch: int = 64) -> dict[str, float]:
    """Items per second to turn new items' raw attributes into vectors: the content student
    (hashing + towers) against the language model (tokenising + transformer), 1 thread each,
    the same `n` items in batches of `batch`. The language model is loaded before timing."""
    from distillrec.teachers.encoders import TextEncoder
    from distillrec.teachers.templates import TextTemplate

    rows = items.iloc[:n]
    records = [{"title": r.title, "genres": list(r.genres) if r.genres is not None else [], "year": r.year}
               for r in rows.itertuples()]
    texts = TextTemplate(template).render(rows, "item")
    language_model = TextEncoder(encoder, device="cpu")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model.encode_items(records[:batch])  # warm-up: first calls allocate
        language_model.encode(texts[:batch], batch_size=batch, progress=False)
        started = time.perf_counter()
        for start in range(0, len(records), batch):
            model.encode_items(records[start:start + batch])
        student = time.perf_counter() - started
        started = time.perf_counter()
        language_model.encode(texts, batch_size=batch, progress=False)
        lm = time.perf_counter() - started
    finally:
        torch.set_num_threads(threads)
    return {"items": len(records), "batch": batch, "student_items_per_s": len(records) / student,
            "lm_items_per_s": len(records) / lm, "speedup": lm / student,
            "lm_parameters": language_model.num_parameters}


# --------------------------------------------------------------------------- the scenario

@SCENARIOS.register("cold-item")
def run(context: ScenarioContext) -> ScenarioResult:
    from distillrec.evaluation.baselines import PopularityScorer
    from distillrec.evaluation.scoring import model_scorer
    from distillrec.evaluation.text_knn import TextKNNScorer

    params = context.params
    teacher = teacher_run(context)
    split = teacher.split
    protocol = ColdItemProtocol(split, ks=tuple(params.get("ks", (20,))))
    students = train_students(context, teacher, params.get("kd", DEFAULT_KD))

    teacher_model = runs.load_model(teacher.path, dataset=teacher.dataset, split=split)
    teacher_scorer = model_scorer(teacher_model, split, "test")
    if getattr(teacher_model, "text_embeddings", None) is None:
        raise DistillrecError("the cold-item scenario's text-kNN needs the teacher's text embeddings; "
                              f"{type(teacher_model).__name__} has no `text_embeddings`")
    n_neighbours = int(params.get("text_knn_neighbours", DEFAULT_TEXT_KNN_NEIGHBOURS))
    knn_scorer = TextKNNScorer(teacher_model.text_embeddings, split.history("test"), k_neighbours=n_neighbours)
    per_seed = {"popularity": [protocol.evaluate(PopularityScorer(split))],
                TEXT_KNN: [protocol.evaluate(knn_scorer)],
                TEACHER: [protocol.evaluate(teacher_scorer)]}
    for label, models in students.items():
        per_seed[label] = [protocol.evaluate(model_scorer(model, split, "test")) for model in models]
    table = [summarise(label, values) for label, values in per_seed.items()]
    scorers = {TEACHER: [teacher_scorer], TEXT_KNN: [knn_scorer],
               **{label: [model_scorer(model, split, "test") for model in models] for label, models in students.items()}}

    @cache  # a model takes part in several comparisons: score it once per ranking and metric
    def per_user(label: str, ranking: str, metric: str):  # each user's value averaged over the seeds
        values = [protocol.per_user(scorer, ranking, metric) for scorer in scorers[label]]
        return values[0][0], np.mean([v for _, v in values], axis=0)

    # The cold ranking first (paired[2] is the notes' text-kNN comparison); then the mixed
    # catalogue's cold-item recall and what distillation costs the warm items.
    comparisons = [("cold", "ndcg", base, DISTILLED) for base in (UNDISTILLED, TEACHER, TEXT_KNN)]
    comparisons += [("catalog", "recall", base, DISTILLED) for base in (TEXT_KNN, UNDISTILLED)]
    comparisons += [("warm", "ndcg", UNDISTILLED, DISTILLED)]
    paired = [{"model": other, "vs": base, "metric": f"test {ranking} {metric}@{protocol.ks[0]}",
               **paired_users(per_user(base, ranking, metric), per_user(other, ranking, metric))}
              for ranking, metric, base, other in comparisons]

    teacher_params = context.config.teacher.params
    speed = encoding_speed(students[DISTILLED][0], teacher.dataset.items,
                           getattr(teacher_model, "template", None) or _default_template(),
                           teacher_params.get("encoder"), int(params.get("encode_items", 512)))
    for row in table:
        if row["model"] in (UNDISTILLED, DISTILLED):
            row["items/s (1 thread)"] = speed["student_items_per_s"]
        elif row["model"] in (TEACHER, TEXT_KNN):  # both encode a new item with the language model
            row["items/s (1 thread)"] = speed["lm_items_per_s"]

    rows = {row["model"]: row for row in table}
    k = protocol.ks[0]
    cold_key, warm_key = f"cold ndcg@{k}", f"warm ndcg@{k}"
    share = rows[DISTILLED][cold_key] / rows[TEACHER][cold_key]
    warm_change = rows[DISTILLED][warm_key] / rows[UNDISTILLED][warm_key] - 1
    details = {"per_seed": per_seed, "encoding": speed, "seeds": context.seeds,
               "n_test_cold_items": int(len(protocol.test_cold)), "n_warm_items": int(len(protocol.warm)),
               "distilled_cold_ndcg_share_of_teacher": share, "distilled_warm_ndcg_change": warm_change,
               "paired": paired, "kd": params.get("kd", DEFAULT_KD), "text_knn_neighbours": n_neighbours}
    vs_knn = paired[2]
    notes = (f"Cold-item split: {len(protocol.test_cold)} test items never seen in training. Four rankings: "
             f"'cold': within them; 'catalog': over all {split.n_items} items (truth: cold-item interactions); "
             f"'warm': warm test interactions within the {len(protocol.warm)} warm items; 'all': every test "
             f"interaction over all {split.n_items} items, new and old together. Students: mean ± std over "
             f"seeds {context.seeds}; the split's teacher (shared), text-kNN ({n_neighbours} text neighbours "
             f"per history item, the teacher's text embeddings) and popularity do not vary. Distilled content "
             f"student: cold NDCG@{k} = {100 * share:.0f}% of the teacher's "
             f"(paired over {paired[1]['n_users']} users: Wilcoxon p = {format_p(paired[1]['wilcoxon_p'])}), "
             f"against text-kNN {vs_knn['other']:.4f} vs {vs_knn['base']:.4f} "
             f"(Wilcoxon p = {format_p(vs_knn['wilcoxon_p'])}); "
             f"warm NDCG@{k} {100 * warm_change:+.1f}% vs undistilled; encodes a new item "
             f"{speed['speedup']:.0f}x faster than the language model (1 thread).")
    return ScenarioResult(table=table, notes=notes, details=details)


def _default_template() -> str:
    from distillrec.teachers.templates import DEFAULT_ITEM_TEMPLATE

    return DEFAULT_ITEM_TEMPLATE
