"""`distillrec run`: the whole before/after story from one config, stage by stage.

data -> split -> baselines -> teacher (encode, fit) -> knowledge -> students -> distilled
students -> aggregate metrics.json -> report.html. Each stage lives in its own directory under
the run directory, keyed by a hash of its inputs (see `stages.py`): a re-run skips finished
stages and an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import time
from pathlib import Path

from distillrec import artifacts, experiment, runs, threads
from distillrec.config import ExperimentConfig, dump_config
from distillrec.console import console
from distillrec.data.sources import load_dataset
from distillrec.evaluation.scoring import baseline_scorer, evaluate_scorer
from distillrec.params import make_train_config
from distillrec.stages import Stage, content_key
from distillrec.students.base import model_class
from distillrec.tuning import apply


ENTRY = "entry.json"  # the stage's row of the aggregate metrics.json


def run_experiment(config: ExperimentConfig, out: Path, *, progress: bool = True) -> dict:
    """One run directory per split seed (just `out` for a single seed); with several seeds,
    `out/metrics.json` holds every split's results, mean ± std and the paired tests."""
    from distillrec.params import check_experiment

    threads.apply(threads.resolve(config.threads))  # the config's key, else $DISTILLREC_THREADS, else the CPU set
    check_experiment(config)  # a config built in code gets the checks a loaded one had
    out = Path(out)
    if not config.seeds:
        return _run_split(config, out, progress=progress, selections={})
    selections: dict[str, dict] = {}  # tuned on the first split, re-fitted as chosen on the others
    started, per_split = time.perf_counter(), {}
    for seed in config.split_seeds:
        if progress:
            console.print(f"[bold]split seed {seed}[/]")
        split_config = config.model_copy(update={"seed": seed, "seeds": None}, deep=True)
        per_split[seed] = _run_split(split_config, out / f"split-{seed}", progress=progress, selections=selections)
    from distillrec.evidence import summarise_splits

    metrics = summarise_splits(config, out, per_split, selections, wall_seconds=time.perf_counter() - started)
    _write_summary(out, config, metrics)
    return metrics


