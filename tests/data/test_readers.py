"""Streaming reads of large Parquet logs give what the in-memory path gives, batch by batch."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from distillrec.data.dataset import build_dataset
from distillrec.data.readers import read_tables, stream_interactions
from distillrec.errors import DataError


def _log(ids_as_text: bool) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    n = 200
    frame = pd.DataFrame({"uid": rng.integers(0, 25, n), "iid": rng.integers(0, 40, n),
                          "stars": rng.integers(1, 6, n).astype(float), "ts": rng.integers(0, 50, n)})
    if ids_as_text:
        frame["uid"] = "user-" + frame["uid"].astype(str)
        frame["iid"] = frame["iid"].map(lambda i: f"film {i:02d}")
    return frame  # repeated (user, item) pairs included: the latest must win


@pytest.mark.parametrize("ids_as_text", [False, True])
def test_streamed_dataset_equals_the_in_memory_dataset(tmp_path, ids_as_text):
    path = tmp_path / "log.parquet"
    _log(ids_as_text).to_parquet(path, row_group_size=30)
    mapping = {"user_id": "uid", "item_id": "iid", "rating": "stars", "timestamp": "ts"}
    expected = build_dataset(read_tables(path, mapping=mapping))
    streamed = stream_interactions(path, mapping, batch_rows=17)  # batches cross row groups
    assert streamed.info["streamed"]["rows_read"] == 200
    pd.testing.assert_frame_equal(streamed.interactions, expected.interactions)
    assert list(streamed.user_ids) == list(expected.user_ids)  # "10" before "2": ids sort as text
    assert list(streamed.item_ids) == list(expected.item_ids)
    assert streamed.fingerprint != ""


def test_missing_column_and_empty_ids_are_named_before_anything_is_built(tmp_path):
    path = tmp_path / "log.parquet"
    _log(False).to_parquet(path)
    with pytest.raises(DataError, match="field 'item_id'.*no column 'item'"):
        stream_interactions(path, {"user_id": "uid", "item_id": "item"})
    table = pa.table({"user_id": pa.array([1, 2, None, 4]), "item_id": pa.array([1, 1, 2, 2])})
    pq.write_table(table, tmp_path / "holes.parquet")
    with pytest.raises(DataError, match="line 3, field 'user_id': empty id"):
        stream_interactions(tmp_path / "holes.parquet", batch_rows=2)
    pq.write_table(pa.table({"user_id": [1], "item_id": [1], "rating": ["good"]}), tmp_path / "text.parquet")
    with pytest.raises(DataError, match="field 'rating'"):
        stream_interactions(tmp_path / "text.parquet")
