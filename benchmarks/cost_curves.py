"""Cost curves: time and peak memory against the number of interactions, per pipeline stage.

Data: ML-100K and ML-1M (built-in, written once as Parquet) and synthetic logs with a
popularity skew (Zipf item popularity, log-normal user activity) of about 10M and 50M
interactions. Every log is read the same way, by `stream_interactions` (pyarrow record
batches), then split (random 8:1:1 per user), so each row of the table measures the same code.

Stages, each in one child process per data set (fresh memory high-water mark), 1 torch thread:
  read      stream the Parquet log into a Dataset
  split     random split
  mf_epoch  one MF-BPR epoch through the one Trainer (dim 64, batch 2048; its training steps
            only, as the Trainer records them)
  evaluate  one full-ranking evaluation of the test part (every user, every item, seen masked)
  topk      teacher top-100 extraction (`top_k_rankings`, the knowledge step) with the
            scorer of an LM-teacher-shaped model: 384-dim user and item vectors (MiniLM's
            width), random and untrained; it times the ranking machinery, not a teacher's quality
Peak memory per stage: the process RSS sampled every 5 ms while the stage runs (torch
allocations are invisible to tracemalloc), reported as the stage's peak and its rise over the
RSS at the stage's start.

Also: the growth exponent b of time ~ interactions^b (least squares on log-log), RecBole 1.2.1
BPR (peer venv, 1 epoch, 1 thread) on ML-100K and ML-1M, and the 2-process (torchrun, gloo,
1 thread each) vs 1-process time of an MF epoch on ML-1M (scaling efficiency T1 / (2 T2)).

    .venv/bin/python benchmarks/cost_curves.py [--sizes ml-100k,ml-1m,10m,50m] [--timeout 900]
        [--skip-recbole] [--skip-scaling] [--write-md] [--render-only]

Each child is bounded by --timeout seconds; stages finished before a timeout are kept.
Results: benchmarks/out/cost_curves/*.json; --write-md replaces the generated block of
BENCHMARKS.md's "Scaling and cost curves" section.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = REPO_ROOT / "benchmarks" / "out" / "cost_curves"
PEER_PYTHON = REPO_ROOT / "benchmarks" / ".peer-venv" / "bin" / "python"
PEER_SCRIPT = REPO_ROOT / "benchmarks" / "recbole_peer.py"
BENCHMARKS_MD = REPO_ROOT / "BENCHMARKS.md"
SECTION_HEADING = "## Scaling and cost curves (issue: scale out)"
GENERATED_BEGIN = "<!-- cost_curves.py: generated tables begin -->"
GENERATED_END = "<!-- cost_curves.py: generated tables end -->"
# mf_epoch last: on the largest logs it is the stage a timeout may cut short.
STAGES = ("read", "split", "evaluate", "topk", "mf_epoch")
# Synthetic logs: interactions -> (users, items). Users grow with the log (about 140
# interactions each, ML-1M has 165), the catalogue more slowly, as in real services.
SYNTHETIC = {"10m": (10_000_000, 70_000, 10_000), "50m": (50_000_000, 350_000, 20_000)}
TEACHER_DIM = 384
EXPONENT_FROM = 1_000_000
TOP_K = 100


# --- data ------------------------------------------------------------------------------------

def synthetic_log(path: Path, n_interactions: int, n_users: int, n_items: int, seed: int = 0,
                  zipf: float = 1.0) -> None:
    """A Parquet log with Zipf(zipf) item popularity and log-normal user activity; each user's
    items are distinct (drawn with replacement, duplicates dropped, topped up by oversampling)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, n_items + 1) ** zipf
    cdf = np.cumsum(popularity / popularity.sum())
    item_of_rank = rng.permutation(n_items)  # popular items are not the low ids
    activity = rng.lognormal(0.0, 1.0, n_users)
    counts = np.maximum(5, np.round(activity / activity.sum() * n_interactions)).astype(np.int64)
    counts = np.minimum(counts, n_items // 2)
    schema = pa.schema([("user_id", pa.int64()), ("item_id", pa.int64()), ("timestamp", pa.int64())])
    tmp = path.with_suffix(".tmp")
    with pq.ParquetWriter(tmp, schema) as writer:
        for start in range(0, n_users, 20_000):
            chunk = np.arange(start, min(start + 20_000, n_users))
            want = counts[chunk]
            users = np.repeat(chunk, 3 * want)  # oversample: popular items repeat
            items = item_of_rank[np.minimum(np.searchsorted(cdf, rng.random(len(users))), n_items - 1)]
            keys = users * n_items + items
            _, first = np.unique(keys, return_index=True)
            first.sort()  # draw order within each user
            users, items = users[first], items[first]
            starts = np.searchsorted(users, chunk)
            rank = np.arange(len(users)) - np.repeat(starts, np.diff(np.append(starts, len(users))))
            keep = rank < want[users - start]
            users, items = users[keep], items[keep]
            times = rng.integers(0, 10**9, len(users))
            writer.write_table(pa.table({"user_id": users, "item_id": items, "timestamp": times}, schema=schema))
    tmp.replace(path)


def builtin_log(path: Path, name: str) -> None:
    """A built-in MovieLens data set's interactions as Parquet (raw ids, rating, timestamp)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from distillrec.experiment import load_dataset

    ds = load_dataset(name)
    inter = ds.interactions
    table = pa.table({"user_id": ds.user_ids[inter["user"].to_numpy()].astype(str),
                      "item_id": ds.item_ids[inter["item"].to_numpy()].astype(str),
                      "rating": inter["rating"].to_numpy(), "timestamp": inter["timestamp"].to_numpy()})
    tmp = path.with_suffix(".tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)


def log_path(size: str) -> Path:
    path = OUT_DIR / "data" / f"{size}.parquet"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        if size in SYNTHETIC:
            synthetic_log(path, *SYNTHETIC[size])
        else:
            builtin_log(path, size)
        print(f"[cost_curves] wrote {path} in {time.perf_counter() - started:.0f} s", flush=True)
    return path


# --- child: one data set, every stage ---------------------------------------------------------

class PeakRSS:
    """Samples this process's resident set size every `interval` s in a thread."""

    def __init__(self, interval: float = 0.005):
        self.interval, self.peak, self._stop = interval, 0, threading.Event()
        self._page = os.sysconf("SC_PAGE_SIZE")

    def now(self) -> int:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * self._page

    def __enter__(self) -> "PeakRSS":
        self.start = self.peak = self.now()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, self.now())

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.now())


