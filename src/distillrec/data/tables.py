"""Raw tables from files: delimited text and Parquet, every problem reported at its exact line.

Text files are parsed in one vectorised pass (pyarrow, every column as a string). Only when that
pass fails, or a value does not convert, is the file re-read row by row to find the first bad
line, so correct files pay nothing for precise error messages. Readers of the file formats
(`distillrec.data.readers`) build on the `Table` interface: `columns`, `text`, `numbers`, `error`.
"""

from __future__ import annotations

import csv
import io
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from distillrec.errors import DataError

# Separators a user may have meant when a line splits into the wrong number of columns.
_CANDIDATE_SEPARATORS = (",", "\t", ";", "|", "::")
# Multi-character separators (MovieLens-1M "::") are swapped for the ASCII unit separator,
# a character made for the job and absent from real data, so pyarrow sees one character.
_UNIT_SEPARATOR = "\x1f"
_NUMBER = r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$"


class Table(ABC):
    """Columns of one file, read as strings (text) or native types (Parquet)."""

    def __init__(self, path: Path, arrow: pa.Table):
        self.path = path
        self.arrow = arrow

    @property
    def columns(self) -> list[str]:
        return list(self.arrow.column_names)

    def __len__(self) -> int:
        return self.arrow.num_rows

    @abstractmethod
    def error(self, row: int, problem: str, *, field: str | None = None,
              expected: str | None = None) -> DataError:
        """A DataError that points at data row `row` (0-based) the way a user finds it."""

    def is_text(self, column: str) -> bool:
        kind = self.arrow.column(column).type
        return pa.types.is_string(kind) or pa.types.is_large_string(kind)

    def text(self, column: str, *, required: bool = False) -> pd.Series:
        """The column as strings; `required` rejects empty values (ids must not be blank)."""
        values = self.arrow.column(column)
        if not self.is_text(column):
            values = pc.cast(values, pa.string())
        if required:
            empty = pc.fill_null(pc.equal(pc.utf8_trim_whitespace(values), ""), True)
            first = pc.index(empty, True).as_py()
            if first >= 0:
                raise self.error(first, "empty value", field=column, expected="a non-empty id")
        return values.to_pandas()

    def numbers(self, column: str, *, required: bool = True,
                expected: str = "a finite number") -> np.ndarray:
        """The column as int64 (all whole numbers) or float64.

        required=False lets empty cells through as NaN (optional attributes such as a year).
        """
        values = self.arrow.column(column)
        if pa.types.is_integer(values.type) and not values.null_count:
            return values.to_numpy()
        if pa.types.is_integer(values.type) or pa.types.is_floating(values.type):
            parsed = pc.cast(values, pa.float64())
        else:
            parsed = _parse_numbers(pc.cast(values, pa.string()), required)
            if parsed is None:
                raise self._bad_number(values, column, required, expected)
            if pa.types.is_integer(parsed.type):
                return parsed.to_numpy()
        finite = pc.is_finite(parsed)
        first_bad = pc.index(pc.fill_null(finite, not required), False).as_py()
        if first_bad >= 0:
            value = values[first_bad].as_py()
            problem = "empty value" if value is None else f"{value!r} is not a number"
            raise self.error(first_bad, problem, field=column, expected=expected)
        return parsed.to_numpy()

    def _bad_number(self, values, column, required, expected) -> DataError:
        ok = pc.match_substring_regex(values, _NUMBER)
        if not required:
            ok = pc.or_(ok, pc.equal(pc.utf8_trim_whitespace(values), ""))
        first = pc.index(pc.fill_null(ok, False), False).as_py()
        if first < 0:  # pyarrow refused a value our pattern accepts: say so without a line
            return DataError(self.path, "values do not convert to numbers", field=column,
                             expected=expected)
        value = values[first].as_py()
        problem = "empty value" if not value.strip() else f"{value!r} is not a number"
        return self.error(first, problem, field=column, expected=expected)


