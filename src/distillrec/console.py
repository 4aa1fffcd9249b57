"""Terminal output: readable tables of metrics and dataset statistics, and progress bars."""

from __future__ import annotations

import sys
import time
from typing import Any, Iterable, TextIO

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


# --- progress -------------------------------------------------------------------------------

def progress_bar(iterable: Iterable | None = None, *, total: int | None = None, desc: str = "",
                 unit: str = "it", leave: bool = True, disable: bool = False, file: TextIO | None = None,
                 interval: float = 60.0, milestones: int = 4):
    """A tqdm bar when `file` (stderr) is a terminal or a notebook; elsewhere (CI, `make run >
    log 2>&1`) a `PlainProgress`, which writes a few plain lines instead of a redraw per step.
    Used like tqdm: iterate it, or `update(n)`; `set_postfix(...)`, `close()`, `with`."""
    stream = file if file is not None else sys.stderr
    if not disable and (_is_terminal(stream) or "ipykernel" in sys.modules):
        from tqdm.auto import tqdm

        return tqdm(iterable, total=total, desc=desc, unit=unit, leave=leave, file=stream, dynamic_ncols=True)
    return PlainProgress(iterable, total=total, desc=desc, unit=unit, leave=leave, silent=disable, file=stream,
                         interval=interval, milestones=milestones)


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class PlainProgress:
    """Progress as plain lines: `desc: n/total unit, seconds, postfix`. A line when each of
    `milestones` equal parts of `total` is done (bars that `leave` a result only: an epoch's
    inner batch bar stays quiet), when `interval` seconds passed since the last line (a slow
    stage still shows life), and a closing line with the final count and postfix."""

    def __init__(self, iterable: Iterable | None = None, *, total: int | None = None, desc: str = "",
                 unit: str = "it", leave: bool = True, silent: bool = False, file: TextIO | None = None,
                 interval: float = 60.0, milestones: int = 4):
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.iterable, self.total, self.desc, self.unit = iterable, total, desc, unit
        self.leave, self.silent, self.file = leave, silent, file if file is not None else sys.stderr
        self.interval, self.milestones = interval, milestones
        self.n, self.postfix = 0, {}
        self._started = self._last_line = time.monotonic()
        self._written_at = -1  # count at the last line, so close does not repeat it
        self._closed = False

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update(1)
        self.close()  # as tqdm does when its iterable runs out

    def __len__(self) -> int:
        return self.total or 0

    def __enter__(self) -> "PlainProgress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        before, self.n = self.n, self.n + n
        if self.silent:
            return
        now = time.monotonic()
        part = (lambda count: count * self.milestones // self.total) if self.total else None
        milestone = self.leave and part is not None and part(self.n) > part(before) and self.n < self.total
        if milestone or now - self._last_line >= self.interval:
            self._write(now)

    def set_postfix(self, ordered_dict: dict | None = None, refresh: bool = True, **kwargs: Any) -> None:
        self.postfix = {**(ordered_dict or {}), **kwargs}

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if not self.silent and self.leave and self.n and self.n != self._written_at:
            self._write(time.monotonic())

    def _write(self, now: float) -> None:
        count = f"{self.n}/{self.total}" if self.total else f"{self.n}"
        fields = [f"{count} {self.unit}", f"{now - self._started:.1f} s"]
        if self.postfix:
            fields.append(" ".join(f"{key}={value}" for key, value in self.postfix.items()))
        print(f"{self.desc}: " + ", ".join(fields) if self.desc else ", ".join(fields), file=self.file, flush=True)
        self._last_line, self._written_at = now, self.n
