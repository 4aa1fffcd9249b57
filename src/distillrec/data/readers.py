"""Readers of the supported file formats; each returns a `RawData` in our column conventions.

- GroupLens MovieLens-100K (`u.data`, `u.item`, `u.user`, `u.genre`) and MovieLens-1M
  (`ratings.dat`, `movies.dat`, `users.dat`), as unzipped from files.grouplens.org.
- RecBole atomic files (`NAME.inter`, `NAME.item`, `NAME.user`) with typed `name:type` headers.
- Generic tables: CSV / TSV / Parquet interactions, optional items and users files, and a
  mapping from our column names to the file's.

Readers only parse and rename; thresholds, duplicates and k-core belong to `build_dataset`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from distillrec.data.dataset import RawData
from distillrec.data.tables import Table, read_parquet_table, read_text_table
from distillrec.errors import DataError

# u.genre order, used when a copy of MovieLens-100K comes without u.genre.
ML100K_GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
                 "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
                 "Romance", "Sci-Fi", "Thriller", "War", "Western")

# Side-table fields we always store as float (NaN when unknown), whatever the source's type.
NUMERIC_FIELDS = ("year", "age")
TIMESTAMP_EXPECTED = "a number (seconds since the epoch, or any sortable number)"
RATING_EXPECTED = "a finite number"


# --- shared assembly ---------------------------------------------------------------------

def interactions_frame(table: Table, user: str, item: str, rating: str | None,
                       timestamp: str | None) -> pd.DataFrame:
    """The interaction columns; no rating means 1.0 (implicit feedback), no timestamp means
    file order, so "latest" still has a meaning for duplicates and temporal splits."""
    n = len(table)
    ratings = (np.ones(n, dtype=np.float32) if rating is None
               else table.numbers(rating, expected=RATING_EXPECTED).astype(np.float32))
    times = (np.arange(n, dtype=np.int64) if timestamp is None
             else table.numbers(timestamp, expected=TIMESTAMP_EXPECTED).astype(np.int64))
    return pd.DataFrame({"user_id": table.text(user, required=True),
                         "item_id": table.text(item, required=True),
                         "rating": ratings, "timestamp": times})


def split_title_year(titles: pd.Series) -> tuple[pd.Series, pd.Series]:
    """'Toy Story (1995)' -> ('Toy Story', 1995.0); titles without a year keep NaN."""
    parts = titles.str.extract(r"^(?P<title>.*?)\s*\((?P<year>\d{4})\)\s*$")
    has_year = parts["year"].notna()
    title = titles.where(~has_year, parts["title"]).str.strip()
    return title.astype(str), pd.to_numeric(parts["year"]).astype(float)


def split_list(values: pd.Series, separator: str) -> pd.Series:
    """'Action|Comedy' -> ['Action', 'Comedy'] (parts stripped: 'Action, Comedy' by ','); empty -> []."""
    return pd.Series([[part.strip() for part in value.split(separator) if part.strip()]
                      if isinstance(value, str) else [] for value in values],
                     index=values.index, dtype=object)


#: separators tried, in this order of preference, on a list column whose separator is not declared.
LIST_SEPARATORS = ("|", ";", ",")


def detect_list_separator(values: pd.Series) -> str:
    """The separator of an undeclared list column: of '|', ';' and ',', the one most values
    contain ('|' when none does: every value is one element). Exported catalogues differ:
    MovieLens writes 'Animation|Comedy', spreadsheets often 'Animation;Comedy'."""
    texts = [value for value in values if isinstance(value, str)]
    counts = {candidate: sum(candidate in text for text in texts) for candidate in LIST_SEPARATORS}
    best = max(LIST_SEPARATORS, key=lambda candidate: counts[candidate])  # ties: the earlier one
    return best if counts[best] else LIST_SEPARATORS[0]


def number_or_nan(values: pd.Series) -> pd.Series:
    """Numbers as float; anything else ('unknown', '') as NaN."""
    return pd.to_numeric(values, errors="coerce").astype(float)


def _require_file(path: Path) -> Path:
    if not path.is_file():
        raise DataError(path, "file not found")
    return path


# --- GroupLens ---------------------------------------------------------------------------

def read_grouplens_100k(directory: str | Path, name: str = "ml-100k") -> RawData:
    """MovieLens-100K as distributed: tab-separated u.data, pipe-separated latin-1 u.item/u.user."""
    directory = Path(directory)
    data = read_text_table(_require_file(directory / "u.data"), separator="\t",
                           columns=["user_id", "item_id", "rating", "timestamp"])
    interactions = interactions_frame(data, "user_id", "item_id", "rating", "timestamp")

    items = None
    if (directory / "u.item").is_file():
        genres = _ml100k_genres(directory / "u.genre")
        table = read_text_table(directory / "u.item", separator="|", encoding="latin-1",
                                columns=["item_id", "title", "release_date", "video_release_date",
                                         "imdb_url", *genres])
        title, year = split_title_year(table.text("title"))
        flags = np.column_stack([table.numbers(g, expected="0 or 1") for g in genres]) == 1
        items = pd.DataFrame({
            "item_id": table.text("item_id", required=True), "title": title, "year": year,
            "genres": [[g for g, on in zip(genres, row) if on] for row in flags],
            "release_date": table.text("release_date"), "imdb_url": table.text("imdb_url")})

    users = _grouplens_users(directory / "u.user", "|", ["user_id", "age", "gender", "occupation", "zip"])
    return RawData(name, interactions, items, users, source=str(directory))


def _ml100k_genres(path: Path) -> list[str]:
    """Genre names in flag-column order: u.genre lists 'name|index'."""
    if not path.is_file():
        return list(ML100K_GENRES)
    table = read_text_table(path, separator="|", encoding="latin-1", columns=["genre", "index"])
    order = table.numbers("index", expected="the genre's column index 0..18")
    return [genre for _, genre in sorted(zip(order, table.text("genre", required=True)))]


def _grouplens_users(path: Path, separator: str, columns: list[str]) -> pd.DataFrame | None:
    """The user attributes both GroupLens releases share (their column order differs), or None
    without the users file."""
    if not path.is_file():
        return None
    table = read_text_table(path, separator=separator, encoding="latin-1", columns=columns)
    return pd.DataFrame({"user_id": table.text("user_id", required=True),
                         "age": table.numbers("age", required=False).astype(float),
                         "gender": table.text("gender"), "occupation": table.text("occupation"),
                         "zip": table.text("zip")})


def read_grouplens_1m(directory: str | Path, name: str = "ml-1m") -> RawData:
    """MovieLens-1M as distributed: '::'-separated latin-1 ratings.dat, movies.dat, users.dat."""
    directory = Path(directory)
    ratings = read_text_table(_require_file(directory / "ratings.dat"), separator="::",
                              encoding="latin-1", columns=["user_id", "item_id", "rating", "timestamp"])
    interactions = interactions_frame(ratings, "user_id", "item_id", "rating", "timestamp")

    items = None
    if (directory / "movies.dat").is_file():
        table = read_text_table(directory / "movies.dat", separator="::", encoding="latin-1",
                                columns=["item_id", "title", "genres"])
        title, year = split_title_year(table.text("title"))
        items = pd.DataFrame({"item_id": table.text("item_id", required=True), "title": title,
                              "year": year, "genres": split_list(table.text("genres"), "|")})

    users_path = directory / "users.dat"
    users = _grouplens_users(users_path, "::", ["user_id", "gender", "age", "occupation", "zip"])
    return RawData(name, interactions, items, decode_ml1m_users(users, users_path), source=str(directory))


# MovieLens-1M's users.dat stores codes where ML-100K's u.user has words (the ML-1M README):
# occupation 0-20, and for age the lower bound of the user's age group.
ML1M_OCCUPATIONS = (
    "other", "academic/educator", "artist", "clerical/admin", "college/grad student", "customer service",
    "doctor/health care", "executive/managerial", "farmer", "homemaker", "K-12 student", "lawyer",
    "programmer", "retired", "sales/marketing", "scientist", "self-employed", "technician/engineer",
    "tradesman/craftsman", "unemployed", "writer")
ML1M_AGE_GROUPS = {1: "under 18", 18: "18-24", 25: "25-34", 35: "35-44", 45: "45-49", 50: "50-55", 56: "56+"}


def decode_ml1m_users(users: pd.DataFrame | None, where) -> pd.DataFrame | None:
    """ML-1M's users with the README's occupation names in place of the codes 0-20 (what a
    language model reads and a new user sends: "writer", not "20") and an `age_group` column
    ("18-24") beside the age code, which stays a number: models bucket it at the group bounds.
    Values that are already names are kept, so decoding twice changes nothing; a code outside
    the README's lists raises, naming `where` and the field."""
    if users is None:
        return None
    users = users.copy()
    if "occupation" in users.columns:
        users["occupation"] = [_ml1m_occupation(value, user, where)
                               for value, user in zip(users["occupation"], users.get("user_id", users.index))]
    if "age" in users.columns:
        ages = pd.to_numeric(users["age"], errors="coerce")
        unknown = ages.notna() & ~ages.isin(list(ML1M_AGE_GROUPS))
        if unknown.any():
            row = users[unknown.to_numpy()].iloc[0]
            raise DataError(where, f"user {row.get('user_id')}: age {float(row['age']):g} is not an ML-1M "
                            "age-group code", field="age", expected=", ".join(map(str, ML1M_AGE_GROUPS)))
        users["age_group"] = [ML1M_AGE_GROUPS[int(a)] if pd.notna(a) else None for a in ages]
    return users


