"""BENCHMARKS.md's equal-budget tables, rendered from the metrics.json that `distillrec run` wrote.

    distillrec run configs/ml-100k.yaml --out runs/ml-100k
    python benchmarks/evidence_table.py runs/ml-100k [runs/ml-1m ...] > benchmarks/out/evidence.md

A run with a scenario (configs/cross-domain.yaml, ...) also gets the scenario's table and its
paired tests.

Nothing is computed here: every figure comes from the run's metrics.json (the tables the
terminal printed), so the published numbers are exactly the command's.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from distillrec.evaluation.significance import format_p
from distillrec.evidence import activity_rows, comparison_rows


def markdown_table(rows: list[dict]) -> str:
    if not rows:
        return "(none)\n"
    columns = list(dict.fromkeys(key for row in rows for key in row))
    cell = lambda v: "–" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(columns) + " |", "| " + " | ".join("---" for _ in columns) + " |"]
    lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def model_rows(metrics: dict) -> list[dict]:
    rows = []
    for name, entry in metrics["models"].items():
        stats = metrics.get("summary", {}).get(name, {})
        row = {"model": name, "role": entry.get("role")}
        for key in ("test ndcg@10", "test recall@10", "valid ndcg@10"):
            if key in stats:
                row[key] = f"{stats[key]['mean']:.4f} ± {stats[key]['std']:.4f}"
        row["params"] = entry.get("params")
        rows.append(row)
    return rows


def tuning_rows(metrics: dict) -> list[dict]:
    return [{"model": name, "trials": record["trials"], "pruned": record["pruned"],
             "valid ndcg@10 (split seed %d)" % metrics["seeds"][0]: f"{record['valid']:.4f}",
             "selected": ", ".join(f"{k.split('.', 1)[1]}={_short(v)}" for k, v in record["selected"].items())}
            for name, record in metrics.get("tuning", {}).items()]


def _short(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def scenario_rows(table: list[dict]) -> list[dict]:
    """A scenario's rows for reading: "x" with its "x std" as "mean ± std", lifts in percent, p-values
    short; every other column as it is."""
    rows = []
    for row in table:
        out = {}
        for key, value in row.items():
            if key.endswith(" std") and key[:-4] in row:
                continue
            if key == "train fraction":
                value = f"{value:.0%}"
            elif f"{key} std" in row and value is not None:
                value = f"{value:.4f} ± {row[f'{key} std']:.4f}"
            elif key.startswith("lift") and isinstance(value, float):
                value = f"{value:+.1%}"
            elif key.startswith("p ") and (value is None or isinstance(value, float)):
                value = format_p(value)
            out[key] = value
        rows.append(out)
    return rows


def scenario_sections(metrics: dict) -> list[str]:
    parts = []
    for name, scenario in (metrics.get("scenarios") or {}).items():
        parts += [f"Scenario {name!r} (\"scenarios\" → {name!r} → \"table\"):\n", markdown_table(scenario_rows(scenario["table"]))]
        paired = scenario.get("details", {}).get("paired")
        if paired:
            parts += ["Paired tests (per seed over users, Wilcoxon; over seeds, paired t):\n",
                      markdown_table([{"metric": c["metric"], **row}  # one display row per pair, in order
                                      for c, row in zip(paired, comparison_rows({"comparisons": paired}))])]
    return parts


def render(run: Path) -> str:
    metrics = json.loads((run / "metrics.json").read_text())
    seeds = metrics.get("seeds", [metrics.get("seed")])
    if not metrics.get("summary"):  # a single-split run whose evidence is its scenario
        return "\n".join([f"#### {metrics['config']['data']['dataset']} (`{run}/metrics.json`)\n",
                          *scenario_sections(metrics)])
    return "\n".join([
        f"#### {metrics['config']['data']['dataset']}: split seeds {seeds} (`{run}/metrics.json`)\n",
        markdown_table(model_rows(metrics)),
        "Lifts (test NDCG@10; p: paired t over split seeds, Wilcoxon over users per split):\n",
        markdown_table(comparison_rows(metrics)),
        "By users' training interactions (test NDCG@10) and by items' (the test interactions' recall@10);\n"
        "quartiles, mean over splits:\n",
        markdown_table(activity_rows(metrics)),
        "Tuning (the same number of trials for every model; selected on validation only):\n",
        markdown_table(tuning_rows(metrics)),
        *scenario_sections(metrics),
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run directories written by `distillrec run`")
    args = parser.parse_args()
    print("\n".join(render(run) for run in args.runs))


if __name__ == "__main__":
    main()
