"""Two arms of `distillrec train` runs, one run per seed each, compared as BENCHMARKS.md does:
mean ± std over seeds, the lift of B over A and a paired t-test over seeds.

    python benchmarks/paired_runs.py --a 'runs/sparse-quality/b-dense-s*' \
        --b 'runs/sparse-quality/b-sparse-s*' --label "ML-100K, tuned softmax" \
        --out benchmarks/out/sparse-quality-b.json

Runs are paired by the seed in their config (the split seed and the model seed of `distillrec
train`), so an arm with a missing or extra seed is an error. Nothing is re-run: every figure
comes from the runs' metrics.json; the summary is written to --out (JSON) and printed as one
markdown row.
"""

from __future__ import annotations

import argparse
import glob
import json
import statistics
from pathlib import Path

from scipy import stats


def read_arm(pattern: str, metric: str) -> dict[int, dict]:
    """seed -> {"run", "test", "valid", "best_epoch"} for each run directory matching `pattern`."""
    arm = {}
    for run in sorted(glob.glob(pattern)):
        metrics = json.loads((Path(run) / "metrics.json").read_text())
        (entry,) = metrics["models"].values()
        seed = metrics["config"]["seed"]
        if seed in arm:
            raise SystemExit(f"{pattern}: two runs with seed {seed} ({arm[seed]['run']}, {run})")
        arm[seed] = {"run": run, "test": entry["test"][metric], "valid": entry["valid"][metric],
                     "best_epoch": entry.get("best_epoch")}
    if not arm:
        raise SystemExit(f"{pattern}: matches no run directory")
    return arm


def compare(a: dict[int, dict], b: dict[int, dict]) -> dict:
    if a.keys() != b.keys():
        raise SystemExit(f"the arms have different seeds: {sorted(a)} vs {sorted(b)}")
    seeds = sorted(a)
    a_test, b_test = [a[s]["test"] for s in seeds], [b[s]["test"] for s in seeds]
    mean_a, mean_b = statistics.fmean(a_test), statistics.fmean(b_test)
    return {"seeds": seeds, "a": {"mean": mean_a, "std": statistics.stdev(a_test), "per_seed": a},
            "b": {"mean": mean_b, "std": statistics.stdev(b_test), "per_seed": b},
            "lift": mean_b / mean_a - 1.0, "p_paired_t": float(stats.ttest_rel(b_test, a_test).pvalue),
            "seeds_b_better": sum(y > x for x, y in zip(a_test, b_test))}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--a", required=True, help="glob of arm A's run directories (the reference)")
    parser.add_argument("--b", required=True, help="glob of arm B's run directories")
    parser.add_argument("--metric", default="ndcg@10")
    parser.add_argument("--label", default="", help="the row's first cell")
    parser.add_argument("--out", type=Path, required=True, help="JSON summary to write")
    args = parser.parse_args(argv)
    summary = {"label": args.label, "metric": args.metric, "a_runs": args.a, "b_runs": args.b,
               **compare(read_arm(args.a, args.metric), read_arm(args.b, args.metric))}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    a, b = summary["a"], summary["b"]
    print(f"| {args.label} | {a['mean']:.4f} ± {a['std']:.4f} | {b['mean']:.4f} ± {b['std']:.4f} | "
          f"{summary['lift']:+.2%} | {summary['p_paired_t']:.2g} | {summary['seeds_b_better']}/{len(summary['seeds'])} |")


if __name__ == "__main__":
    main()