def child(size: str) -> None:
    """Run the stages on one log; print one JSON line per finished stage (kept on a timeout)."""
    import torch

    torch.set_num_threads(1)
    from distillrec.data.readers import stream_interactions
    from distillrec.data.splitting import make_split
    from distillrec.evaluation.evaluator import Evaluator
    from distillrec.experiment import registered_model
    from distillrec.teachers.knowledge import top_k_rankings
    from distillrec.train import TrainConfig, Trainer

    state: dict = {}
    base = PeakRSS().now()  # after the imports: what any Python + torch process holds

    def stage(name: str, work) -> None:
        with PeakRSS() as rss:
            started, cpu = time.perf_counter(), time.process_time()
            extra = work() or {}
            seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        print(json.dumps({"stage": name, "seconds": seconds, "cpu_seconds": cpu, "peak_rss_mb": rss.peak / 2**20,
                          "rise_mb": (rss.peak - rss.start) / 2**20,
                          "base_mb": base / 2**20, **extra}), flush=True)

    def read():
        state["ds"] = stream_interactions(log_path(size))
        ds = state["ds"]
        return {"interactions": len(ds.interactions), "users": ds.n_users, "items": ds.n_items}

    def split():
        state["split"] = make_split(state["ds"], "random", seed=0)
        return {"train": len(state["split"].train)}

    def mf_epoch():
        # Trainer.fit up to the end of epoch 1 of 2 (no validation runs after epoch 1; the
        # callback then stops the loop): batch source and sampler set-up plus one epoch.
        split = state["split"]
        model = registered_model("mf").build(state["ds"], split, seed=0)
        records = []

        def stop(record):
            records.append(record)
            raise _FirstEpochDone

        trainer = Trainer(model, split, TrainConfig(epochs=2, eval_every=2, num_threads=1), progress=False,
                          callbacks=[stop])
        try:
            trainer.fit()
        except _FirstEpochDone:
            pass
        return {"train_seconds": records[0]["train_seconds"]}

    def evaluate():
        # An untrained MF: full-ranking cost does not depend on the weights' values.
        split = state["split"]
        model = registered_model("mf").build(state["ds"], split, seed=0)
        model.eval()
        model.set_history(split.history("test"))
        with torch.no_grad():
            metrics = Evaluator(split, ks=(10, 20)).evaluate(model.score, "test")
        return {"ndcg@10": metrics["ndcg@10"], "n_users": metrics["n_users"]}

    def topk():
        split = state["split"]
        generator = torch.Generator().manual_seed(0)
        users = torch.randn(split.n_users, TEACHER_DIM, generator=generator)
        items = torch.randn(split.n_items, TEACHER_DIM, generator=generator)
        top_k_rankings(lambda rows: users[rows] @ items.T, split.history("valid"),
                       split.n_users, split.n_items, min(TOP_K, split.n_items))
        return {"k": min(TOP_K, split.n_items), "dim": TEACHER_DIM}

    for name, work in (("read", read), ("split", split), ("evaluate", evaluate), ("topk", topk),
                       ("mf_epoch", mf_epoch)):
        stage(name, work)


