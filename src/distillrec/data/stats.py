"""Dataset statistics for `distillrec data stats`."""

from __future__ import annotations

import pandas as pd

from distillrec.data.dataset import Dataset


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
    return stats


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
