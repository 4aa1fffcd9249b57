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
        [--embedding-updates dense|sparse] [--skip-recbole] [--skip-scaling] [--write-md] [--render-only]

Each child is bounded by --timeout seconds; stages finished before a timeout are kept.
Results: one file per measurement under benchmarks/out/cost_curves/ (sizes/<size>.json,
recbole.json, scaling.json; a run replaces only what it measured), merged after every run and
by --render-only into benchmarks/out/cost_curves.json: {size: {"interactions", "users",
"items", "mf_epoch_seconds", "mf_epoch_seconds_per_million", "peak_rss_bytes", "status",
"<stage>_wall_seconds", "<stage>_cpu_seconds", "<stage>_peak_rss_bytes", ...}, "_peers": {...},
"_meta": {...}}. The tables are rendered from that file alone; --write-md replaces the
generated block of BENCHMARKS.md's "Scaling and cost curves" section with them.
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

from distillrec import artifacts

REPO_ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = REPO_ROOT / "benchmarks" / "out" / "cost_curves"
SIZES_DIR = OUT_DIR / "sizes"  # one file per measured size: the last measurement of each
CURVES_JSON = REPO_ROOT / "benchmarks" / "out" / "cost_curves.json"  # what the tables render from
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
# The target: MF epoch seconds per million interactions at the largest completed size
# within this factor of ML-1M's (the epoch cost grows no faster than the log).
PER_MILLION_TARGET = 1.5
REFERENCE_SIZE = "ml-1m"


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

    from distillrec.data.sources import load_dataset

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


def child(size: str, embedding_updates: str = "dense") -> None:
    """Run the stages on one log; print one JSON line per finished stage (kept on a timeout)."""
    import torch

    torch.set_num_threads(1)
    from distillrec.data.readers import stream_interactions
    from distillrec.data.splitting import make_split
    from distillrec.evaluation.evaluator import Evaluator
    from distillrec.students.base import model_class
    from distillrec.teachers.knowledge import top_k_rankings
    from distillrec.train import TrainConfig, Trainer

    state: dict = {}
    base = PeakRSS().now()  # after the imports: what any Python + torch process holds

    def stage(name: str, work) -> None:
        with PeakRSS() as rss:
            started, cpu = time.perf_counter(), time.process_time()
            extra = work() or {}
            seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        print(json.dumps({"stage": name, "seconds": seconds, "cpu_seconds": cpu, "peak_rss_bytes": rss.peak,
                          "rise_bytes": rss.peak - rss.start, "base_bytes": base, **extra}), flush=True)

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
        model = model_class("mf").build(state["ds"], split, seed=0)
        records = []

        def stop(record):
            records.append(record)
            raise _FirstEpochDone

        config = TrainConfig(epochs=2, eval_every=2, num_threads=1, embedding_updates=embedding_updates)
        trainer = Trainer(model, split, config, progress=False, callbacks=[stop])
        try:
            trainer.fit()
        except _FirstEpochDone:
            pass
        return {"train_seconds": records[0]["train_seconds"]}

    def evaluate():
        # An untrained MF: full-ranking cost does not depend on the weights' values.
        split = state["split"]
        model = model_class("mf").build(state["ds"], split, seed=0)
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


def run_child(size: str, timeout: float, embedding_updates: str = "dense") -> dict:
    log_path(size)  # generated outside the timed child
    command = [sys.executable, __file__, "--child", size, "--embedding-updates", embedding_updates]
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
              "embedding_updates": embedding_updates, "stages": {s.pop("stage"): s for s in stages}}
    print(f"[cost_curves] {size}: {status}; " + ", ".join(
        f"{name} {s['seconds']:.1f} s / {s['peak_rss_bytes'] / 2**20:.0f} MB"
        for name, s in result["stages"].items()), flush=True)
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
            "evaluate_s": report["test_eval_s"], "peak_rss_bytes": round(report["peak_rss_mb"] * 2**20)}


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


# --- results: per-measurement files -> cost_curves.json -> tables -------------------------------