class _FirstEpochDone(Exception):
    pass


def run_child(size: str, timeout: float) -> dict:
    log_path(size)  # generated outside the timed child
    command = [sys.executable, __file__, "--child", size]
    started = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        stdout, status = done.stdout, "ok"
        if done.returncode != 0:
            status = f"exit {done.returncode}: {(done.stderr.strip().splitlines() or [''])[-1][:200]}"
    except subprocess.TimeoutExpired as exc:
        stdout = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        status = f"timeout after {timeout:.0f} s"
    stages = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    result = {"size": size, "status": status, "wall_s": time.perf_counter() - started,
              "stages": {s.pop("stage"): s for s in stages}}
    print(f"[cost_curves] {size}: {status}; " + ", ".join(
        f"{name} {s['seconds']:.1f} s / {s['peak_rss_mb']:.0f} MB" for name, s in result["stages"].items()), flush=True)
    return result


# --- peers: RecBole, and 2 processes vs 1 -----------------------------------------------------

def recbole(dataset: str, timeout: float) -> dict:
    if not PEER_PYTHON.exists():
        return {"dataset": dataset, "status": "no peer venv (benchmarks/peer_setup.sh)"}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        command = [str(PEER_PYTHON), str(PEER_SCRIPT), "--model", "BPR", "--dataset", dataset,
                   "--epochs", "1", "--threads", "1", "--out", str(out)]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"dataset": dataset, "status": f"timeout after {timeout:.0f} s"}
        if done.returncode != 0 or not out.exists():
            return {"dataset": dataset, "status": f"exit {done.returncode}: {done.stderr.strip()[-300:]}"}
        report = json.loads(out.read_text())
    return {"dataset": dataset, "status": "ok", "interactions": report["interactions"],
            "data_prep_s": report["data_prep_s"], "mf_epoch_s": report["train_epoch_s_mean"],
            "evaluate_s": report["test_eval_s"], "peak_rss_mb": report["peak_rss_mb"]}


def scaling(dataset: str, epochs: int, timeout: float) -> dict:
    """Seconds per MF epoch (training steps, rank 0) with 1 process and with 2 under torchrun."""
    result = {"dataset": dataset, "epochs": epochs}
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    for processes in (1, 2):
        with tempfile.TemporaryDirectory() as tmp:
            launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
                        if processes == 2 else [sys.executable])
            command = [*launcher, "-m", "distillrec", "train", "--model", "mf", "--dataset", dataset,
                       "--epochs", str(epochs), "--train-option", "num_threads=1",
                       "--train-option", f"eval_every={epochs}", "--out", str(Path(tmp) / "run")]
            try:
                subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout, check=True)
            except (subprocess.TimeoutExpired, subprocess.CalledProcessError) as exc:
                result[f"p{processes}_status"] = type(exc).__name__
                continue
            entry = json.loads((Path(tmp) / "run" / "metrics.json").read_text())["models"]["mf"]
            seconds = [h["train_seconds"] for h in entry["history"]]
            result[f"p{processes}_epoch_s"] = sum(seconds) / len(seconds)
            result[f"p{processes}_test_ndcg@10"] = entry["test"]["ndcg@10"]
    if "p1_epoch_s" in result and "p2_epoch_s" in result:
        result["speedup"] = result["p1_epoch_s"] / result["p2_epoch_s"]
        result["efficiency"] = result["speedup"] / 2
    return result


