"""distillrec's MF-BPR and SASRec side by side with RecBole 1.2.1, on this machine.

Each comparison trains our student (in a child process of the main venv) and RecBole's model
(benchmarks/recbole_peer.py in the peer venv, see benchmarks/README.md) one after the other,
with the same torch thread count, and reports test quality, seconds per training epoch and
their ratio, evaluation seconds, total training time, epochs and the child's peak RSS.
Speeds are only compared as ratios from one run: these cores are shared and noisy.

    .venv/bin/python benchmarks/peer_benchmark.py [--threads 1] [--only NAME ...]
        [--recbole-ml1m-epochs 30] [--sasrec-ml1m-epochs 20] [--reuse]

A default run takes about 30 minutes here (RecBole's one SASRec epoch alone ~7 min); the
comparison "sasrec-ml1m" (ours only, ~5 min per epoch on one loaded thread) runs only when
named with --only.

Writes one JSON per run and benchmarks/out/peer_benchmark.json (git-ignored), then the
tables into BENCHMARKS.md between the GENERATED_* markers under SECTION_HEADING (the rest of
that file, the findings written around the tables included, is left alone).
--reuse loads runs whose JSON already exists instead of running them again (to resume an
interrupted benchmark or rewrite the tables).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from distillrec import artifacts

REPO_ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = REPO_ROOT / "benchmarks" / "out"
PEER_PYTHON = REPO_ROOT / "benchmarks" / ".peer-venv" / "bin" / "python"
PEER_SCRIPT = REPO_ROOT / "benchmarks" / "recbole_peer.py"
BENCHMARKS_MD = REPO_ROOT / "BENCHMARKS.md"
SECTION_HEADING = "## Students vs RecBole (issue: students and the one training loop)"
# The generated tables sit between these markers, so a rerun keeps the hand-written findings.
GENERATED_BEGIN = "<!-- peer_benchmark.py: generated tables begin -->"
GENERATED_END = "<!-- peer_benchmark.py: generated tables end -->"
SEED = 2020  # RecBole's default seed; ours uses it for the split, the init and the batches
TEST_METRICS = ("ndcg", "recall", "hit")


@dataclass(frozen=True)
class OursSpec:
    """One distillrec training run: what the child process does."""

    model: str                      # a registered student: "mf" or "sasrec"
    dataset: str
    split: str                      # "random" (RecBole RS 8:1:1 sizes) or "loo"
    epochs: int = 300               # with early stopping (patience 10 on valid NDCG@10)
    rating_threshold: float | None = None
    k_core: int = 0
    # Test metrics with the seen items masked (True, our protocol) and/or kept (False,
    # RecBole's SASRec convention); the first is the one compared.
    test_masks: tuple[bool, ...] = (True,)
    # Validation (early stopping and the per-epoch curve) with seen items masked, or kept as
    # RecBole's SASRec validates: the same metric on both sides for time to quality.
    valid_mask: bool = True


@dataclass(frozen=True)
class PeerSpec:
    """One RecBole run (benchmarks/recbole_peer.py arguments)."""

    model: str                      # "BPR" or "SASRec"
    dataset: str
    epochs: int | None = None       # None: RecBole's 300 with early stopping


@dataclass(frozen=True)
class Comparison:
    name: str
    title: str
    ours: OursSpec
    peer: PeerSpec | None = None
    published: dict[str, float] = field(default_factory=dict)  # RecBole's published figures
    note: str = ""
    by_default: bool = True         # False: only with --only (too slow for a routine run)
    time_to_quality: bool = False   # compare seconds to the validation NDCG@10 both sides reach


def comparisons(recbole_ml1m_epochs: int, sasrec_ml1m_epochs: int, sasrec_recbole_epochs: int = 5) -> list[Comparison]:
    """Every comparison, quick ones first."""
    mf_100k = OursSpec("mf", "ml-100k", "random")
    mf_1m = OursSpec("mf", "ml-1m", "random")
    sasrec_100k = OursSpec("sasrec", "ml-100k", "loo", test_masks=(False, True))
    return [
        Comparison("bpr-ml100k", "MF-BPR vs BPR, ML-100K, both to convergence", mf_100k,
                   PeerSpec("BPR", "ml-100k")),
        Comparison("sasrec-ml100k-1epoch", "SASRec, ML-100K, 1 epoch each", replace(sasrec_100k, epochs=1),
                   PeerSpec("SASRec", "ml-100k", epochs=1),
                   note="RecBole's SASRec evaluation keeps seen items; ours is shown both ways"),
        Comparison("sasrec-ml100k", "SASRec, ML-100K, ours to convergence", sasrec_100k),
        Comparison("sasrec-ml100k-time-to-quality",
                   f"SASRec, ML-100K, time to the same valid NDCG@10 (RecBole capped at {sasrec_recbole_epochs} epochs)",
                   replace(sasrec_100k, test_masks=(False,), valid_mask=False),
                   PeerSpec("SASRec", "ml-100k", epochs=sasrec_recbole_epochs),
                   note="both validate as RecBole's SASRec does (seen items kept)", by_default=False,
                   time_to_quality=True),
        Comparison("bpr-ml1m-capped", f"MF-BPR vs BPR, ML-1M, {recbole_ml1m_epochs} epochs each",
                   replace(mf_1m, epochs=recbole_ml1m_epochs), PeerSpec("BPR", "ml-1m", recbole_ml1m_epochs)),
        Comparison("bpr-ml1m", f"MF-BPR, ML-1M, ours to convergence (RecBole capped at {recbole_ml1m_epochs})",
                   mf_1m, PeerSpec("BPR", "ml-1m", recbole_ml1m_epochs),
                   note="the RecBole side is the capped run above, reused"),
        Comparison("bpr-ml1m-published", "MF-BPR, ML-1M ratings >= 3, 10-core, vs RecBole's published BPR",
                   replace(mf_1m, rating_threshold=3, k_core=10),
                   published={"ndcg@10": 0.2407, "recall@10": 0.1725}),
        Comparison("sasrec-ml1m", f"SASRec, ML-1M, ours (max {sasrec_ml1m_epochs} epochs) vs RecBole's published SASRec",
                   replace(sasrec_100k, dataset="ml-1m", epochs=sasrec_ml1m_epochs),
                   published={"hit@10": 0.2468, "ndcg@10": 0.1286}, by_default=False),
    ]


# --------------------------------------------------------------------------- child processes

@dataclass
class ChildRun:
    result: dict[str, Any]
    peak_rss_mb: float
    wall_s: float
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]


def run_child(command: list[str], log: Path, result_file: Path) -> ChildRun:
    """Run a command with stdout+stderr to `log`; its peak RSS comes from wait4 on its pid."""
    load_before = os.getloadavg()
    started = time.perf_counter()
    with log.open("w") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
        _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    wall_s = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"{command[1]} failed with exit code {process.returncode}; see {log}")
    return ChildRun(json.loads(result_file.read_text()), round(usage.ru_maxrss / 1024, 1),  # KiB on Linux
                    round(wall_s, 1), load_before, os.getloadavg())


def run_peer(spec: PeerSpec, threads: int, name: str) -> dict[str, Any]:
    result_file = OUT_DIR / f"{name}.json"
    command = [str(PEER_PYTHON), str(PEER_SCRIPT), "--model", spec.model, "--dataset", spec.dataset,
               "--threads", str(threads), "--out", str(result_file)]
    if spec.epochs is not None:
        command += ["--epochs", str(spec.epochs)]
    child = run_child(command, OUT_DIR / f"{name}.log", result_file)
    return {**summarise_peer(child.result), **child_facts(child, command)}


def run_ours(spec: OursSpec, threads: int, name: str) -> dict[str, Any]:
    result_file = OUT_DIR / f"{name}.raw.json"
    command = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(asdict(spec)),
               "--threads", str(threads), "--child-out", str(result_file)]
    child = run_child(command, OUT_DIR / f"{name}.log", result_file)
    return {**child.result, **child_facts(child, command)}


def child_facts(child: ChildRun, command: list[str]) -> dict[str, Any]:
    return {"peak_rss_mb": child.peak_rss_mb, "process_wall_s": child.wall_s,
            "load_avg_before": [round(x, 2) for x in child.load_before],
            "load_avg_after": [round(x, 2) for x in child.load_after],
            "command": shlex.join(command)}


def summarise_peer(report: dict[str, Any]) -> dict[str, Any]:
    """RecBole's report in the same keys as ours."""
    epoch_s = report["train_epoch_s"]
    return {"tool": "recbole " + report["recbole_version"], "epochs_run": report["epochs_run"],
            "epoch_cap": report["epoch_cap"], "best_epoch": report["best_epoch"] + 1,  # 1-based, as ours
            "train_epoch_s_median": round(statistics.median(epoch_s), 4), "train_s_total": report["train_s_total"],
            "valid_s_mean": report["valid_epoch_s_mean"], "fit_wall_s": report["fit_wall_s"],
            "test_eval_s": report["test_eval_s"], "test": report["test"], "test_all": report["test_all"],
            "valid_ndcg10_per_epoch": report["valid_ndcg10_per_epoch"], "threads": report["torch_threads"],
            "train_epoch_s": report["train_epoch_s"],
            "data": {"users": report["users"], "items": report["items"], "interactions": report["interactions"],
                     "splits": report["splits"]}}


