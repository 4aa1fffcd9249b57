"""Text templates: rendering, missing values, derived fields, errors, and user histories."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from distillrec.errors import DataError, DistillrecError
from distillrec.teachers.templates import (DEFAULT_ITEM_TEMPLATE, DEFAULT_USER_TEMPLATE, DerivedField,
                                           TextTemplate, history_texts)


@pytest.fixture
def items() -> pd.DataFrame:
    return pd.DataFrame({
        "item_id": ["Toy Story (1995)", "Heat (1995)", "Unknown"],
        "title": ["Toy Story", "Heat", "Mystery"],
        "year": [1995.0, 1995.0, np.nan],
        "genres": [["Animation", "Children's", "Comedy"], [], None],
    })


def test_default_item_template_joins_lists_and_drops_missing_clauses(items):
    assert TextTemplate(DEFAULT_ITEM_TEMPLATE).render(items, "items") == [
        "Toy Story (1995). Genres: Animation, Children's, Comedy.",
        "Heat (1995).",
        "Mystery.",
    ]


def test_plain_template_renders_missing_values_empty_and_tidies_spaces(items):
    template = TextTemplate("{title} {year}, {genres}.")
    assert template.render(items) == ["Toy Story 1995, Animation, Children's, Comedy.", "Heat 1995,.",
                                      "Mystery,."]
    assert TextTemplate("{title}: {year:.1f}").render_row({"title": "Heat", "year": 1995.0}) == "Heat: 1995.0"


def test_user_template_with_derived_gender_word():
    users = pd.DataFrame({"user_id": ["1", "2", "3"], "age": [25.0, np.nan, 56.0],
                          "gender": ["F", "M", None], "occupation": ["programmer", "writer", None]})
    assert TextTemplate(DEFAULT_USER_TEMPLATE).render(users, "users") == [
        "A 25-year-old female programmer.", "A male writer.", "A 56-year-old."]


def test_user_template_reads_ml1m_age_groups_not_their_codes():
    # ML-1M's age is the group's lower bound (1 = under 18); the decoded age_group says what it means
    users = pd.DataFrame({"user_id": ["1", "2", "3"], "age": [1.0, 25.0, 56.0], "age_group": ["under 18", "25-34", "56+"],
                          "gender": ["F", "M", "F"], "occupation": ["K-12 student", "writer", "retired"]})
    assert TextTemplate(DEFAULT_USER_TEMPLATE).render(users, "users") == [
        "A younger-than-18 female K-12 student.", "A 25-34-year-old male writer.", "A 56-or-older female retired."]


def test_custom_derived_field():
    decade = DerivedField(("year",), lambda row: f"{int(row['year']) // 10 * 10}s")
    template = TextTemplate("{title}, a film of the {decade}.", derived={"decade": decade})
    assert template.render_row({"title": "Heat", "year": 1995.0}) == "Heat, a film of the 1990s."


def test_unknown_column_names_the_field_and_the_available_ones(items):
    with pytest.raises(DistillrecError, match=r"field 'director' is not a column of the items table; "
                                              r"available: item_id, title, year, genres"):
        TextTemplate("{title} by {director}").render(items, "items")
    with pytest.raises(DistillrecError, match="derived field 'gender_word' needs column.s. gender"):
        TextTemplate("{gender_word}").render(items, "items")
    with pytest.raises(DistillrecError, match="field 'year' is missing from the row .it has: title."):
        TextTemplate("{title} ({year})").render_row({"title": "Heat"})


@pytest.mark.parametrize("bad, problem", [
    ("{title} [({year})", "unbalanced"),
    ("[{title} [{year}]]", "unbalanced or nested"),
    ("{0} {title}", "must be a column name"),
    ("{title.upper}", "must be a column name"),
    ("{title!r}", "conversions"),
    ("{title", "expected '}'"),
])
def test_malformed_templates_are_refused(bad, problem):
    with pytest.raises(DistillrecError, match=problem):
        TextTemplate(bad)


def test_history_lists_the_last_n_train_items_in_time_order():
    train = pd.DataFrame({"user": [0, 0, 0, 0, 2], "item": [0, 1, 2, 3, 1],
                          "timestamp": [40, 10, 30, 20, 5], "rating": [5.0] * 5})
    titles = ["Toy Story", "Heat", None, "Babe"]
    texts = history_texts(train, titles, n_users=3, n=3)
    # user 0's last three by time are Babe (20), [untitled] (30), Toy Story (40).
    assert texts == ["Recently watched: Babe; Toy Story", "", "Recently watched: Heat"]


def test_history_rejects_items_without_titles_and_missing_columns():
    train = pd.DataFrame({"user": [0], "item": [4], "timestamp": [1]})
    with pytest.raises(DataError, match="item index 4 has no title"):
        history_texts(train, ["a", "b"], n_users=1)
    with pytest.raises(DataError, match="field 'timestamp'"):
        history_texts(train.drop(columns="timestamp"), ["a"] * 5, n_users=1)
    with pytest.raises(DataError, match="user index 0 out of range"):
        history_texts(train, ["a"] * 5, n_users=0)
