"""Command-line interface: a thin layer over the library.

Heavy imports (torch, pandas, transformers) happen inside commands so `--help` is instant.
Errors caused by input print one line and exit with code 2; `--debug` shows the traceback.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import typer

from distillrec.errors import DistillrecError

app = typer.Typer(
    name="distillrec",
    help="Distill and transfer the knowledge of pretrained language models into lightweight recommenders.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Inspect datasets: built-in MovieLens or your own interaction files.",
                       no_args_is_help=True)
app.add_typer(data_app, name="data")
config_app = typer.Typer(help="Experiment configs: print the resolved config with every default.",
                         no_args_is_help=True)
app.add_typer(config_app, name="config")
teacher_app = typer.Typer(help="The teacher: encode texts with a language model, fit the LM-enhanced "
                               "recommender, extract its knowledge.", no_args_is_help=True)
app.add_typer(teacher_app, name="teacher")

_state = {"debug": False}


@app.callback()
def _options(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
             threads: Optional[int] = typer.Option(None, "--threads", min=1, help="CPU threads for torch in every "
                                                   "command (over a config's threads: key); default: "
                                                   "$DISTILLREC_THREADS, else the cores of this process's CPU set.")):
    from distillrec import threads as thread_setting

    _state["debug"] = debug
    thread_setting.override(threads)  # over a config's threads: key too (run_experiment resolves it)
    thread_setting.apply(thread_setting.resolve())


def _parse_mapping(text: Optional[str]) -> Optional[dict]:
    """'user_id=uid,item_id=iid' -> {'user_id': 'uid', 'item_id': 'iid'}."""
    if not text:
        return None
    mapping = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise DistillrecError(f"--map: '{part}' is not of the form FIELD=COLUMN "
                                  "(e.g. --map user_id=customer,item_id=product)")
        mapping[key.strip()] = value.strip()
    return mapping


def _parse_list_separators(text: Optional[str]) -> Optional[dict]:
    """'genres=;,tags=,' -> {'genres': ';', 'tags': ','}: a separator may itself be a comma."""
    import re

    if not text:
        return None
    pattern = r"([^=,]+)=(.+?)(?=,[^=,]+=|$)"
    if not re.fullmatch(rf"{pattern}(,{pattern})*", text):
        raise DistillrecError(f"--list-sep: '{text}' is not of the form COLUMN=SEPARATOR[,COLUMN=SEPARATOR] "
                              "(e.g. --list-sep 'genres=;')")
    return {column.strip(): separator for column, separator in re.findall(pattern, text)}


DATASET_HELP = "Built-in name (ml-100k, ml-1m) or a path to your interactions file or folder."
MAP_HELP = "Column mapping for your own CSV/TSV/Parquet: user_id=COL,item_id=COL[,rating=COL,timestamp=COL]."


@data_app.command("stats")
def data_stats(
    dataset: str = typer.Argument(..., help=DATASET_HELP),
    map: Optional[str] = typer.Option(None, "--map", help=MAP_HELP),
    sep: Optional[str] = typer.Option(None, "--sep", help="Field separator of a CSV/TSV file (default: from the extension)."),
    list_sep: Optional[str] = typer.Option(None, "--list-sep", help="Separator of list columns in your items/users "
                                           "files, COLUMN=SEP[,COLUMN=SEP] (e.g. 'genres=;'); undeclared genres: "
                                           "'|', ';' or ',', detected."),
):
    """Counts, sparsity, attribute coverage and distinct values of a dataset; warns about
    attribute columns that look misread (a list left unsplit)."""
    from distillrec.console import console, err_console, key_value_table
    from distillrec.data.stats import attribute_warnings, dataset_stats
    from distillrec.data.sources import load_dataset

    ds = load_dataset(dataset, mapping=_parse_mapping(map), sep=sep, list_separators=_parse_list_separators(list_sep))
    console.print(key_value_table(dataset_stats(ds), title=f"{ds.name}"))
    for warning in attribute_warnings(ds):
        err_console.print(f"[yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)


KEEP_SEEN_METRICS = "metrics-keep-seen.json"  # `evaluate --run --keep-seen`; beside, not in, the manifest


@app.command("evaluate")
def evaluate_cmd(
    model: Optional[str] = typer.Option(None, "--model", help="Non-learned baseline to score: pop | random."),
    run: Optional[Path] = typer.Option(None, "--run", help="Re-evaluate a trained run directory (verifies its hashes)."),
    dataset: str = typer.Option("ml-100k", "--dataset", help=DATASET_HELP),
    split: str = typer.Option("random", "--split", help="random | temporal | loo | cold-user | cold-item."),
    seed: int = typer.Option(0, "--seed", help="Seed of the split (and of the random baseline)."),
    map: Optional[str] = typer.Option(None, "--map", help=MAP_HELP),
    out: Optional[Path] = typer.Option(None, "--out", help="Run directory to write (default: a new one under runs/)."),
    keep_seen: bool = typer.Option(False, "--keep-seen", help="With --run: keep the items each user has seen "
                                   "in the ranking (RecBole's SASRec convention) instead of masking them; "
                                   "writes RUN_DIR/metrics-keep-seen.json, metrics.json stays as it is."),
):
    """Full-ranking evaluation of a baseline (pop, random) or of a trained run."""
    from distillrec.console import console, metrics_table
    from distillrec import experiment

    if (model is None) == (run is None):
        raise DistillrecError("give exactly one of --model (pop, random) or --run RUN_DIR")
    if keep_seen and run is None:
        raise DistillrecError("--keep-seen re-evaluates a trained run: give --run RUN_DIR")
    if run is not None:
        metrics = experiment.evaluate_run(run, keep_seen=keep_seen)
        seen = ", seen items kept" if keep_seen else ""
        console.print(metrics_table(metrics["models"], title=f"{run} (re-evaluated, test{seen})"))
        if keep_seen:
            from distillrec import artifacts

            artifacts.write_json(run / KEEP_SEEN_METRICS, metrics)
            console.print(f"wrote {run / KEEP_SEEN_METRICS}")
        return
    run_dir, metrics = experiment.evaluate_baseline(model, dataset=dataset, split_name=split, seed=seed,
                                                    mapping=_parse_mapping(map), out=out)
    console.print(metrics_table(metrics["models"], title=f"{dataset} · {split} split · test"))
    console.print(f"wrote {run_dir}")


@app.command("run")
def run_cmd(
    config: Optional[Path] = typer.Argument(None, help="Experiment YAML (see configs/); default: configs' defaults on ML-100K."),
    out: Optional[Path] = typer.Option(None, "--out", help="Run directory (default: runs/<config name>). Re-running skips finished stages."),
    trials: Optional[int] = typer.Option(None, "--trials", min=1, help="Tune every model with this many trials first "
                                         "(sets the config's tune.trials; adds a tune section if it has none)."),
    seeds: Optional[str] = typer.Option(None, "--seeds", help="Split seeds, e.g. 0,1,2,3,4 (overrides the config's seeds)."),
):
    """The main job: data, split, teacher, knowledge, baseline and distilled students, evaluation,
    terminal summary and report.html — each stage cached, an interrupted run resumes.
    With a tune section (or --trials) each model is tuned on validation first, with equal budgets;
    with several split seeds the lifts come with mean ± std and paired tests."""
    _run(config, out, trials, seeds, force_tune=False)


@app.command("tune")
def tune_cmd(
    config: Optional[Path] = typer.Argument(None, help="Experiment YAML (see configs/); default: configs' defaults on ML-100K."),
    out: Optional[Path] = typer.Option(None, "--out", help="Run directory (default: runs/<config name>). "
                                       "Re-running continues the stored studies."),
    trials: Optional[int] = typer.Option(None, "--trials", min=1, help="Trials per model (default: the config's "
                                         "tune.trials, else 20); the same for every model."),
    seeds: Optional[str] = typer.Option(None, "--seeds", help="Split seeds, e.g. 0,1,2,3,4 (tuned on the first)."),
):
    """Tune each student and distilled model of an experiment with Optuna (seeded TPE, pruning of
    weak trials, study stored as SQLite under <out>/tuning/ so a killed study resumes), selecting on
    validation NDCG@10 only; then fit the selected settings and read test once. The same as `run`
    with a tune section; the selections are recorded in metrics.json under each model's "tuning"."""
    _run(config, out, trials, seeds, force_tune=True)


