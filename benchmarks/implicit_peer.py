"""distillrec's MF-BPR beside implicit 0.7.3's CPU BPR and ALS: seconds per epoch, test quality, memory.

What is compared, per data set, in one run on one split (random 8:1:1 per user through our own
`distillrec.split(data, "random", seed=--seed)`; every side trains on the same train part and
is tested by the same Evaluator):

  ours-mf-bpr   distillrec "mf" (dim 64, BPR loss) through our Trainer: Adam lr 1e-3, batch
                2048, 1 uniform negative, weight decay 0, --epochs epochs, validated once at
                the end (eval_every = epochs, so no early stopping can happen);
  ours-mf-bpr-sparse
                the same with embedding_updates "sparse" (lazy Adam on the batch's rows only,
                BENCHMARKS.md "Sparse embedding updates"): dense and sparse side by side;
  ours-mf-bpr-b4096, ours-mf-bpr-b8192
                the dense MF-BPR with batch 4096 / 8192 and the learning rate scaled with the
                batch (2e-3 / 4e-3): the batch is ours to choose (implicit has none: one triple
                per update), and fewer, larger steps cost less per epoch; their quality shows
                what the larger batch costs or gains at the same epochs;
  implicit-bpr  implicit.cpu.bpr.BayesianPersonalizedRanking(factors=64, iterations=--epochs,
                num_threads=--threads, random_state=--seed), its default learning_rate 0.01
                and regularization 0.01 (its defaults are tuned for its own plain SGD; ours
                are RecBole's for Adam, so neither side is handicapped by the other's values);
  implicit-als  implicit.cpu.als.AlternatingLeastSquares(factors=64, num_threads=--threads,
                random_state=--seed), every other setting its default (15 iterations,
                regularization 0.01, alpha 1.0, conjugate gradient); a different algorithm,
                shown as the usual fast baseline, not as the same work.

Why the two BPR sides do the same work per epoch: both make one SGD pass over the training
interactions, len(train) BPR updates of (user, positive, one sampled negative), each touching
one user row and two item rows of 64 floats. Differences in *how*, which the numbers include:
  - ours visits every training interaction once (a permutation) in mini-batches of 2048 with
    Adam over the whole tables; implicit draws len(train) interactions *with replacement* and
    applies plain SGD to one triple at a time, lock-free across threads (Hogwild);
  - ours draws negatives uniformly over the catalogue and redraws any that is a training
    positive of the user; implicit takes the item of another random training interaction (so
    negatives follow item popularity) and *skips* the update when that item is a positive of
    the user (verify_negative_samples), so it makes fewer than len(train) updates per epoch:
    the row's `skipped_fraction` says how many it dropped;
  - implicit's BPR learns an item bias: its factors have 65 columns, the last being 1 for every
    user (never updated) and the bias for items, so user_factors @ item_factors.T is its score
    including the bias; ours has no bias.

Measured per (data, model), each in its own child process (so peak RSS is that run's own
high-water mark, from wait4 like benchmarks/peer_benchmark.py; it includes the Python + torch
baseline, `rss_after_imports_bytes`, because every child also runs our Evaluator):
  seconds_per_epoch  ours: the mean of the Trainer's per-epoch `train_seconds` (training steps
                     only; the final validation is not counted); implicit: fit wall time /
                     iterations (the CSR train matrix is built before the timer starts)
  fit_seconds        ours: Trainer.fit wall time minus its one validation (so it includes the
                     batch-source set-up, as implicit's includes its own); implicit: model.fit;
                     library imports are outside every timer (implicit's modules, and
                     torch._dynamo, which torch's first Optimizer imports: about 1 s)
  ndcg@10, recall@10 test part, full ranking, train + valid items masked (our Evaluator)
Time to the same quality (the house rule for timing a peer; --trace): every side also scores the
test part after each of its epochs (iterations), outside its timers, and the parent reports the
seconds each needed to first reach implicit BPR's own final test NDCG@10: cumulative per-epoch
seconds (ours: the Trainer's `train_seconds`; implicit: the seconds its fit callback reports per
iteration). Test is read only to time the sides; nothing is chosen by it. Without --trace no
side evaluates between epochs, and the per-epoch figures are the plain ones.
Threads: --threads T on both sides: ours through distillrec.threads and TrainConfig.num_threads
(torch intra-op threads); implicit through num_threads=T (its OpenMP loop), with its BLAS held
to 1 thread by threadpoolctl during the fit, as implicit itself asks (its per-user solver calls
BLAS inside the parallel loop; a threaded BLAS there oversubscribes the cores).

    .venv/bin/python benchmarks/implicit_peer.py [--sizes ml-1m[,10m]] [--epochs 20]
        [--threads 2] [--seed 0] [--models M1,M2] [--trace] [--rounds 1] [--out benchmarks/out/implicit_peer.json]
        [--timeout 3600]

Sizes: the built-in "ml-100k" and "ml-1m", and the synthetic logs of benchmarks/cost_curves.py
("10m", "50m"; generated once by its code into benchmarks/out/cost_curves/data/, before any
child starts). Needs implicit: `make bench-setup` (the `bench` extra). Speeds are comparable
only as ratios within one run: the cores here are shared, and their speed moves by about 1.5x from
one minute to the next (the same ML-1M epoch measured 0.27 and 0.42 s minutes apart). --rounds R
runs every model R times, interleaved, pairs the ratios within a round and reports their median
and range over rounds ("over_rounds" in the JSON), and each model's own figures (seconds per
epoch, fit seconds, quality, peak RSS) as medians over its rounds ("per_model").
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from distillrec import artifacts

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "out" / "implicit_peer.json"
BUILTIN = ("ml-100k", "ml-1m")
# Our MF-BPR sides: model name -> the TrainConfig settings that differ between them.
OUR_SIDES = {
    "ours-mf-bpr": {"batch_size": 2048, "lr": 1e-3, "embedding_updates": "dense"},
    "ours-mf-bpr-sparse": {"batch_size": 2048, "lr": 1e-3, "embedding_updates": "sparse"},
    "ours-mf-bpr-b4096": {"batch_size": 4096, "lr": 2e-3, "embedding_updates": "dense"},
    "ours-mf-bpr-b8192": {"batch_size": 8192, "lr": 4e-3, "embedding_updates": "dense"},
}
MODELS = (*OUR_SIDES, "implicit-bpr", "implicit-als")
FACTORS = 64
K = 10

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cost_curves  # noqa: E402  (benchmarks/ is no package: its synthetic-log generator and cache)


# --------------------------------------------------------------------------- child: one (data, model)

def _rss_now() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def load_split(size: str, seed: int):
    import distillrec as dr
    from distillrec.data.readers import stream_interactions

    data = stream_interactions(cost_curves.log_path(size)) if size in cost_curves.SYNTHETIC else dr.load_data(size)
    return data, dr.split(data, "random", seed=seed)


def train_matrix(split):
    """The train part as a users x items CSR of ones (float32, sorted indices): implicit's input."""
    import numpy as np
    import scipy.sparse

    train = split.train
    matrix = scipy.sparse.csr_matrix(
        (np.ones(len(train), dtype=np.float32), (train["user"].to_numpy(np.int64), train["item"].to_numpy(np.int64))),
        shape=(split.n_users, split.n_items))
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    matrix.sort_indices()
    return matrix


