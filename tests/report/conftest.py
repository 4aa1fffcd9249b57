"""A hand-made aggregate metrics dict with every section the report knows how to draw."""

import copy
from pathlib import Path

import pytest

from distillrec.report.html import write_report


def _scores(ndcg: float) -> dict:
    return {"ndcg@10": ndcg, "recall@10": ndcg * 0.9, "hit@10": min(1.0, ndcg * 3), "ndcg@20": ndcg * 1.1,
            "recall@20": ndcg * 1.3, "hit@20": min(1.0, ndcg * 3.4), "coverage@10": 0.3, "n_users": 943}


def _history(final: float, epochs: int = 6) -> list[dict]:
    return [{"epoch": e, "loss": 0.7 / e, "train_seconds": 0.1,
             "valid": {"ndcg@10": final * e / epochs}} for e in range(1, epochs + 1)]


def _model(role: str, params: int, ndcg: float, latency: float, **extra) -> dict:
    return {"role": role, "params": params, "size_bytes": params * 4, "latency_ms_per_user": latency,
            "train_seconds": 12.5, "best_epoch": 6, "valid": _scores(ndcg * 0.95), "test": _scores(ndcg),
            **extra}


METRICS = {
    "models": {
        "mf": _model("baseline", 168_000, 0.20, 0.14, student="mf", dim=64, history=_history(0.19)),
        "pop": _model("baseline", 0, 0.10, 0.02),
        "mf+ranking": _model("distilled", 168_000, 0.22, 0.14, student="mf", dim=64, kd={"ranking": 0.5},
                             baseline="mf", history=_history(0.21)),
        "mf+feature": _model("distilled", 168_000, 0.19, 0.14, student="mf", dim=64, kd={"feature": 1.0},
                             history=_history(0.18)),
        "teacher": _model("teacher", 23_000_000, 0.25, 3.2, history=_history(0.24)),
    },
    "config": {"dataset": "ml-100k", "split": "random", "seed": 0,
               "teacher": {"encoder": "all-MiniLM-L6-v2"}, "students": [{"name": "mf", "dim": 64}]},
    "versions": {"python": "3.11.7", "distillrec": "0.1.0", "torch": "2.13.0+cpu"},
    "data_fingerprint": "1347ff312a3fbb160e10086ccb2d557989436dd8b2f5f215ac5b066f884f5934",
    "seed": 0,
    "date": "2025-01-01 12:00 UTC",
    "size_curve": [
        {"student": "mf", "dim": d, "distilled": distilled, "ndcg@10": 0.1 + 0.02 * i + 0.02 * distilled,
         "params": 2625 * d}
        for i, d in enumerate((8, 16, 32, 64)) for distilled in (False, True)
    ],
    "ablation": {"rows": [
        {"method": "ranking", "ndcg@10_mean": 0.22, "ndcg@10_std": 0.004, "lift_mean": 0.10},
        {"method": "feature", "ndcg@10_mean": 0.19, "ndcg@10_std": 0.006, "lift_mean": -0.05},
    ]},
    "scenarios": {
        "cold-item": {"table": [{"model": "mf", "ndcg@10": 0.01}, {"model": "mf+ranking", "ndcg@10": 0.05}],
                      "notes": "Items unseen in training <scored by content>."},
    },
}


@pytest.fixture
def metrics() -> dict:
    return copy.deepcopy(METRICS)


@pytest.fixture(scope="session")
def report(tmp_path_factory) -> Path:
    """The full report of METRICS, drawn once: drawing the five plots takes a few seconds."""
    folder = tmp_path_factory.mktemp("report")
    path = write_report(copy.deepcopy(METRICS), folder / "report.html")
    assert path == folder / "report.html"
    return path
