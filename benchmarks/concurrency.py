"""Two runs at once on this machine's cores: how much slower is each than the same run alone?

The job is one plain `distillrec train` command (MF on --dataset, --epochs epochs, no early
stop), run as a separate process, so what is timed is what a user who starts two runs sees.
Three ways of running it, interleaved --repeats times (alone, pair, pair, alone, ...) so that a
change in the machine's load hits every way alike:

  alone          one job, its threads left to distillrec's default (the cores of its CPU set)
  pair-default   two identical jobs at once, each left to the default: each takes every core,
                 so the cores are oversubscribed (the threads setting does not know the other run)
  pair-divided   two jobs at once with DISTILLREC_THREADS = cores / 2 each: the cores divided
  alone-libgomp, pair-libgomp
                 alone and pair-default with GOMP_SPINCOUNT=300000 (libgomp's own default):
                 the behaviour before distillrec.threads shortened the spin, i.e. the "before"

For each job: process wall seconds (imports, data, training, evaluation: the whole command),
the Trainer's training-step seconds (train.json), and its peak RSS (wait4). The ratio is a
paired job's wall over the median alone wall of the same spin setting; the target of issue 19 is <= 2.2x.

    .venv/bin/python benchmarks/concurrency.py [--dataset ml-1m] [--epochs 10] [--repeats 3]
        [--out benchmarks/out/concurrency.json]

Writes the JSON with every job and the medians, and prints the table. Timings are ratios within
this one run; nothing else should run beside it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "src"))

from distillrec import artifacts, threads  # noqa: E402

DEFAULT_OUT = REPO_ROOT / "benchmarks" / "out" / "concurrency.json"
MODES = ("alone", "pair-default", "pair-divided", "alone-libgomp", "pair-libgomp")
LIBGOMP_SPIN = "300000"


def job_command(args: argparse.Namespace, out: Path) -> list[str]:
    distillrec = Path(sys.executable).with_name("distillrec")
    return [str(distillrec), "train", "--model", "mf", "--dataset", args.dataset, "--epochs", str(args.epochs),
            "--patience", str(args.epochs), "--seed", "0", "--out", str(out)]


def run_jobs(commands: list[list[str]], env: dict[str, str], work: Path) -> list[dict[str, Any]]:
    """Start every command at once and wait for all; each one's wall seconds and peak RSS."""
    facts: dict[int, dict[str, Any]] = {}
    with contextlib.ExitStack() as logs:
        started = time.perf_counter()
        processes = [subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                                      stderr=logs.enter_context((work / f"job{i}.err").open("w")))
                     for i, command in enumerate(commands)]
        while len(facts) < len(processes):
            for i, process in enumerate(processes):
                if i in facts:
                    continue
                pid, status, usage = os.wait4(process.pid, os.WNOHANG)
                if pid:
                    facts[i] = {"wall_seconds": time.perf_counter() - started,
                                "exit": os.waitstatus_to_exitcode(status), "peak_rss_bytes": usage.ru_maxrss * 1024}
            time.sleep(0.05)
    for i, command in enumerate(commands):
        if facts[i]["exit"] != 0:
            tail = (work / f"job{i}.err").read_text().strip().splitlines()[-10:]
            raise SystemExit(f"[concurrency] job failed (exit {facts[i]['exit']}): {' '.join(command)}\n  "
                             + "\n  ".join(tail))
        train = json.loads((Path(command[-1]) / "train.json").read_text())
        facts[i]["train_seconds"] = sum(record["train_seconds"] for record in train["history"])
        facts[i]["epochs"] = len(train["history"])
    return [facts[i] for i in range(len(commands))]


