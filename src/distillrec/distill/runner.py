"""Distillation experiments: one distilled student (`distill_student`), and the ablation that
says which distillation helps (`ablate`).

A teacher run directory is a train-style run (a trained teacher, its split, metrics.json with
role "teacher") plus `knowledge/` (a saved Knowledge). Students are built on the teacher's split,
so the student and the teacher are always evaluated on the same users and items.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

from distillrec import artifacts, runs
from distillrec.data.dataset import Dataset
from distillrec.data.split import Split
from distillrec.errors import ArtifactError, DistillrecError

#: the settings `ablate` uses for a bare method name (label -> kd spec). Ranking and response
#: settings come from a sweep on ML-100K (benchmarks/ablation.py, TUNING); the others are first
#: settings that put each term's magnitude near BPR's, not tuned.
DEFAULT_METHODS: dict[str, dict[str, Any]] = {
    "feature": {"feature": {"weight": 0.1, "kind": "cosine"}},
    "info-nce": {"info-nce": {"weight": 0.05}},
    "rkd-distance": {"rkd-distance": 1.0},
    "rkd-angle": {"rkd-angle": 1.0},
    "similarity-preserving": {"similarity-preserving": 1.0},
    "neighbour-graph": {"neighbour-graph": 0.05},
    "soft-target-kl": {"soft-target-kl": {"weight": 0.1, "candidates": "full", "temperature": 1.0}},
    "ranking-distillation": {"ranking-distillation": {"weight": 0.1, "k": 20, "lam": 10.0}},
    "relaxed-ranking": {"relaxed-ranking": 0.01},
}
BASELINE = "undistilled"
METRIC = "ndcg@10"


@dataclass
class TeacherRun:
    path: Path
    dataset: Dataset
    split: Split
    knowledge: Any  # distillrec.teachers.knowledge.Knowledge (imported lazily: it loads the teacher models)
    metrics: dict


def load_teacher(run_dir: str | Path) -> TeacherRun:
    """A teacher run: its data (hash-verified, same fingerprint) and its Knowledge."""
    from distillrec.teachers.knowledge import Knowledge

    run_dir = Path(run_dir)
    dataset, split, metrics = runs.load_run_data(run_dir)
    roles = sorted({entry.get("role") for entry in metrics["models"].values()})
    if "teacher" not in roles:
        raise DistillrecError(f"{run_dir}: not a teacher run (its models have roles {roles}, expected 'teacher')")
    if not (run_dir / "knowledge").is_dir():
        raise ArtifactError(f"{run_dir}: has no knowledge/ directory; extract the teacher's knowledge first")
    knowledge = Knowledge.load(run_dir / "knowledge")
    shape = (knowledge.tensors["user"].shape[0], knowledge.tensors["item"].shape[0])
    if shape != (split.n_users, split.n_items):
        raise ArtifactError(f"{run_dir}/knowledge: covers {shape[0]} users x {shape[1]} items, "
                            f"the split {split.n_users} x {split.n_items}")
    if knowledge.info.get("data_fingerprint") not in (None, dataset.fingerprint):
        raise ArtifactError(f"{run_dir}/knowledge: extracted from other data than the run's")
    return TeacherRun(run_dir, dataset, split, knowledge, metrics)


def with_step_rankings(teacher: TeacherRun, k: int) -> TeacherRun:
    """The teacher run with its sequential teacher's per-step rankings (k items a step) added to
    its Knowledge in memory: one pass of the teacher over the training windows, so they need
    not be extracted (and stored) ahead of a distillation that reads them."""
    from distillrec.teachers import knowledge

    _, split, model, _ = runs.load_run(teacher.path)  # hash-verified, like the knowledge
    return replace(teacher, knowledge=knowledge.with_step_rankings(teacher.knowledge, model, split, k))


def distill_student(teacher_run: str | Path | TeacherRun, student: str, kd_spec: Mapping[str, Any] | None, *,
                    dim: int = 64, seed: int = 0, init: str | None = None, weighting: str = "fixed",
                    confidence: bool = False, model_params: Mapping[str, Any] | None = None,
                    train_params: Mapping[str, Any] | None = None, out: str | Path | None = None,
                    progress: bool = True, resume: bool = False) -> tuple[Path, dict]:
    """Train `student` on the teacher's split with the distillation objective `kd_spec`
    (None or {}: no distillation), after an optional `init` ("pca" | "projection") from the
    teacher's representations; evaluate it and write a run directory (role "distilled",
    or "baseline" when neither KD nor init is used). Returns (run directory, metrics).
    resume: continue from the last checkpoint in `out` (a fresh start when it has none)."""
    from distillrec.distill.objective import DistillObjective, normalise_spec, step_top_k
    from distillrec.distill.weighting import WEIGHTINGS
    from distillrec.experiment import fit_model
    from distillrec.params import check_kd, check_model_params, make_train_config
    from distillrec.students.base import model_class
    from distillrec.transfer import INIT_METHODS, init_from_teacher

    # Everything the user typed is checked before the teacher is loaded or anything written.
    model_cls = model_class(student)
    model_params = check_model_params(student, {"dim": dim, **(model_params or {})})
    spec = normalise_spec(check_kd(kd_spec)) if kd_spec else {}
    WEIGHTINGS.get(weighting)
    if init is not None and init not in INIT_METHODS:
        raise DistillrecError(f"unknown init {init!r}; expected one of: {', '.join(INIT_METHODS)}")
    train_config = make_train_config(dict(train_params or {}), seed)
    if resume and out is None:
        raise DistillrecError("resume needs the run directory (--out) of the interrupted run")
    teacher = teacher_run if isinstance(teacher_run, TeacherRun) else load_teacher(teacher_run)
    if (steps := step_top_k(spec)) is not None and "step_top_items" not in teacher.knowledge.tensors:
        teacher = with_step_rankings(teacher, steps)

    params = {"dim": dim, **(model_params or {})}
    model = model_cls.build(teacher.dataset, teacher.split, seed=seed, **params)
    init_report = init_from_teacher(model, teacher.knowledge, init) if init else None
    objective = (DistillObjective(spec, teacher.knowledge, model, weighting=weighting, confidence=confidence,
                                  seed=seed) if spec else None)
    teacher_config = teacher.metrics["config"]
    dataset_name = teacher_config["dataset"]
    run_dir = runs.new_run_dir(out, f"{student}-distilled-{Path(dataset_name).name}")
    config = {"command": "distill", "teacher_run": str(teacher.path), "student": student, "model": student,
              "model_params": params, "kd": spec, "weighting": weighting, "confidence": confidence,
              "init": init, "dataset": dataset_name, **({"data": teacher_config["data"]} if "data" in teacher_config
                                                         else {}),
              "split": teacher.split.name, "split_params": teacher.split.params, "seed": seed,
              "train": train_config.model_dump(mode="json")}
    role = "distilled" if spec or init else "baseline"
    extra = {"kd": spec, "init": init_report, "teacher_run": str(teacher.path)}
    metrics = fit_model(model_cls, student, teacher.dataset, teacher.split, model_params=params,
                        train_config=train_config, run_dir=run_dir, config=config, role=role, resume=resume,
                        progress=progress, extra_loss=objective, model=model, entry_extra=extra)
    return run_dir, metrics


# --- the ablation ----------------------------------------------------------------------------

def resolve_methods(methods: Sequence[str] | Mapping[str, Mapping[str, Any]] | None) -> dict[str, dict]:
    """label -> kd spec. Names take `DEFAULT_METHODS`' settings ("ranking" -> its canonical
    name); "name=weight" overrides the weight; a mapping is used as given."""
    from distillrec.distill.objective import normalise_spec, resolve_method

    if methods is None:
        return {label: normalise_spec(spec) for label, spec in DEFAULT_METHODS.items()}
    if isinstance(methods, Mapping):
        return {label: normalise_spec(spec) for label, spec in methods.items()}
    out = {}
    for item in methods:
        name, sep, weight = item.partition("=")
        canonical = resolve_method(name.strip())
        spec = normalise_spec(DEFAULT_METHODS.get(canonical, {canonical: 1.0}))
        if sep:
            spec[canonical]["weight"] = _parse_weight(item, weight)
        out[canonical] = spec
    if not out:
        raise DistillrecError("give at least one distillation method to ablate")
    return out


def _parse_weight(item: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise DistillrecError(f"'{item}': the weight after '=' must be a number") from None


def ablate(teacher_run: str | Path, student: str = "mf",
           methods: Sequence[str] | Mapping[str, Mapping[str, Any]] | None = None,
           seeds: Sequence[int] = (0, 1, 2), dims: Sequence[int] = (64,), *, combine: Sequence[int] = (2, 3),
           weighting: str = "fixed", model_params: Mapping[str, Any] | None = None,
           train_params: Mapping[str, Any] | None = None, out: str | Path = "ablation",
           progress: bool = False, jobs: int = 1) -> dict:
    """Which distillation helps `student`, and how much, over `seeds`.

    At the largest of `dims`: the undistilled student, each method alone, and the top-n single
    methods (by mean valid NDCG@10) combined, for each n in `combine`. At every other dim: the
    undistilled student and the best variant found (the accuracy-versus-size curve). Each trained
    student is a run directory under out/runs/ (an existing one is reused, so an interrupted
    ablation continues). `jobs` > 1 trains that many students at once, in separate processes
    with the cores shared out; every student is seeded, so which process trains it, and in
    what order, does not change its numbers.
    Writes out/ablation.json and out/ablation.md; returns the JSON.
    """
    from distillrec.params import make_train_config
    from distillrec.students.base import model_class

    if not seeds or not dims:
        raise DistillrecError("give at least one seed and one dim")
    if jobs < 1:
        raise DistillrecError(f"jobs must be at least 1, got {jobs}")
    model_class(student)
    specs = resolve_methods(methods)
    for seed in seeds:
        make_train_config(dict(train_params or {}), seed)
    out = Path(out)
    teacher = load_teacher(teacher_run)
    primary, results = max(dims), []
    shared = {"student": student, "weighting": weighting, "model_params": model_params,
              "train_params": train_params, "out": out}

    def run(variants: list[tuple[str, dict, int]]) -> list[dict]:
        """Trains every (variant, seed), `jobs` at a time; one summary row per variant."""
        tasks = [(label, spec, dim, seed) for label, spec, dim in variants for seed in seeds]
        records = _train_all(teacher, tasks, shared, jobs, progress)
        rows = [_summarise(label, spec, dim, records[i * len(seeds):(i + 1) * len(seeds)])
                for i, (label, spec, dim) in enumerate(variants)]
        results.extend(rows)
        return rows

    baseline, *singles = run([(BASELINE, {}, primary)] + [(label, spec, primary) for label, spec in specs.items()])
    ranked = sorted(singles, key=lambda row: -row["valid_mean"])
    combos = []
    for n in sorted(set(combine)):
        if 2 <= n <= len(ranked):
            chosen = ranked[:n]
            merged = {name: settings for row in chosen for name, settings in row["kd"].items()}
            combos.append((" + ".join(row["label"] for row in chosen), merged, primary))
    best = max(singles + run(combos), key=lambda row: row["valid_mean"])
    run([variant for dim in sorted(set(dims) - {primary})
         for variant in ((BASELINE, {}, dim), (best["label"], best["kd"], dim))])
    _add_lifts(results)
    report = {"teacher_run": str(teacher.path), "teacher": _teacher_summary(teacher), "student": student,
              "seeds": list(seeds), "dims": sorted(set(dims)), "primary_dim": primary, "weighting": weighting,
              "train": dict(train_params or {}), "best": best["label"], "baseline_test_mean": baseline["test_mean"],
              "results": results}
    report["markdown"] = ablation_markdown(report)
    artifacts.write_json(out / "ablation.json", report)
    artifacts.write_text(out / "ablation.md", report["markdown"])
    return report


def _train_all(teacher: TeacherRun, tasks: list[tuple], options: dict, jobs: int, progress: bool) -> list[dict]:
    """_run_one for each (label, spec, dim, seed), in order; in `jobs` processes when > 1."""
    if jobs == 1 or len(tasks) == 1:
        return [_run_one(teacher, label=label, spec=spec, dim=dim, seed=seed, progress=progress, **options)
                for label, spec, dim, seed in tasks]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from distillrec import threads

    workers = min(jobs, len(tasks))
    # spawn, not fork: a forked child inherits the parent's OpenMP pool, which can hang torch.
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_start_worker,
                             initargs=(str(teacher.path), threads.per_job(workers))) as pool:
        return list(pool.map(_run_in_worker, [(task, options) for task in tasks]))


_WORKER_TEACHER: TeacherRun | None = None


def _start_worker(teacher_path: str, n_threads: int) -> None:
    from distillrec import threads

    global _WORKER_TEACHER
    threads.apply(n_threads)  # this worker's share, for its trainers too (they use the process-wide setting)
    _WORKER_TEACHER = load_teacher(teacher_path)


def _run_in_worker(job: tuple[tuple, dict]) -> dict:
    (label, spec, dim, seed), options = job
    return _run_one(_WORKER_TEACHER, label=label, spec=spec, dim=dim, seed=seed, progress=False, **options)


def _run_one(teacher: TeacherRun, *, student: str, label: str, spec: dict, dim: int, seed: int, weighting: str,
             model_params, train_params, out: Path, progress: bool) -> dict:
    """One trained student (reused when its run directory is already complete)."""
    from distillrec.params import make_train_config

    run_dir = out / "runs" / f"{_slug(label)}-d{dim}-s{seed}"
    if (run_dir / artifacts.MANIFEST).exists():
        metrics = artifacts.read_json(run_dir / "metrics.json")
        done = metrics["config"]
        train = make_train_config(dict(train_params or {}), seed).model_dump(mode="json")
        if (done.get("kd"), done.get("model_params", {}).get("dim"), done.get("seed"), done.get("train")) != (
                spec, dim, seed, train):
            raise DistillrecError(f"{run_dir}: holds a different run (kd, dim, seed or training options "
                                  "differ); remove it or choose another --out")
    else:
        # resume: a student interrupted mid-training continues from its last checkpoint.
        _, metrics = distill_student(teacher, student, spec, dim=dim, seed=seed, weighting=weighting,
                                     model_params=model_params, train_params=train_params, out=run_dir,
                                     progress=progress, resume=True)
    entry = metrics["models"][student]
    return {"seed": seed, "run": str(run_dir), "params": entry["params"], "size_bytes": entry.get("size_bytes"),
            "best_epoch": entry.get("best_epoch"), "valid": {METRIC: entry["valid"][METRIC]},
            "test": {METRIC: entry["test"][METRIC], "recall@10": entry["test"]["recall@10"]}}


def _slug(label: str) -> str:
    return "".join(c if c.isalnum() or c in "-." else "_" for c in label.replace(" + ", "_"))


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _summarise(label: str, spec: dict, dim: int, per_seed: list[dict]) -> dict:
    test, test_std = _mean_std([r["test"][METRIC] for r in per_seed])
    recall, recall_std = _mean_std([r["test"]["recall@10"] for r in per_seed])
    valid, _ = _mean_std([r["valid"][METRIC] for r in per_seed])
    return {"label": label, "kd": spec, "dim": dim, "params": per_seed[0]["params"], "valid_mean": valid,
            "test_mean": test, "test_std": test_std, "recall_mean": recall, "recall_std": recall_std,
            "seeds": per_seed}


def _add_lifts(results: list[dict]) -> None:
    """Relative lift of mean test NDCG@10 over the undistilled student of the same dim."""
    base = {row["dim"]: row["test_mean"] for row in results if row["label"] == BASELINE}
    for row in results:
        row["lift"] = row["test_mean"] / base[row["dim"]] - 1 if base.get(row["dim"]) else None


def _teacher_summary(teacher: TeacherRun) -> dict:
    name, entry = next((n, e) for n, e in teacher.metrics["models"].items() if e.get("role") == "teacher")
    return {"model": name, "params": entry.get("params"), "test": {k: entry.get("test", {}).get(k)
                                                                   for k in (METRIC, "recall@10")}}


def ablation_markdown(report: dict) -> str:
    """The ablation table and the size curve, mean ± std over seeds (test part)."""
    teacher = report["teacher"]
    lines = [f"# Distillation ablation: {report['student']} from {teacher['model']}", "",
             f"Teacher: test NDCG@10 {teacher['test'][METRIC]:.4f}, Recall@10 {teacher['test']['recall@10']:.4f}, "
             f"{teacher['params']:,} parameters. Seeds {report['seeds']}; mean ± std over seeds; "
             f"lift = relative change of mean test NDCG@10 over the undistilled student of the same dim.", "",
             f"## Methods at dim {report['primary_dim']}", "",
             "| method | valid NDCG@10 | test NDCG@10 | test Recall@10 | lift |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for row in report["results"]:
        if row["dim"] == report["primary_dim"]:
            lines.append(_markdown_row(row, best=row["label"] == report["best"]))
    dims = report["dims"]
    if len(dims) > 1:
        lines += ["", f"## Accuracy versus size (best: {report['best']})", "",
                  "| dim | params | undistilled NDCG@10 | distilled NDCG@10 | lift |",
                  "| ---: | ---: | ---: | ---: | ---: |"]
        for dim in dims:
            rows = {row["label"]: row for row in report["results"] if row["dim"] == dim}
            base, best = rows.get(BASELINE), rows.get(report["best"])
            if base and best:
                lines.append(f"| {dim} | {base['params']:,} | {base['test_mean']:.4f} ± {base['test_std']:.4f} | "
                             f"{best['test_mean']:.4f} ± {best['test_std']:.4f} | {_percent(best['lift'])} |")
    return "\n".join(lines) + "\n"


def _markdown_row(row: dict, best: bool) -> str:
    label = f"**{row['label']}**" if best else row["label"]
    return (f"| {label} | {row['valid_mean']:.4f} | {row['test_mean']:.4f} ± {row['test_std']:.4f} | "
            f"{row['recall_mean']:.4f} ± {row['recall_std']:.4f} | {_percent(row['lift'])} |")


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:+.1f}%"