def size_entry(result: dict) -> dict:
    """One size's row of cost_curves.json, flat, from a child's result (stages it did not
    finish are None)."""
    stages = result["stages"]
    read, mf = stages.get("read", {}), stages.get("mf_epoch")
    interactions = read.get("interactions")
    epoch = mf["train_seconds"] if mf else None
    entry = {"interactions": interactions, "users": read.get("users"), "items": read.get("items"),
             "train_interactions": stages.get("split", {}).get("train"),
             "mf_epoch_seconds": epoch,
             "mf_epoch_seconds_per_million": epoch / (interactions / 1e6) if epoch and interactions else None,
             "peak_rss_bytes": max((s["peak_rss_bytes"] for s in stages.values()), default=None),
             "base_rss_bytes": read.get("base_bytes"),
             "status": result["status"], "embedding_updates": result.get("embedding_updates", "dense"),
             "wall_seconds": result["wall_s"]}
    for name in STAGES:
        stage = stages.get(name, {})
        entry[f"{name}_wall_seconds"] = stage.get("seconds")
        entry[f"{name}_cpu_seconds"] = stage.get("cpu_seconds")
        entry[f"{name}_peak_rss_bytes"] = stage.get("peak_rss_bytes")
        entry[f"{name}_rise_bytes"] = stage.get("rise_bytes")
    if stages.get("evaluate", {}).get("ndcg@10") is not None:
        entry["evaluate_untrained_ndcg@10"] = stages["evaluate"]["ndcg@10"]
    return entry


def collect() -> dict:
    """Merge the per-measurement files (the last measurement of each size and peer) into the
    shape of cost_curves.json, sizes in order of interactions."""
    results = {}
    for path in sorted(SIZES_DIR.glob("*.json")):
        result = json.loads(path.read_text())
        results[result["size"]] = result
    measured = sorted((r for r in results.values() if "read" in r["stages"]),
                      key=lambda r: r["stages"]["read"]["interactions"])
    doc: dict = {r["size"]: size_entry(r) for r in measured}
    peers = {name: json.loads((OUT_DIR / f"{name}.json").read_text())
             for name in ("recbole", "scaling") if (OUT_DIR / f"{name}.json").exists()}
    doc["_peers"] = peers
    doc["_meta"] = {
        "script": "benchmarks/cost_curves.py",
        "command": sorted({r.get("command") for r in measured if r.get("command")}),
        "machine": sorted({r.get("machine") for r in measured if r.get("machine")}),
        "per_size": {r["size"]: {"command": r.get("command"), "machine": r.get("machine"),
                                 "measured_at": r.get("measured_at")} for r in measured},
        "torch_threads": 1,
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "fields": {"mf_epoch_seconds": "wall seconds of one MF-BPR epoch's training steps, as the Trainer "
                                       "records them (dim 64, batch 2048)",
                   "mf_epoch_seconds_per_million": "mf_epoch_seconds / (interactions / 1e6), interactions of "
                                                   "the whole log",
                   "peak_rss_bytes": "largest process RSS over the stages (each <stage>_peak_rss_bytes is "
                                     "that stage's)",
                   "<stage>_wall_seconds": "wall seconds of the stage (mf_epoch: set-up and the epoch)",
                   "<stage>_cpu_seconds": "process CPU seconds of the stage",
                   "<stage>_rise_bytes": "peak RSS of the stage above the RSS at its start",
                   "base_rss_bytes": "RSS after the imports, before any stage"},
    }
    return doc


def write_curves() -> dict:
    """Write cost_curves.json from the per-measurement files and return what was written."""
    artifacts.write_json(CURVES_JSON, collect())
    return json.loads(CURVES_JSON.read_text())


def sizes_of(doc: dict) -> dict[str, dict]:
    return {size: entry for size, entry in doc.items() if not size.startswith("_")}


def growth_exponent(points: list[tuple[float, float]]) -> float | None:
    """Slope b of log(y) = a + b log(x), least squares; None with fewer than 2 points."""
    points = [(math.log(x), math.log(y)) for x, y in points if x > 0 and y > 0]
    if len(points) < 2:
        return None
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    var = sum((x - mean_x) ** 2 for x, _ in points)
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / var if var else None