def _ml1m_occupation(value, user, where):
    if pd.isna(value):
        return None
    text = str(value).strip()
    try:
        code = float(text)
    except ValueError:
        return text  # a name already
    if not code.is_integer() or not 0 <= code < len(ML1M_OCCUPATIONS):  # nan and inf too
        raise DataError(where, f"user {user}: occupation {text!r} is not an ML-1M occupation code",
                        field="occupation",
                        expected=f"0-{len(ML1M_OCCUPATIONS) - 1} or a name")
    return ML1M_OCCUPATIONS[int(code)]


# --- RecBole atomic files ----------------------------------------------------------------

RECBOLE_TYPES = ("token", "token_seq", "float", "float_seq")
# RecBole's names for the columns we give a fixed meaning; all other columns keep their names.
RECBOLE_RENAMES = {"movie_title": "title", "release_year": "year", "class": "genres",
                   "genre": "genres", "zip_code": "zip"}


def read_recbole(directory: str | Path, name: str) -> RawData:
    """NAME.inter (required), NAME.item and NAME.user (optional) from `directory`."""
    directory = Path(directory)
    inter_path = _require_file(directory / f"{name}.inter")
    table, types = _read_recbole_table(inter_path)
    for column in ("user_id", "item_id"):
        if column not in types:
            raise DataError(inter_path, f"no {column} column in the header", line=1,
                            expected=f"a '{column}:token' column; found {', '.join(table.columns)}")
    interactions = interactions_frame(
        table, types["user_id"], types["item_id"],
        types.get("rating"), types.get("timestamp"))

    items = _recbole_side_table(directory / f"{name}.item", "item_id")
    users = _recbole_side_table(directory / f"{name}.user", "user_id")
    return RawData(name, interactions, items, users, source=str(directory))