class QualityTrace:
    """Test NDCG@10 after every epoch, timed apart from training (module docstring, --trace)."""

    def __init__(self, split, enabled: bool):
        from distillrec.evaluation.evaluator import Evaluator

        self.enabled = enabled
        self.evaluator = Evaluator(split, ks=(K,), metrics=("ndcg",))
        self.ndcg: list[float] = []
        self.seconds = 0.0

    def record(self, scorer) -> None:
        if self.enabled:
            started = time.perf_counter()
            self.ndcg.append(self.evaluator.evaluate(scorer, "test")["ndcg@10"])
            self.seconds += time.perf_counter() - started


def run_ours(data, split, epochs: int, threads: int, seed: int, trace: QualityTrace, *,
             batch_size: int, lr: float, embedding_updates: str) -> dict[str, Any]:
    from distillrec.evaluation.scoring import model_scorer
    from distillrec.students.base import model_class
    from distillrec.train import TrainConfig, Trainer

    # torch's first Optimizer imports torch._dynamo (about 1 s, once per process): a library import,
    # kept out of the timer as implicit's imports are.
    import torch._dynamo  # noqa: F401

    model = model_class("mf").build(data, split, seed=seed, dim=FACTORS, rec_loss="bpr")
    config = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=0.0, n_negatives=1,
                         sampler="uniform", eval_every=epochs, patience=epochs, seed=seed, num_threads=threads,
                         embedding_updates=embedding_updates)
    # no run_dir: no checkpoints written; with --trace, test is scored after each epoch's record
    callbacks = [lambda record: trace.record(model_scorer(model, split, "test"))] if trace.enabled else []
    trainer = Trainer(model, split, config, progress=False, callbacks=callbacks)
    started = time.perf_counter()
    result = trainer.fit()
    wall = time.perf_counter() - started - trace.seconds
    epoch_s = [record["train_seconds"] for record in result.history]
    valid_s = sum(record.get("eval_seconds", 0.0) for record in result.history)
    return {"tool": "distillrec", "epochs": len(epoch_s), "epoch_seconds": epoch_s,
            "seconds_per_epoch": statistics.fmean(epoch_s), "fit_seconds": wall - valid_s,
            "validation_seconds": valid_s, "stopped_early": result.stopped_early,
            "params": {"model": "mf", "dim": FACTORS, "rec_loss": "bpr", **config.model_dump(mode="json")},
            "scorer": model_scorer(model, split, "test")}


