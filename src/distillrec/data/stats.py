"""Dataset statistics for `distillrec data stats`, and warnings about attributes that look misread."""

from __future__ import annotations

import numpy as np
import pandas as pd

from distillrec.data.dataset import Dataset
from distillrec.data.readers import LIST_SEPARATORS

# Shares of a column's values above which it looks like an unsplit list (see `attribute_warnings`).
_UNSPLIT_SHARE = 0.1
_TEXT_LIST_SHARE = 0.3


def dataset_stats(ds: Dataset) -> dict:
    inter = ds.interactions
    per_user = inter.groupby("user").size()
    per_item = inter.groupby("item").size()
    stats = {
        "users": ds.n_users,
        "items": ds.n_items,
        "interactions": len(inter),
        "density": len(inter) / (ds.n_users * ds.n_items),
        "sparsity": 1.0 - len(inter) / (ds.n_users * ds.n_items),
        "interactions per user (median)": float(per_user.median()),
        "interactions per item (median)": float(per_item.median()),
        "rating mean": float(inter["rating"].mean()),
        "time span (days)": float((inter["timestamp"].max() - inter["timestamp"].min()) / 86400),
    }
    for table, label in ((ds.items, "item"), (ds.users, "user")):
        key = f"{label}_id"
        for column in table.columns:
            if column != key:
                stats[f"{label} attribute coverage: {column}"] = _coverage(table[column])
        for column in _list_columns(table):
            stats[f"{label} attribute distinct values: {column}"] = len({v for row in _lists(table[column])
                                                                         for v in row})
    return stats


def attribute_warnings(ds: Dataset) -> list[str]:
    """One line per side-table column that looks misread: a list column whose elements still
    hold a separator ('Animation;Comedy' as one genre), or a text column whose values are
    lists of repeated parts ('drama;crime' tags read as one string)."""
    warnings = []
    for table, label in ((ds.items, "item"), (ds.users, "user")):
        lists = _list_columns(table)
        for column in lists:
            found = _unsplit(_lists(table[column]))
            if found:
                separator, share, example = found
                warnings.append(f"{label} attribute {column!r} looks unsplit: {share:.0%} of its values hold "
                                f"{separator!r} (e.g. {example!r}); declare its separator: "
                                f"list_separators: {{{column}: {separator!r}}} in the config's data section, "
                                f"or --list-sep {column}={separator}")
        for column in table.columns:
            if column in lists or column == f"{label}_id" or column == "title":
                continue
            found = _text_list(table[column])
            if found:
                separator, share = found
                warnings.append(f"{label} attribute {column!r} looks like a list separated by {separator!r} "
                                f"({share:.0%} of its values), read as text; to split it declare "
                                f"list_separators: {{{column}: {separator!r}}}, or --list-sep {column}={separator}")
    return warnings


def _is_list(value) -> bool:
    return isinstance(value, (list, tuple, np.ndarray))


def _list_columns(table: pd.DataFrame) -> list[str]:
    return [column for column in table.columns if len(table) and table[column].map(_is_list).any()]


def _lists(column: pd.Series) -> list[list]:
    return [list(value) if _is_list(value) else [] for value in column]


def _unsplit(rows: list[list]) -> tuple[str, float, str] | None:
    """(separator, share of non-empty rows, an example) when elements still hold a separator."""
    rows = [row for row in rows if row]
    for separator in LIST_SEPARATORS:
        holding = [row for row in rows if any(isinstance(v, str) and separator in v for v in row)]
        if rows and len(holding) / len(rows) >= _UNSPLIT_SHARE:
            example = next(v for v in holding[0] if isinstance(v, str) and separator in v)
            return separator, len(holding) / len(rows), example
    return None


def _text_list(column: pd.Series) -> tuple[str, float] | None:
    """(separator, share) when most values split into parts that recur across rows: lists of
    tags or categories, not free text (whose comma-separated parts are mostly unique)."""
    texts = [value for value in column if isinstance(value, str) and value.strip()]
    for separator in LIST_SEPARATORS:
        holding = [text for text in texts if separator in text]
        if not texts or len(holding) / len(texts) < _TEXT_LIST_SHARE:
            continue
        parts = [part.strip() for text in holding for part in text.split(separator) if part.strip()]
        if parts and len(set(parts)) <= 0.5 * len(parts):
            return separator, len(holding) / len(texts)
    return None


def _coverage(column: pd.Series) -> float:
    """Share of rows with a usable value (not null, not an empty string or list)."""
    def present(value) -> bool:
        if value is None:
            return False
        if isinstance(value, str):
            return bool(value.strip())
        if hasattr(value, "__len__"):
            return len(value) > 0
        return not pd.isna(value)

    return float(column.map(present).mean()) if len(column) else 0.0
