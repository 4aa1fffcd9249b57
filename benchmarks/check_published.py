"""Do the published numbers still hold? Compare a fresh run with the figures BENCHMARKS.md prints.

    distillrec run configs/ml-100k.yaml --out runs/check-ml-100k      # a fresh directory: nothing cached
    python benchmarks/check_published.py benchmarks/published/ml-100k.json runs/check-ml-100k

Each `benchmarks/published/*.json` names the command that produced its figures, the figures
(dotted paths into that run's metrics.json) and the tolerance they are published with (they are
printed to 4 decimals, and a seed fixes a CPU run, so a drift beyond rounding means the code
changed the result). Exit code 1 lists every figure that moved: re-measure and republish, or fix.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def lookup(metrics: dict, path: str):
    """The value at a dotted path; a part indexing a list is its position (a scenario's table row)."""
    value = metrics
    for part in path.split("."):
        value = value[int(part)] if isinstance(value, list) else value[part]
    return value


def check(published: dict, metrics: dict) -> list[str]:
    tolerance = published.get("tolerance", 0.0005)
    problems = []
    for path, expected in published["figures"].items():
        try:
            actual = lookup(metrics, path)
        except (KeyError, TypeError, IndexError, ValueError):
            problems.append(f"{path}: missing from the run (expected {expected})")
            continue
        if abs(actual - expected) > tolerance:
            problems.append(f"{path}: {actual:.4f}, published {expected:.4f} (tolerance ±{tolerance})")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("published", type=Path, help="benchmarks/published/<table>.json")
    parser.add_argument("run", type=Path, help="a run directory written by the published command")
    args = parser.parse_args()
    published = json.loads(args.published.read_text())
    problems = check(published, json.loads((args.run / "metrics.json").read_text()))
    for line in problems:
        print(f"drifted: {line}")
    print(f"{len(published['figures']) - len(problems)} of {len(published['figures'])} figures hold "
          f"({published['command']})")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
