"""Side features as tensors: fitted vocabularies and buckets for a Dataset's user/item tables.

A `FeatureColumn` declares how one table column becomes integer indices:
  "category": one value per row, looked up in a vocabulary (zip, gender, occupation ...);
  "multi":    a list of values per row (genres), encoded as a padded [n, width] index matrix;
  "bucket":   a number per row (age, year), cut into buckets by edges (given, or fitted as
              quantiles of the table).
Index 0 of every column is the "unknown" slot: missing values, values outside the vocabulary
(new users and items, rare values below `min_count`) and non-numbers in a bucket column all map
to it. Multi-valued columns also pad with 0, so the model treats unknown values there as absent.

A `FeatureEncoder` holds the fitted columns. It is plain data (`to_dict` / `from_dict` are
JSON-safe), so it is saved next to a model and encodes raw attributes of new users or items
exactly as it encoded the training tables.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from distillrec.data.dataset import Dataset
from distillrec.errors import DistillrecError

FeatureKind = Literal["category", "multi", "bucket"]
KINDS: tuple[str, ...] = ("category", "multi", "bucket")
UNKNOWN = 0


@dataclass(frozen=True)
class FeatureColumn:
    """How one table column becomes indices. `edges` (bucket columns only): ascending cut
    points; left empty, `buckets` quantile edges are fitted from the table. `min_count`
    (category and multi): values seen fewer times map to the unknown slot, which gives that
    slot training signal and keeps long-tail columns (zip codes) small."""

    name: str
    kind: FeatureKind
    edges: tuple[float, ...] = ()
    buckets: int = 10
    min_count: int = 1

    def __post_init__(self):
        if self.kind not in KINDS:
            raise DistillrecError(
                f"feature column {self.name!r}: unknown kind {self.kind!r}; expected one of {', '.join(KINDS)}")
        if list(self.edges) != sorted(set(self.edges)):
            raise DistillrecError(
                f"feature column {self.name!r}: bucket edges {list(self.edges)} must be strictly ascending")


# MovieLens defaults. Ages: the ML-1M age groups (ML-1M stores the group's lower bound, ML-100K
# the age itself; both land in the same buckets). Years: fitted quantiles, since the catalog's
# release years bunch up in the last decade it covers.
DEFAULT_USER_COLUMNS: tuple[FeatureColumn, ...] = (
    FeatureColumn("gender", "category"),
    FeatureColumn("occupation", "category"),
    FeatureColumn("age", "bucket", edges=(18, 25, 35, 45, 50, 56)),
)
DEFAULT_ITEM_COLUMNS: tuple[FeatureColumn, ...] = (
    FeatureColumn("genres", "multi"),
    FeatureColumn("year", "bucket", buckets=10),
)


def as_columns(columns: Sequence[FeatureColumn | Mapping[str, Any]]) -> tuple[FeatureColumn, ...]:
    """Columns given in code or as config mappings ({"name": "age", "kind": "bucket", ...})."""
    out = []
    for column in columns:
        if isinstance(column, FeatureColumn):
            out.append(column)
            continue
        try:
            out.append(FeatureColumn(**{**column, "edges": tuple(column.get("edges", ()))}))
        except TypeError as exc:
            raise DistillrecError(
                f"feature column {dict(column)!r}: {exc}; expected keys name, kind, edges, buckets, min_count"
            ) from None
    return tuple(out)


@dataclass
class FeatureEncoder:
    """Fitted feature columns of one side table: vocabularies (value -> index - 1) and edges."""

    columns: tuple[FeatureColumn, ...]
    vocabularies: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def fit(cls, table: pd.DataFrame, columns: Sequence[FeatureColumn | Mapping[str, Any]]) -> "FeatureEncoder":
        """Fit the declared columns that `table` has; absent ones are skipped, since datasets
        differ in which attributes they ship (a dataset without a user file has none)."""
        fitted, vocabularies = [], {}
        for column in as_columns(columns):
            if column.name not in table.columns:
                continue
            values = table[column.name]
            if column.kind == "bucket":
                fitted.append(replace(column, edges=column.edges or _quantile_edges(values, column.buckets)))
            else:
                fitted.append(column)
                tokens = values.map(_tokens) if column.kind == "multi" else values.map(_token)
                vocabularies[column.name] = _vocabulary(tokens, multi=column.kind == "multi",
                                                        min_count=column.min_count)
        return cls(tuple(fitted), vocabularies)

    @property
    def names(self) -> list[str]:
        return [column.name for column in self.columns]

    def cardinality(self, name: str) -> int:
        """Number of indices of column `name`, the unknown slot included."""
        column = self._column(name)
        if column.kind == "bucket":
            return len(column.edges) + 2  # unknown, below the first edge, ..., above the last
        return len(self.vocabularies[name]) + 1

    def kind(self, name: str) -> FeatureKind:
        return self._column(name).kind

    def encode(self, table: pd.DataFrame) -> dict[str, torch.Tensor]:
        """Index tensors of every fitted column, one row per table row: [n] for category and
        bucket columns, [n, width] for multi columns. Columns the table lacks encode as unknown."""
        n = len(table)
        out = {}
        for column in self.columns:
            values = table[column.name] if column.name in table.columns else pd.Series([None] * n, dtype=object)
            if column.kind == "bucket":
                out[column.name] = _bucketize(values, column.edges)
            elif column.kind == "category":
                lookup = self._lookup(column.name)
                out[column.name] = torch.tensor([lookup.get(_token(v), UNKNOWN) for v in values], dtype=torch.long)
            else:
                lookup = self._lookup(column.name)
                out[column.name] = _pad([[lookup.get(t, UNKNOWN) for t in _tokens(v)] for v in values])
        return out

    def encode_records(self, records: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        """Encode raw attributes of new users or items, e.g. [{"age": 25, "gender": "F"}].
        Keys that are not feature columns (a title) are ignored; missing keys are unknown."""
        table = pd.DataFrame({name: pd.Series([r.get(name) for r in records], dtype=object)
                              for name in self.names}, index=range(len(records)))
        return self.encode(table)

    def to_dict(self) -> dict[str, Any]:
        return {"columns": [{**asdict(c), "edges": list(c.edges)} for c in self.columns],
                "vocabularies": {name: list(vocab) for name, vocab in self.vocabularies.items()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "FeatureEncoder":
        columns = as_columns(data["columns"])
        vocabularies = {name: list(vocab) for name, vocab in data["vocabularies"].items()}
        missing = [c.name for c in columns if c.kind != "bucket" and c.name not in vocabularies]
        if missing:
            raise DistillrecError(f"feature encoder: no vocabulary saved for column(s) {', '.join(missing)}")
        return cls(columns, vocabularies)

    def _column(self, name: str) -> FeatureColumn:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(f"no feature column {name!r}; fitted columns: {self.names}")

    def _lookup(self, name: str) -> dict[str, int]:
        return {value: index + 1 for index, value in enumerate(self.vocabularies[name])}


def trained_id_masks(split) -> tuple[torch.Tensor, torch.Tensor]:
    """(user_has_id, item_has_id): bool masks of the users and items with training
    interactions; only those get an ID embedding, everyone else is scored from features."""
    user_has_id = torch.zeros(split.n_users, dtype=torch.bool)
    item_has_id = torch.zeros(split.n_items, dtype=torch.bool)
    # from_numpy of a copy: Parquet-backed columns are read-only arrays
    user_has_id[torch.from_numpy(split.train["user"].to_numpy(copy=True))] = True
    item_has_id[torch.from_numpy(split.train["item"].to_numpy(copy=True))] = True
    return user_has_id, item_has_id


def fit_user_encoder(dataset: Dataset, columns: Sequence[FeatureColumn | Mapping] = DEFAULT_USER_COLUMNS) -> FeatureEncoder:
    return FeatureEncoder.fit(dataset.users, columns)


def fit_item_encoder(dataset: Dataset, columns: Sequence[FeatureColumn | Mapping] = DEFAULT_ITEM_COLUMNS) -> FeatureEncoder:
    return FeatureEncoder.fit(dataset.items, columns)


def user_features(dataset: Dataset, encoder: FeatureEncoder | None = None) -> dict[str, torch.Tensor]:
    """Feature tensors of every user, in index order (default MovieLens columns unless given)."""
    return (encoder or fit_user_encoder(dataset)).encode(dataset.users)


def item_features(dataset: Dataset, encoder: FeatureEncoder | None = None) -> dict[str, torch.Tensor]:
    """Feature tensors of every item, in index order (default MovieLens columns unless given)."""
    return (encoder or fit_item_encoder(dataset)).encode(dataset.items)


def _is_missing(value: Any) -> bool:
    """None, NaN, pd.NA: whatever missing marker the table's dtype uses."""
    return pd.api.types.is_scalar(value) and bool(pd.isna(value))