def run_implicit(kind: str, split, epochs: int, threads: int, seed: int, als_iterations: int | None,
                 trace: QualityTrace) -> dict[str, Any]:
    import numpy as np
    import threadpoolctl
    import torch

    matrix_started = time.perf_counter()
    matrix = train_matrix(split)
    matrix_s = time.perf_counter() - matrix_started
    per_epoch: list[tuple] = []
    # Import first: implicit loads scipy's own OpenBLAS (its solvers' cython BLAS) and libgomp, and
    # threadpool_limits only reaches libraries already loaded. implicit warns at construction
    # when a BLAS is threaded, so the model is built inside the limits too.
    from implicit.cpu.als import AlternatingLeastSquares
    from implicit.cpu.bpr import BayesianPersonalizedRanking

    def after_iteration(*args) -> None:
        per_epoch.append(args)
        if trace.enabled:  # the factors as they stand after this iteration (implicit updates them in place)
            users, items = (torch.from_numpy(np.ascontiguousarray(t)) for t in (model.user_factors, model.item_factors))
            trace.record(lambda batch: users[batch] @ items.T)

    with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
        if kind == "bpr":
            model = BayesianPersonalizedRanking(factors=FACTORS, iterations=epochs, num_threads=threads,
                                                random_state=seed)
        else:
            model = AlternatingLeastSquares(factors=FACTORS, num_threads=threads, random_state=seed,
                                            **({"iterations": als_iterations} if als_iterations else {}))
        blas = [{"library": Path(api["filepath"]).name, "num_threads": api["num_threads"]}
                for api in threadpoolctl.threadpool_info() if api["user_api"] == "blas"]
        started = time.perf_counter()
        model.fit(matrix, show_progress=False, callback=after_iteration)
        fit_s = time.perf_counter() - started - trace.seconds
    users, items = np.asarray(model.user_factors), np.asarray(model.item_factors)
    row: dict[str, Any] = {
        "tool": "implicit " + importlib.metadata.version("implicit"), "epochs": model.iterations,
        "epoch_seconds": [args[1] for args in per_epoch],  # implicit's callback: (epoch, seconds, ...)
        "seconds_per_epoch": fit_s / model.iterations, "fit_seconds": fit_s, "matrix_seconds": matrix_s,
        "blas_during_fit": blas, "factor_shapes": {"user": list(users.shape), "item": list(items.shape)}}
    if kind == "bpr":
        # (epoch, seconds, correct, skipped): skipped = samples whose negative was a positive
        skipped = [args[3] for args in per_epoch]
        trained_users = np.diff(matrix.indptr) > 0
        row.update(params={"factors": model.factors, "learning_rate": model.learning_rate,
                           "regularization": model.regularization, "iterations": model.iterations,
                           "verify_negative_samples": model.verify_negative_samples,
                           "num_threads": model.num_threads, "random_state": seed},
                   samples_per_epoch=matrix.nnz,
                   skipped_fraction=statistics.fmean(skipped) / matrix.nnz if matrix.nnz else 0.0,
                   updates_per_epoch=matrix.nnz - statistics.fmean(skipped),
                   # the bias trick holds: last user column is exactly 1 for every trained user
                   bias_column_ones=bool(np.all(users[trained_users, -1] == 1.0)))
    else:
        row.update(params={"factors": model.factors, "regularization": model.regularization, "alpha": model.alpha,
                           "iterations": model.iterations, "use_cg": model.use_cg, "use_native": model.use_native,
                           "num_threads": model.num_threads, "random_state": seed})
    user_table, item_table = torch.from_numpy(np.ascontiguousarray(users)), torch.from_numpy(np.ascontiguousarray(items))
    row["scorer"] = lambda batch: user_table[batch] @ item_table.T
    return row


