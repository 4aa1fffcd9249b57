"""Two run directories side by side: each model's metrics in run A, in run B, and the change;
where both runs wrote each user's test NDCG@10 (per_user.parquet, one model per run), the
change is also tested user by user (Wilcoxon signed-rank and paired t over the shared users).

Both runs are verified against their manifests first, so a comparison never rests on a
metrics.json that was edited or truncated after the run wrote it.
"""

from __future__ import annotations

from pathlib import Path

from rich.table import Table
from rich.text import Text

from distillrec import artifacts
from distillrec.errors import ArtifactError
from distillrec.report.summary import MISSING, format_lift, ordered_models

QUALITY = ("ndcg@10", "recall@10", "hit@10", "ndcg@20", "coverage@10")
COST = ("params", "latency_ms_per_user")  # lower is better
METRICS_FILE = "metrics.json"


def load_run_metrics(run_dir: str | Path) -> dict:
    """metrics.json of a run directory whose manifest lists it and whose hashes all match."""
    run_dir = Path(run_dir)
    if not (run_dir / artifacts.MANIFEST).exists():
        raise ArtifactError(f"{run_dir}: not a run directory (no {artifacts.MANIFEST})")
    manifest = artifacts.verify_manifest(run_dir)
    if METRICS_FILE not in manifest.get("files", {}):
        raise ArtifactError(f"{run_dir / artifacts.MANIFEST}: does not list {METRICS_FILE}, "
                            "so the metrics cannot be verified")
    return artifacts.read_json(run_dir / METRICS_FILE)


def _value(entry: dict | None, key: str, part: str) -> float | None:
    if entry is None:
        return None
    return entry.get(key) if key in COST else entry.get(part, {}).get(key)


def relative_change(a: float | None, b: float | None) -> float | None:
    """(b - a) / a, or None when either is missing or a is 0."""
    if a is None or b is None or not a:
        return None
    return (b - a) / a


def compare_metrics(metrics_a: dict, metrics_b: dict, part: str = "test") -> dict:
    """{"models": {name: {key: {"a", "b", "change"}}}, "same_data": bool}; models in both runs
    first (in A's order), then those only in A, then those only in B (their other side None)."""
    models_a, models_b = metrics_a.get("models", {}), metrics_b.get("models", {})
    names = [n for n, _ in ordered_models(metrics_a)]
    names += [n for n, _ in ordered_models(metrics_b) if n not in models_a]
    names.sort(key=lambda n: (n not in models_a or n not in models_b, n not in models_a))
    models = {}
    for name in names:
        entry_a, entry_b = models_a.get(name), models_b.get(name)
        models[name] = {}
        for key in QUALITY + COST:
            a, b = _value(entry_a, key, part), _value(entry_b, key, part)
            models[name][key] = {"a": a, "b": b, "change": relative_change(a, b)}
    return {"part": part, "models": models,
            "same_data": metrics_a.get("data_fingerprint") == metrics_b.get("data_fingerprint")}


def _format(key: str, value: float | None) -> str:
    if value is None:
        return MISSING
    if key == "params":
        return f"{int(value):,}"
    return f"{value:.3f}" if key in COST else f"{value:.4f}"


def _change_text(key: str, change: float | None) -> Text:
    if change is None:
        return Text(MISSING, style="dim")
    better = change < 0 if key in COST else change > 0
    style = "green" if better else "red" if change != 0 else ""
    return Text(format_lift(change), style=style)


def comparison_table(comparison: dict, label_a: str = "A", label_b: str = "B") -> Table:
    """One row per model and metric: value in A, value in B, relative change (green = better)."""
    caption = None if comparison["same_data"] else "warning: the runs used different data (fingerprints differ)"
    table = Table(title=f"{comparison['part']} metrics — A: {label_a}   B: {label_b}", caption=caption)
    table.add_column("model", style="bold")
    table.add_column("metric")
    table.add_column("A", justify="right")
    table.add_column("B", justify="right")
    table.add_column("B vs A", justify="right")
    for name, rows in comparison["models"].items():
        for index, (key, row) in enumerate(rows.items()):
            table.add_row(name if index == 0 else "", key, _format(key, row["a"]), _format(key, row["b"]),
                          _change_text(key, row["change"]), end_section=index == len(rows) - 1)
    return table


def paired_test(run_a: str | Path, run_b: str | Path) -> dict | None:
    """B against A user by user on test NDCG@10 (`significance.paired_users`), or None when
    either run has no per_user.parquet. Call after `load_run_metrics` verified both runs."""
    from distillrec.evaluation.scoring import read_per_user
    from distillrec.evaluation.significance import paired_users

    a, b = read_per_user(Path(run_a)), read_per_user(Path(run_b))
    return None if a is None or b is None else paired_users(a, b)


def paired_line(paired: dict) -> str:
    from distillrec.evaluation.significance import format_p

    return (f"paired over {paired['n_users']} users, test NDCG@10 {paired['base']:.4f} -> {paired['other']:.4f} "
            f"({format_lift(paired['lift'])}): Wilcoxon p = {format_p(paired['wilcoxon_p'])}, "
            f"paired t p = {format_p(paired['t_p'])}")


def compare_runs(run_a: str | Path, run_b: str | Path, part: str = "test") -> tuple[Table, dict]:
    """Verify both run directories and compare their models: (rich table, comparison dict with
    "paired": the per-user test of B against A, or None)."""
    comparison = compare_metrics(load_run_metrics(run_a), load_run_metrics(run_b), part)
    comparison.update(a=str(run_a), b=str(run_b), paired=paired_test(run_a, run_b))
    table = comparison_table(comparison, str(run_a), str(run_b))
    if comparison["paired"] is not None:
        table.caption = "\n".join(filter(None, [table.caption, paired_line(comparison["paired"])]))
    return table, comparison