def _token(value: Any) -> str | None:
    """One canonical string per value, so 24, 24.0 and "24" are the same token."""
    if _is_missing(value):
        return None
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        value = int(value)
    return str(value).strip()


def _tokens(value: Any) -> list[str]:
    """The values of a multi-valued cell: a list / array / tuple, or one bare value."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return [t for t in map(_token, value) if t]
    token = _token(value)
    return [token] if token else []


def _vocabulary(tokens: pd.Series, *, multi: bool, min_count: int) -> list[str]:
    """Values seen at least `min_count` times, most frequent first (ties by value, so the
    same table always gives the same vocabulary)."""
    flat = tokens.explode() if multi else tokens
    counts = flat.dropna().value_counts()
    kept = counts[counts >= min_count]
    return sorted(kept.index, key=lambda value: (-kept[value], value))


def _quantile_edges(values: pd.Series, buckets: int) -> tuple[float, ...]:
    numbers = pd.to_numeric(values, errors="coerce").dropna().to_numpy(np.float64)
    if len(numbers) == 0 or buckets < 2:
        return ()
    inner = np.quantile(numbers, np.linspace(0, 1, buckets + 1)[1:-1])
    return tuple(float(edge) for edge in np.unique(inner))


def _bucketize(values: pd.Series, edges: tuple[float, ...]) -> torch.Tensor:
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(np.float64)
    index = 1 + np.searchsorted(np.asarray(edges, np.float64), numbers, side="right")
    index[np.isnan(numbers)] = UNKNOWN
    return torch.from_numpy(index.astype(np.int64))


def _pad(rows: list[list[int]]) -> torch.Tensor:
    """[n, width] with 0 padding; width at least 1 so an all-empty column stays a matrix."""
    width = max([len(row) for row in rows] + [1])
    out = torch.zeros(len(rows), width, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, :len(row)] = torch.tensor(row, dtype=torch.long)
    return out