def child(size: str, model: str, epochs: int, threads: int, seed: int, als_iterations: int | None, out: Path,
          trace_enabled: bool = False) -> None:
    from distillrec import threads as dr_threads

    dr_threads.apply(threads)  # torch (our training, every side's evaluation) and child-process env
    import torch

    from distillrec.evaluation.evaluator import Evaluator

    dr_threads.ensure()

    baseline = _rss_now()
    started = time.perf_counter()
    data, split = load_split(size, seed)
    prep_s = time.perf_counter() - started
    trace = QualityTrace(split, trace_enabled)
    if model in OUR_SIDES:
        row = run_ours(data, split, epochs, threads, seed, trace, **OUR_SIDES[model])
    else:
        row = run_implicit(model.removeprefix("implicit-"), split, epochs, threads, seed, als_iterations, trace)
    if trace.enabled:
        row.update(test_ndcg_per_epoch=trace.ndcg, trace_seconds=trace.seconds)
    scorer = row.pop("scorer")
    started = time.perf_counter()
    metrics = Evaluator(split, ks=(K,), metrics=("ndcg", "recall", "hit")).evaluate(scorer, "test")
    row.update({"data": size, "model": model, "ndcg@10": metrics["ndcg@10"], "recall@10": metrics["recall@10"],
                "hit@10": metrics["hit@10"], "test_users": metrics["n_users"],
                "test_eval_seconds": time.perf_counter() - started, "data_prep_seconds": prep_s,
                "torch_threads": torch.get_num_threads(), "rss_after_imports_bytes": baseline,
                "split": {"name": "random", "ratios": [0.8, 0.1, 0.1], "seed": seed, "users": split.n_users,
                          "items": split.n_items, **{part: len(split.part(part)) for part in ("train", "valid", "test")}}})
    artifacts.write_json(out, row)


# --------------------------------------------------------------------------- parent

def run_child(size: str, model: str, args: argparse.Namespace, work: Path, round_: int = 1) -> dict[str, Any]:
    """One child process; its peak RSS comes from wait4 on its pid (polled, so --timeout holds)."""
    result, log = work / f"{size}-{model}-{round_}.json", work / f"{size}-{model}-{round_}.log"
    command = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(
        {"size": size, "model": model, "epochs": args.epochs, "threads": args.threads, "seed": args.seed,
         "als_iterations": args.als_iterations, "out": str(result), "trace": args.trace})]
    load_before = os.getloadavg()
    started = time.perf_counter()
    with log.open("w") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() - started > args.timeout:
                process.kill()
                _, status, usage = os.wait4(process.pid, 0)
                break
            time.sleep(0.1)
    process.returncode = code = os.waitstatus_to_exitcode(status)
    facts = {"data": size, "model": model, "round": round_, "process_wall_seconds": time.perf_counter() - started,
             "peak_rss_bytes": usage.ru_maxrss * 1024,  # KiB on Linux
             "load_avg_before": [round(x, 2) for x in load_before],
             "load_avg_after": [round(x, 2) for x in os.getloadavg()]}
    if code != 0 or not result.exists():
        tail = log.read_text().strip().splitlines()[-15:]
        why = f"timeout after {args.timeout:.0f} s" if time.perf_counter() - started > args.timeout else f"exit {code}"
        print(f"[implicit_peer] {size} {model}: {why}\n  " + "\n  ".join(tail), file=sys.stderr, flush=True)
        return {**facts, "status": why, "log_tail": tail}
    return {**json.loads(result.read_text()), **facts, "status": "ok"}


# model -> its key prefix in the comparisons: "ours", "ours_sparse", "ours_b4096", ...
OURS = {model: "ours" + model.removeprefix("ours-mf-bpr").replace("-", "_") for model in OUR_SIDES}