def per_million_ratio(sizes: dict[str, dict]) -> str:
    """The sentence comparing epoch seconds per million interactions at the largest size with a
    finished MF epoch to ML-1M's (the issue's target: within PER_MILLION_TARGET x)."""
    done = [(size, e) for size, e in sizes.items() if e.get("mf_epoch_seconds_per_million")]
    reference = sizes.get(REFERENCE_SIZE, {}).get("mf_epoch_seconds_per_million")
    head = "MF epoch seconds per million interactions"
    if not reference:
        return f"{head}: no {REFERENCE_SIZE} epoch measured, so no ratio to it."
    largest, entry = max(done, key=lambda item: item[1]["interactions"])
    if largest == REFERENCE_SIZE:
        return f"{head}: {reference:.2f} at {REFERENCE_SIZE}; no larger size finished its epoch, so no ratio."
    ratio = entry["mf_epoch_seconds_per_million"] / reference
    verdict = "within" if ratio <= PER_MILLION_TARGET else "outside"
    return (f"{head}: {entry['mf_epoch_seconds_per_million']:.2f} at {largest} (the largest size whose epoch "
            f"finished) vs {reference:.2f} at {REFERENCE_SIZE}: **{ratio:.2f}x**, {verdict} the "
            f"{PER_MILLION_TARGET}x target.")