def ours_child(spec: OursSpec, threads: int) -> dict[str, Any]:
    """Train and test one of our students the way `distillrec train` does (checkpoints in a run
    directory), timing each stage; runs inside the child process."""
    import torch

    import distillrec.students  # noqa: F401  (registers the students)
    from distillrec.data.splitting import make_split
    from distillrec.evaluation.evaluator import Evaluator
    from distillrec.data.sources import load_dataset
    from distillrec.evaluation.scoring import model_scorer
    from distillrec.students.base import MODELS
    from distillrec.train import TrainConfig, Trainer

    torch.set_num_threads(threads)
    started = time.perf_counter()
    dataset = load_dataset(spec.dataset, rating_threshold=spec.rating_threshold, k_core=spec.k_core)
    split = make_split(dataset, spec.split, **({"seed": SEED} if spec.split == "random" else {}))
    data_prep_s = time.perf_counter() - started
    model = MODELS.get(spec.model).build(dataset, split, seed=SEED)
    config = TrainConfig(epochs=spec.epochs, seed=SEED, num_threads=threads)
    with tempfile.TemporaryDirectory(prefix="peer-benchmark-") as run_dir:
        trainer = Trainer(model, split, config, run_dir=run_dir, progress=False)
        if not spec.valid_mask:
            trainer.evaluator = Evaluator(split, ks=config.eval_ks, mask_history=False)
        started = time.perf_counter()
        result = trainer.fit()
        fit_wall_s = time.perf_counter() - started

    tests = {}
    for mask in spec.test_masks:
        evaluator = Evaluator(split, ks=(10, 20), metrics=TEST_METRICS, mask_history=mask)
        started = time.perf_counter()
        metrics = evaluator.evaluate(model_scorer(model, split, "test"), "test")
        tests[mask] = (metrics, time.perf_counter() - started)
    history = result.history
    epoch_s = [record["train_seconds"] for record in history]
    first_metrics, first_seconds = tests[spec.test_masks[0]]
    return {
        "tool": "distillrec", "spec": asdict(spec), "threads": torch.get_num_threads(),
        "epochs_run": len(history), "epoch_cap": spec.epochs, "best_epoch": result.best_epoch,
        "train_epoch_s_median": round(statistics.median(epoch_s), 4), "train_s_total": round(sum(epoch_s), 3),
        "train_epoch_s": [round(seconds, 4) for seconds in epoch_s],
        "valid_s_mean": round(statistics.mean(r["eval_seconds"] for r in history), 4),
        "fit_wall_s": round(fit_wall_s, 3), "data_prep_s": round(data_prep_s, 3),
        "test_eval_s": round(first_seconds, 4),
        "test": _at_10(first_metrics), "test_all": first_metrics,
        "test_by_mask": {("masked" if mask else "unmasked"): _at_10(metrics) for mask, (metrics, _) in tests.items()},
        "valid_ndcg10_per_epoch": [round(r["valid"]["ndcg@10"], 4) for r in history],
        "data": {"users": split.n_users, "items": split.n_items, "interactions": len(dataset.interactions),
                 "splits": {part: len(split.part(part)) for part in ("train", "valid", "test")}},
    }