def comparisons(rows: list[dict]) -> list[dict]:
    """Per data set, round and our side (dense, sparse): its s/epoch / each implicit model's, and
    NDCG@10 differences (ours minus peer); with --trace, every side's seconds to implicit BPR's
    quality. Ratios pair runs of the same round only (run minutes apart, not half an hour)."""
    out = []
    for size, round_ in dict.fromkeys((row["data"], row["round"]) for row in rows):
        by_model = {row["model"]: row for row in rows
                    if row["data"] == size and row["round"] == round_ and row["status"] == "ok"}
        entry: dict[str, Any] = {"data": size, "round": round_}
        for model, tag in OURS.items():
            ours = by_model.get(model)
            for peer in ("implicit-bpr", "implicit-als"):
                if ours is not None and peer in by_model:
                    name, other = peer.removeprefix("implicit-"), by_model[peer]
                    entry[f"{tag}_s_per_epoch_over_implicit_{name}"] = ours["seconds_per_epoch"] / other["seconds_per_epoch"]
                    entry[f"{tag}_fit_s_over_implicit_{name}"] = ours["fit_seconds"] / other["fit_seconds"]
                    entry[f"ndcg@10_{tag}_minus_implicit_{name}"] = ours["ndcg@10"] - other["ndcg@10"]
        peer = by_model.get("implicit-bpr")
        if peer is not None and "test_ndcg_per_epoch" in peer:
            target = peer["ndcg@10"]
            reached = {model: seconds_to_reach(row, target) for model, row in by_model.items()}
            entry["time_to_quality"] = {"target_ndcg@10": target, "target": "implicit BPR's final test NDCG@10",
                                        **{f"{model}_seconds": value for model, value in reached.items()}}
            for model, tag in OURS.items():
                if reached.get(model) is not None and reached["implicit-bpr"]:
                    entry["time_to_quality"][f"{tag}_over_implicit_bpr"] = reached[model] / reached["implicit-bpr"]
        if len(entry) > 2:
            out.append(entry)
    return out


def over_rounds(entries: list[dict]) -> list[dict]:
    """Per data set, each ratio's median, min and max over the rounds (`comparisons` entries)."""
    out = []
    for size in dict.fromkeys(entry["data"] for entry in entries):
        mine = [entry for entry in entries if entry["data"] == size]
        flat = [{**{k: v for k, v in entry.items() if k not in ("data", "round", "time_to_quality")},
                 **{f"time_to_quality.{k}": v for k, v in entry.get("time_to_quality", {}).items()}} for entry in mine]
        keys = [k for k in dict.fromkeys(k for entry in flat for k in entry)
                if all(isinstance(entry.get(k), (int, float)) for entry in flat)]
        summary = {k: {"median": statistics.median(e[k] for e in flat), "min": min(e[k] for e in flat),
                       "max": max(e[k] for e in flat)} for k in keys}
        out.append({"data": size, "rounds": len(mine), **summary})
    return out


PER_MODEL_KEYS = ("seconds_per_epoch", "fit_seconds", "ndcg@10", "recall@10", "peak_rss_bytes")


def per_model(rows: list[dict]) -> list[dict]:
    """Per data set and model, each measured figure's median, min and max over its ok rounds:
    the per-model line BENCHMARKS.md quotes (the ratios' medians are in `over_rounds`)."""
    out = []
    for size, model in dict.fromkeys((row["data"], row["model"]) for row in rows):
        mine = [row for row in rows if row["data"] == size and row["model"] == model and row["status"] == "ok"]
        if mine:
            out.append({"data": size, "model": model, "rounds": len(mine), **{
                key: {"median": statistics.median(row[key] for row in mine), "min": min(row[key] for row in mine),
                      "max": max(row[key] for row in mine)} for key in PER_MODEL_KEYS}})
    return out