def _run(config: Optional[Path], out: Optional[Path], trials: Optional[int], seeds: Optional[str],
         force_tune: bool) -> None:
    from distillrec.config import load_config, parse_config
    from distillrec.pipeline import run_experiment

    experiment_config = load_config(config)
    if trials is not None or seeds is not None or (force_tune and experiment_config.tune is None):
        raw = experiment_config.model_dump(mode="json")
        if trials is not None or force_tune:
            raw["tune"] = {**(raw.get("tune") or {}), **({"trials": trials} if trials is not None else {})}
        if seeds is not None:
            raw["seeds"] = _parse_ints(seeds, "--seeds")
        experiment_config = parse_config(raw, source=str(config or "defaults"))
    run_experiment(experiment_config, out or Path("runs") / experiment_config.name)


@config_app.command("show")
def config_show(config: Optional[Path] = typer.Argument(None, help="Experiment YAML; default: the built-in defaults.")):
    """Print the resolved config (your file plus every default) as YAML."""
    from distillrec.config import dump_config, load_config

    typer.echo(dump_config(load_config(config)), nl=False)


@app.command("compare")
def compare_cmd(run_a: Path = typer.Argument(..., help="First run directory."),
                run_b: Path = typer.Argument(..., help="Second run directory.")):
    """Two runs side by side: each model's metrics in A and B and the relative difference, and a
    per-user paired test of B against A where both runs wrote per_user.parquet."""
    from distillrec.report.compare import compare_runs
    from distillrec.console import console

    table, _ = compare_runs(run_a, run_b)
    console.print(table)


