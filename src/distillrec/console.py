"""Terminal output: readable tables of metrics and dataset statistics."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.table import Table

# Wide enough for a metrics table when output goes to a file or CI log (rich assumes 80).
_WIDTH = None if sys.stdout.isatty() else 160
console = Console(width=_WIDTH)
err_console = Console(stderr=True, width=_WIDTH)


def metrics_table(models: dict, part: str = "test",
                  columns: tuple[str, ...] = ("ndcg@10", "recall@10", "hit@10", "ndcg@20", "recall@20",
                                              "coverage@10"),
                  title: str | None = None) -> Table:
    """One row per model: role, parameters and the chosen metrics of one split part."""
    table = Table(title=title or f"{part} metrics (full ranking)")
    table.add_column("model", style="bold")
    table.add_column("role")
    table.add_column("params", justify="right")
    for column in columns:
        table.add_column(column, justify="right")
    for name, entry in models.items():
        values = entry.get(part, {})
        table.add_row(name, entry.get("role", ""), f"{entry.get('params', 0):,}",
                      *(f"{values[c]:.4f}" if c in values else "–" for c in columns))
    return table


def key_value_table(rows: dict, title: str) -> Table:
    table = Table(title=title, show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value", justify="right")
    for key, value in rows.items():
        table.add_row(key, f"{value:,.4f}" if isinstance(value, float) else f"{value:,}" if isinstance(value, int) else str(value))
    return table
