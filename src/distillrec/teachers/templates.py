"""Text templates: turn item and user rows into the sentences a language model reads.

A template is a Python format string over the row's columns, e.g.
`"{title}[ ({year})].[ Genres: {genres}.]"`. Values are rendered for reading: lists
joined by ", ", whole-number floats without ".0", missing values (None, NaN, "", []) as
nothing. A part in square brackets is optional: it is dropped whole when any field in it
is missing, so a movie without a year reads "Heat." rather than "Heat ()." Brackets do not
nest and are reserved: a template cannot contain a literal "[" or "]".

Derived fields are small functions of the row (`gender_word`: "F" -> "female"; `age_words`: 25 ->
"25-year-old", ML-1M's age group "18-24" -> "18-24-year-old"); add your own
through `TextTemplate(..., derived={...})`.
"""

from __future__ import annotations

import math
import re
import string
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from distillrec.errors import DataError, DistillrecError

DEFAULT_ITEM_TEMPLATE = "{title}[ ({year})].[ Genres: {genres}.]"
DEFAULT_USER_TEMPLATE = "A[ {age_words}][ {gender_word}][ {occupation}]."


@dataclass(frozen=True)
class DerivedField:
    """A field computed from a row; usable when the table has all of `columns`."""
    columns: tuple[str, ...]
    compute: Callable[[Mapping[str, Any]], Any]


def _gender_word(row: Mapping[str, Any]) -> Any:
    value = row["gender"]
    return {"F": "female", "M": "male"}.get(str(value).strip().upper(), value)


def _age_words(row: Mapping[str, Any]) -> Any:
    """"25-year-old" from an age in years; from an age group (ML-1M's `age_group`, whose `age`
    is only the group's lower bound) "18-24-year-old", "younger-than-18", "56-or-older"."""
    group = _format(row.get("age_group"), "")
    if group is None:
        age = _format(row["age"], "")
        return None if age is None else f"{age}-year-old"
    return {"under 18": "younger-than-18", "56+": "56-or-older"}.get(group, f"{group}-year-old")


DERIVED_FIELDS: dict[str, DerivedField] = {
    "gender_word": DerivedField(("gender",), _gender_word),
    "age_words": DerivedField(("age",), _age_words),
}

_OPTIONAL = re.compile(r"\[([^\[\]]*)\]")
_SPACE_BEFORE_PUNCTUATION = re.compile(r"\s+([.,;:!?])")


@dataclass(frozen=True)
class _Piece:
    literal: str
    field: str | None
    spec: str


@dataclass(frozen=True)
class _Segment:
    pieces: tuple[_Piece, ...]
    optional: bool


class TextTemplate:
    """A parsed template; `render(table)` gives one text per row."""

    def __init__(self, template: str, derived: Mapping[str, DerivedField] | None = None):
        self.template = template
        self.derived = {**DERIVED_FIELDS, **(derived or {})}
        self._segments = _parse(template)
        self.fields: tuple[str, ...] = tuple(dict.fromkeys(
            piece.field for segment in self._segments for piece in segment.pieces if piece.field))

    def __repr__(self) -> str:
        return f"TextTemplate({self.template!r})"

    def check_columns(self, columns: Sequence[str], table_name: str = "table") -> None:
        """Raise if a field is neither a column nor a derived field computable from them."""
        columns = list(columns)
        usable = columns + [name for name, d in self.derived.items() if set(d.columns) <= set(columns)]
        for field in self.fields:
            if field in usable:
                continue
            if field in self.derived:
                lacking = [c for c in self.derived[field].columns if c not in columns]
                problem = f"derived field '{field}' needs column(s) {', '.join(lacking)}"
            else:
                problem = f"field '{field}' is not a column"
            raise DistillrecError(
                f"template {self.template!r}: {problem} of the {table_name} table; "
                f"available: {', '.join(map(str, usable))}")

    def render(self, table: pd.DataFrame, table_name: str = "table") -> list[str]:
        self.check_columns(table.columns, table_name)
        return [self.render_row(row) for row in table.to_dict("records")]

    def render_row(self, row: Mapping[str, Any]) -> str:
        parts = []
        for segment in self._segments:
            rendered = _render_segment(segment, row, self.derived)
            if rendered is not None:
                parts.append(rendered)
        # Missing values leave doubled spaces and " ." behind; tidy them.
        text = " ".join("".join(parts).split())
        return _SPACE_BEFORE_PUNCTUATION.sub(r"\1", text)