def _run_split(config: ExperimentConfig, out: Path, *, progress: bool, selections: dict[str, dict]) -> dict:
    from distillrec.data.splitting import make_seeded_split
    from distillrec.data.stats import attribute_warnings

    started = time.perf_counter()
    say = console.print if progress else (lambda *a, **k: None)

    say(f"[bold]data[/] {config.data.dataset} · split {config.split.name}")
    ds = load_dataset(config.data.dataset, mapping=config.data.mapping,
                                 rating_threshold=config.data.rating_threshold, k_core=config.data.k_core,
                                 list_separators=config.data.list_separators)
    for warning in attribute_warnings(ds):
        say(f"[yellow]warning:[/] {warning}", highlight=False)
    split = make_seeded_split(ds, config.split.name, config.seed, **config.split.params)
    # Unset list_separators stay out of the key, so runs made before the option keep their cache.
    data_options = config.data.model_dump(mode="json", exclude=None if config.data.list_separators
                                          else {"list_separators"})
    data_key = content_key(data_options, config.split.model_dump(mode="json"), config.seed, ds.fingerprint)
    base_config = {"dataset": config.data.dataset, "data": _data_options(config), "split": config.split.name,
                   "split_params": split.params, "seed": config.seed}
    models: dict[str, dict] = {}
    stages: dict[str, str] = {}
    model_dirs: dict[str, Path] = {}  # where each model's per_user.parquet lies

    for name in config.baselines:
        stage = Stage(f"baseline {name}", out / "baselines" / name, content_key(data_key, name))
        models[name] = _cached(stage, say, lambda d, r, n=name: _baseline(n, ds, split, d, base_config))
        stages[stage.name], model_dirs[name] = str(stage.directory), stage.directory

    tuned = set(config.tuned_names())
    tuner = _Tuner(config, ds, split, out / "tuning", data_key, selections, say) if tuned else None

    teacher_stage = None
    if config.teacher is not None:
        teacher = config.teacher
        if "teacher" in tuned:
            record = tuner.tune("teacher", teacher.model, teacher.params, teacher.train)
            params, train, _ = apply(record["selected"], teacher.params, teacher.train)
            teacher = teacher.model_copy(update={"params": params, "train": train})
        teacher_stage = Stage("teacher", out / "teacher", content_key(data_key, teacher.model_dump(mode="json")))
        models["teacher"] = _cached(teacher_stage, say,
                                    lambda d, r: _teacher(config, teacher, ds, split, d, r, base_config, progress))
        stages[teacher_stage.name], model_dirs["teacher"] = str(teacher_stage.directory), teacher_stage.directory

    students = {}
    for student in config.students:
        record = None
        if student.name in tuned:
            record = tuner.tune(student.name, student.model, student.params, student.train)
            params, train, _ = apply(record["selected"], student.params, student.train)
            student = student.model_copy(update={"params": params, "train": train})
        students[student.name] = student
        stage = Stage(f"student {student.name}", out / "students" / student.name,
                      content_key(data_key, student.model_dump(mode="json")))
        models[student.name] = _with_tuning(_cached(stage, say, lambda d, r, st=student: _student(
            st, ds, split, d, r, base_config, progress)), record)
        stages[stage.name], model_dirs[student.name] = str(stage.directory), stage.directory

    for entry in config.distilled:
        student = students[entry.student]
        params, train = {**student.params, **entry.params}, {**student.train, **entry.train}
        record = None
        if entry.name in tuned:  # the student's space (its own override too) plus the terms'
            record = tuner.tune(entry.name, student.model, params, train, kd=entry.kd, entry=entry,
                                teacher_dir=teacher_stage.directory, base=student.name)
            params, train, kd = apply(record["selected"], params, train, entry.kd)
            entry = entry.model_copy(update={"kd": kd})
        entry = entry.model_copy(update={"params": params, "train": train})
        stage = Stage(f"distilled {entry.name}", out / "distilled" / entry.name,
                      content_key(data_key, teacher_stage.key, entry.model_dump(mode="json"),
                                  student.model_dump(mode="json")))
        models[entry.name] = _with_tuning(_cached(stage, say, lambda d, r, e=entry, st=student: _distilled(
            e, st, teacher_stage.directory, d, r, progress, config.seed)), record)
        stages[stage.name], model_dirs[entry.name] = str(stage.directory), stage.directory

    scenarios = {}
    if config.scenario is not None:
        scenario = config.scenario
        stage = Stage(f"scenario {scenario.name}", out / "scenarios" / scenario.name,
                      content_key(data_key, teacher_stage.key if teacher_stage else None,
                                  config.model_dump(mode="json")))
        scenarios[scenario.name] = _cached(stage, say, lambda d, r: _scenario(
            config, ds, split, teacher_stage.directory if teacher_stage else None, d, progress))
        stages[stage.name] = str(stage.directory)

    from distillrec.evidence import split_comparisons

    metrics = {"models": models, "comparisons": split_comparisons(config, split, model_dirs),
               "config": config.model_dump(mode="json"), "versions": artifacts.package_versions(),
               "data_fingerprint": ds.fingerprint, "seed": config.seed, "stages": stages,
               "wall_seconds": time.perf_counter() - started}
    if scenarios:
        metrics["scenarios"] = scenarios
    _write_summary(out, config, metrics)
    return metrics


