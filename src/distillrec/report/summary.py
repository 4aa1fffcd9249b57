"""The comparison table of a run: quality, cost and lift of every model, one row each.

The rows are built once (`summary_rows`) and rendered twice: as a rich table for the terminal
(`summary_table`) and as HTML by `distillrec.report.html`, so both always agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from rich.table import Table
from rich.text import Text

ROLE_ORDER = ("teacher", "baseline", "distilled")
MISSING = "–"


@dataclass(frozen=True)
class Column:
    header: str
    value: Callable[[dict, str], float | int | None]  # (model entry, part) -> raw value
    format: str  # format spec applied to the raw value


def _metric(key: str) -> Callable[[dict, str], float | None]:
    return lambda entry, part: entry.get(part, {}).get(key)


def _field(key: str, scale: float | None = None) -> Callable[[dict, str], float | int | None]:
    def value(entry: dict, part: str) -> float | int | None:
        raw = entry.get(key)
        return raw if raw is None or scale is None else raw * scale
    return value


COLUMNS = (
    Column("NDCG@10", _metric("ndcg@10"), ".4f"),
    Column("Recall@10", _metric("recall@10"), ".4f"),
    Column("Hit@10", _metric("hit@10"), ".4f"),
    Column("NDCG@20", _metric("ndcg@20"), ".4f"),
    Column("Recall@20", _metric("recall@20"), ".4f"),
    Column("Hit@20", _metric("hit@20"), ".4f"),
    Column("Cov@10", _metric("coverage@10"), ".4f"),
    Column("Params", _field("params"), ",d"),
    Column("Size MB", _field("size_bytes", 1e-6), ".2f"),
    Column("ms/user", _field("latency_ms_per_user"), ".3f"),
    Column("Train s", _field("train_seconds"), ".1f"),
)


@dataclass(frozen=True)
class SummaryRow:
    name: str
    role: str
    cells: tuple[str, ...]  # formatted values, in COLUMNS order
    lift: float | None  # relative NDCG@10 change over `reference`
    reference: str | None  # the model the lift is measured against


def ordered_models(metrics: dict) -> list[tuple[str, dict]]:
    """(name, entry) pairs: teacher first, then baselines, then distilled; stable within a role."""
    rank = {role: i for i, role in enumerate(ROLE_ORDER)}
    models = metrics.get("models", {})
    return sorted(models.items(), key=lambda item: rank.get(item[1].get("role"), len(ROLE_ORDER)))


def reference_model(metrics: dict, name: str, metric: str = "ndcg@10", part: str = "test") -> str | None:
    """The model `name` is measured against, or None when it has none.

    A distilled model: its recorded `baseline`, else the baseline of the same student (same dim
    preferred). The teacher: the best baseline on `metric`. A baseline is itself the reference."""
    models = metrics.get("models", {})
    entry = models[name]
    baselines = {n: e for n, e in models.items() if e.get("role") == "baseline"}
    if entry.get("role") == "distilled":
        if entry.get("baseline") in baselines:
            return entry["baseline"]
        student = entry.get("student")
        same_student = [n for n, e in baselines.items() if student is not None and e.get("student", n) == student]
        same_dim = [n for n in same_student if baselines[n].get("dim") == entry.get("dim")]
        return (same_dim or same_student or [None])[0]
    if entry.get("role") == "teacher":
        scored = {n: e[part][metric] for n, e in baselines.items() if metric in e.get(part, {})}
        return max(scored, key=scored.get) if scored else None
    return None


def lift(metrics: dict, name: str, metric: str = "ndcg@10", part: str = "test") -> float | None:
    """Relative change of `metric` of model `name` over its reference model (0.1 = +10 %);
    None when there is no reference, either value is missing, or the reference scores 0."""
    reference = reference_model(metrics, name, metric, part)
    if reference is None:
        return None
    models = metrics["models"]
    value = models[name].get(part, {}).get(metric)
    base = models[reference].get(part, {}).get(metric)
    if value is None or not base:
        return None
    return (value - base) / base


def format_value(value: float | int | None, spec: str) -> str:
    return MISSING if value is None else format(value, spec)


def format_lift(value: float | None) -> str:
    """'+12.3%' / '−4.5%' (a true minus sign, so the column reads as numbers)."""
    if value is None:
        return MISSING
    return f"{'+' if value >= 0 else '−'}{abs(value) * 100:.1f}%"


def summary_rows(metrics: dict, part: str = "test") -> list[SummaryRow]:
    rows = []
    for name, entry in ordered_models(metrics):
        cells = tuple(format_value(column.value(entry, part), column.format) for column in COLUMNS)
        rows.append(SummaryRow(name, entry.get("role", ""), cells, lift(metrics, name, part=part),
                               reference_model(metrics, name, part=part)))
    return rows


def lift_style(value: float | None) -> str:
    if value is None:
        return "dim"
    return "green" if value >= 0 else "red"


def summary_table(metrics: dict, part: str = "test", title: str | None = None) -> Table:
    """One row per model (teacher, baselines, distilled): quality at 10 and 20, coverage, cost,
    and the NDCG@10 lift over the model's reference, green when positive and red when not."""
    table = Table(title=title or f"{part} metrics (full ranking)")
    table.add_column("model", style="bold")
    table.add_column("role")
    for column in COLUMNS:
        table.add_column(column.header, justify="right")
    table.add_column("NDCG@10 lift", justify="right")
    table.add_column("vs")
    for row in summary_rows(metrics, part):
        table.add_row(row.name, row.role, *row.cells,
                      Text(format_lift(row.lift), style=lift_style(row.lift)),
                      row.reference or MISSING)
    return table


def rows_table(rows: list[dict], title: str) -> Table:
    """A terminal table of plain dict rows (a scenario's or an ablation's): columns in order of
    first appearance, floats to 4 decimals."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    table = Table(title=title)
    for column in columns:
        numeric = all(isinstance(row.get(column), (int, float, type(None))) for row in rows)
        table.add_column(column, justify="right" if numeric else "left")
    for row in rows:
        table.add_row(*(MISSING if row.get(c) is None else f"{row[c]:.4f}" if isinstance(row[c], float)
                        else str(row[c]) for c in columns))
    return table
