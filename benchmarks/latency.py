"""Student versus teacher: full-catalog scoring latency per user, same batch sizes, one thread.

Three ways to score, per batch size:
- `score`: the model's score() as evaluation calls it (the two-tower recomputes its item tower
  on every call, the LM teacher keeps its item tower's output while its weights do not change;
  SASRec re-encodes each user's last 50 items);
- `history`: the item side computed once, the user side recomputed from the user's history on
  every request (for SASRec: its encoder over the history, the last block at the last position);
- `served`: what is deployed. A student bundle holds every user's vector (refreshed when the
  user's history changes, not per request), so a request is a lookup plus the catalog product
  (`Recommender.serving_vectors`). The teacher gets its best deployable case: its
  user-tower vectors cached the same way, plus its item-to-item term, which is a sum over the
  history of n_items-wide rows and cannot be cached short of caching every score.
Each model is built at its benchmark size on the dataset (the teacher as in BENCHMARKS.md:
dim 128, attention over up to 100 history items, the item-item term; its language-model text
embeddings are precomputed, as when serving known items). Scoring cost does not depend on the
weights' values, so the models are not trained here. Measurements are interleaved (every model
once per round, several rounds) so machine noise hits all models alike; medians are reported.

    .venv/bin/python benchmarks/latency.py --dataset ml-1m --rounds 5 --out benchmarks/out/latency-ml1m.json
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

from distillrec.evaluation.efficiency import scoring_latency_ms
from distillrec.experiment import prepare
from distillrec.students.base import model_class

TEACHER = {"dim": 128, "hidden": 256, "heads": 2, "max_history": 100, "item_item": True, "temperature": 0.1}
MODELS = {  # name -> (registered model, split, params)
    "lm-teacher": ("lm-teacher", "random", TEACHER),
    "mf (dim 64)": ("mf", "random", {"dim": 64}),
    "mf (dim 16)": ("mf", "random", {"dim": 16}),
    "two-tower (dim 64)": ("two-tower", "random", {"dim": 64}),
    "sasrec (dim 64)": ("sasrec", "loo", {"dim": 64}),
    "lm-teacher (loo)": ("lm-teacher", "loo", TEACHER),
}


def _with_history(model, scores: torch.Tensor, users: torch.Tensor) -> torch.Tensor:
    extra = model.history_scores(users)  # the teacher's item-to-item term; None for students
    return scores if extra is None else scores + extra


class FromHistory(torch.nn.Module):
    """The item side precomputed once; the user side recomputed from its history per request."""

    def __init__(self, model):
        super().__init__()
        items = model.item_vectors()
        self.score = lambda users: _with_history(model, model.similarity(model.user_vectors(users), items), users)


class Served(torch.nn.Module):
    """As deployed: cached user vectors, a lookup and the catalog product per request, plus
    whatever the model must still read from the history per request (`history_scores`)."""

    def __init__(self, model):
        super().__init__()
        vectors = model.serving_vectors()
        users, items = vectors["user"], vectors["item"]
        self.score = lambda batch: _with_history(model, users[batch] @ items.T, batch)


def build_models(dataset: str) -> dict:
    splits, models = {}, {}
    for name, (model_name, split_name, params) in MODELS.items():
        if split_name not in splits:
            splits[split_name] = prepare(dataset, split_name, 0)
        ds, split = splits[split_name]
        model = model_class(model_name).build(ds, split, **params)
        model.set_history(split.history("test"))
        model.eval()
        with torch.no_grad():
            models[name] = (model, split, FromHistory(model), Served(model))
    return models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="ml-1m")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 256])
    parser.add_argument("--max-users", type=int, default=512)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    models = build_models(args.dataset)
    ways = ("score", "history", "served")
    samples = {(name, b, w): [] for name in models for b in args.batch_sizes for w in ways}
    for _ in range(args.rounds):
        for batch in args.batch_sizes:
            for name, (model, split, *deployed) in models.items():
                users = min(split.n_users, args.max_users if batch > 1 else 64)
                for way, scorer in zip(ways, (model, *deployed)):
                    samples[name, batch, way].append(scoring_latency_ms(scorer, users, batch_size=batch, repeats=1,
                                                                        max_users=users))
    rows = []
    for name, (model, split, *_) in models.items():
        row = {"model": name, "params": model.num_parameters(), "size_mb": model.size_bytes() / 2 ** 20,
               "items": split.n_items}
        for batch in args.batch_sizes:
            for way in ways:
                row[f"{way} ms/user @{batch}"] = statistics.median(samples[name, batch, way])
        rows.append(row)
    teacher = {r["model"]: r for r in rows}
    for row in rows:
        reference = teacher["lm-teacher (loo)" if "sasrec" in row["model"] else "lm-teacher"]
        for batch in args.batch_sizes:
            for way in ways:
                key = f"{way} ms/user @{batch}"
                row[f"{way} speed-up @{batch}"] = reference[key] / row[key]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"dataset": args.dataset, "threads": 1, "rounds": args.rounds, "rows": rows},
                                   indent=2))
    header = list(rows[0])
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(f"{v:.4g}" if isinstance(v, float) else f"{v:,}" if isinstance(v, int) else str(v)
                                for v in row.values()) + " |")


if __name__ == "__main__":
    main()