def _parse_params(items: list[str], option: str) -> dict:
    """['dim=32', 'dropout=0.2'] -> {'dim': 32, 'dropout': 0.2} (values read as JSON when they parse)."""
    import json

    params = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise DistillrecError(f"{option}: '{item}' is not of the form KEY=VALUE")
        try:
            params[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            params[key.strip()] = value
    return params


@app.command("train")
def train_cmd(
    model: str = typer.Option(..., "--model", help="Student to train: mf | two-tower | sasrec | gru4rec."),
    dataset: str = typer.Option("ml-100k", "--dataset", help=DATASET_HELP),
    split: str = typer.Option("random", "--split", help="random | temporal | loo | cold-user | cold-item (sasrec, gru4rec: loo)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the split, the initial weights and the batches."),
    dim: Optional[int] = typer.Option(None, "--dim", help="Embedding dimension (default 64)."),
    loss: Optional[str] = typer.Option(None, "--loss", help="bpr | sampled-softmax | softmax (default: the model's)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Maximum epochs (default 300, with early stopping)."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Learning rate (default 1e-3)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Batch size (default: the model's)."),
    patience: Optional[int] = typer.Option(None, "--patience", help="Validations without improvement before stopping (default 10)."),
    param: list[str] = typer.Option([], "--param", help="Other model hyper-parameters, KEY=VALUE (repeatable)."),
    train_option: list[str] = typer.Option([], "--train-option", help="Other training options, KEY=VALUE (repeatable), e.g. sampler=popularity."),
    out: Optional[Path] = typer.Option(None, "--out", help="Run directory (default: a new one under runs/)."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run in --out from its last checkpoint."),
):
    """Train a student through the one training loop and evaluate it (full ranking).
    Under `torchrun --nproc_per_node N -m distillrec train ...` it trains data-parallel."""
    from distillrec import experiment
    from distillrec.console import console, metrics_table
    from distillrec.train import distributed

    model_params = _parse_params(param, "--param")
    if dim is not None:
        model_params["dim"] = dim
    if loss is not None:
        model_params["rec_loss"] = loss
    train_params = _parse_params(train_option, "--train-option")
    for key, value in (("epochs", epochs), ("lr", lr), ("batch_size", batch_size), ("patience", patience)):
        if value is not None:
            train_params[key] = value
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and out is None:
        # each process would pick its own timestamped directory
        raise DistillrecError("under torchrun, give --out DIR: every process must write to the same run")
    launched = distributed.init_from_env()
    worker = launched and not distributed.is_main()
    try:
        run_dir, metrics = experiment.train_model(model, dataset=dataset, split_name=split, seed=seed,
                                                  model_params=model_params, train_params=train_params,
                                                  out=out, resume=resume)
    finally:
        if launched:
            distributed.shutdown()
    if worker:  # rank 0 evaluated and wrote the run; this rank has nothing left to do
        distributed.exit_worker()
    if metrics:  # empty on every rank but 0, which evaluated and wrote the run
        console.print(metrics_table(metrics["models"], title=f"{model} · {dataset} · {split} split · test"))
        console.print(f"wrote {run_dir}")


def _parse_ints(text: str, option: str) -> list[int]:
    """'0,1,2' -> [0, 1, 2]."""
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise DistillrecError(f"{option}: '{text}' is not a comma-separated list of integers (e.g. 0,1,2)") from None


# Options `distill` and `ablate` share (typer reads an option's declaration; it does not change it).
TEACHER_RUN_OPTION = typer.Option(..., "--teacher", help="Teacher run directory (a trained teacher plus knowledge/).")
STUDENT_OPTION = typer.Option("mf", "--student", help="Student: mf | two-tower | sasrec | gru4rec.")
TRAIN_OPTIONS_OPTION = typer.Option([], "--train-option", help="Other training options, KEY=VALUE (repeatable).")


def _distill_train_params(epochs: Optional[int], train_option: list[str]) -> dict:
    train_params = _parse_params(train_option, "--train-option")
    if epochs is not None:
        train_params["epochs"] = epochs
    return train_params


@app.command("distill")
def distill_cmd(
    teacher: Path = TEACHER_RUN_OPTION,
    student: str = STUDENT_OPTION,
    kd: Optional[str] = typer.Option(None, "--kd", help="Distillation terms METHOD=WEIGHT,... (e.g. feature=1.0,ranking=0.5) "
                                     "or a JSON object with per-method options; omit for none."),
    init: Optional[str] = typer.Option(None, "--init", help="Initialise the student's ID embeddings from the teacher: pca | projection."),
    weighting: str = typer.Option("fixed", "--weighting", help="fixed (the --kd weights) | uncertainty (learned from them)."),
    confidence: bool = typer.Option(False, "--confidence", help="Weight each user by the teacher's confidence in its top-K."),
    dim: int = typer.Option(64, "--dim", help="Student embedding dimension."),
    seed: int = typer.Option(0, "--seed", help="Seed of the initial weights, the batches and the KD sampling."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Maximum epochs (default 300, with early stopping)."),
    param: list[str] = typer.Option([], "--param", help="Other student hyper-parameters, KEY=VALUE (repeatable)."),
    train_option: list[str] = TRAIN_OPTIONS_OPTION,
    out: Optional[Path] = typer.Option(None, "--out", help="Run directory (default: a new one under runs/)."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run in --out from its last checkpoint."),
):
    """Train a student distilled from a teacher run, evaluate it, write a run directory."""
    from distillrec.console import console, metrics_table
    from distillrec.distill.objective import parse_spec
    from distillrec.distill.runner import distill_student

    spec = parse_spec(kd) if kd else None
    run_dir, metrics = distill_student(teacher, student, spec, dim=dim, seed=seed, init=init, weighting=weighting,
                                       confidence=confidence, model_params=_parse_params(param, "--param"),
                                       train_params=_distill_train_params(epochs, train_option), out=out,
                                       resume=resume)
    console.print(metrics_table(metrics["models"], title=f"{student} distilled from {teacher} · test"))
    console.print(f"wrote {run_dir}")


@app.command("ablate")
def ablate_cmd(
    teacher: Path = TEACHER_RUN_OPTION,
    student: str = STUDENT_OPTION,
    methods: Optional[str] = typer.Option(None, "--methods", help="Methods to compare, comma-separated, each NAME or "
                                          "NAME=WEIGHT (default: every method with its tuned settings)."),
    seeds: str = typer.Option("0,1,2", "--seeds", help="Seeds, comma-separated."),
    dims: str = typer.Option("64", "--dims", help="Student dims, comma-separated; methods are compared at the largest, "
                             "the others give the accuracy-versus-size curve."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Maximum epochs per student (default 300, early stopping)."),
    train_option: list[str] = TRAIN_OPTIONS_OPTION,
    out: Path = typer.Option(..., "--out", help="Directory for ablation.json, ablation.md and the students' runs."),
    jobs: int = typer.Option(1, "--jobs", help="Students trained at once, each in its own process "
                             "(the cores are shared out between them)."),
):
    """Undistilled vs each distillation method vs the best combination, over seeds (and dims)."""
    from distillrec.console import console
    from distillrec.distill.runner import ablate

    report = ablate(teacher, student, methods.split(",") if methods else None, seeds=_parse_ints(seeds, "--seeds"),
                    dims=_parse_ints(dims, "--dims"), train_params=_distill_train_params(epochs, train_option),
                    out=out, jobs=jobs)
    console.print(report["markdown"], markup=False, highlight=False)
    console.print(f"wrote {out / 'ablation.json'} and {out / 'ablation.md'}")


@teacher_app.command("encode")
def teacher_encode(
    dataset: str = typer.Option("ml-100k", "--dataset", help=DATASET_HELP),
    out: Path = typer.Option(..., "--out", help="New directory for embeddings.safetensors, texts, encode.json."),
    model: Optional[str] = typer.Option(None, "--model", help="Hugging Face model name or local folder "
                                        "(default: the installed all-MiniLM-L6-v2, offline)."),
    pooling: Optional[str] = typer.Option(None, "--pooling", help="mean | cls | last (decoder LLMs); default: "
                                          "the sentence-transformers setup, else mean."),
    item_template: Optional[str] = typer.Option(None, "--item-template", help="Item sentence, e.g. "
                                                "'{title}[ ({year})].[ Genres: {genres}.]' ([...] = optional part)."),
    users: bool = typer.Option(False, "--users", help="Also encode users with --user-template."),
    user_template: Optional[str] = typer.Option(None, "--user-template", help="User sentence (implies --users)."),
    batch_size: int = typer.Option(64, "--batch-size", help="Texts per forward pass."),
):
    """Encode item (and user) texts; re-encoding the same texts reads the embedding cache."""
    from distillrec.console import console
    from distillrec.teachers import templates
    from distillrec.teachers.commands import encode_dataset

    if users and user_template is None:
        user_template = templates.DEFAULT_USER_TEMPLATE
    record = encode_dataset(dataset, out, model=model, pooling=pooling,
                            item_template=item_template or templates.DEFAULT_ITEM_TEMPLATE,
                            user_template=user_template, batch_size=batch_size)
    for name, part in record["parts"].items():
        source = "cache hit" if part["cache_hit"] else "encoded"
        console.print(f"{name}s: {part['n']:,} texts, {source} in {part['seconds']:.2f} s "
                      f"({part['per_second']:,.0f} /s), dim {record['dim']}")
    console.print(f"wrote {out}")


@teacher_app.command("fit")
def teacher_fit(
    dataset: str = typer.Option("ml-100k", "--dataset", help=DATASET_HELP),
    split: str = typer.Option("random", "--split", help="random | temporal | loo | cold-user | cold-item."),
    seed: int = typer.Option(0, "--seed", help="Seed of the split, the initial weights and the batches."),
    model: str = typer.Option("lm-teacher", "--model", help="Teacher: lm-teacher (pools the history) | "
                              "lm-seq-teacher (causal self-attention over it, for --split loo) | ease."),
    mode: Optional[str] = typer.Option(None, "--mode", help="Language model: frozen (+ adapter, default) | lora | "
                                       "adalora | full."),
    encoder: Optional[str] = typer.Option(None, "--encoder", help="Hugging Face model name or folder (default MiniLM)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Maximum epochs (early stopping on valid NDCG@10)."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Learning rate."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Batch size."),
    param: list[str] = typer.Option([], "--param", help="Other teacher hyper-parameters, KEY=VALUE (repeatable), "
                                    "e.g. dim=128, item_item=true."),
    train_option: list[str] = typer.Option([], "--train-option", help="Other training options, KEY=VALUE."),
    extract: bool = typer.Option(True, "--extract/--no-extract", help="Extract the knowledge right after fitting."),
    top_k: int = typer.Option(100, "--top-k", help="Teacher top-K kept per user (with --extract)."),
    knn: int = typer.Option(20, "--knn", help="Item neighbours in the relation graph (with --extract)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Run directory (default: a new one under runs/)."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted fit in --out from its checkpoint."),
):
    """Fit the LM-enhanced teacher (role "teacher") through the one loop; then extract its knowledge."""
    from distillrec.console import console, metrics_table
    from distillrec.teachers import commands

    model_params = _parse_params(param, "--param")
    for key, value in (("mode", mode), ("encoder", encoder)):
        if value is not None:
            model_params[key] = value
    train_params = _parse_params(train_option, "--train-option")
    for key, value in (("epochs", epochs), ("lr", lr), ("batch_size", batch_size)):
        if value is not None:
            train_params[key] = value
    run_dir, metrics = commands.fit_teacher(model=model, dataset=dataset, split_name=split, seed=seed,
                                            model_params=model_params,
                                            train_params=train_params, out=out, resume=resume)
    console.print(metrics_table(metrics["models"], title=f"teacher · {dataset} · {split} split · test"))
    if extract:
        info = commands.extract(run_dir, top_k=top_k, knn=knn, seed=seed)
        console.print(f"knowledge: top-{top_k} per user in {info['timings']['top_k_seconds']:.2f} s, "
                      f"{knn}-NN item graph")
    console.print(f"wrote {run_dir}")


@teacher_app.command("extract")
def teacher_extract(
    run: Path = typer.Argument(..., help="A fitted teacher run directory (from `distillrec teacher fit`)."),
    top_k: int = typer.Option(100, "--top-k", help="Teacher top-K kept per user, with confidences."),
    knn: int = typer.Option(20, "--knn", help="Item neighbours in the relation graph."),
    importance: bool = typer.Option(False, "--importance", help="Also permutation importance of side features and "
                                    "text fields (one validation per input; slow)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the permutations."),
    step_top_k: Optional[int] = typer.Option(None, "--step-top-k", help="A sequential teacher: also its top-K next "
                                             "items at every training step (for step-ranking-distillation)."),
):
    """Extract the teacher's knowledge into RUN/knowledge: representations, top-K, kNN graph."""
    from distillrec.console import console
    from distillrec.teachers.commands import extract

    info = extract(run, top_k=top_k, knn=knn, importance=importance, seed=seed, step_top_k=step_top_k)
    timings = ", ".join(f"{k.removesuffix('_seconds')} {v:.2f} s" for k, v in info["timings"].items())
    console.print(f"knowledge: {timings}")
    console.print(f"wrote {run / 'knowledge'}")


@app.command("export")
def export_cmd(
    run: Path = typer.Argument(..., help="A run directory from `distillrec train`, `distill` or `run`."),
    out: Path = typer.Option(..., "--out", help="Bundle directory to write (must not exist)."),
    model: Optional[str] = typer.Option(None, "--model", help="Which student of a `distillrec run` output "
                                        "(default: the distilled student with the best validation NDCG@10)."),
):
    """Export a student as a verified bundle: weights, id maps, item vectors, ONNX towers, manifest."""
    from distillrec.console import console
    from distillrec.serving.bundle import export_bundle

    path = export_bundle(run, out, model=model)
    console.print(f"wrote {path}")


@app.command("serve")
def serve_cmd(
    bundle: Path = typer.Argument(..., help="A bundle directory from `distillrec export` (hashes verified first)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8000, "--port", help="Port to listen on."),
    api_key: Optional[str] = typer.Option(None, "--api-key", envvar="DISTILLREC_API_KEY",
                                          help="Require Authorization: Bearer KEY (or set DISTILLREC_API_KEY)."),
    index: str = typer.Option("exact", "--index", help="Top-K search: exact | hnsw | ivf."),
    workers: int = typer.Option(1, "--workers", help="uvicorn worker processes (items added with POST /items "
                                "stay in the worker that received them)."),
):
    """Serve recommendations over HTTP (FastAPI + uvicorn); OpenAPI schema at /docs."""
    from distillrec.serving.app import serve

    serve(bundle, host=host, port=port, api_key=api_key, index=index, workers=workers)


def main(argv: list[str] | None = None) -> None:
    try:
        app(args=argv, standalone_mode=False)
    except DistillrecError as exc:
        if _state["debug"]:
            raise
        from distillrec.console import err_console

        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        sys.exit(130)
    except Exception as exc:  # click's usage errors carry their own exit code
        import click

        # typer >= 0.2x vendors its own click: its usage errors derive from typer.TyperException
        # and its exit from typer.Exit, not from the click package's classes.
        usage = (click.exceptions.ClickException, getattr(typer, "TyperException", click.exceptions.ClickException))
        if isinstance(exc, usage) and hasattr(exc, "show") and hasattr(exc, "exit_code"):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, (click.exceptions.Exit, typer.Exit)):
            sys.exit(exc.exit_code)
        raise
