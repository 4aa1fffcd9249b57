"""The Dataset: interactions, item and user tables, and stable contiguous id maps.

Readers (`distillrec.data.sources`) produce a `RawData` keyed by the source's own ids
(strings). `build_dataset` validates it, applies the implicit-feedback threshold, the
duplicate policy and k-core filtering, and maps ids to contiguous indices 0..n-1.

Column conventions
  RawData.interactions: user_id (str), item_id (str), rating (float32), timestamp (int64)
  RawData.items:        item_id (str) + optional title (str), year (float), genres (list[str]), ...
  RawData.users:        user_id (str) + optional age, gender, occupation, zip, ...
  Dataset.interactions: user (int64), item (int64), rating (float32), timestamp (int64)
  Dataset.items / .users: one row per index, in index order, with the raw id column kept.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from distillrec.errors import DataError

DuplicatePolicy = Literal["last", "first", "error"]


@dataclass
class RawData:
    name: str
    interactions: pd.DataFrame
    items: pd.DataFrame | None = None
    users: pd.DataFrame | None = None
    source: str = ""  # where the files came from, for error messages and manifests


@dataclass
class Dataset:
    name: str
    interactions: pd.DataFrame
    items: pd.DataFrame
    users: pd.DataFrame
    fingerprint: str
    info: dict = field(default_factory=dict)  # how it was built: threshold, k-core, source ...

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def user_ids(self) -> np.ndarray:
        return self.users["user_id"].to_numpy()

    @property
    def item_ids(self) -> np.ndarray:
        return self.items["item_id"].to_numpy()

    def user_index(self) -> dict[str, int]:
        return {raw: idx for idx, raw in enumerate(self.user_ids)}

    def item_index(self) -> dict[str, int]:
        return {raw: idx for idx, raw in enumerate(self.item_ids)}


def build_dataset(raw: RawData, *, rating_threshold: float | None = None, k_core: int = 0,
                  duplicates: DuplicatePolicy = "last") -> Dataset:
    """Turn raw tables into a Dataset with contiguous ids.

    rating_threshold: keep interactions with rating >= threshold as positives (None: all).
    k_core: repeatedly drop users and items with fewer than k interactions (0: off).
    duplicates: several rows for one (user, item) pair keep the latest by timestamp ("last",
        the default: a re-rating replaces the earlier one), the earliest ("first"), or raise.
    """
    inter = raw.interactions
    for column in ("user_id", "item_id", "rating", "timestamp"):
        if column not in inter.columns:
            raise DataError(raw.source or raw.name, "missing interaction column", field=column)
    inter = inter[["user_id", "item_id", "rating", "timestamp"]].copy()
    inter["user_id"] = inter["user_id"].astype(str)
    inter["item_id"] = inter["item_id"].astype(str)
    inter["rating"] = inter["rating"].astype(np.float32)
    inter["timestamp"] = inter["timestamp"].astype(np.int64)
    if inter.empty:
        raise DataError(raw.source or raw.name, "no interactions", expected="at least one row")

    if rating_threshold is not None:
        inter = inter[inter["rating"] >= rating_threshold]

    inter = _resolve_duplicates(inter, duplicates, raw.source or raw.name)
    if k_core > 0:
        inter = _k_core(inter, k_core)
    if inter.empty:
        raise DataError(raw.source or raw.name, "no interactions left after filtering",
                        expected=f"a rating threshold / k-core that keeps rows (threshold={rating_threshold}, k_core={k_core})")

    # Stable id maps: sorted raw ids, so the same data always gives the same indices.
    user_ids = np.array(sorted(inter["user_id"].unique()), dtype=object)
    item_ids = np.array(sorted(inter["item_id"].unique()), dtype=object)
    users = _side_table(raw.users, "user_id", user_ids)
    items = _side_table(raw.items, "item_id", item_ids)

    interactions = pd.DataFrame({
        "user": pd.Index(user_ids).get_indexer(inter["user_id"]).astype(np.int64),
        "item": pd.Index(item_ids).get_indexer(inter["item_id"]).astype(np.int64),
        "rating": inter["rating"].to_numpy(np.float32),
        "timestamp": inter["timestamp"].to_numpy(np.int64),
    })
    interactions = interactions.sort_values(["user", "timestamp", "item"], kind="stable").reset_index(drop=True)
    info = {"rating_threshold": rating_threshold, "k_core": k_core, "duplicates": duplicates,
            "source": raw.source}
    return Dataset(raw.name, interactions, items, users, fingerprint(interactions, items, users), info)


def _resolve_duplicates(inter: pd.DataFrame, policy: DuplicatePolicy, source: str) -> pd.DataFrame:
    dup = inter.duplicated(["user_id", "item_id"], keep=False)
    if not dup.any():
        return inter
    if policy == "error":
        row = inter[dup].iloc[0]
        raise DataError(source, f"duplicate (user, item) pair ({row.user_id}, {row.item_id})",
                        expected="one row per pair, or duplicates: last|first")
    ordered = inter.sort_values("timestamp", kind="stable")
    return ordered.drop_duplicates(["user_id", "item_id"], keep=policy).sort_index()


def _k_core(inter: pd.DataFrame, k: int) -> pd.DataFrame:
    while True:
        user_counts = inter["user_id"].map(inter["user_id"].value_counts())
        item_counts = inter["item_id"].map(inter["item_id"].value_counts())
        keep = (user_counts >= k) & (item_counts >= k)
        if keep.all():
            return inter
        inter = inter[keep]


def _side_table(table: pd.DataFrame | None, key: str, ids: np.ndarray) -> pd.DataFrame:
    """One row per id in index order; ids absent from the side file get empty attributes."""
    base = pd.DataFrame({key: ids})
    if table is None or table.empty:
        return base
    table = table.copy()
    table[key] = table[key].astype(str)
    table = table.drop_duplicates(key, keep="first")
    return base.merge(table, on=key, how="left", sort=False)


def fingerprint(*frames: pd.DataFrame) -> str:
    """sha256 over the tables' contents: same data, same fingerprint, on any machine."""
    digest = hashlib.sha256()
    for frame in frames:
        digest.update(",".join(map(str, frame.columns)).encode())
        hashed = pd.util.hash_pandas_object(frame.map(_hashable) if _has_lists(frame) else frame, index=False)
        digest.update(hashed.to_numpy().tobytes())
    return digest.hexdigest()


def _has_lists(frame: pd.DataFrame) -> bool:
    return any(frame[c].map(lambda v: isinstance(v, (list, np.ndarray))).any()
               for c in frame.columns if frame[c].dtype == object)


def _hashable(value):
    if isinstance(value, (list, np.ndarray)):
        return "|".join(map(str, value))
    return value