def _at_10(metrics: dict[str, float]) -> dict[str, float]:
    return {f"{name}@10": float(metrics[f"{name}@10"]) for name in TEST_METRICS}


# --------------------------------------------------------------------------- the benchmark

def run_comparisons(chosen: list[Comparison], threads: int, reuse: bool) -> dict[str, dict]:
    """Each comparison's {"ours": ..., "recbole": ...}; RecBole runs shared by several are run once."""
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    done: dict[str, dict] = {}  # run name -> result

    def obtain(name: str, run) -> dict:
        path = OUT_DIR / f"{name}.result.json"
        if name not in done:
            if reuse and path.exists():
                done[name] = json.loads(path.read_text())
                print(f"[{now()}] {name}: reused {path.name}", flush=True)
            else:
                print(f"[{now()}] {name}: running", flush=True)
                done[name] = run()
                artifacts.write_json(path, done[name])
                print(f"[{now()}] {name}: done, {brief(done[name])}", flush=True)
        return done[name]

    results = {}
    for comparison in chosen:
        entry: dict[str, Any] = {"ours": obtain(f"ours-{comparison.name}",
                                                lambda: run_ours(comparison.ours, threads, f"ours-{comparison.name}"))}
        if comparison.peer is not None:
            peer = comparison.peer
            name = f"recbole-{peer.model.lower()}-{peer.dataset}" + (f"-{peer.epochs}ep" if peer.epochs else "")
            entry["recbole"] = obtain(name, lambda: run_peer(peer, threads, name))
            if comparison.time_to_quality:
                entry["time_to_quality"] = time_to_quality(entry["ours"], entry["recbole"])
                print(f"[{now()}] {comparison.name}: {entry['time_to_quality']}", flush=True)
        results[comparison.name] = entry
    return results