def _read_recbole_table(path: Path) -> tuple[Table, dict[str, str]]:
    """The table and a map from plain column names ('rating') to header names ('rating:float')."""
    table = read_text_table(path, separator="\t")
    names: dict[str, str] = {}
    for header in table.columns:
        column, _, kind = header.partition(":")
        if kind not in RECBOLE_TYPES:
            raise DataError(path, f"header {header!r} has " + (f"unknown type {kind!r}" if kind
                                                                 else "no type"),
                            line=1, field=header, expected=f"name:type with type one of "
                                                           f"{', '.join(RECBOLE_TYPES)}")
        names[column] = header
    return table, names


def _recbole_side_table(path: Path, key: str) -> pd.DataFrame | None:
    if not path.is_file():
        return None
    table, names = _read_recbole_table(path)
    if key not in names:
        raise DataError(path, f"no {key} column in the header", line=1,
                        expected=f"a '{key}:token' column; found {', '.join(table.columns)}")
    frame = {}
    for column, header in names.items():
        ours = RECBOLE_RENAMES.get(column, column)
        kind = header.partition(":")[2]
        if column == key:
            frame[ours] = table.text(header, required=True)
        elif ours == "title":  # a token_seq title is still one string ("Usual Suspects, The")
            frame[ours] = table.text(header)
        elif kind == "float":
            frame[ours] = table.numbers(header, required=False).astype(float)
        elif ours in NUMERIC_FIELDS:  # a token promises no number: ML-100K's year says 'unkonwn' once
            frame[ours] = number_or_nan(table.text(header))
        elif ours == "genres" or kind == "token_seq":
            frame[ours] = split_list(table.text(header), " ")
        elif kind == "float_seq":
            frame[ours] = _float_lists(table, header)
        else:
            frame[ours] = table.text(header)
    return pd.DataFrame(frame)