# --- report ------------------------------------------------------------------------------------

def growth_exponent(points: list[tuple[float, float]]) -> float | None:
    """Slope b of log(y) = a + b log(x), least squares; None with fewer than 2 points."""
    points = [(math.log(x), math.log(y)) for x, y in points if x > 0 and y > 0]
    if len(points) < 2:
        return None
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    var = sum((x - mean_x) ** 2 for x, _ in points)
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / var if var else None


def markdown(results: dict) -> str:
    curves = [r for r in results["curves"] if "read" in r["stages"]]
    lines = [f"Command: `{results['command']}`", "",
             f"Machine: {results['machine']}; 1 torch thread per process; no GPU in this session. "
             "Times are CPU seconds of the process (wall time on these shared cores ran 2-3x "
             "longer while other jobs ran); `mf_epoch` counts the batch-source and sampler set-up "
             "plus one epoch, and its wall seconds of training steps alone are in the last column. "
             "Peak MB: process RSS high-water mark while the stage ran (after-imports baseline "
             f"{curves[0]['stages']['read']['base_mb']:,.0f} MB)." if curves else "", "",
             "| data | interactions | users | items | " + " | ".join(f"{s} CPU s" for s in STAGES)
             + " | " + " | ".join(f"{s} peak MB" for s in STAGES) + " | epoch steps wall s | status |",
             "|---" * (6 + 2 * len(STAGES)) + "|"]
    for r in curves:
        read = r["stages"]["read"]
        cells = [r["size"], f"{read['interactions']:,}", f"{read['users']:,}", f"{read['items']:,}"]
        for key in ("cpu_seconds", "peak_rss_mb"):
            for s in STAGES:
                stage = r["stages"].get(s)
                cells.append("—" if stage is None else (f"{stage[key]:.2f}" if key == "cpu_seconds"
                                                        else f"{stage[key]:,.0f}"))
        epoch = r["stages"].get("mf_epoch", {}).get("train_seconds")
        cells.append("—" if epoch is None else f"{epoch:.2f}")
        lines.append("| " + " | ".join(cells) + f" | {r['status']} |")
    large = [r for r in curves if r["stages"]["read"]["interactions"] >= EXPONENT_FROM]
    lines += ["", "Growth with interactions: least-squares slope b of log cost vs log interactions over "
              f"the rows with at least {EXPONENT_FROM:,} interactions (below that, fixed set-up costs "
              "dominate); b = 1 is linear, and 10x data costs 10^b x:", "",
              "| stage | CPU-time exponent b | time x per 10x data | exponent of peak RSS above the "
              "after-imports baseline |", "|---|---|---|---|"]
    for s in STAGES:
        xs = [(r["stages"]["read"]["interactions"], r["stages"][s]) for r in large if s in r["stages"]]
        t = growth_exponent([(x, st["cpu_seconds"]) for x, st in xs])
        m = growth_exponent([(x, st["peak_rss_mb"] - st["base_mb"]) for x, st in xs])
        lines.append(f"| {s} | {'—' if t is None else f'{t:.2f}'} | {'—' if t is None else f'{10 ** t:.1f}'} | "
                     f"{'—' if m is None else f'{m:.2f}'} |")
    if results.get("recbole"):
        lines += ["", "RecBole 1.2.1 BPR beside ours (1 epoch, 1 thread, its own data preparation; "
                  "peak RSS is the whole process):", "",
                  "| data | RecBole data prep s | RecBole epoch s | ours epoch s | epoch ratio RecBole/ours | "
                  "RecBole full eval s | ours full eval s | RecBole peak MB | status |", "|---" * 9 + "|"]
        ours = {r["size"]: r["stages"] for r in curves}
        for peer in results["recbole"]:
            mine = ours.get(peer["dataset"], {})
            if peer["status"] != "ok":
                lines.append(f"| {peer['dataset']} | — | — | — | — | — | — | — | {peer['status']} |")
                continue
            epoch = mine.get("mf_epoch", {}).get("train_seconds")
            evaluation = mine.get("evaluate", {}).get("seconds")
            ratio = f"{peer['mf_epoch_s'] / epoch:.1f}" if epoch else "—"
            lines.append(f"| {peer['dataset']} | {peer['data_prep_s']:.1f} | {peer['mf_epoch_s']:.2f} | "
                         f"{epoch or 0:.2f} | {ratio} | {peer['evaluate_s']:.2f} | {evaluation or 0:.2f} | "
                         f"{peer['peak_rss_mb']:,.0f} | ok |")
    if results.get("scaling"):
        sc = results["scaling"]
        lines += ["", f"2 processes vs 1 (torchrun --standalone, gloo, 1 thread each) on {sc['dataset']}, "
                  f"MF-BPR, mean over {sc['epochs']} epochs of the training steps (rank 0), same global batch:", "",
                  "| 1 process s/epoch | 2 processes s/epoch | speed-up | efficiency | test NDCG@10 1 / 2 |",
                  "|---|---|---|---|---|"]
        if "speedup" in sc:
            lines.append(f"| {sc['p1_epoch_s']:.2f} | {sc['p2_epoch_s']:.2f} | {sc['speedup']:.2f} | "
                         f"{sc['efficiency']:.0%} | {sc['p1_test_ndcg@10']:.4f} / {sc['p2_test_ndcg@10']:.4f} |")
        else:
            lines.append(f"| {sc.get('p1_status', '—')} | {sc.get('p2_status', '—')} | — | — | — |")
    return "\n".join(lines) + "\n"


