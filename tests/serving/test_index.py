import numpy as np
import pytest

from distillrec.errors import DistillrecError
from distillrec.serving.bundle import load_bundle
from distillrec.serving.index import ExactIndex, FaissIndex, build_index, recall_at_k, top_k


def test_exact_top_k_sorts_by_score_then_lower_index_and_skips_excluded():
    vectors = np.array([[1.0], [3.0], [2.0], [3.0], [0.5]], np.float32)
    index = ExactIndex(vectors)
    ids, scores = index.search(np.array([[1.0]]), 3)
    assert ids.tolist() == [[1, 3, 2]] and scores.tolist() == [[3.0, 3.0, 2.0]]
    ids, _ = index.search(np.array([[1.0], [1.0]]), 2, [np.array([1]), np.array([], np.int64)])
    assert ids.tolist() == [[3, 2], [1, 3]]
    ids, _ = index.search(np.array([[1.0]]), 10, [np.array([0, 1, 2])])
    assert ids.tolist() == [[3, 4] + [-1] * 8]  # fewer items left than asked: padded with -1


def test_top_k_matches_a_full_sort():
    scores = np.random.default_rng(0).normal(size=(6, 200)).astype(np.float32)
    ids, best = top_k(scores, 15)
    assert ids.tolist() == np.argsort(-scores, axis=1, kind="stable")[:, :15].tolist()
    assert np.all(np.diff(best, axis=1) <= 0)


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_approximate_indexes_find_the_exact_top_k_and_honour_exclusions(bundles, kind):
    bundle = load_bundle(bundles["two-tower"])
    exact = ExactIndex(bundle.item_vectors)
    queries = bundle.user_vectors[:200]
    seen = [bundle.seen[bundle.seen["user"] == u]["item"].to_numpy() for u in range(200)]
    params = {"nprobe": 10_000} if kind == "ivf" else {}  # IVF probing every cell is exact
    approximate = build_index(bundle.item_vectors, kind, **params)
    recall = recall_at_k(approximate, exact, queries, 10, seen)
    assert recall >= (0.95 if kind == "hnsw" else 0.999)
    ids, _ = approximate.search(queries, 10, seen)
    assert all(not set(row) & set(s) for row, s in zip(ids.tolist(), seen))
    assert (ids >= 0).all()


def test_ivf_with_few_probes_loses_recall_that_the_measure_reports(bundles):
    bundle = load_bundle(bundles["mf"])
    exact = ExactIndex(bundle.item_vectors)
    coarse = FaissIndex(bundle.item_vectors, "ivf", nlist=64, nprobe=1)
    assert recall_at_k(coarse, exact, bundle.user_vectors[:200], 10) < 0.9


def test_recall_asks_the_approximate_index_one_request_at_a_time_with_its_own_exclusions():
    rng = np.random.default_rng(0)
    items, queries = rng.normal(size=(50, 4)).astype(np.float32), rng.normal(size=(3, 4)).astype(np.float32)
    exclude = [np.arange(20), np.array([1]), np.array([], dtype=np.int64)]
    exact, calls = ExactIndex(items), []

    class Recording(ExactIndex):  # exact answers: recall 1 whatever the batching
        def search(self, queries, k, exclude=None):
            calls.append((len(np.atleast_2d(queries)), [e.tolist() for e in exclude]))
            return super().search(queries, k, exclude)

    assert recall_at_k(Recording(items), exact, queries, 5, exclude) == 1.0
    assert calls == [(1, [e.tolist()]) for e in exclude]


def test_unknown_index_kind():
    with pytest.raises(DistillrecError, match="expected one of exact, hnsw, ivf"):
        build_index(np.zeros((3, 2), np.float32), "annoy")


def test_the_one_query_path_equals_the_batched_path():
    scores = np.random.default_rng(1).normal(size=(5, 300)).astype(np.float32)
    scores[:, 7] = -np.inf
    ids, best = top_k(scores, 12)
    for row in range(len(scores)):
        one_ids, one_best = top_k(scores[row:row + 1], 12)
        assert one_ids[0].tolist() == ids[row].tolist() and one_best[0].tolist() == best[row].tolist()
