import json

import numpy as np
import pandas as pd
import pytest
import torch

from distillrec.data.dataset import RawData, build_dataset
from distillrec.errors import DistillrecError
from distillrec.students.features import (
    FeatureColumn, FeatureEncoder, as_columns, fit_item_encoder, fit_user_encoder, item_features,
    user_features,
)


def tiny_dataset(with_users: bool = True):
    inter = pd.DataFrame({"user_id": ["u1", "u2", "u3", "u1"], "item_id": ["a", "b", "c", "c"],
                          "rating": [5.0, 4.0, 3.0, 1.0], "timestamp": [1, 2, 3, 4]})
    users = pd.DataFrame({"user_id": ["u1", "u2", "u3"], "age": [24, 53, None],
                          "gender": ["M", "F", "M"], "occupation": ["writer", "other", "writer"],
                          "zip": ["85711", "94043", "32067"]})
    items = pd.DataFrame({"item_id": ["a", "b", "c"], "title": ["A", "B", "C"], "year": [1995.0, 1977.0, np.nan],
                          "genres": [["Comedy", "Drama"], ["Drama"], []]})
    return build_dataset(RawData("tiny", inter, items=items, users=users if with_users else None))


def test_user_features_map_values_to_vocab_indices_with_unknown_zero():
    dataset = tiny_dataset()
    encoder = fit_user_encoder(dataset)
    features = user_features(dataset, encoder)

    assert set(features) == {"gender", "occupation", "age"}
    assert encoder.vocabularies["gender"] == ["M", "F"]  # most frequent first
    assert features["gender"].tolist() == [1, 2, 1]
    assert features["occupation"].tolist() == [1, 2, 1]
    # ages 24 and 53 fall in buckets [18, 25) and [50, 56); the missing age is unknown
    assert features["age"].tolist() == [2, 6, 0]
    assert encoder.cardinality("age") == 8 and encoder.cardinality("gender") == 3


def test_item_features_pad_multi_valued_genres_and_bucket_years():
    dataset = tiny_dataset()
    encoder = fit_item_encoder(dataset, [FeatureColumn("genres", "multi"),
                                         FeatureColumn("year", "bucket", edges=(1980,))])
    features = item_features(dataset, encoder)

    assert encoder.vocabularies["genres"] == ["Drama", "Comedy"]
    assert features["genres"].tolist() == [[2, 1], [1, 0], [0, 0]]
    assert features["year"].tolist() == [2, 1, 0]


def test_quantile_year_edges_are_fitted_when_none_given():
    table = pd.DataFrame({"year": np.arange(1900, 2000, dtype=float)})
    encoder = FeatureEncoder.fit(table, [FeatureColumn("year", "bucket", buckets=4)])
    assert encoder.columns[0].edges == (1924.75, 1949.5, 1974.25)
    assert encoder.encode(table)["year"].unique().tolist() == [1, 2, 3, 4]


def test_new_records_encode_like_table_rows_and_unseen_values_are_unknown():
    dataset = tiny_dataset()
    encoder = fit_user_encoder(dataset)
    table_rows = encoder.encode(dataset.users)
    records = encoder.encode_records([
        {"age": 24.0, "gender": "M", "occupation": "writer"},           # as user u1
        {"age": "old", "gender": "X", "occupation": "astronaut", "zip": "1"},  # all unseen
        {},
    ])
    assert [records[name][0].item() for name in encoder.names] == [table_rows[name][0].item() for name in encoder.names]
    assert all(records[name][1].item() == 0 and records[name][2].item() == 0 for name in encoder.names)


def test_new_item_with_bare_genre_string_and_unknown_genre():
    encoder = fit_item_encoder(tiny_dataset())
    records = encoder.encode_records([{"title": "New", "genres": "Drama", "year": 1995},
                                      {"genres": ["Drama", "Western", "Comedy"]}])
    assert records["genres"].tolist() == [[1, 0, 0], [1, 0, 2]]


def test_every_missing_marker_is_unknown():
    table = pd.DataFrame({"gender": pd.array(["F", pd.NA, None], dtype="string"),
                          "occupation": pd.Series([np.nan, "writer", None], dtype=object)})
    encoder = FeatureEncoder.fit(table, [FeatureColumn("gender", "category"), FeatureColumn("occupation", "category")])
    assert encoder.vocabularies == {"gender": ["F"], "occupation": ["writer"]}
    features = encoder.encode(table)
    assert features["gender"].tolist() == [1, 0, 0] and features["occupation"].tolist() == [0, 1, 0]


def test_min_count_sends_rare_values_to_unknown():
    encoder = FeatureEncoder.fit(tiny_dataset().users, [FeatureColumn("occupation", "category", min_count=2)])
    assert encoder.vocabularies["occupation"] == ["writer"]
    assert encoder.encode_records([{"occupation": "other"}])["occupation"].tolist() == [0]


def test_vocabularies_round_trip_through_json():
    dataset = tiny_dataset()
    for encoder, table in ((fit_user_encoder(dataset), dataset.users), (fit_item_encoder(dataset), dataset.items)):
        restored = FeatureEncoder.from_dict(json.loads(json.dumps(encoder.to_dict())))
        assert restored == encoder
        before, after = encoder.encode(table), restored.encode(table)
        assert all(torch.equal(before[name], after[name]) for name in encoder.names)


def test_columns_the_table_lacks_are_skipped():
    dataset = tiny_dataset(with_users=False)
    encoder = fit_user_encoder(dataset)
    assert encoder.columns == () and user_features(dataset, encoder) == {}
    assert encoder.encode_records([{"age": 30}]) == {}


def test_columns_from_config_mappings_and_bad_declarations_raise():
    assert as_columns([{"name": "age", "kind": "bucket", "edges": [10, 20]}]) == (
        FeatureColumn("age", "bucket", edges=(10, 20)),)
    with pytest.raises(DistillrecError, match="unknown kind"):
        as_columns([{"name": "age", "kind": "numeric"}])
    with pytest.raises(DistillrecError, match="ascending"):
        FeatureColumn("age", "bucket", edges=(20, 10))
    with pytest.raises(DistillrecError, match="expected keys"):
        as_columns([{"name": "age", "kind": "bucket", "width": 3}])
    with pytest.raises(DistillrecError, match="no vocabulary saved"):
        FeatureEncoder.from_dict({"columns": [{"name": "gender", "kind": "category"}], "vocabularies": {}})