def _parse_numbers(values: pa.ChunkedArray, required: bool) -> pa.ChunkedArray | None:
    """Strings to int64 when all are whole numbers, else float64; None when some do not parse."""
    try:  # fast path: ids, ratings and timestamps are usually plain integers
        return pc.cast(values, pa.int64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    trimmed = pc.utf8_trim_whitespace(values)
    if not required:
        trimmed = pc.if_else(pc.equal(trimmed, ""), pa.scalar(None, pa.string()), trimmed)
    try:
        return pc.cast(trimmed, pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


@dataclass(frozen=True)
class _TextFormat:
    separator: str  # as the user knows it, e.g. "::"
    quoting: bool   # CSV quoting rules ("a, b" in double quotes); off for formats that never quote
    header: bool

    @property
    def delimiter(self) -> str:  # the single character pyarrow and csv see
        return self.separator if len(self.separator) == 1 else _UNIT_SEPARATOR

    def rows(self, text: str):
        """(first line, fields) of every non-blank row, in file order."""
        reader = csv.reader(io.StringIO(text), delimiter=self.delimiter,
                            quoting=csv.QUOTE_MINIMAL if self.quoting else csv.QUOTE_NONE)
        previous_end = 0
        for fields in reader:
            start, previous_end = previous_end + 1, reader.line_num
            if fields:
                yield start, fields


class TextTable(Table):
    """A delimited text file; errors name the line as an editor shows it (1-based)."""

    def __init__(self, path: Path, arrow: pa.Table, text: str, fmt: _TextFormat):
        super().__init__(path, arrow)
        self._text = text
        self._format = fmt

    def line_of(self, row: int) -> int:
        rows = self._format.rows(self._text)
        if self._format.header:
            next(rows)
        for index, (line, _) in enumerate(rows):
            if index == row:
                return line
        raise IndexError(row)

    def error(self, row, problem, *, field=None, expected=None) -> DataError:
        return DataError(self.path, problem, line=self.line_of(row), field=field, expected=expected)


class ParquetTable(Table):
    """A Parquet file; it has rows, not lines, so errors name the 1-based row."""

    def error(self, row, problem, *, field=None, expected=None) -> DataError:
        return DataError(self.path, f"row {row + 1}: {problem}", field=field, expected=expected)


def read_text_table(path: str | Path, *, separator: str, columns: list[str] | None = None,
                    encoding: str = "utf-8", quoting: bool = False,
                    min_columns: int = 2) -> TextTable:
    """Parse a delimited file, every column as strings.

    columns: the names of a file without a header line; None reads them from line 1.
    encoding: "utf-8" (checked: a bad byte is reported with its line) or "latin-1".
    min_columns: fewer columns in the header is taken as a wrong separator.
    """
    import pyarrow.csv as pa_csv

    path = Path(path)
    fmt = _TextFormat(separator, quoting, header=columns is None)
    text = _decode(path, path.read_bytes(), encoding)
    if not text.strip():
        raise DataError(path, "file is empty", expected="delimited rows")
    if fmt.delimiter != separator:
        text = text.replace(separator, fmt.delimiter)
    names = _header(path, text, fmt, min_columns) if columns is None else list(columns)

    try:
        arrow = pa_csv.read_csv(
            io.BytesIO(text.encode("utf-8")),
            read_options=pa_csv.ReadOptions(column_names=names, skip_rows=int(fmt.header)),
            parse_options=pa_csv.ParseOptions(delimiter=fmt.delimiter,
                                              quote_char='"' if quoting else False,
                                              newlines_in_values=quoting),
            convert_options=pa_csv.ConvertOptions(column_types={n: pa.string() for n in names},
                                                  strings_can_be_null=False, null_values=[]))
    except pa.ArrowInvalid as exc:
        raise _malformed_line(path, text, fmt, len(names)) or DataError(
            path, f"cannot be parsed ({exc})", expected=f"rows separated by {separator!r}") from None
    if arrow.num_rows == 0:
        raise DataError(path, "no data rows" + (" after the header" if fmt.header else ""),
                        expected="at least one row")
    return TextTable(path, arrow, text, fmt)


def read_parquet_table(path: str | Path) -> ParquetTable:
    import pyarrow.parquet as pq

    path = Path(path)
    try:
        arrow = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(path, f"not a readable Parquet file ({exc})") from None
    if arrow.num_rows == 0:
        raise DataError(path, "no data rows", expected="at least one row")
    return ParquetTable(path, arrow)


def _decode(path: Path, data: bytes, encoding: str) -> str:
    if encoding != "utf-8":
        return data.decode(encoding)
    try:
        return data.decode("utf-8-sig")  # tolerate the byte-order mark spreadsheet programs add
    except UnicodeDecodeError as exc:
        line_start = data.rfind(b"\n", 0, exc.start) + 1
        line = data.count(b"\n", 0, exc.start) + 1
        raise DataError(path, f"byte 0x{data[exc.start]:02x} at column {exc.start - line_start + 1} "
                        "is not valid UTF-8", line=line,
                        expected="UTF-8 text (re-save the file as UTF-8)") from None


def _header(path: Path, text: str, fmt: _TextFormat, min_columns: int) -> list[str]:
    first_line = text[:text.find("\n")] if "\n" in text else text
    _, names = next(fmt.rows(first_line), (1, []))  # a blank line 1 is a header of no columns
    names = [name.strip() for name in names]
    if len(names) < min_columns:
        raise DataError(path, _count_problem(len(names), first_line, fmt, min_columns),
                        line=1, expected=f"a header of at least {min_columns} columns separated by "
                                         f"{fmt.separator!r}")
    for position, name in enumerate(names):
        if not name:
            raise DataError(path, f"column {position + 1} of the header has no name", line=1,
                            expected="a name for every column")
        if name in names[:position]:
            raise DataError(path, f"column name {name!r} appears twice in the header", line=1,
                            field=name, expected="unique column names")
    return names


def _malformed_line(path: Path, text: str, fmt: _TextFormat, n_columns: int) -> DataError | None:
    """The first row whose field count differs from the header's, as a DataError."""
    rows = fmt.rows(text)
    if fmt.header:
        next(rows)
    try:
        for line, fields in rows:
            if len(fields) != n_columns:
                physical = text.split("\n", line)[line - 1]
                return DataError(path, _count_problem(len(fields), physical, fmt, n_columns),
                                 line=line, expected=f"{n_columns} columns separated by "
                                                     f"{fmt.separator!r}")
    except csv.Error as exc:  # e.g. an unterminated quote swallowing the rest of the file
        return DataError(path, f"cannot be parsed ({exc})", expected="balanced double quotes")
    return None


def _count_problem(found: int, line: str, fmt: _TextFormat, wanted: int) -> str:
    """'found 1 column', plus a guess at the separator when another one splits the line."""
    line = line.rstrip("\r").replace(_UNIT_SEPARATOR, fmt.separator)
    problem = f"found {found} column{'s' if found != 1 else ''}"
    if found != 1:
        return problem
    for candidate in _CANDIDATE_SEPARATORS:
        if candidate != fmt.separator and len(line.split(candidate)) >= max(wanted, 2):
            return f"{problem}; is the separator {candidate!r}?"
    return problem