def _float_lists(table: Table, header: str) -> pd.Series:
    lists = []
    for row, value in enumerate(table.text(header)):
        try:
            lists.append([float(part) for part in value.split()])
        except ValueError:
            raise table.error(row, f"{value!r} is not a list of numbers", field=header,
                              expected="numbers separated by spaces") from None
    return pd.Series(lists, dtype=object)


# --- generic CSV / TSV / Parquet ---------------------------------------------------------

INTERACTION_FIELDS = ("user_id", "item_id", "rating", "timestamp")
ITEM_FIELDS = ("title", "year", "genres")
USER_FIELDS = ("age", "gender", "occupation", "zip")
_SEPARATORS = {".csv": ",", ".tsv": "\t", ".txt": "\t"}


def read_tables(interactions: str | Path, *, items: str | Path | None = None,
                users: str | Path | None = None, mapping: Mapping[str, str] | None = None,
                sep: str | None = None, name: str | None = None,
                list_separators: Mapping[str, str] | None = None) -> RawData:
    """CSV / TSV / Parquet files with a mapping {our column: their column}.

    Our columns: user_id, item_id (required; default to columns of those names), rating
    (default: a column named 'rating', else 1.0), timestamp (default: a column named
    'timestamp', else file order), and for the side files title, year, genres (a list), age,
    gender, occupation, zip. Columns not named keep their own names in the side tables; extra
    interaction columns are dropped.
    sep: the separator of text files; by default ',' for .csv and tab for .tsv / .txt.
    list_separators: {column: separator} of the side files' list columns (our name or the
        file's), e.g. {"genres": ";", "tags": ","}; an undeclared genres column is split by
        '|', ';' or ',', whichever its values contain (`detect_list_separator`).
    """
    mapping = dict(mapping or {})
    unknown = sorted(set(mapping) - set(INTERACTION_FIELDS + ITEM_FIELDS + USER_FIELDS))
    if unknown:
        raise DataError(interactions, f"unknown key {unknown[0]!r} in the column mapping",
                        field=unknown[0], expected="keys among " + ", ".join(
                            INTERACTION_FIELDS + ITEM_FIELDS + USER_FIELDS))
    table = open_table(interactions, sep)
    columns = {field: _mapped_column(table, mapping, field, required=field in ("user_id", "item_id"))
               for field in INTERACTION_FIELDS}
    frame = interactions_frame(table, columns["user_id"], columns["item_id"],
                               columns["rating"], columns["timestamp"])

    for path, fields in ((items, ITEM_FIELDS), (users, USER_FIELDS)):
        missing = [field for field in fields if field in mapping and path is None]
        if missing:
            kind = "items" if fields is ITEM_FIELDS else "users"
            raise DataError(interactions, f"the mapping names {missing[0]!r} but no {kind} file "
                            "was given", field=missing[0],
                            expected=f"{'an' if kind == 'items' else 'a'} {kind} file, e.g. "
                                     f"{kind}.csv beside interactions.csv in a folder")
    lists = dict(list_separators or {})
    used: set[str] = set()
    item_table = _generic_side_table(items, "item_id", ITEM_FIELDS, mapping, sep, lists, used)
    user_table = _generic_side_table(users, "user_id", USER_FIELDS, mapping, sep, lists, used)
    unused = sorted(set(lists) - used)
    if unused:
        raise DataError(items or users or interactions, f"list_separators names column {unused[0]!r}, which "
                        "no items or users file has", field=unused[0],
                        expected="columns of the items/users files: " + ", ".join(
                            str(c) for t in (item_table, user_table) if t is not None for c in t.columns))
    return RawData(name or Path(interactions).stem, frame, item_table, user_table,
                   source=str(interactions))


def open_table(path: str | Path, sep: str | None) -> Table:
    path = _require_file(Path(path))
    if path.suffix.lower() == ".parquet":
        return read_parquet_table(path)
    separator = sep or _SEPARATORS.get(path.suffix.lower())
    if separator is None:
        raise DataError(path, f"cannot tell the separator of a {path.suffix or 'suffix-less'} file",
                        expected="a .csv, .tsv, .txt or .parquet file, or an explicit separator")
    return read_text_table(path, separator=separator, quoting=True)