class _Tuner:
    """Tunes models on this split (each a cached, resumable stage under `directory`), or hands
    back the selections made on the first split (`selections`, shared across split seeds)."""

    def __init__(self, config: ExperimentConfig, ds, split, directory: Path, data_key: str,
                 selections: dict[str, dict], say):
        self.config, self.ds, self.split, self.directory = config, ds, split, directory
        self.data_key, self.selections, self.say = data_key, selections, say
        self._knowledge = None  # the split's teacher knowledge, loaded once for all distilled studies

    def tune(self, name: str, model: str, params: dict, train: dict, *, kd: dict | None = None, entry=None,
             teacher_dir: Path | None = None, base: str | None = None) -> dict:
        if name in self.selections:
            return self.selections[name]
        from distillrec.tuning import search_space, tune_model

        tune = self.config.tune
        overrides = [tune.space.get(base)] if base else []
        knowledge = self._teacher_knowledge(teacher_dir) if teacher_dir is not None else None
        space = search_space(model, kd, *overrides, tune.space.get(name), knowledge=knowledge)
        # The budget stays out of the key: raising `trials` continues the stored study.
        key = content_key(self.data_key, name, model, params, train, kd, tune.seed, tune.pruner,
                          [d.to_json() for d in space], entry.model_dump(mode="json") if entry else None)
        stage = Stage(f"tune {name}", self.directory / name, key)
        if stage.is_done() and artifacts.read_json(stage.directory / ENTRY).get("trials") != tune.trials:
            stage.reopen()

        def work(directory: Path, resume: bool) -> dict:
            self.say(f"  {tune.trials} trials on validation, {len(space)} settings"
                     + (" (continuing the stored study)" if resume else ""))
            return tune_model(directory, model, self.ds, self.split, params=params, train=train,
                              trials=tune.trials, kd=kd, knowledge=knowledge,
                              weighting=entry.weighting if entry else "fixed", init=entry.init if entry else None,
                              space=space, seed=tune.seed, pruner=tune.pruner, say=lambda line: self.say(f"  {line}"))

        record = _cached(stage, self.say, work)
        self.selections[name] = record
        return record

    def _teacher_knowledge(self, teacher_dir: Path):
        if self._knowledge is None:
            from distillrec.distill.runner import load_teacher

            self._knowledge = load_teacher(teacher_dir).knowledge
        return self._knowledge


def _with_tuning(entry: dict, record: dict | None) -> dict:
    """A model's row with its tuning summary (the full trial history stays in tuning/)."""
    if record is None:
        return entry
    return {**entry, "tuning": {key: record[key] for key in ("trials", "finished", "pruned", "seed", "pruner",
                                                             "space", "selected", "best_trial")}
            | {"valid_ndcg@10": record["valid"]}}


def _data_options(config: ExperimentConfig) -> dict:
    return {k: v for k, v in {"mapping": config.data.mapping, "rating_threshold": config.data.rating_threshold,
                              "k_core": config.data.k_core, "list_separators": config.data.list_separators}.items()
            if v}


def _cached(stage: Stage, say, work) -> dict:
    """The stage's model entry: read back when finished before, else computed now."""
    if stage.is_done():
        say(f"[dim]✓ {stage.name}: cached[/]")
        return artifacts.read_json(stage.directory / ENTRY)
    resume = stage.start()
    say(f"[bold]▶ {stage.name}[/]" + (" (resuming)" if resume else ""))
    entry = work(stage.directory, resume)
    artifacts.write_json(stage.directory / ENTRY, entry)
    stage.finish()
    return entry


def _baseline(name, ds, split, stage_dir: Path, base_config) -> dict:
    results = evaluate_scorer(baseline_scorer(name, split, base_config["seed"]), split, ds,
                                         per_user_dir=stage_dir)
    entry = runs.model_entry("baseline", 0, results["valid"], results["test"])
    runs.write_run(stage_dir, dataset=ds, split=split, models={name: entry},
                   config={**base_config, "command": "run", "model": name})
    return entry


def _teacher(config: ExperimentConfig, teacher, ds, split, stage_dir: Path, resume: bool, base_config,
             progress) -> dict:
    from distillrec.teachers.knowledge import extract_knowledge

    model_cls = model_class(teacher.model)
    train_config = make_train_config(teacher.train, config.seed)
    model = model_cls.build(ds, split, seed=config.seed, **teacher.params)
    run_config = {**base_config, "command": "run", "model": teacher.model, "model_params": teacher.params,
                  "train": train_config.model_dump(mode="json")}
    metrics = experiment.fit_model(model_cls, "teacher", ds, split, model_params=teacher.params,
                                   train_config=train_config, run_dir=stage_dir, config=run_config, role="teacher",
                                   resume=resume, progress=progress, model=model,
                                   entry_extra={"text_cost": getattr(model, "text_cost", {})})
    knowledge = extract_knowledge(model, split, ds, top_k=teacher.top_k, knn=teacher.knn,
                                  importance=teacher.importance, seed=config.seed)
    knowledge_dir = stage_dir / "knowledge"
    if knowledge_dir.exists():  # a partial attempt of an interrupted run
        import shutil
        shutil.rmtree(knowledge_dir)
    knowledge.save(knowledge_dir)
    return metrics["models"]["teacher"]