def time_to_quality(ours: dict, peer: dict) -> dict[str, Any]:
    """Training seconds each side needs to first reach the best validation NDCG@10 that *both*
    reach (the lower of the two bests), from the per-epoch curves and epoch times."""
    target = min(max(ours["valid_ndcg10_per_epoch"]), max(peer["valid_ndcg10_per_epoch"]))
    out: dict[str, Any] = {"target_valid_ndcg@10": target}
    for side, result in (("ours", ours), ("recbole", peer)):
        curve, seconds = result["valid_ndcg10_per_epoch"], result["train_epoch_s"]
        epoch = next(i for i, value in enumerate(curve) if value >= target)
        out[side] = {"epochs": epoch + 1, "train_seconds": round(sum(seconds[:epoch + 1]), 3),
                     "best_valid_ndcg@10": max(curve), "epochs_run": len(curve)}
    out["speedup"] = out["recbole"]["train_seconds"] / out["ours"]["train_seconds"]
    return out


def time_to_quality_lines(chosen: list[Comparison], results: dict[str, dict]) -> list[str]:
    rows = [(c, results[c.name]) for c in chosen if c.time_to_quality and "recbole" in results[c.name]]
    if not rows:
        return []
    lines = ["Time to the same quality: training seconds until each side first reaches the best validation "
             "NDCG@10 both reach (the lower of the two bests; validation every epoch):", "",
             "| comparison | target valid NDCG@10 | ours: epochs, train s | RecBole: epochs, train s | speed-up "
             "| best valid NDCG@10 ours / RecBole (epochs run) |", "| --- | ---: | ---: | ---: | ---: | --- |"]
    for comparison, entry in rows:
        t = entry["time_to_quality"]
        lines.append(f"| {comparison.title} | {t['target_valid_ndcg@10']:.4f} "
                     f"| {t['ours']['epochs']}, {t['ours']['train_seconds']:.1f} "
                     f"| {t['recbole']['epochs']}, {t['recbole']['train_seconds']:.1f} | {t['speedup']:.1f}x "
                     f"| {t['ours']['best_valid_ndcg@10']:.4f} ({t['ours']['epochs_run']}) / "
                     f"{t['recbole']['best_valid_ndcg@10']:.4f} ({t['recbole']['epochs_run']}) |")
    return lines + [""]


