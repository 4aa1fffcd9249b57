"""The LM-enhanced teacher against the student baselines, on ML-100K and ML-1M.

Random 8:1:1 split (seed 0), full ranking, masked history (RecBole's protocol). Trains
MF-BPR (RecBole's settings), the two-tower student and the teacher (frozen MiniLM) through the
one Trainer with early stopping on valid NDCG@10, then reports test NDCG@10 / Recall@10, the
parameters, and the scoring time per user over the full catalog; for the teacher also the time
to extract its Knowledge (top-100 of every user, the item kNN graph). The teacher's cost is split
into the language-model part (its parameters, the time to encode the catalog; the cache is
bypassed so the encode is really measured) and the trainable recommender part.

    .venv/bin/python benchmarks/teacher_vs_students.py [--datasets ml-100k ml-1m] [--threads 2]

Prints a table and writes benchmarks/out/teacher_vs_students.json (--out to change). The LoRA
comparison (the LM tuned in the loop for 60 steps, against the frozen encoder at the same
two-epoch budget): --datasets ml-100k --models lm-teacher-short lm-teacher-lora.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from distillrec import artifacts
from distillrec.evaluation.efficiency import scoring_latency_ms
from distillrec.evaluation.evaluator import evaluate
from distillrec.evaluation.scoring import model_scorer
from distillrec.experiment import prepare
from distillrec.students.base import model_class
from distillrec.teachers.knowledge import extract_knowledge
from distillrec.train.trainer import TrainConfig, Trainer

OUT = Path(__file__).parent / "out" / "teacher_vs_students.json"

TEACHER = {"dim": 128, "hidden": 256, "heads": 2, "max_history": 100, "history_dropout": 0.5,
           "item_item": True, "temperature": 0.1}
TEACHER_TRAIN = {"epochs": 40, "lr": 3e-3, "batch_size": 1024, "weight_decay": 0.01, "patience": 3}
#: the LoRA comparison: one short budget, spent with and without the LM in the loop.
SHORT_TRAIN = {**TEACHER_TRAIN, "epochs": 2}
LORA = {"mode": "lora", "lm_steps": 60, "lm_items_per_step": 32}
#: name -> (registered model, model params, train config). MF-BPR: RecBole's BPR defaults.
RUNS: dict[str, tuple[str, dict, dict]] = {
    "mf-bpr": ("mf", {"dim": 64}, {"epochs": 300, "lr": 1e-3, "batch_size": 2048, "patience": 10}),
    "two-tower": ("two-tower", {"dim": 64}, {"epochs": 300, "lr": 1e-3, "batch_size": 2048, "patience": 10}),
    "lm-teacher": ("lm-teacher", TEACHER, TEACHER_TRAIN),
    "lm-teacher-short": ("lm-teacher", TEACHER, SHORT_TRAIN),
    "lm-teacher-lora": ("lm-teacher", {**TEACHER, **LORA}, SHORT_TRAIN),
}
DEFAULT_MODELS = ["mf-bpr", "two-tower", "lm-teacher"]
#: per-dataset changes to a run's train config. ML-1M: 4x larger teacher batches, since a step's
#: fixed cost (the item-to-item matrix: 3,706^2 weights and their Adam state) dominates at 1024.
TRAIN_OVERRIDES: dict[tuple[str, str], dict] = {("lm-teacher", "ml-1m"): {"batch_size": 4096, "epochs": 10}}


def run_one(name: str, dataset: str, threads: int, importance: bool) -> dict:
    ds, split = prepare(dataset, "random", 0)
    registered, params, train = RUNS[name]
    train = {**train, **TRAIN_OVERRIDES.get((name, dataset), {})}
    with tempfile.TemporaryDirectory() as cache:  # teacher: a cold cache, so encoding is timed
        extra = {"cache_dir": cache} if registered == "lm-teacher" else {}
        model = model_class(registered).build(ds, split, **params, **extra)
    started = time.perf_counter()
    result = Trainer(model, split, TrainConfig(**train, num_threads=threads), progress=False).fit()
    fit_seconds = time.perf_counter() - started
    test = evaluate(model_scorer(model, split, "test"), split, "test", ks=(10, 20))
    latency = scoring_latency_ms(model, split.n_users, batch_size=1024, repeats=1, max_users=split.n_users)
    row = {"model": name, "dataset": dataset, "ndcg@10": test["ndcg@10"], "recall@10": test["recall@10"],
           "ndcg@20": test["ndcg@20"], "recall@20": test["recall@20"],
           "valid_ndcg@10": result.best_valid.get("ndcg@10"), "best_epoch": result.best_epoch,
           "epochs_run": len(result.history), "fit_seconds": fit_seconds, "train_seconds": result.train_seconds,
           "params": model.num_parameters(), "score_ms_per_user": latency,
           "model_params": params, "train_config": train}
    if registered == "lm-teacher":
        row.update(model.cost())
        row["lm_steps_done"] = int(model.lm_steps_done)
        knowledge = extract_knowledge(model, split, ds, top_k=100, knn=20, importance=importance)
        row["knowledge_timings"] = knowledge.info["timings"]
        row["importance"] = knowledge.importance
        row["lm_encode_seconds"] = model.text_cost["encode_seconds"]
        row["lm_texts"] = model.text_cost["n_texts"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["ml-100k", "ml-1m"])
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS, choices=list(RUNS),
                        help="lm-teacher-lora vs lm-teacher-short: LoRA's effect at one short budget")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--importance", action="store_true",
                        help="also measure the teacher's permutation feature importance (re-encodes the "
                             "catalog once per text field)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for dataset in args.datasets:
        for name in args.models:
            row = run_one(name, dataset, args.threads, args.importance)
            rows.append(row)
            print(f"{dataset:8} {name:11} ndcg@10 {row['ndcg@10']:.4f} recall@10 {row['recall@10']:.4f} "
                  f"params {row['params']:>10,} score {row['score_ms_per_user']:.3f} ms/user "
                  f"fit {row['fit_seconds']:.0f} s (best epoch {row['best_epoch']})", flush=True)
            artifacts.write_json(args.out, {"protocol": "random 8:1:1, seed 0, full ranking, test part",
                                       "threads": args.threads, "rows": rows,
                                       "versions": artifacts.package_versions()})
    print(f"\n{'dataset':8} {'model':11} {'NDCG@10':>8} {'Recall@10':>9} {'params':>11} {'ms/user':>8}")
    for row in rows:
        print(f"{row['dataset']:8} {row['model']:11} {row['ndcg@10']:8.4f} {row['recall@10']:9.4f} "
              f"{row['params']:>11,} {row['score_ms_per_user']:8.3f}")
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
