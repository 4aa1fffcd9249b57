"""Library entry points behind the CLI commands: load, split, score, write a run."""

from __future__ import annotations

from pathlib import Path

from distillrec import runs
from distillrec.data.dataset import Dataset, build_dataset
from distillrec.data.split import Split
from distillrec.errors import DistillrecError

DEFAULT_KS = (10, 20)


def load_dataset(name_or_path: str, *, mapping: dict | None = None, sep: str | None = None,
                 rating_threshold: float | None = None, k_core: int = 0) -> Dataset:
    from distillrec.data.sources import load_raw

    raw = load_raw(name_or_path, mapping=mapping, sep=sep)
    return build_dataset(raw, rating_threshold=rating_threshold, k_core=k_core)


def prepare(dataset: str, split_name: str, seed: int, *, mapping: dict | None = None,
            **split_params) -> tuple[Dataset, Split]:
    from distillrec.data.splits import make_split

    ds = load_dataset(dataset, mapping=mapping)
    return ds, make_split(ds, split_name, seed=seed, **split_params)


def baseline_scorer(name: str, split: Split, seed: int):
    from distillrec.evaluation.baselines import PopularityScorer, RandomScorer

    if name == "pop":
        return PopularityScorer(split)
    if name == "random":
        return RandomScorer(split.n_items, seed=seed)
    raise DistillrecError(f"unknown baseline {name!r}; expected pop or random")


def genre_matrix(dataset: Dataset):
    """Items' genre multi-hot [n_items, n_genres] for intra-list diversity, or None."""
    import numpy as np

    if "genres" not in dataset.items.columns:
        return None
    genres = dataset.items["genres"].map(lambda g: list(g) if isinstance(g, (list, np.ndarray)) else [])
    vocabulary = sorted({g for row in genres for g in row})
    if not vocabulary:
        return None
    column = {g: j for j, g in enumerate(vocabulary)}
    matrix = np.zeros((dataset.n_items, len(vocabulary)), dtype=np.float32)
    for row, values in enumerate(genres):
        matrix[row, [column[g] for g in values]] = 1.0
    return matrix


def make_evaluator(split: Split, dataset: Dataset, ks=DEFAULT_KS):
    """The evaluator every command shares: accuracy metrics plus coverage, novelty and, when
    items have genres, intra-list diversity."""
    from distillrec.evaluation.evaluator import ACCURACY_METRICS, Evaluator

    genres = genre_matrix(dataset)
    beyond = ("coverage", "novelty") + (("diversity",) if genres is not None else ())
    return Evaluator(split, ks=ks, metrics=ACCURACY_METRICS + beyond, item_features=genres)


def evaluate_scorer(scorer, split: Split, dataset: Dataset, ks=DEFAULT_KS) -> dict:
    """Validation and test metrics of one scorer, in the metrics.json entry layout."""
    evaluator = make_evaluator(split, dataset, ks)
    return {part: evaluator.evaluate(scorer, part=part) for part in ("valid", "test")}


def evaluate_baseline(model: str, *, dataset: str, split_name: str, seed: int,
                      mapping: dict | None = None, out: Path | None = None) -> tuple[Path, dict]:
    ds, split = prepare(dataset, split_name, seed, mapping=mapping)
    scorer = baseline_scorer(model, split, seed)  # validates the name before any work is written
    results = evaluate_scorer(scorer, split, ds)
    models = {model: runs.model_entry("baseline", 0, results["valid"], results["test"])}
    config = {"command": "evaluate", "model": model, "dataset": dataset, "split": split_name,
              "split_params": split.params, "seed": seed}
    run_dir = runs.new_run_dir(out, f"{model}-{Path(dataset).name}")
    metrics = runs.write_run(run_dir, dataset=ds, split=split, models=models, config=config)
    return run_dir, metrics


def evaluate_run(run_dir: Path) -> dict:
    raise DistillrecError("re-evaluating a trained run needs `distillrec train` (not available yet)")
