"""What the service does, without HTTP: recommend, cold-start, similar items, new items, explain.

The public face follows implicit's four verbs: `recommend` (a known user), `recommend_new`
(a new user from attributes and/or recent items), `similar_items`, plus `add_item` and
`explain`. Everything works in the bundle's serving space, where score = user · item.

New users: MF folds in the mean of the recent items' vectors; the two-tower student encodes
the attributes with its user tower (ONNX), and with recent items as well takes the direction
halfway between the two (each normalised, so neither dominates by scale); the content student's
user tower takes both itself (attributes + the pooled recent items, as in training). New items
go through the item tower (ONNX) from their attributes, and for the content student from their
title as well (hashed n-grams); no language model is needed.

Errors a client causes are `RequestError`s carrying an HTTP status; the app maps them.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from distillrec.errors import DistillrecError
from distillrec.serving.index import ExactIndex, build_index, top_k


class RequestError(DistillrecError):
    status = 422


class NotFound(RequestError):
    status = 404


class Conflict(RequestError):
    status = 409


def _listing(values: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(repr(v) for v in values[:limit])
    return shown + (f" and {len(values) - limit} more" if len(values) > limit else "")


class Engine:
    def __init__(self, *, model_name: str, user_ids: np.ndarray, item_ids: np.ndarray, user_vectors: np.ndarray,
                 item_vectors: np.ndarray, seen: pd.DataFrame, items: pd.DataFrame | None = None,
                 users: pd.DataFrame | None = None, user_tower=None, item_tower=None, encoders: dict | None = None,
                 user_has_id: np.ndarray | None = None, item_has_id: np.ndarray | None = None,
                 similarity: str = "dot", temperature: float | None = None, content_dim: int | None = None,
                 titles: Mapping[str, Any] | None = None, user_scorer: Callable[[int], np.ndarray] | None = None,
                 index: str = "exact", index_params: Mapping[str, Any] | None = None):
        """titles: the content student's parts, {"buckets", "max_history", "uses_history",
        "item_raw" [n_items, d] (what its user tower pools), "title_tokens" [n_items, W]}.
        user_scorer: a known user's index -> scores of every item, in place of the vector search
        (a model served from memory, `from_model`)."""
        self.model_name, self.similarity, self.temperature = model_name, similarity, temperature
        self.user_scorer = user_scorer
        self.user_ids = [str(u) for u in user_ids]
        self.item_ids = [str(i) for i in item_ids]
        self.user_index = {u: i for i, u in enumerate(self.user_ids)}
        self.item_index = {i: j for j, i in enumerate(self.item_ids)}
        self.user_vectors = np.ascontiguousarray(user_vectors, dtype=np.float32)
        self.item_vectors = np.ascontiguousarray(item_vectors, dtype=np.float32)
        self.seen = _per_user(seen, len(self.user_ids))
        self.titles_model = dict(titles) if titles is not None else None
        if self.titles_model is not None:  # per-user items by time: the content student pools the latest
            self.recent = _per_user(seen, len(self.user_ids), by="timestamp")
            self.item_tokens = [row[row > 0] for row in np.asarray(self.titles_model.pop("title_tokens"))]
        items = items if items is not None else pd.DataFrame({"item_id": self.item_ids})
        self.titles = list(items["title"].astype(object).where(items["title"].notna(), None)) \
            if "title" in items else [None] * len(self.item_ids)
        self.user_tower, self.item_tower, self.content_dim = user_tower, item_tower, content_dim
        # Whether each user's / item's ID embedding was trained (two-tower towers take it).
        self.user_has_id = np.ones(len(self.user_ids), bool) if user_has_id is None else np.asarray(user_has_id, bool)
        self.item_has_id = np.ones(len(self.item_ids), bool) if item_has_id is None else np.asarray(item_has_id, bool)
        self.user_encoder = self.item_encoder = None
        self.user_features = self.item_features = None
        if encoders is not None:
            from distillrec.students.features import FeatureEncoder

            self.user_encoder = FeatureEncoder.from_dict(encoders["user"])
            self.item_encoder = FeatureEncoder.from_dict(encoders["item"])
            if users is not None:
                self.user_features = {k: v.numpy() for k, v in self.user_encoder.encode(users).items()}
            self.item_features = {k: v.numpy() for k, v in self.item_encoder.encode(items).items()}
        self.index = build_index(self.item_vectors, index, **(index_params or {}))
        self.unit = ExactIndex(_normalise(self.item_vectors))  # cosine, for similar items
        # Typical user-vector length: new users' vectors get it, so their scores read like others'.
        self.user_norm = float(np.median(np.linalg.norm(self.user_vectors, axis=1))) if len(self.user_vectors) else 1.0

    @classmethod
    def from_bundle(cls, bundle, index: str = "exact", index_params: Mapping[str, Any] | None = None) -> "Engine":
        from distillrec.serving.export import OnnxTower

        model = bundle.manifest["model"]
        spec = model["serving"]  # the model's serving_spec(), written by the bundle
        towers = {g: OnnxTower(bundle.onnx_path(g), bundle.onnx_inputs(g)) for g in ("user_tower", "item_tower")}
        featured = bool(spec["towers"])
        extra = {}
        if featured:
            from distillrec import artifacts

            weights = artifacts.read_tensors(bundle.path / "model" / "weights.safetensors")
            extra = {"user_has_id": weights["user_has_id"].numpy(), "item_has_id": weights["item_has_id"].numpy()}
            if spec["title_buckets"]:
                extra["titles"] = {"buckets": spec["title_buckets"], "max_history": spec["pools_history"] or 0,
                                   "uses_history": bool(spec["pools_history"]), "item_raw": bundle.item_raw,
                                   "title_tokens": weights["title_tokens"].numpy()}
        return cls(**extra, model_name=model.get("label", model["name"]), user_ids=bundle.user_ids,
                   item_ids=bundle.item_ids, user_vectors=bundle.user_vectors, item_vectors=bundle.item_vectors,
                   seen=bundle.seen, items=bundle.items, users=bundle.users,
                   user_tower=towers["user_tower"] if featured else None,
                   item_tower=towers["item_tower"] if featured else None,
                   encoders=bundle.encoders if featured else None, similarity=spec["similarity"],
                   temperature=spec["temperature"], content_dim=spec["content_dim"],
                   index=index, index_params=index_params)

    @classmethod
    def from_model(cls, model, dataset, split, index: str = "exact") -> "Engine":
        """A fitted model in memory (any run: a teacher too) behind the same engine. A known
        user is scored by the model itself on each request, so whatever it reads from the
        history per request (the LM teacher's item-to-item term) and its caches count; similar
        items use its serving vectors."""
        import torch

        model.eval()
        model.set_history(split.history("test"))
        vectors = {k: v.numpy() for k, v in model.serving_vectors().items()}

        def user_scorer(user: int) -> np.ndarray:
            with torch.no_grad():
                return model.score(torch.tensor([user]))[0].numpy().copy()

        return cls(model_name=type(model).__name__, user_ids=dataset.user_ids, item_ids=dataset.item_ids,
                   user_vectors=vectors["user"], item_vectors=vectors["item"], seen=split.history("all"),
                   items=dataset.items, user_scorer=user_scorer, index=index)

    # --- lookups ---------------------------------------------------------------------------

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def user(self, user_id: str) -> int:
        try:
            return self.user_index[str(user_id)]
        except KeyError:
            raise NotFound(f"unknown user_id {str(user_id)!r}: not in this bundle's data; for a new user "
                           "give attributes and/or recent_items instead") from None

    def item(self, item_id: str) -> int:
        try:
            return self.item_index[str(item_id)]
        except KeyError:
            raise NotFound(f"unknown item_id {str(item_id)!r}") from None

    def items(self, item_ids: Sequence[str], field: str = "recent_items") -> np.ndarray:
        unknown = [str(i) for i in item_ids if str(i) not in self.item_index]
        if unknown:
            raise NotFound(f"{field}: unknown item id(s) {_listing(unknown)}")
        return np.asarray([self.item_index[str(i)] for i in item_ids], dtype=np.int64)

    # --- the verbs -------------------------------------------------------------------------

    def recommend(self, user_id: str, k: int = 10, exclude_seen: bool = True) -> list[dict]:
        user = self.user(user_id)
        exclude = self.seen[user] if exclude_seen else np.empty(0, np.int64)
        return self.known_user_search(user, k, exclude)

    def known_user_search(self, user: int, k: int, exclude: np.ndarray) -> list[dict]:
        """Top-k for a known user's index: the model's own scores when served from memory."""
        if self.user_scorer is None:
            return self._search(self.user_vectors[user], k, exclude)
        scores = self.user_scorer(user)
        scores[exclude] = -np.inf
        ids, best = top_k(scores[None], k)
        return self._rows(ids[0], best[0])

    def recommend_new(self, attributes: Mapping[str, Any] | None = None, recent_items: Sequence[str] = (),
                      k: int = 10, exclude_seen: bool = True) -> list[dict]:
        vector, recent = self.new_user_vector(attributes, recent_items)
        return self._search(vector, k, recent if exclude_seen else np.empty(0, np.int64))

    def similar_items(self, item_id: str, k: int = 10) -> list[dict]:
        item = self.item(item_id)
        ids, scores = self.unit.search(self.unit.vectors[item], k, [np.asarray([item])])
        return self._rows(ids[0], scores[0])

    def add_item(self, item_id: str, attributes: Mapping[str, Any], title: str | None = None) -> int:
        """Encode a new item from its attributes (item tower) and make it recommendable."""
        item_id = str(item_id)
        if item_id in self.item_index:
            raise Conflict(f"item_id {item_id!r} already exists")
        if self.item_tower is None:
            raise RequestError(f"the {self.model_name} model has no item feature tower: it cannot encode new "
                               "items (export a two-tower or content student to add items)")
        if self.content_dim:
            raise RequestError("this two-tower student's item tower needs a content vector (language-model "
                               "text embedding) for new items; serve a student without a content slot")
        features = self._encode(self.item_encoder, attributes, "attributes")
        inputs = {"ids": np.zeros(1, np.int64), "has_id": np.zeros(1, bool), **features}
        if self.titles_model is not None:
            if not isinstance(title, str) or not title.strip():
                raise RequestError(f"title: the {self.model_name} model encodes new items from their title; "
                                   "give a non-empty title")
            from distillrec.students.content import hash_titles

            tokens = hash_titles([title], self.titles_model["buckets"]).numpy()
            inputs["title_tokens"] = tokens
        raw = self.item_tower(**inputs)
        vector = self._serving(raw, side="item")
        if self.titles_model is not None:
            self.titles_model["item_raw"] = np.concatenate([self.titles_model["item_raw"], np.asarray(raw, np.float32)])
            self.item_tokens.append(tokens[0])
        self.index.add(vector)
        self.unit.add(_normalise(vector))
        self.item_vectors = np.concatenate([self.item_vectors, vector])
        self.item_features = {k: _append_row(self.item_features[k], features[k]) for k in self.item_features}
        self.item_has_id = np.append(self.item_has_id, False)
        self.item_ids.append(item_id)
        self.titles.append(title)
        self.item_index[item_id] = len(self.item_ids) - 1
        return self.item_index[item_id]

    def explain(self, item_id: str, *, user_id: str | None = None, attributes: Mapping[str, Any] | None = None,
                recent_items: Sequence[str] = (), n: int = 5) -> dict:
        """Why `item_id` scores as it does for a user: the history items closest to it in the
        model's item space (cosine), and, for feature towers, each feature's share of the score
        (the score minus the score with that feature set to unknown)."""
        item = self.item(item_id)
        if user_id is not None:
            user = self.user(user_id)
            vector, history = self.user_vectors[user], self.seen[user]
            user_inputs = None if self.user_features is None else {
                **_id_inputs(user, self.user_has_id), **{k: v[user:user + 1] for k, v in self.user_features.items()},
                **self._pooled(self.recent[user] if self.titles_model is not None else ())}
        else:
            vector, history = self.new_user_vector(attributes, recent_items)
            user_inputs = None if self.user_tower is None or not attributes else {
                "ids": np.zeros(1, np.int64), "has_id": np.zeros(1, bool),
                **self._encode(self.user_encoder, attributes, "attributes"), **self._pooled(history)}
        score = float(vector @ self.item_vectors[item])
        similarity = self.unit.vectors[history] @ self.unit.vectors[item] if len(history) else np.empty(0)
        order = np.lexsort((history, -similarity))[:n]
        explanation = {"item_id": self.item_ids[item], "title": self.titles[item], "score": score,
                       "history": [{"item_id": self.item_ids[history[j]], "title": self.titles[history[j]],
                                    "similarity": float(similarity[j])} for j in order],
                       "features": []}
        if self.user_tower is not None and user_inputs is not None:
            explanation["features"] += self._feature_effects(
                "user", self.user_encoder, user_inputs,
                lambda raw: float(self._serving(raw, "user")[0] @ self.item_vectors[item]), score)
        if self.item_tower is not None:
            item_inputs = {**_id_inputs(item, self.item_has_id),
                           **{k: v[item:item + 1] for k, v in self.item_features.items()}}
            if self.titles_model is not None:
                item_inputs["title_tokens"] = self.item_tokens[item][None] if len(self.item_tokens[item]) \
                    else np.zeros((1, 1), np.int64)
            explanation["features"] += self._feature_effects(
                "item", self.item_encoder, item_inputs,
                lambda raw: float(vector @ self._serving(raw, "item")[0]), score)
        explanation["features"].sort(key=lambda f: -abs(f["contribution"]))
        explanation["features"] = explanation["features"][:n]
        return explanation

    # --- helpers ---------------------------------------------------------------------------

    def new_user_vector(self, attributes: Mapping[str, Any] | None, recent_items: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        recent = self.items(recent_items) if recent_items else np.empty(0, np.int64)
        if self.titles_model is not None:
            return self._content_user(attributes, recent), recent
        parts = []
        if attributes:
            if self.user_tower is None:
                raise RequestError(f"the {self.model_name} model has no user features: give recent_items "
                                   "(item ids the new user interacted with) instead of attributes")
            features = self._encode(self.user_encoder, attributes, "attributes")
            raw = self.user_tower(ids=np.zeros(1, np.int64), has_id=np.zeros(1, bool), **features)
            parts.append(self._serving(raw, "user")[0])
        if len(recent):
            parts.append(self.item_vectors[recent].mean(axis=0))
        if not parts:
            raise RequestError("a new user needs attributes and/or recent_items (or give a known user_id)")
        if len(parts) == 1:  # the tower's own vector, or the plain mean of the recent items
            return parts[0].astype(np.float32), recent
        direction = sum(_normalise(p[None])[0] for p in parts)
        return (self.user_norm * _normalise(direction[None])[0]).astype(np.float32), recent

    def _content_user(self, attributes: Mapping[str, Any] | None, recent: np.ndarray) -> np.ndarray:
        """The content student's own new-user path: profile features plus the pooled recent items."""
        if not attributes and not len(recent):
            raise RequestError("a new user needs attributes and/or recent_items (or give a known user_id)")
        features = self._encode(self.user_encoder, attributes or {}, "attributes")
        raw = self.user_tower(ids=np.zeros(1, np.int64), has_id=np.zeros(1, bool), **features, **self._pooled(recent))
        return self._serving(raw, "user")[0]

    def _pooled(self, items: Sequence[int]) -> dict[str, np.ndarray]:
        """{"content": mean raw vector of the latest max_history items} for the content
        student's user tower; {} for every other model (their user towers pool nothing)."""
        if self.titles_model is None or not self.titles_model["uses_history"]:
            return {}
        items = np.asarray(items, np.int64)[-self.titles_model["max_history"]:]
        raw = self.titles_model["item_raw"]
        pooled = raw[items].mean(axis=0) if len(items) else np.zeros(raw.shape[1], np.float32)
        return {"content": pooled[None].astype(np.float32)}

    def _search(self, vector: np.ndarray, k: int, exclude: np.ndarray) -> list[dict]:
        ids, scores = self.index.search(vector, k, [exclude])
        return self._rows(ids[0], scores[0])

    def _rows(self, ids: np.ndarray, scores: np.ndarray) -> list[dict]:
        return [{"item_id": self.item_ids[i], "score": float(s), "title": self.titles[i]}
                for i, s in zip(ids.tolist(), scores.tolist()) if i >= 0]

    def _encode(self, encoder, attributes: Mapping[str, Any], field: str) -> dict[str, np.ndarray]:
        unknown = sorted(set(attributes) - set(encoder.names))
        if unknown:
            raise RequestError(f"{field}: unknown attribute(s) {_listing(unknown)}; expected {', '.join(encoder.names)}")
        for name, value in attributes.items():
            if encoder.kind(name) != "multi" and isinstance(value, (list, tuple)):
                raise RequestError(f"{field}.{name}: expected one value, got a list")
        return {k: v.numpy() for k, v in encoder.encode_records([dict(attributes)]).items()}

    def _serving(self, raw: np.ndarray, side: str) -> np.ndarray:
        """Tower output -> serving space (cosine models: unit length, users / temperature)."""
        raw = np.asarray(raw, dtype=np.float32)
        if self.similarity != "cosine":
            return raw
        unit = _normalise(raw)
        return unit / self.temperature if side == "user" else unit

    def _feature_effects(self, side, encoder, inputs, score_of, score) -> list[dict]:
        """Each attribute's effect: the score minus the score with that attribute unknown
        (the tower's other inputs, IDs and pooled history included, unchanged)."""
        tower = self.user_tower if side == "user" else self.item_tower
        effects = []
        for name in encoder.names:
            if not np.any(inputs[name]):
                continue  # already unknown: it contributes nothing
            raw = tower(**{**inputs, name: np.zeros_like(inputs[name])})
            effects.append({"side": side, "name": name, "value": _feature_value(encoder, name, inputs[name][0]),
                            "contribution": score - score_of(raw)})
        return effects


def _id_inputs(index: int, has_id: np.ndarray) -> dict[str, np.ndarray]:
    """{"ids", "has_id"} tower inputs for one entity; an untrained (or added) one passes ID 0,
    which the tower multiplies by zero, since its own index has no row in the ID table."""
    trained = bool(has_id[index])
    return {"ids": np.asarray([index if trained else 0], np.int64), "has_id": np.asarray([trained])}


def _feature_value(encoder, name: str, index) -> Any:
    column = next(c for c in encoder.columns if c.name == name)
    if column.kind == "bucket":
        i = int(index) - 1
        edges = column.edges
        low = edges[i - 1] if i >= 1 else None
        high = edges[i] if i < len(edges) else None
        return f"[{low if low is not None else '-inf'}, {high if high is not None else 'inf'})"
    vocabulary = encoder.vocabularies[name]
    values = [vocabulary[j - 1] for j in np.atleast_1d(index).tolist() if j > 0]
    return values if column.kind == "multi" else (values[0] if values else None)


def _per_user(seen: pd.DataFrame, n_users: int, by: str = "item") -> list[np.ndarray]:
    """Each user's items, ordered by item index or (by="timestamp") oldest first."""
    seen = seen.sort_values(["user", by, "item"] if by != "item" else ["user", "item"], kind="stable")
    users = seen["user"].to_numpy(np.int64)
    items = seen["item"].to_numpy(np.int64)
    bounds = np.searchsorted(users, np.arange(n_users + 1))
    return [items[bounds[u]:bounds[u + 1]] for u in range(n_users)]


def _normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def _append_row(matrix: np.ndarray, row: np.ndarray) -> np.ndarray:
    """Stack a new item's feature row; multi-valued columns pad to the wider width."""
    if matrix.ndim == 2 and row.shape[1] != matrix.shape[1]:
        width = max(matrix.shape[1], row.shape[1])
        matrix = np.pad(matrix, ((0, 0), (0, width - matrix.shape[1])))
        row = np.pad(row, ((0, 0), (0, width - row.shape[1])))
    return np.concatenate([matrix, row])