def _mapped_column(table: Table, mapping: Mapping[str, str], field: str, *,
                   required: bool) -> str | None:
    """The file's column for our `field`: the mapped one (which must exist), else a column
    of our name, else None for optional fields."""
    if field in mapping:
        column = mapping[field]
        if column not in table.columns:
            raise DataError(table.path, f"the mapping names column {column!r} for {field!r}, "
                            "but the file has no such column", field=column,
                            expected="one of the file's columns: " + ", ".join(table.columns))
        return column
    if field in table.columns:
        return field
    if required:
        raise DataError(table.path, f"no {field!r} column", field=field,
                        expected=f"a column named {field!r} or a mapping "
                                 f"{{{field!r}: <column>}}; the file's columns: "
                                 + ", ".join(table.columns))
    return None


def _generic_side_table(path: str | Path | None, key: str, fields: tuple[str, ...],
                        mapping: Mapping[str, str], sep: str | None, lists: Mapping[str, str],
                        used: set[str]) -> pd.DataFrame | None:
    if path is None:
        return None
    table = open_table(path, sep)
    # The key column may carry the interactions file's name for it, or ours.
    key_mapping = {key: mapping[key]} if mapping.get(key) in table.columns else {}
    key_column = _mapped_column(table, key_mapping, key, required=True)
    theirs = {field: _mapped_column(table, mapping, field, required=False) for field in fields}
    renamed = {column: field for field, column in theirs.items() if column is not None}

    frame = {key: table.text(key_column, required=True)}
    for column in table.columns:
        if column == key_column:
            continue
        ours = renamed.get(column, column)
        declared = next((name for name in (ours, column) if name in lists), None)
        if declared is not None:
            used.add(declared)
            frame[ours] = _list_column(table, column, lists[declared])
        elif ours in NUMERIC_FIELDS:  # side attributes: 'unknown' is a missing value, not an error
            frame[ours] = number_or_nan(table.arrow.column(column).to_pandas())
        elif ours == "genres":
            frame[ours] = _list_column(table, column, None)
        elif table.is_text(column):
            frame[ours] = table.text(column)
        else:  # Parquet keeps its native types
            frame[ours] = table.arrow.column(column).to_pandas()
    return pd.DataFrame(frame)


def _list_column(table: Table, column: str, separator: str | None) -> pd.Series:
    """A list per row: text split by `separator` (None: detected), Parquet lists as they are."""
    if table.is_text(column):
        values = table.text(column)
        return split_list(values, separator or detect_list_separator(values))
    # a Parquet list column is already a list per row
    return pd.Series([[] if v is None else list(v) if isinstance(v, (list, tuple)) else [v]
                      for v in table.arrow.column(column).to_pylist()], dtype=object)



# --- folders -----------------------------------------------------------------------------

_TABLE_SUFFIXES = (".csv", ".tsv", ".txt", ".parquet")


def directory_format(directory: str | Path) -> str | None:
    """Which format a folder holds, by its files: 'grouplens-100k' (u.data), 'grouplens-1m'
    (ratings.dat), 'recbole' (*.inter) or 'tables' (interactions.csv/.tsv/.txt/.parquet)."""
    directory = Path(directory)
    if not directory.is_dir():
        return None
    if (directory / "u.data").is_file():
        return "grouplens-100k"
    if (directory / "ratings.dat").is_file():
        return "grouplens-1m"
    if any(directory.glob("*.inter")):
        return "recbole"
    if _table_file(directory, "interactions"):
        return "tables"
    return None