def per_model_table(summaries: list[dict]) -> str:
    header = ("data", "model", "rounds", "s/epoch median (min-max)", "fit s median", "NDCG@10 median",
              "peak RSS MB median")
    lines = [(s["data"], s["model"], str(s["rounds"]),
              f"{s['seconds_per_epoch']['median']:.4f} ({s['seconds_per_epoch']['min']:.4f}-{s['seconds_per_epoch']['max']:.4f})",
              f"{s['fit_seconds']['median']:.2f}", f"{s['ndcg@10']['median']:.4f}",
              f"{s['peak_rss_bytes']['median'] / 2**20:,.0f}") for s in summaries]
    widths = [max(len(cells[i]) for cells in [header, *lines]) for i in range(len(header))]
    render = lambda cells: "  ".join(cell.ljust(width) for cell, width in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([render(header), render(["-" * w for w in widths]), *map(render, lines)])


def seconds_to_reach(row: dict, target: float) -> float | None:
    """Cumulative per-epoch seconds until the row's test NDCG@10 first reaches `target` (None: never)."""
    elapsed = 0.0
    for seconds, ndcg in zip(row["epoch_seconds"], row.get("test_ndcg_per_epoch", ())):
        elapsed += seconds
        if ndcg >= target - 1e-12:  # the peer's own last epoch reaches its own figure exactly
            return elapsed
    return None


def machine_info(threads: int) -> dict[str, Any]:
    def version(name: str) -> str | None:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = None
    return {"cores": os.cpu_count(), "cores_available": affinity, "cpu": cpu, "machine": platform.machine(),
            "os": f"{platform.system()} {platform.release()}", "python": platform.python_version(),
            "torch": version("torch"), "implicit": version("implicit"), "numpy": version("numpy"),
            "scipy": version("scipy"), "threadpoolctl": version("threadpoolctl"), "threads": threads,
            # OpenMP's spin-waiting decides how threads fare on busy shared cores (see the README)
            "env": {name: os.environ.get(name) for name in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "DISTILLREC_THREADS")}}


