"""Serving benchmark: in-process top-K latency, ANN recall against exact search, and an HTTP
load test of `distillrec serve` (N concurrent keep-alive clients on loopback), student vs teacher.

Bounded: every HTTP phase stops at --duration seconds or --max-requests requests, whichever
comes first. The load generator is a minimal asyncio HTTP/1.1 client (one connection per
client), so it spends as little of the shared CPU as possible; it still shares the machine
with the server, so read throughput as a lower bound for the server alone.

    python benchmarks/load_test.py --bundle BUNDLE_ML1M \
        [--ratio-bundle BUNDLE_ML100K --teacher-run TEACHER_RUN ...] [--clients 32] [--duration 10]

The teacher is served by the same app with its own scorer (`TeacherEngine`: the teacher
model's `score` per request, on its cached path: what does not depend on the user, such as the
LM teacher's item-tower output, is computed once), on the same data as --ratio-bundle, with the
same warm-up as the student, so the two runs differ only in the model that scores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SINGLE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


# --- in process -------------------------------------------------------------------------------

def in_process(bundle_path: Path, n: int, seed: int) -> dict:
    from distillrec.serving.bundle import load_bundle
    from distillrec.serving.engine import Engine

    started = time.perf_counter()
    bundle = load_bundle(bundle_path)
    load_seconds = time.perf_counter() - started
    out = {"load_seconds": load_seconds, "n_items": len(bundle.item_ids), "n_users": len(bundle.user_ids)}
    rng = random.Random(seed)
    users = [rng.choice(list(bundle.user_ids)) for _ in range(n)]
    for kind in ("exact", "hnsw"):
        engine = Engine.from_bundle(bundle, index=kind)
        for user in users[:50]:
            engine.recommend(user, 10)
        timings = []
        for user in users:
            t0 = time.perf_counter()
            engine.recommend(user, 10)
            timings.append(time.perf_counter() - t0)
        one = []
        for _ in range(n):  # the same user again and again: "top-10 for one user"
            t0 = time.perf_counter()
            engine.recommend(users[0], 10)
            one.append(time.perf_counter() - t0)
        out[kind] = {"p50_ms": 1000 * _pct(timings, 50), "p99_ms": 1000 * _pct(timings, 99),
                     "one_user_p50_ms": 1000 * _pct(one, 50)}
    return out


def ann_recall(bundle_path: Path, k: int = 10) -> dict:
    from distillrec.serving.bundle import load_bundle
    from distillrec.serving.engine import _per_user
    from distillrec.serving.index import ExactIndex, FaissIndex, recall_at_k

    bundle = load_bundle(bundle_path)
    queries = bundle.user_vectors
    seen = _per_user(bundle.seen, len(bundle.user_ids))
    exact = ExactIndex(bundle.item_vectors)
    results = {"queries": len(queries), "k": k, "asked": "one request per user, its seen items excluded "
               "(as the service asks)", "exact": {"ms_per_query": _ms_per_request(exact, queries, k, seen)}}
    nlist = int(np.sqrt(len(bundle.item_vectors)))
    settings = [("hnsw", {"ef_search": 64}), ("hnsw", {"ef_search": 128}), ("hnsw", {"ef_search": 256}),
                ("ivf", {"nlist": nlist, "nprobe": max(1, nlist // 8)}), ("ivf", {"nlist": nlist, "nprobe": nlist // 4})]
    for kind, params in settings:
        t0 = time.perf_counter()
        index = FaissIndex(bundle.item_vectors, kind, **params)
        built = time.perf_counter() - t0
        label = f"{kind} " + ",".join(f"{a}={b}" for a, b in params.items())
        results[label] = {"recall": recall_at_k(index, exact, queries, k, seen), "build_seconds": built,
                          "ms_per_query": _ms_per_request(index, queries, k, seen)}
    return results


def _ms_per_request(index, queries: np.ndarray, k: int, seen) -> float:
    """Mean milliseconds of one single-user search, as `Engine.recommend` runs it."""
    started = time.perf_counter()
    for row in range(len(queries)):
        index.search(queries[row], k, [seen[row]])
    return 1000 * (time.perf_counter() - started) / len(queries)


# --- HTTP ------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(command: list[str], port: int, timeout: float = 180) -> subprocess.Popen:
    process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **SINGLE_THREAD},
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {process.stderr.read().decode()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("server did not start in time")


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()


async def _client(port: int, bodies: list[bytes], deadline: float, budget: list[int], latencies: list[float],
                  statuses: dict, api_key: str | None) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    auth = f"Authorization: Bearer {api_key}\r\n".encode() if api_key else b""
    i = 0
    try:
        while time.perf_counter() < deadline and budget[0] > 0:
            budget[0] -= 1
            body = bodies[i % len(bodies)]
            i += 1
            request = (b"POST /recommend HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n" + auth
                       + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            t0 = time.perf_counter()
            writer.write(request)
            status = int((await reader.readline()).split()[1])
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - t0)
            statuses[status] = statuses.get(status, 0) + 1
    except (ConnectionError, asyncio.IncompleteReadError, IndexError, ValueError) as exc:
        statuses[f"connection: {type(exc).__name__}"] = statuses.get(f"connection: {type(exc).__name__}", 0) + 1
    finally:
        writer.close()


async def _load(port: int, bodies: list[bytes], clients: int, duration: float, max_requests: int,
                api_key: str | None) -> dict:
    latencies: list[float] = []
    statuses: dict = {}
    budget = [max_requests]
    started = time.perf_counter()
    await asyncio.gather(*(_client(port, bodies[c::clients] or bodies, started + duration, budget, latencies,
                                   statuses, api_key) for c in range(clients)))
    elapsed = time.perf_counter() - started
    return {"requests": len(latencies), "seconds": elapsed, "rps": len(latencies) / elapsed,
            "p50_ms": 1000 * _pct(latencies, 50), "p99_ms": 1000 * _pct(latencies, 99),
            "statuses": {str(k): v for k, v in sorted(statuses.items(), key=str)},
            "errors_5xx": sum(v for k, v in statuses.items() if isinstance(k, int) and k >= 500),
            "errors_other": sum(v for k, v in statuses.items() if not isinstance(k, int) or k >= 400)}


def _run(coroutine):
    """asyncio.run, on uvloop when installed: the generator then takes less of the shared CPU."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def http_load(command: list[str], port: int, user_ids: list[str], *, clients: int, duration: float,
              max_requests: int, seed: int, api_key: str | None = None, warmup: int = 200) -> dict:
    rng = random.Random(seed)
    bodies = [json.dumps({"user_id": rng.choice(user_ids), "k": 10}).encode() for _ in range(4096)]
    server = start(command, port)
    try:
        _run(_load(port, bodies, min(clients, 4), 30, warmup, api_key))  # warm-up, not counted
        load_before = os.getloadavg()[0]
        cpu_before = _cpu_seconds(server.pid)
        result = _run(_load(port, bodies, clients, duration, max_requests, api_key))
        # Server CPU per request: what the load average (other users of the machine) does not change much.
        result["server_cpu_ms_per_request"] = 1000 * (_cpu_seconds(server.pid) - cpu_before) / max(result["requests"], 1)
        result["load_average_1min_before"] = load_before
        return result
    finally:
        stop(server)


