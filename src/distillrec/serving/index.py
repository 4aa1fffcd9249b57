"""Top-K retrieval by inner product: exact (one matrix product) or approximate (faiss).

Every index answers `search(queries, k, exclude)` the same way: item indices and scores,
best first, with each query's excluded items (the user's seen items) left out. Exact search
breaks ties toward the lower item index, like the evaluator, so results are reproducible.
For catalogs of a few thousand items exact search is already sub-millisecond; HNSW and IVF
are there for large catalogs, and `recall_at_k` says how much of the exact top-K they find.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from distillrec.errors import DistillrecError

KINDS = ("exact", "hnsw", "ivf")
Exclusions = Sequence[np.ndarray] | None


class ExactIndex:
    """Brute-force inner product over all item vectors."""

    kind = "exact"

    def __init__(self, vectors: np.ndarray):
        self.vectors = _as_matrix(vectors)

    def __len__(self) -> int:
        return len(self.vectors)

    def add(self, vectors: np.ndarray) -> None:
        self.vectors = np.concatenate([self.vectors, _as_matrix(vectors)])

    def scores(self, queries: np.ndarray) -> np.ndarray:
        return _as_matrix(queries) @ self.vectors.T

    def search(self, queries: np.ndarray, k: int, exclude: Exclusions = None) -> tuple[np.ndarray, np.ndarray]:
        scores = self.scores(queries)
        if exclude is not None:
            for row, items in enumerate(exclude):
                if len(items):
                    scores[row, items] = -np.inf
        return top_k(scores, k)


class FaissIndex:
    """faiss HNSW (graph) or IVF (inverted lists over k-means cells), inner-product metric.
    Exclusions are applied by fetching k + |excluded| candidates and dropping the excluded,
    so a user with a long history still gets k items."""

    def __init__(self, vectors: np.ndarray, kind: str = "hnsw", *, m: int = 32, ef_construction: int = 200,
                 ef_search: int = 128, nlist: int | None = None, nprobe: int | None = None):
        import faiss

        vectors = _as_matrix(vectors)
        dim = vectors.shape[1]
        if kind == "hnsw":
            index = faiss.IndexHNSWFlat(dim, m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = ef_construction
            index.hnsw.efSearch = ef_search
        elif kind == "ivf":
            # ~sqrt(n) cells is faiss's rule of thumb; probing a quarter of them keeps recall high
            # on the small catalogs here, where a cell holds only a few dozen items.
            nlist = nlist or max(1, int(np.sqrt(len(vectors))))
            index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
            index.train(vectors)
            index.nprobe = nprobe or max(1, nlist // 4)
        else:
            raise DistillrecError(f"unknown index kind {kind!r}; expected one of {', '.join(KINDS)}")
        index.add(vectors)
        self.kind, self.index = kind, index

    def __len__(self) -> int:
        return self.index.ntotal

    def add(self, vectors: np.ndarray) -> None:
        self.index.add(_as_matrix(vectors))

    def search(self, queries: np.ndarray, k: int, exclude: Exclusions = None) -> tuple[np.ndarray, np.ndarray]:
        queries = _as_matrix(queries)
        extra = max((len(items) for items in exclude), default=0) if exclude is not None else 0
        fetch = min(len(self), k + extra)
        scores, ids = self.index.search(queries, fetch)
        out_ids = np.full((len(queries), k), -1, dtype=np.int64)
        out_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        for row in range(len(queries)):
            keep = ids[row] >= 0  # faiss pads with -1 when it finds fewer than asked
            if exclude is not None and len(exclude[row]):
                keep &= ~np.isin(ids[row], exclude[row])
            found = ids[row][keep][:k]
            out_ids[row, :len(found)] = found
            out_scores[row, :len(found)] = scores[row][keep][:k]
        return out_ids, out_scores


def build_index(vectors: np.ndarray, kind: str = "exact", **params) -> ExactIndex | FaissIndex:
    if kind == "exact":
        return ExactIndex(vectors)
    if kind in ("hnsw", "ivf"):
        return FaissIndex(vectors, kind, **params)
    raise DistillrecError(f"unknown index kind {kind!r}; expected one of {', '.join(KINDS)}")


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Best k columns per row, ties to the lower index; excluded (-inf) columns come back as
    index -1 so callers can drop them."""
    n = scores.shape[1]
    k_eff = min(k, n)
    if len(scores) == 1 and k_eff < n:
        return _top_k_row(scores[0], k, k_eff)
    if k_eff < n:
        part = np.argpartition(-scores, k_eff - 1, axis=1)[:, :k_eff]
    else:
        part = np.broadcast_to(np.arange(n), scores.shape).copy()
    chosen = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -chosen), axis=1)  # score descending, then index ascending
    ids = np.take_along_axis(part, order, axis=1)
    best = np.take_along_axis(chosen, order, axis=1)
    ids = np.where(np.isneginf(best), -1, ids)
    if k_eff < k:
        ids = np.pad(ids, ((0, 0), (0, k - k_eff)), constant_values=-1)
        best = np.pad(best, ((0, 0), (0, k - k_eff)), constant_values=-np.inf)
    return ids.astype(np.int64), best.astype(np.float32)


def _top_k_row(row: np.ndarray, k: int, k_eff: int) -> tuple[np.ndarray, np.ndarray]:
    """`top_k` for one query (the service's case) in 1-D operations: same result, a third of
    the overhead of the batched path."""
    part = np.argpartition(row, len(row) - k_eff)[len(row) - k_eff:]
    chosen = row[part]
    order = np.lexsort((part, -chosen))
    ids, best = part[order], chosen[order]
    ids = np.where(np.isneginf(best), -1, ids)
    if k_eff < k:
        ids = np.pad(ids, (0, k - k_eff), constant_values=-1)
        best = np.pad(best, (0, k - k_eff), constant_values=-np.inf)
    return ids[None].astype(np.int64), best[None].astype(np.float32)


def recall_at_k(approximate, exact: ExactIndex, queries: np.ndarray, k: int, exclude: Exclusions = None) -> float:
    """Share of the exact top-k (per query, excluded items left out) that the approximate
    index also returns, averaged over queries. The approximate index is asked one query at a
    time, as the service asks it: a batch would fetch k + the largest excluded set of *any*
    query for every query, a deeper (more exact) search than a single request gets."""
    queries = _as_matrix(queries)
    truth, _ = exact.search(queries, k, exclude)
    found = np.concatenate([approximate.search(queries[row], k, None if exclude is None else [exclude[row]])[0]
                            for row in range(len(queries))]) if len(queries) else truth
    hits, total = 0, 0
    for want, got in zip(truth, found):
        want = want[want >= 0]
        hits += len(np.intersect1d(want, got[got >= 0]))
        total += len(want)
    return hits / total if total else 1.0


def _as_matrix(vectors: np.ndarray) -> np.ndarray:
    matrix = np.ascontiguousarray(vectors, dtype=np.float32)
    return matrix.reshape(1, -1) if matrix.ndim == 1 else matrix