def history_texts(interactions: pd.DataFrame, titles: Sequence[Any], n_users: int, *, n: int = 3,
                  prefix: str = "Recently watched: ", separator: str = "; ") -> list[str]:
    """For each user 0..n_users-1, "Recently watched: t1; t2; t3": the titles of the user's
    last `n` interactions in chronological order (the most recent last). Pass the *train*
    interactions only, so that no validation or test item leaks into the text. Users with no
    interactions get "".

    interactions: columns user, item, timestamp (Dataset.interactions / Split.train).
    titles: the title of each item index (e.g. dataset.items["title"]); missing titles are skipped.
    """
    for column in ("user", "item", "timestamp"):
        if column not in interactions.columns:
            raise DataError("interactions table", "missing column", field=column,
                            expected="columns user, item, timestamp")
    titles = list(titles)
    items = interactions["item"].to_numpy()
    if len(items) and (items.min() < 0 or items.max() >= len(titles)):
        bad = int(items[(items < 0) | (items >= len(titles))][0])
        raise DataError("interactions table", f"item index {bad} has no title", field="item",
                        expected=f"indices 0..{len(titles) - 1} (one title per item)")
    users = interactions["user"].to_numpy()
    if len(users) and (users.min() < 0 or users.max() >= n_users):
        bad = int(users[(users < 0) | (users >= n_users)][0])
        raise DataError("interactions table", f"user index {bad} out of range", field="user",
                        expected=f"indices 0..{n_users - 1}")

    recent = (interactions.sort_values(["user", "timestamp"], kind="stable")
              .groupby("user", sort=False).tail(n))
    texts = [""] * n_users
    for user, group in recent.groupby("user", sort=False):
        names = [_format(titles[i], "") for i in group["item"]]
        names = [name for name in names if name is not None]
        if names:
            texts[int(user)] = prefix + separator.join(names)
    return texts


def _parse(template: str) -> tuple[_Segment, ...]:
    segments: list[_Segment] = []
    position = 0
    for match in _OPTIONAL.finditer(template):
        segments.append(_Segment(_pieces(template[position:match.start()], template), optional=False))
        segments.append(_Segment(_pieces(match.group(1), template), optional=True))
        position = match.end()
    segments.append(_Segment(_pieces(template[position:], template), optional=False))
    for segment in segments:
        if not segment.optional and any(c in p.literal for p in segment.pieces for c in "[]"):
            raise DistillrecError(f"template {template!r}: unbalanced or nested [ ] "
                                  "(square brackets mark optional parts and cannot nest)")
    return tuple(segments)


def _pieces(text: str, template: str) -> tuple[_Piece, ...]:
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise DistillrecError(f"template {template!r}: {exc}") from None
    pieces = []
    for literal, field, spec, conversion in parsed:
        if field is not None and not field.isidentifier():
            raise DistillrecError(f"template {template!r}: field {{{field}}} must be a column name "
                                  "(no positional, attribute or index fields)")
        if conversion:
            raise DistillrecError(f"template {template!r}: conversions like !{conversion} are not supported")
        pieces.append(_Piece(literal, field, spec or ""))
    return tuple(pieces)


def _render_segment(segment: _Segment, row: Mapping[str, Any],
                    derived: Mapping[str, DerivedField]) -> str | None:
    """The segment's text, or None when it is optional and one of its fields is missing."""
    out = []
    for piece in segment.pieces:
        out.append(piece.literal)
        if piece.field is None:
            continue
        if piece.field in row:
            value = row[piece.field]
        elif piece.field in derived:
            value = derived[piece.field].compute(row)
        else:
            raise DistillrecError(f"template field '{piece.field}' is missing from the row "
                                  f"(it has: {', '.join(map(str, row))})")
        text = _format(value, piece.spec)
        if text is None:
            if segment.optional:
                return None
            text = ""
        out.append(text)
    return "".join(out)


def _format(value: Any, spec: str) -> str | None:
    """A value as text for a reader, or None when it is missing."""
    if isinstance(value, (list, tuple, np.ndarray)):
        parts = [part for part in (_format(v, spec) for v in value) if part is not None]
        return ", ".join(parts) if parts else None
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return None
        if not spec and float(value).is_integer():
            value = int(value)  # 1995.0 -> "1995"
    text = format(value, spec).strip()
    return text or None