def table(rows: list[dict]) -> str:
    header = ("data", "model", "round", "epochs", "s/epoch", "fit s", "NDCG@10", "Recall@10", "peak RSS MB", "note")
    lines = []
    for row in rows:
        if row["status"] != "ok":
            lines.append((row["data"], row["model"], str(row["round"]), "-", "-", "-", "-", "-",
                          f"{row['peak_rss_bytes'] / 2**20:,.0f}", row["status"]))
            continue
        note = f"skipped {100 * row['skipped_fraction']:.1f}% of samples" if "skipped_fraction" in row else ""
        lines.append((row["data"], row["model"], str(row["round"]), str(row["epochs"]), f"{row['seconds_per_epoch']:.4f}",
                      f"{row['fit_seconds']:.2f}", f"{row['ndcg@10']:.4f}", f"{row['recall@10']:.4f}",
                      f"{row['peak_rss_bytes'] / 2**20:,.0f}", note))
    widths = [max(len(cells[i]) for cells in [header, *lines]) for i in range(len(header))]
    render = lambda cells: "  ".join(cell.ljust(width) for cell, width in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([render(header), render(["-" * w for w in widths]), *map(render, lines)])


def ratio_lines(ratios: list[dict]) -> list[str]:
    lines = []
    for entry in ratios:
        for model, tag in OURS.items():
            for name in ("bpr", "als"):
                key = f"{tag}_s_per_epoch_over_implicit_{name}"
                if key in entry:
                    lines.append(f"{entry['data']} round {entry['round']}: {model} s/epoch / implicit {name.upper()} s/epoch = {entry[key]:.2f}; "
                                 f"fit s ratio {entry[f'{tag}_fit_s_over_implicit_{name}']:.2f}; NDCG@10 {model} - "
                                 f"implicit {name.upper()} = {entry[f'ndcg@10_{tag}_minus_implicit_{name}']:+.4f}")
        if "time_to_quality" in entry:
            quality = entry["time_to_quality"]
            reached = ", ".join(f"{key.removesuffix('_seconds')} {'never' if value is None else f'{value:.2f} s'}"
                                for key, value in quality.items() if key.endswith("_seconds"))
            ratios_text = "; ".join(f"{model} / implicit BPR = {quality[f'{tag}_over_implicit_bpr']:.2f}"
                                    for model, tag in OURS.items() if f"{tag}_over_implicit_bpr" in quality)
            lines.append(f"{entry['data']} round {entry['round']}: time to test NDCG@10 {quality['target_ndcg@10']:.4f} (implicit BPR's final): "
                         f"{reached}" + (f"; {ratios_text}" if ratios_text else ""))
    return lines


def round_summary_lines(summaries: list[dict]) -> list[str]:
    lines = []
    for summary in summaries:
        for key, value in summary.items():
            if isinstance(value, dict) and ("_over_" in key):
                lines.append(f"{summary['data']}, {summary['rounds']} rounds: {key} median {value['median']:.2f} "
                             f"(min {value['min']:.2f}, max {value['max']:.2f})")
    return lines


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="ml-1m",
                        help=f"comma-separated: {', '.join(BUILTIN + tuple(cost_curves.SYNTHETIC))} (default ml-1m)")
    parser.add_argument("--epochs", type=int, default=20, help="epochs of both BPR sides (default 20)")
    parser.add_argument("--als-iterations", type=int, default=None,
                        help="ALS iterations (default: implicit's own default, 15)")
    parser.add_argument("--threads", type=int, default=2, help="threads on every side (default 2)")
    parser.add_argument("--seed", type=int, default=0, help="split, init and sampling seed (default 0)")
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated subset of {', '.join(MODELS)}")
    parser.add_argument("--trace", action="store_true",
                        help="score test after every epoch (untimed) and report the time to implicit BPR's quality")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON result (default {DEFAULT_OUT.relative_to(REPO_ROOT)})")
    parser.add_argument("--rounds", type=int, default=1,
                        help="run every model this many times, interleaved (round 1: each model, round 2: each "
                             "model, ...); ratios pair runs of one round and are summarised by their median: this "
                             "machine's speed moves by 1.5x between minutes (default 1)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per child process (default 3600)")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # internal: one (data, model) run as JSON
    args = parser.parse_args(argv)
    if args.child is None:
        sizes = [s for s in args.sizes.split(",") if s]
        unknown = [s for s in sizes if s not in BUILTIN and s not in cost_curves.SYNTHETIC]
        if unknown or not sizes:
            parser.error(f"--sizes: unknown {unknown}; expected some of {BUILTIN + tuple(cost_curves.SYNTHETIC)}")
        if args.epochs < 1 or args.threads < 1 or args.rounds < 1 or (args.als_iterations is not None and args.als_iterations < 1):
            parser.error("--epochs, --threads, --rounds and --als-iterations must be positive")
        args.sizes = sizes
        models = [m for m in args.models.split(",") if m]
        if not models or any(m not in MODELS for m in models):
            parser.error(f"--models: expected some of {', '.join(MODELS)}, got {args.models!r}")
        args.models = models
    return args


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.child:
        spec = json.loads(args.child)
        child(spec["size"], spec["model"], spec["epochs"], spec["threads"], spec["seed"], spec["als_iterations"],
              Path(spec["out"]), spec.get("trace", False))
        return
    try:
        importlib.metadata.version("implicit")
    except importlib.metadata.PackageNotFoundError:
        sys.exit("implicit is not installed: run `make bench-setup` (pip install -e '.[bench]' with the pinned torch)")
    for size in args.sizes:
        if size in cost_curves.SYNTHETIC:
            cost_curves.log_path(size)  # generated (once) outside the timed children
    report: dict[str, Any] = {
        "command": shlex.join([".venv/bin/python", "benchmarks/implicit_peer.py", *argv]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": machine_info(args.threads),
        "settings": {"sizes": args.sizes, "models": args.models, "trace": args.trace, "epochs": args.epochs,
                     "rounds": args.rounds, "als_iterations": args.als_iterations or "implicit default",
                     "threads": args.threads, "seed": args.seed, "split": "random 8:1:1 per user", "k": K},
        "rows": [], "per_model": [], "comparisons": [], "over_rounds": []}
    with tempfile.TemporaryDirectory(prefix="implicit-peer-") as tmp:
        for size in args.sizes:
            for round_ in range(1, args.rounds + 1):
                for model in args.models:
                    print(f"[implicit_peer] {size} {model} round {round_} ...", flush=True)
                    row = run_child(size, model, args, Path(tmp), round_)
                    report["rows"].append(row)
                    report["per_model"] = per_model(report["rows"])
                    report["comparisons"] = comparisons(report["rows"])
                    report["over_rounds"] = over_rounds(report["comparisons"])
                    artifacts.write_json(args.out, report)  # after every child: an interrupted run keeps its rows
    print()
    print(table(report["rows"]))
    print()
    for line in ratio_lines(report["comparisons"]):
        print(line)
    if args.rounds > 1:
        print()
        print(per_model_table(report["per_model"]))
        print()
        for line in round_summary_lines(report["over_rounds"]):
            print(line)
    print(f"\nwrote {args.out}")
    if any(row["status"] != "ok" for row in report["rows"]):
        sys.exit(1)


if __name__ == "__main__":
    main()
