"""Command-line interface: a thin layer over the library.

Heavy imports (torch, pandas, transformers) happen inside commands so `--help` is instant.
Errors caused by input print one line and exit with code 2; `--debug` shows the traceback.
"""

from __future__ import annotations

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

_state = {"debug": False}


@app.callback()
def _options(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors.")):
    _state["debug"] = debug


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


DATASET_HELP = "Built-in name (ml-100k, ml-1m) or a path to your interactions file or folder."
MAP_HELP = "Column mapping for your own CSV/TSV/Parquet: user_id=COL,item_id=COL[,rating=COL,timestamp=COL]."


@data_app.command("stats")
def data_stats(
    dataset: str = typer.Argument(..., help=DATASET_HELP),
    map: Optional[str] = typer.Option(None, "--map", help=MAP_HELP),
    sep: Optional[str] = typer.Option(None, "--sep", help="Field separator of a CSV/TSV file (default: from the extension)."),
):
    """Counts, sparsity and attribute coverage of a dataset."""
    from distillrec.console import console, key_value_table
    from distillrec.data.stats import dataset_stats
    from distillrec.experiment import load_dataset

    ds = load_dataset(dataset, mapping=_parse_mapping(map), sep=sep)
    console.print(key_value_table(dataset_stats(ds), title=f"{ds.name}"))


@app.command("evaluate")
def evaluate_cmd(
    model: Optional[str] = typer.Option(None, "--model", help="Non-learned baseline to score: pop | random."),
    run: Optional[Path] = typer.Option(None, "--run", help="Re-evaluate a trained run directory (verifies its hashes)."),
    dataset: str = typer.Option("ml-100k", "--dataset", help=DATASET_HELP),
    split: str = typer.Option("random", "--split", help="random | temporal | loo | cold-user | cold-item."),
    seed: int = typer.Option(0, "--seed", help="Seed of the split (and of the random baseline)."),
    map: Optional[str] = typer.Option(None, "--map", help=MAP_HELP),
    out: Optional[Path] = typer.Option(None, "--out", help="Run directory to write (default: a new one under runs/)."),
):
    """Full-ranking evaluation of a baseline (pop, random) or of a trained run."""
    from distillrec.console import console, metrics_table
    from distillrec import experiment

    if (model is None) == (run is None):
        raise DistillrecError("give exactly one of --model (pop, random) or --run RUN_DIR")
    if run is not None:
        metrics = experiment.evaluate_run(run)
        console.print(metrics_table(metrics["models"], title=f"{run} (re-evaluated, test)"))
        return
    run_dir, metrics = experiment.evaluate_baseline(model, dataset=dataset, split_name=split, seed=seed,
                                                    mapping=_parse_mapping(map), out=out)
    console.print(metrics_table(metrics["models"], title=f"{dataset} · {split} split · test"))
    console.print(f"wrote {run_dir}")


@app.command("run")
def run_cmd(
    config: Optional[Path] = typer.Argument(None, help="Experiment YAML (see configs/); default: configs' defaults on ML-100K."),
    out: Optional[Path] = typer.Option(None, "--out", help="Run directory (default: runs/<config name>). Re-running skips finished stages."),
):
    """The main job: data, split, teacher, knowledge, baseline and distilled students, evaluation,
    terminal summary and report.html — each stage cached, an interrupted run resumes."""
    from distillrec.config import load_config
    from distillrec.pipeline import run_experiment

    experiment_config = load_config(config)
    run_experiment(experiment_config, out or Path("runs") / experiment_config.name)


@config_app.command("show")
def config_show(config: Optional[Path] = typer.Argument(None, help="Experiment YAML; default: the built-in defaults.")):
    """Print the resolved config (your file plus every default) as YAML."""
    from distillrec.config import dump_config, load_config

    typer.echo(dump_config(load_config(config)), nl=False)


@app.command("compare")
def compare_cmd(run_a: Path = typer.Argument(..., help="First run directory."),
                run_b: Path = typer.Argument(..., help="Second run directory.")):
    """Two runs side by side: each model's metrics in A and B and the relative difference."""
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
    model: str = typer.Option(..., "--model", help="Student to train: mf | two-tower | sasrec."),
    dataset: str = typer.Option("ml-100k", "--dataset", help=DATASET_HELP),
    split: str = typer.Option("random", "--split", help="random | temporal | loo | cold-user | cold-item (sasrec: loo)."),
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
    """Train a student through the one training loop and evaluate it (full ranking)."""
    from distillrec import experiment
    from distillrec.console import console, metrics_table

    model_params = _parse_params(param, "--param")
    if dim is not None:
        model_params["dim"] = dim
    if loss is not None:
        model_params["rec_loss"] = loss
    train_params = _parse_params(train_option, "--train-option")
    for key, value in (("epochs", epochs), ("lr", lr), ("batch_size", batch_size), ("patience", patience)):
        if value is not None:
            train_params[key] = value
    run_dir, metrics = experiment.train_model(model, dataset=dataset, split_name=split, seed=seed,
                                              model_params=model_params, train_params=train_params,
                                              out=out, resume=resume)
    console.print(metrics_table(metrics["models"], title=f"{model} · {dataset} · {split} split · test"))
    console.print(f"wrote {run_dir}")


def _parse_ints(text: str, option: str) -> list[int]:
    """'0,1,2' -> [0, 1, 2]."""
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise DistillrecError(f"{option}: '{text}' is not a comma-separated list of integers (e.g. 0,1,2)") from None


def _distill_train_params(epochs: Optional[int], train_option: list[str]) -> dict:
    train_params = _parse_params(train_option, "--train-option")
    if epochs is not None:
        train_params["epochs"] = epochs
    return train_params


@app.command("distill")
def distill_cmd(
    teacher: Path = typer.Option(..., "--teacher", help="Teacher run directory (a trained teacher plus knowledge/)."),
    student: str = typer.Option("mf", "--student", help="Student: mf | two-tower | sasrec."),
    kd: Optional[str] = typer.Option(None, "--kd", help="Distillation terms METHOD=WEIGHT,... (e.g. feature=1.0,ranking=0.5) "
                                     "or a JSON object with per-method options; omit for none."),
    init: Optional[str] = typer.Option(None, "--init", help="Initialise the student's ID embeddings from the teacher: pca | projection."),
    weighting: str = typer.Option("fixed", "--weighting", help="fixed (the --kd weights) | uncertainty (learned from them)."),
    confidence: bool = typer.Option(False, "--confidence", help="Weight each user by the teacher's confidence in its top-K."),
    dim: int = typer.Option(64, "--dim", help="Student embedding dimension."),
    seed: int = typer.Option(0, "--seed", help="Seed of the initial weights, the batches and the KD sampling."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Maximum epochs (default 300, with early stopping)."),
    param: list[str] = typer.Option([], "--param", help="Other student hyper-parameters, KEY=VALUE (repeatable)."),
    train_option: list[str] = typer.Option([], "--train-option", help="Other training options, KEY=VALUE (repeatable)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Run directory (default: a new one under runs/)."),
):
    """Train a student distilled from a teacher run, evaluate it, write a run directory."""
    from distillrec.console import console, metrics_table
    from distillrec.distill.objective import parse_spec
    from distillrec.distill.runner import distill_student

    spec = parse_spec(kd) if kd else None
    run_dir, metrics = distill_student(teacher, student, spec, dim=dim, seed=seed, init=init, weighting=weighting,
                                       confidence=confidence, model_params=_parse_params(param, "--param"),
                                       train_params=_distill_train_params(epochs, train_option), out=out)
    console.print(metrics_table(metrics["models"], title=f"{student} distilled from {teacher} · test"))
    console.print(f"wrote {run_dir}")


@app.command("ablate")
def ablate_cmd(
    teacher: Path = typer.Option(..., "--teacher", help="Teacher run directory (a trained teacher plus knowledge/)."),
    student: str = typer.Option("mf", "--student", help="Student: mf | two-tower | sasrec."),
    methods: Optional[str] = typer.Option(None, "--methods", help="Methods to compare, comma-separated, each NAME or "
                                          "NAME=WEIGHT (default: every method with its tuned settings)."),
    seeds: str = typer.Option("0,1,2", "--seeds", help="Seeds, comma-separated."),
    dims: str = typer.Option("64", "--dims", help="Student dims, comma-separated; methods are compared at the largest, "
                             "the others give the accuracy-versus-size curve."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Maximum epochs per student (default 300, early stopping)."),
    train_option: list[str] = typer.Option([], "--train-option", help="Other training options, KEY=VALUE (repeatable)."),
    out: Path = typer.Option(..., "--out", help="Directory for ablation.json, ablation.md and the students' runs."),
):
    """Undistilled vs each distillation method vs the best combination, over seeds (and dims)."""
    from distillrec.console import console
    from distillrec.distill.runner import ablate

    report = ablate(teacher, student, methods.split(",") if methods else None, seeds=_parse_ints(seeds, "--seeds"),
                    dims=_parse_ints(dims, "--dims"), train_params=_distill_train_params(epochs, train_option),
                    out=out)
    console.print(report["markdown"], markup=False, highlight=False)
    console.print(f"wrote {out / 'ablation.json'} and {out / 'ablation.md'}")


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

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Exit):
            sys.exit(exc.exit_code)
        raise