def _student(student, ds, split, stage_dir: Path, resume: bool, base_config, progress) -> dict:
    model_cls = model_class(student.model)
    train_config = make_train_config(student.train, base_config["seed"])
    run_config = {**base_config, "command": "run", "model": student.model, "model_params": student.params,
                  "train": train_config.model_dump(mode="json")}
    metrics = experiment.fit_model(model_cls, student.name, ds, split, model_params=student.params,
                                   train_config=train_config, run_dir=stage_dir, config=run_config,
                                   resume=resume, progress=progress,
                                   entry_extra={"student": student.model, "dim": student.params.get("dim", 64)})
    return metrics["models"][student.name]


def _distilled(entry, student, teacher_dir: Path, stage_dir: Path, resume: bool, progress, seed) -> dict:
    """The student's model and training, plus the teacher's knowledge. (An interrupted
    distillation restarts: its objective's state is rebuilt from the teacher.)"""
    from distillrec.distill.runner import distill_student

    params = {**student.params, **entry.params}
    dim = params.pop("dim", 64)
    _, metrics = distill_student(teacher_dir, student.model, entry.kd, dim=dim, seed=seed, init=entry.init,
                                 weighting=entry.weighting, model_params=params,
                                 train_params={**student.train, **entry.train},
                                 out=stage_dir, progress=progress)
    model_entry = next(iter(metrics["models"].values()))
    return {**model_entry, "student": student.model, "dim": dim, "baseline": student.name}


def _scenario(config: ExperimentConfig, ds, split, teacher_dir: Path | None, stage_dir: Path, progress) -> dict:
    from distillrec.scenarios import ScenarioContext, run_scenario

    context = ScenarioContext(config=config, dataset=ds, split=split, teacher_dir=teacher_dir, out=stage_dir,
                              progress=progress)
    return run_scenario(config.scenario.name, context).to_json()


def _write_summary(out: Path, config: ExperimentConfig, metrics: dict) -> None:
    """config.yaml, metrics.json and report.html in `out`, and the tables on the terminal (a
    resampled run's are means over its split seeds, its lifts paired over splits too)."""
    from distillrec.evidence import activity_rows, comparison_rows, scenario_pair_rows
    from distillrec.report.html import write_report
    from distillrec.report.summary import rows_table, summary_table

    artifacts.write_text(out / "config.yaml", dump_config(config))
    artifacts.write_json(out / "metrics.json", metrics)
    write_report(metrics, out / "report.html")
    seeds = metrics.get("seeds")
    if metrics["models"]:
        console.print(summary_table(metrics, title=f"test metrics, mean over {len(seeds)} split seeds {seeds}"
                                    if seeds else None))
    if metrics.get("comparisons"):
        console.print(rows_table(comparison_rows(metrics), "lifts (paired over split seeds and over users)"
                                 if seeds else "lifts (paired over users)"))
        if seeds:
            console.print(rows_table(activity_rows(metrics), "lift by users' and by items' training "
                                                             "interactions (quartiles, mean over splits)"))
    for name, scenario in (metrics.get("scenarios") or {}).items():
        console.print(rows_table(scenario["table"], f"scenario {name}"))
        paired = (scenario.get("details") or {}).get("paired")
        if paired:
            console.print(rows_table(scenario_pair_rows(paired), f"scenario {name}: paired tests"))
    console.print(f"wrote {out / 'metrics.json'} and {out / 'report.html'} "
                  f"({metrics['wall_seconds']:.0f} s)")