def brief(result: dict) -> str:
    test = ", ".join(f"{k} {v:.4f}" for k, v in result["test"].items())
    return f"{result['epochs_run']} epochs, {result['train_epoch_s_median']:.3f} s/epoch, {test}"


def now() -> str:
    return datetime.datetime.now().strftime("%H:%M:%S")


# --------------------------------------------------------------------------- BENCHMARKS.md

def percent_change(ours: float, reference: float) -> str:
    return f"{100 * (ours - reference) / reference:+.1f}%"


def markdown_section(chosen: list[Comparison], results: dict[str, dict], meta: dict) -> str:
    lines = [f"Measured {meta['date']} on {meta['machine']}, torch threads = {meta['threads']} on both sides "
             f"(RecBole {meta['recbole']}, torch {meta['torch']}). The cores are shared with other engineers' "
             "jobs (load average per run in the JSON), so absolute seconds are noisy: read speeds as the "
             "ratio within one row, where both sides ran back to back in one benchmark run.", "",
             "Protocol: every rating is a positive, no filtering unless stated, full ranking, seed 2020. "
             "MF-BPR vs BPR: random 8:1:1 per user (RecBole's part sizes; which interactions land where "
             "differs), dim 64, Adam lr 1e-3, batch 2048, 1 uniform negative, early stopping after 10 "
             "validations without a better valid NDCG@10, max 300 epochs; seen items masked. SASRec: "
             "leave-one-out in time order, CE over all items, dim 64, 2 layers, 2 heads, max length 50, "
             "dropout 0.5; RecBole's batch is 2048 prefixes, ours 128 windows of 50 (every position "
             "predicts its next item, so one epoch covers the same targets in one pass).", "",
             "| comparison | test NDCG@10 ours / RecBole (diff) | Recall@10 (BPR) or Hit@10 (SASRec) ours / RecBole "
             "| train s/epoch, median: ours / RecBole (speed-up) | eval s: valid pass, test ours / RecBole "
             "| train s total ours / RecBole | epochs run (best) ours / RecBole | peak RSS MB ours / RecBole |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for comparison in chosen:
        entry = results[comparison.name]
        ours, peer = entry["ours"], entry.get("recbole")
        second = "hit@10" if comparison.ours.model == "sasrec" else "recall@10"
        if peer is None:
            continue
        capped = " (capped)" if peer["epoch_cap"] and peer["epochs_run"] >= peer["epoch_cap"] else ""
        ours_capped = " (capped)" if ours["epochs_run"] >= ours["epoch_cap"] else ""
        lines.append(
            f"| {comparison.title} "
            f"| {ours['test']['ndcg@10']:.4f} / {peer['test']['ndcg@10']:.4f} "
            f"({percent_change(ours['test']['ndcg@10'], peer['test']['ndcg@10'])}) "
            f"| {ours['test'][second]:.4f} / {peer['test'][second]:.4f} "
            f"| {ours['train_epoch_s_median']:.3f} / {peer['train_epoch_s_median']:.3f} "
            f"({peer['train_epoch_s_median'] / ours['train_epoch_s_median']:.1f}x) "
            f"| {ours['valid_s_mean']:.2f}, {ours['test_eval_s']:.2f} / {peer['valid_s_mean']:.2f}, "
            f"{peer['test_eval_s']:.2f} "
            f"| {ours['train_s_total']:.0f} / {peer['train_s_total']:.0f} "
            f"| {ours['epochs_run']} ({ours['best_epoch']}){ours_capped} / "
            f"{peer['epochs_run']} ({peer['best_epoch']}){capped} "
            f"| {ours['peak_rss_mb']:.0f} / {peer['peak_rss_mb']:.0f} |")
    lines += ["", *comparison_notes(chosen, results), "", *time_to_quality_lines(chosen, results)]
    published = [c for c in chosen if c.published or c.ours.test_masks != (True,)]
    if published:
        lines += ["Ours against RecBole's published ML-1M figures, and SASRec with both evaluation "
                  "conventions (unmasked: seen items stay in the ranking, as in RecBole's SASRec):", "",
                  "| run | data | epochs run (best) | s/epoch median | test NDCG@10 | Recall@10 | Hit@10 "
                  "| published RecBole | diff NDCG@10 |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for comparison in published:
            lines += published_rows(comparison, results[comparison.name]["ours"])
        lines.append("")
    peer_commands = sorted({entry["recbole"]["command"].replace(str(REPO_ROOT) + "/", "")
                            for entry in results.values() if "recbole" in entry})
    lines += ["Commands (repository root; the script runs each of our students in a child process of "
              "itself, one per `OursSpec` in `comparisons()`, and RecBole as below):", "", "```bash",
              meta["command"], *peer_commands, "```", "",
              "Raw results: `benchmarks/out/peer_benchmark.json`, one `*.result.json` and one `*.log` per run.", ""]
    return "\n".join(lines)


def published_rows(comparison: Comparison, ours: dict) -> list[str]:
    spec = comparison.ours
    data = f"{spec.dataset}, {ours['data']['users']} users, {ours['data']['items']} items, " \
           f"{ours['data']['interactions']} interactions" + \
           (f", ratings >= {spec.rating_threshold:g}" if spec.rating_threshold is not None else "") + \
           (f", {spec.k_core}-core" if spec.k_core else "")
    capped = " (capped)" if ours["epochs_run"] >= ours["epoch_cap"] else ""
    published = comparison.published
    reference = ", ".join(f"{k} {v:.4f}" for k, v in published.items()) or "-"
    rows = []
    for label, metrics in ours.get("test_by_mask", {"masked": ours["test"]}).items():
        diff = percent_change(metrics["ndcg@10"], published["ndcg@10"]) if published else "-"
        rows.append(f"| {comparison.name}, {label} | {data} | {ours['epochs_run']} ({ours['best_epoch']}){capped} "
                    f"| {ours['train_epoch_s_median']:.3f} | {metrics['ndcg@10']:.4f} | {metrics['recall@10']:.4f} "
                    f"| {metrics['hit@10']:.4f} | {reference} | {diff} |")
    return rows


def comparison_notes(chosen: list[Comparison], results: dict[str, dict]) -> list[str]:
    notes = []
    for comparison in chosen:
        entry = results[comparison.name]
        if "recbole" not in entry:
            continue
        by_mask = entry["ours"]["test_by_mask"]
        extra = ""
        if len(by_mask) > 1:
            extra = f"ours with seen items masked: NDCG@10 {by_mask['masked']['ndcg@10']:.4f}, " \
                    f"Hit@10 {by_mask['masked']['hit@10']:.4f}"
        if comparison.note or extra:
            notes.append(f"- {comparison.title}: {'; '.join(filter(None, [comparison.note, extra]))}.")
    return notes


def write_section(tables: str) -> None:
    """Put the generated `tables` into BENCHMARKS.md between GENERATED_BEGIN and GENERATED_END,
    under SECTION_HEADING; hand-written text around them (findings) and other sections stay."""
    text = BENCHMARKS_MD.read_text() if BENCHMARKS_MD.exists() else "# Benchmarks\n"
    block = f"{GENERATED_BEGIN}\n{tables.strip()}\n{GENERATED_END}"
    if GENERATED_BEGIN in text and GENERATED_END in text:
        before, rest = text.split(GENERATED_BEGIN, 1)
        text = before + block + rest.split(GENERATED_END, 1)[1]
    else:
        text = f"{text.rstrip()}\n\n{SECTION_HEADING}\n\n{block}\n"
    artifacts.write_text(BENCHMARKS_MD, text)


def machine_meta(threads: int, argv: list[str]) -> dict[str, str]:
    import torch

    peer_version = subprocess.run([str(PEER_PYTHON), "-c", "import importlib.metadata as m; print(m.version('recbole'))"],
                                  capture_output=True, text=True, check=True).stdout.strip()
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"date": datetime.date.today().isoformat(),
            "machine": f"{os.cpu_count()} shared cores ({cpu}), Linux {platform.release()}, Python {platform.python_version()}",
            "threads": str(threads), "recbole": peer_version, "torch": torch.__version__,
            # The command that runs it all again (--reuse only reloads results).
            "command": shlex.join([".venv/bin/python", "benchmarks/peer_benchmark.py",
                                   *(arg for arg in argv if arg != "--reuse")])}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads on both sides (default 1)")
    parser.add_argument("--only", nargs="+", metavar="NAME",
                        help="run these comparisons only (sasrec-ml1m runs only when named: ~5 min/epoch)")
    parser.add_argument("--recbole-ml1m-epochs", type=int, default=30,
                        help="cap on RecBole's ML-1M BPR epochs (~7 s each on one thread)")
    parser.add_argument("--sasrec-ml1m-epochs", type=int, default=20, help="cap on our ML-1M SASRec epochs")
    parser.add_argument("--sasrec-recbole-epochs", type=int, default=5,
                        help="cap on RecBole's SASRec epochs in sasrec-ml100k-time-to-quality (minutes each)")
    parser.add_argument("--reuse", action="store_true", help="load runs whose result JSON exists")
    parser.add_argument("--no-markdown", action="store_true", help="do not touch BENCHMARKS.md")
    parser.add_argument("--child", help=argparse.SUPPRESS)       # internal: an OursSpec as JSON
    parser.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.child:
        spec = json.loads(args.child)
        spec = OursSpec(**{**spec, "test_masks": tuple(spec["test_masks"])})
        artifacts.write_json(args.child_out, ours_child(spec, args.threads))
        return
    if not PEER_PYTHON.exists():
        sys.exit(f"{PEER_PYTHON} not found: run `bash benchmarks/peer_setup.sh` first")
    every = comparisons(args.recbole_ml1m_epochs, args.sasrec_ml1m_epochs, args.sasrec_recbole_epochs)
    known = {c.name for c in every}
    if args.only and (unknown := sorted(set(args.only) - known)):
        sys.exit(f"unknown comparison(s) {unknown}; expected some of {sorted(known)}")
    chosen = [c for c in every if c.name in args.only] if args.only else [c for c in every if c.by_default]
    results = run_comparisons(chosen, args.threads, args.reuse)
    meta = machine_meta(args.threads, argv)
    artifacts.write_json(OUT_DIR / "peer_benchmark.json", {"meta": meta, "results": results})
    if not args.no_markdown:
        write_section(markdown_section(chosen, results, meta))
    print(f"[{now()}] all done", flush=True)


if __name__ == "__main__":
    main()