def measure(args: argparse.Namespace) -> dict[str, Any]:
    cores = threads.available_cores()
    divided = max(1, cores // 2)
    base_env = {k: v for k, v in os.environ.items()
                if k not in (threads.ENV, "OMP_NUM_THREADS", "MKL_NUM_THREADS", "GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    envs = {"alone": base_env, "pair-default": base_env, "pair-divided": {**base_env, threads.ENV: str(divided)},
            "alone-libgomp": {**base_env, "GOMP_SPINCOUNT": LIBGOMP_SPIN},
            "pair-libgomp": {**base_env, "GOMP_SPINCOUNT": LIBGOMP_SPIN}}
    jobs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="distillrec-concurrency-") as tmp:
        work = Path(tmp)
        order = [mode for r in range(args.repeats) for mode in (MODES if r % 2 == 0 else MODES[::-1])]
        for n, mode in enumerate(order):
            outs = [work / f"run{n}-{i}" for i in range(1 if mode.startswith("alone") else 2)]
            load_before = os.getloadavg()[0]
            results = run_jobs([job_command(args, out) for out in outs], envs[mode], work)
            for out, result in zip(outs, results):
                jobs.append({"mode": mode, "repeat": n, "load_before": round(load_before, 2), **result})
                shutil.rmtree(out, ignore_errors=True)
            print(f"[concurrency] {mode}: " + ", ".join(f"{r['wall_seconds']:.1f} s" for r in results), flush=True)
    summary = {}
    for mode in MODES:
        reference = "alone-libgomp" if mode.endswith("libgomp") else "alone"
        alone = statistics.median(j["wall_seconds"] for j in jobs if j["mode"] == reference)
        alone_train = statistics.median(j["train_seconds"] for j in jobs if j["mode"] == reference)
        rows = [j for j in jobs if j["mode"] == mode]
        wall = statistics.median(j["wall_seconds"] for j in rows)
        train = statistics.median(j["train_seconds"] for j in rows)
        summary[mode] = {"jobs": len(rows), "median_wall_seconds": wall, "median_train_seconds": train,
                         "wall_ratio_to_alone": wall / alone, "train_ratio_to_alone": train / alone_train,
                         "max_wall_ratio_to_alone": max(j["wall_seconds"] for j in rows) / alone, "reference": reference,
                         "median_peak_rss_bytes": statistics.median(j["peak_rss_bytes"] for j in rows)}
    return {"command": " ".join(job_command(args, Path("OUT"))), "cores": cores, "repeats": args.repeats,
            "divided_threads": divided, "jobs": jobs, "summary": summary}


def table(result: dict[str, Any]) -> str:
    lines = [f"Job: `{result['command']}`; {result['cores']} cores; {result['repeats']} repeats, medians.", "",
             "| mode | threads per job | jobs | wall s | libgomp spin | x alone (median / worst) | training-step s | x alone | peak RSS MB |",
             "|---|---|---|---|---|---|---|---|---|"]
    default = f"{result['cores']} (default)"
    threads_of = {"alone": default, "pair-default": default, "pair-divided": str(result["divided_threads"]),
                  "alone-libgomp": default, "pair-libgomp": default}
    for mode, row in result["summary"].items():
        spin = LIBGOMP_SPIN if mode.endswith("libgomp") else threads.SPIN_COUNT
        lines.append(f"| {mode} | {threads_of[mode]} | {row['jobs']} | {row['median_wall_seconds']:.1f} | {spin} | "
                     f"{row['wall_ratio_to_alone']:.2f} / {row['max_wall_ratio_to_alone']:.2f} | "
                     f"{row['median_train_seconds']:.1f} | {row['train_ratio_to_alone']:.2f} | "
                     f"{row['median_peak_rss_bytes'] / 2**20:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="ml-1m", help="built-in data set of the job (default ml-1m)")
    parser.add_argument("--epochs", type=int, default=10, help="epochs of the job, no early stop (default 10)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of the three modes (default 3)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON result")
    args = parser.parse_args(argv)
    result = measure(args)
    artifacts.write_json(args.out, result)
    print(table(result))
    print(f"[concurrency] wrote {args.out}")


if __name__ == "__main__":
    main()