def write_markdown(text: str) -> None:
    block = f"{GENERATED_BEGIN}\n{text}{GENERATED_END}"
    current = BENCHMARKS_MD.read_text()
    if GENERATED_BEGIN in current:
        before, rest = current.split(GENERATED_BEGIN, 1)
        updated = before + block + rest.split(GENERATED_END, 1)[1]
    else:
        updated = current.rstrip("\n") + f"\n\n{SECTION_HEADING}\n\n{block}\n"
    tmp = BENCHMARKS_MD.with_suffix(".md.tmp")
    tmp.write_text(updated)
    tmp.replace(BENCHMARKS_MD)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--sizes", default="ml-100k,ml-1m,10m,50m")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per child process")
    parser.add_argument("--skip-recbole", action="store_true")
    parser.add_argument("--skip-scaling", action="store_true")
    parser.add_argument("--scaling-epochs", type=int, default=2)
    parser.add_argument("--write-md", action="store_true", help="write the tables into BENCHMARKS.md")
    parser.add_argument("--render-only", action="store_true",
                        help="measure nothing: render the last results.json (with --write-md: into BENCHMARKS.md)")
    args = parser.parse_args(argv)
    if args.child:
        child(args.child)
        return
    if args.render_only:
        text = markdown(json.loads((OUT_DIR / "results.json").read_text()))
        print(text)
        if args.write_md:
            write_markdown(text)
        return
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    results = {"command": "python benchmarks/cost_curves.py " + " ".join(argv if argv is not None else sys.argv[1:]),
               "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
               "curves": [run_child(size, args.timeout) for size in args.sizes.split(",")]}
    if not args.skip_recbole:
        results["recbole"] = [recbole(name, args.timeout) for name in ("ml-100k", "ml-1m")
                              if name in args.sizes.split(",")]
        print(f"[cost_curves] recbole: {results['recbole']}", flush=True)
    if not args.skip_scaling:
        results["scaling"] = scaling("ml-1m", args.scaling_epochs, args.timeout)
        print(f"[cost_curves] scaling: {results['scaling']}", flush=True)
    (OUT_DIR / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    text = markdown(results)
    print(text)
    if args.write_md:
        write_markdown(text)


if __name__ == "__main__":
    main()