def _cpu_seconds(pid: int) -> float:
    """user + system CPU seconds of a process and its children (uvicorn workers), from /proc."""
    total = 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                total += _cpu_seconds(int(child))
    except (OSError, IndexError, ValueError):
        pass
    return total


# --- the teacher as a service ------------------------------------------------------------------

def serve_teacher(run: str, port: int) -> None:
    """The teacher of `run` (any teacher model) behind the same FastAPI app: each request
    scores the user with the model itself; the first requests (the warm-up) fill its caches."""
    import torch
    import uvicorn

    from distillrec import runs
    from distillrec.serving.app import create_app
    from distillrec.serving.engine import Engine

    torch.set_num_threads(1)
    dataset, split, _ = runs.load_run_data(Path(run))
    model = runs.load_model(run, dataset=dataset, split=split)  # hashes checked, eval mode
    engine = Engine.from_model(model, dataset, split)
    engine.model_name = f"teacher ({engine.model_name})"
    uvicorn.run(create_app(engine), host="127.0.0.1", port=port, log_level="warning", access_log=False)


# --- report ----------------------------------------------------------------------------------

def _pct(values, q) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def _serve_command(bundle: Path, port: int, workers: int) -> list[str]:
    return [sys.executable, "-m", "distillrec", "serve", str(bundle), "--port", str(port), "--workers", str(workers)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, help="student bundle for the targets (ML-1M)")
    parser.add_argument("--ratio-bundle", type=Path, help="student bundle on the teacher's data (ML-100K)")
    parser.add_argument("--teacher-run", nargs="+", default=[], help="teacher run directories (any "
                        "teacher model) for the ratio, on --ratio-bundle's data set")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per HTTP phase (upper bound)")
    parser.add_argument("--max-requests", type=int, default=30000, help="requests per HTTP phase (upper bound)")
    parser.add_argument("--workers", default="1", help="uvicorn workers to try, comma-separated")
    parser.add_argument("--in-process-requests", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "load_test.json")
    parser.add_argument("--serve-teacher", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_teacher:
        return serve_teacher(args.serve_teacher, args.port)

    import importlib.util

    results = {"machine": {"cpus": os.cpu_count(), "uvloop": bool(importlib.util.find_spec("uvloop")),
                           "httptools": bool(importlib.util.find_spec("httptools"))},
               "settings": {k: str(v) for k, v in vars(args).items() if not k.startswith("serve") and k != "port"}}
    if args.bundle:
        from distillrec.serving.bundle import load_bundle

        results["in_process"] = in_process(args.bundle, args.in_process_requests, args.seed)
        print(json.dumps({"in_process": results["in_process"]}, indent=1), flush=True)
        results["ann"] = ann_recall(args.bundle)
        print(json.dumps({"ann": results["ann"]}, indent=1), flush=True)
        users = [str(u) for u in load_bundle(args.bundle).user_ids]
        for workers in [int(w) for w in args.workers.split(",")]:
            port = free_port()
            result = http_load(_serve_command(args.bundle, port, workers), port, users, clients=args.clients,
                               duration=args.duration, max_requests=args.max_requests, seed=args.seed)
            results[f"http_workers_{workers}"] = result
            print(json.dumps({f"http_workers_{workers}": result}, indent=1), flush=True)
    if args.ratio_bundle and args.teacher_run:
        from distillrec.serving.bundle import load_bundle

        users = [str(u) for u in load_bundle(args.ratio_bundle).user_ids]
        port = free_port()
        student = http_load(_serve_command(args.ratio_bundle, port, 1), port, users, clients=args.clients,
                            duration=args.duration, max_requests=args.max_requests, seed=args.seed)
        results["ratio"] = {"student": student, "teachers": {}}
        for run in args.teacher_run:
            port = free_port()
            teacher = http_load([sys.executable, str(Path(__file__).resolve()), "--serve-teacher", run,
                                 "--port", str(port)], port, users, clients=args.clients, duration=args.duration,
                                max_requests=args.max_requests, seed=args.seed)  # the student's warm-up
            results["ratio"]["teachers"][run] = {
                **teacher, "throughput_student_over_teacher": student["rps"] / teacher["rps"],
                "p50_teacher_over_student": teacher["p50_ms"] / student["p50_ms"],
                "p99_teacher_over_student": teacher["p99_ms"] / student["p99_ms"],
                "cpu_teacher_over_student": teacher["server_cpu_ms_per_request"]
                / student["server_cpu_ms_per_request"]}
        print(json.dumps({"ratio": results["ratio"]}, indent=1), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