def markdown(doc: dict) -> str:
    """The BENCHMARKS.md tables, from the contents of cost_curves.json alone."""
    sizes, meta, peers = sizes_of(doc), doc.get("_meta", {}), doc.get("_peers", {})
    commands = [c for c in meta.get("command", []) if c]
    if len(commands) == 1:
        command_line = f"Command: `{commands[0]}`"
    else:
        command_line = "Commands: " + "; ".join(
            f"{size}: `{m['command']}`" for size, m in meta.get("per_size", {}).items())
    modes = sorted({e["embedding_updates"] for e in sizes.values()})
    base = next((e["base_rss_bytes"] for e in sizes.values() if e.get("base_rss_bytes")), None)
    lines = [command_line, "",
             f"Machine: {', '.join(meta.get('machine', [])) or '—'}; 1 torch thread per process; no GPU in this "
             "session. Times are CPU seconds of the process (wall time on these shared cores ran 2-3x "
             "longer while other jobs ran); `mf_epoch` counts the batch-source and sampler set-up "
             f"plus one epoch (embedding updates: {', '.join(modes)}), and its wall seconds of training steps "
             "alone are in the epoch columns. Peak MB: process RSS high-water mark while the stage ran "
             f"(after-imports baseline {base / 2**20:,.0f} MB)." if base else "", "",
             "| data | interactions | users | items | " + " | ".join(f"{s} CPU s" for s in STAGES)
             + " | " + " | ".join(f"{s} peak MB" for s in STAGES)
             + " | epoch steps wall s | epoch s per M interactions | status |",
             "|---" * (7 + 2 * len(STAGES)) + "|"]
    for size, e in sizes.items():
        cells = [size, f"{e['interactions']:,}", f"{e['users']:,}", f"{e['items']:,}"]
        cells += ["—" if e[f"{s}_cpu_seconds"] is None else f"{e[f'{s}_cpu_seconds']:.2f}" for s in STAGES]
        cells += ["—" if e[f"{s}_peak_rss_bytes"] is None else f"{e[f'{s}_peak_rss_bytes'] / 2**20:,.0f}"
                  for s in STAGES]
        cells.append("—" if e["mf_epoch_seconds"] is None else f"{e['mf_epoch_seconds']:.2f}")
        per_million = e["mf_epoch_seconds_per_million"]
        cells.append("—" if per_million is None else f"{per_million:.2f}")
        lines.append("| " + " | ".join(cells) + f" | {e['status']} |")
    lines += ["", per_million_ratio(sizes)]
    large = [e for e in sizes.values() if e["interactions"] >= EXPONENT_FROM]
    lines += ["", "Growth with interactions: least-squares slope b of log cost vs log interactions over "
              f"the rows with at least {EXPONENT_FROM:,} interactions (below that, fixed set-up costs "
              "dominate); b = 1 is linear, and 10x data costs 10^b x:", "",
              "| stage | CPU-time exponent b | time x per 10x data | exponent of peak RSS above the "
              "after-imports baseline |", "|---|---|---|---|"]
    for s in STAGES:
        done = [e for e in large if e[f"{s}_cpu_seconds"] is not None]
        t = growth_exponent([(e["interactions"], e[f"{s}_cpu_seconds"]) for e in done])
        m = growth_exponent([(e["interactions"], e[f"{s}_peak_rss_bytes"] - e["base_rss_bytes"]) for e in done])
        lines.append(f"| {s} | {'—' if t is None else f'{t:.2f}'} | {'—' if t is None else f'{10 ** t:.1f}'} | "
                     f"{'—' if m is None else f'{m:.2f}'} |")
    if peers.get("recbole"):
        lines += ["", "RecBole 1.2.1 BPR beside ours (1 epoch, 1 thread, its own data preparation; "
                  "peak RSS is the whole process):", "",
                  "| data | RecBole data prep s | RecBole epoch s | ours epoch s | epoch ratio RecBole/ours | "
                  "RecBole full eval s | ours full eval s | RecBole peak MB | status |", "|---" * 9 + "|"]
        for peer in peers["recbole"]:
            mine = sizes.get(peer["dataset"], {})
            if peer["status"] != "ok":
                lines.append(f"| {peer['dataset']} | — | — | — | — | — | — | — | {peer['status']} |")
                continue
            epoch, evaluation = mine.get("mf_epoch_seconds"), mine.get("evaluate_wall_seconds")
            ratio = f"{peer['mf_epoch_s'] / epoch:.1f}" if epoch else "—"
            lines.append(f"| {peer['dataset']} | {peer['data_prep_s']:.1f} | {peer['mf_epoch_s']:.2f} | "
                         f"{epoch or 0:.2f} | {ratio} | {peer['evaluate_s']:.2f} | {evaluation or 0:.2f} | "
                         f"{peer['peak_rss_bytes'] / 2**20:,.0f} | ok |")
    if peers.get("scaling"):
        sc = peers["scaling"]
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
    parser.add_argument("--embedding-updates", choices=("dense", "sparse"), default="dense",
                        help="the mf_epoch stage's TrainConfig.embedding_updates")
    parser.add_argument("--skip-recbole", action="store_true")
    parser.add_argument("--skip-scaling", action="store_true")
    parser.add_argument("--scaling-epochs", type=int, default=2)
    parser.add_argument("--write-md", action="store_true", help="write the tables into BENCHMARKS.md")
    parser.add_argument("--render-only", action="store_true",
                        help="measure nothing: merge the saved results into cost_curves.json and render it "
                             "(with --write-md: into BENCHMARKS.md)")
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.embedding_updates)
        return
    if not args.render_only:
        measure(args, argv if argv is not None else sys.argv[1:])
    doc = write_curves()
    print(f"[cost_curves] wrote {CURVES_JSON}", flush=True)
    text = markdown(doc)
    print(text)
    if args.write_md:
        write_markdown(text)


def measure(args: argparse.Namespace, argv: list[str]) -> None:
    """Run the children and peers named by args; save each result as it finishes."""
    command = "python benchmarks/cost_curves.py " + " ".join(argv)
    machine = f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}"
    sizes = args.sizes.split(",")
    for size in sizes:
        result = run_child(size, args.timeout, args.embedding_updates)
        artifacts.write_json(SIZES_DIR / f"{size}.json", {
            **result, "command": command, "machine": machine, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    if not args.skip_recbole:
        peers = [recbole(name, args.timeout) for name in ("ml-100k", "ml-1m") if name in sizes]
        print(f"[cost_curves] recbole: {peers}", flush=True)
        artifacts.write_json(OUT_DIR / "recbole.json", peers)
    if not args.skip_scaling:
        scaled = scaling("ml-1m", args.scaling_epochs, args.timeout)
        print(f"[cost_curves] scaling: {scaled}", flush=True)
        artifacts.write_json(OUT_DIR / "scaling.json", scaled)


if __name__ == "__main__":
    main()