def read_directory(directory: str | Path, *, name: str | None = None,
                   mapping: Mapping[str, str] | None = None, sep: str | None = None,
                   list_separators: Mapping[str, str] | None = None) -> RawData:
    """Read a folder in whichever supported format it holds (see `directory_format`).

    mapping, sep and list_separators apply to the 'tables' layout: interactions.<ext> with
    optional items.<ext> and users.<ext>; the other formats have fixed columns.
    """
    directory = Path(directory)
    kind = directory_format(directory)
    if kind is None:
        raise DataError(directory, "no recognised data files in this folder",
                        expected="u.data (MovieLens-100K), ratings.dat (MovieLens-1M), NAME.inter "
                                 "(RecBole) or interactions.csv/.tsv/.parquet")
    if kind != "tables" and (mapping or sep or list_separators):
        raise DataError(directory, f"a column mapping or separator was given, but the folder "
                        f"holds {kind} files, whose columns are fixed",
                        expected="no mapping / separator for this format")
    if kind == "grouplens-100k":
        return read_grouplens_100k(directory, name or directory.name)
    if kind == "grouplens-1m":
        return read_grouplens_1m(directory, name or directory.name)
    if kind == "recbole":
        raw = read_recbole(directory, _recbole_name(directory))
        raw.name = name or raw.name
        return raw
    return read_tables(_table_file(directory, "interactions"), items=_table_file(directory, "items"),
                       users=_table_file(directory, "users"), mapping=mapping, sep=sep,
                       name=name or directory.name, list_separators=list_separators)


def _recbole_name(directory: Path) -> str:
    """NAME of NAME.inter: the folder's own name if such a file exists, else the only one."""
    if (directory / f"{directory.name}.inter").is_file():
        return directory.name
    names = sorted(path.stem for path in directory.glob("*.inter"))
    if len(names) > 1:
        raise DataError(directory, f"several RecBole datasets here ({', '.join(names)})",
                        expected=f"one NAME.inter, or one named after the folder "
                                 f"({directory.name}.inter)")
    return names[0]


def _table_file(directory: Path, stem: str) -> Path | None:
    for suffix in _TABLE_SUFFIXES:
        if (directory / f"{stem}{suffix}").is_file():
            return directory / f"{stem}{suffix}"
    return None


# --- streaming reads of large logs ---------------------------------------------------------

#: rows decoded at a time by `stream_interactions`: memory holds one batch of Arrow columns
#: plus the compact index arrays, never the whole file as Python strings.
STREAM_BATCH_ROWS = 1 << 20


def stream_interactions(path: str | Path, mapping: Mapping[str, str] | None = None, *,
                        batch_rows: int = STREAM_BATCH_ROWS, name: str | None = None):
    """A Dataset straight from a large Parquet interactions file, read in record batches.

    `read_tables` + `build_dataset` turn every id into a Python string (about 100 bytes a
    row); here each batch's ids become integer codes at once, so memory stays near 28 bytes
    a row (user, item, timestamp int64; rating float32) plus one batch. The result follows
    `build_dataset`'s conventions: ids sorted as strings give contiguous indices, duplicate
    (user, item) rows keep the latest, rows sorted by (user, timestamp, item); no rating
    threshold or k-core (use `build_dataset` for those). Side tables hold the ids only.
    mapping: {user_id, item_id, rating, timestamp: column}; absent rating means 1.0,
    absent timestamp means file order.
    """
    import pyarrow.parquet as pq

    from distillrec.data.dataset import Dataset, fingerprint

    path = _require_file(Path(path))
    mapping = dict(mapping or {})
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(path, f"not a readable Parquet file ({exc})") from None
    present = set(parquet.schema_arrow.names)
    columns = {}
    for field in INTERACTION_FIELDS:
        column = mapping.get(field, field)
        if column in present:
            columns[field] = column
        elif field in ("user_id", "item_id") or field in mapping:
            raise DataError(path, f"no column {column!r}", field=field,
                            expected="one of the file's columns: " + ", ".join(sorted(present)))
    if parquet.metadata.num_rows == 0:
        raise DataError(path, "no data rows", expected="at least one row")

    users, items = _IdCodes(path, "user_id"), _IdCodes(path, "item_id")
    ratings, times = [], []
    offset = 0
    for batch in parquet.iter_batches(batch_size=batch_rows, columns=list(dict.fromkeys(columns.values()))):
        users.add(batch.column(columns["user_id"]), offset)
        items.add(batch.column(columns["item_id"]), offset)
        ratings.append(_stream_numbers(path, batch, columns.get("rating"), offset, np.float32, RATING_EXPECTED))
        times.append(_stream_numbers(path, batch, columns.get("timestamp"), offset, np.int64, TIMESTAMP_EXPECTED))
        offset += batch.num_rows
    user_ids, user = users.indices()
    item_ids, item = items.indices()
    rating, timestamp = np.concatenate(ratings), np.concatenate(times)
    del ratings, times

    # Duplicates keep the latest: sort by (user, item, timestamp), keep each pair's last row.
    order = np.lexsort((timestamp, item, user))
    last = np.ones(len(order), dtype=bool)
    sorted_users, sorted_items = user[order], item[order]
    last[:-1] = (sorted_users[1:] != sorted_users[:-1]) | (sorted_items[1:] != sorted_items[:-1])
    del sorted_users, sorted_items
    keep = order[last]
    keep = keep[np.lexsort((item[keep], timestamp[keep], user[keep]))]
    interactions = pd.DataFrame({"user": user[keep], "item": item[keep], "rating": rating[keep],
                                 "timestamp": timestamp[keep]})
    items_table = pd.DataFrame({"item_id": item_ids})
    users_table = pd.DataFrame({"user_id": user_ids})
    info = {"rating_threshold": None, "k_core": 0, "duplicates": "last", "source": str(path),
            "streamed": {"batch_rows": batch_rows, "rows_read": offset}}
    return Dataset(name or path.stem, interactions, items_table, users_table,
                   fingerprint(interactions, items_table, users_table), info)


class _IdCodes:
    """Ids seen batch by batch -> (sorted string ids, index per row), as `build_dataset` maps them.
    Integer ids stay integers until the end; text ids are coded per batch by Arrow."""

    def __init__(self, path: Path, field: str):
        self.path, self.field = path, field
        self.parts: list[np.ndarray] = []
        self.vocabulary: dict[str, int] = {}  # text ids only: id -> code, in order of appearance
        self.integer: bool | None = None

    def add(self, values: pa.Array, offset: int) -> None:
        if values.null_count:
            row = int(np.flatnonzero(values.is_null().to_numpy(zero_copy_only=False))[0])
            raise DataError(self.path, "empty id", line=offset + row + 1, field=self.field,
                            expected="a user/item id on every row")
        integer = pa.types.is_integer(values.type)
        if self.integer is not None and integer != self.integer:
            raise DataError(self.path, f"id type changed to {values.type} at row {offset + 1}", field=self.field,
                            expected="one id type in every row group")
        self.integer = integer
        if integer:
            self.parts.append(values.to_numpy().astype(np.int64, copy=False))
            return
        encoded = pc.dictionary_encode(values.cast(pa.string()))
        codes = np.fromiter((self.vocabulary.setdefault(text, len(self.vocabulary))
                             for text in encoded.dictionary.to_pylist()), dtype=np.int64,
                            count=len(encoded.dictionary))
        self.parts.append(codes[encoded.indices.to_numpy(zero_copy_only=False)])

    def indices(self) -> tuple[np.ndarray, np.ndarray]:
        values = np.concatenate(self.parts)
        self.parts = []
        if self.integer:
            unique, codes = np.unique(values, return_inverse=True)
            texts = unique.astype(str)
        else:
            codes, texts = values, np.array(list(self.vocabulary), dtype=object).astype(str)
        order = np.argsort(texts, kind="stable")  # ids sorted as strings, as build_dataset does
        rank = np.empty(len(order), dtype=np.int64)
        rank[order] = np.arange(len(order))
        return texts[order].astype(object), rank[codes]


def _stream_numbers(path: Path, batch: pa.RecordBatch, column: str | None, offset: int, dtype,
                    expected: str) -> np.ndarray:
    if column is None:  # no rating: implicit feedback (1.0); no timestamp: file order
        return (np.ones(batch.num_rows, dtype=dtype) if dtype == np.float32
                else np.arange(offset, offset + batch.num_rows, dtype=dtype))
    values = batch.column(column)
    if not (pa.types.is_integer(values.type) or pa.types.is_floating(values.type)) or values.null_count:
        bad = 0 if not values.null_count else int(np.flatnonzero(values.is_null().to_numpy(zero_copy_only=False))[0])
        raise DataError(path, f"value of type {values.type} at row {offset + bad + 1}", line=offset + bad + 1,
                        field=column, expected=expected)
    numbers = values.to_numpy(zero_copy_only=False).astype(dtype, copy=False)
    if dtype == np.float32 and not np.isfinite(numbers).all():
        row = int(np.flatnonzero(~np.isfinite(numbers))[0])
        raise DataError(path, f"value {numbers[row]}", line=offset + row + 1, field=column, expected=expected)
    return numbers
