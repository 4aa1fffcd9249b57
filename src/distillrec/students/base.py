"""The model contract: what every model, student or teacher, states about itself.

Like RecBole's `calculate_loss` / `full_sort_predict`, a model says how to compute its loss on
a batch and how to score the full catalog for a batch of users; the Trainer does the rest.
Beyond that, each model answers every question another stage would otherwise ask about its
type (the distillation view of a batch, the tables PCA init writes into, what a bundle
exports, whether it can encode a user or item it has never seen), and offers implicit's small
public face: `recommend`, `recommend_new_user`, `similar_items`, with ids as in the user's data.

    build(dataset, split, **params)   loss(batch)   pair_scores(users, items)   score(users)
    user_vectors(users)   item_vectors(items=None)   similarity(a, b)   set_history(interactions)
    recommend(user_ids, k, exclude_seen=True)   similar_items(item_ids, k)
    encode_new_user(attributes, recent_items)   encode_new_item(records)   (where it can)
    distill_user_vectors(batch)   distill_items(batch)   id_tables()
    serving_vectors()   history_scores(users)   serving_spec()   export_graphs()
    restore(params, tensors, state)
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from distillrec.errors import DistillrecError
from distillrec.registry import Registry
from distillrec.train.losses import REC_LOSSES

MODELS: Registry[type["Recommender"]] = Registry("model")
#: modules whose import registers models, in the order `model_class` tries them: students are
#: cheap; teachers load transformers, so only when a name is not found before them.
MODEL_MODULES = ("distillrec.students", "distillrec.teachers.models", "distillrec.teachers.ease",
                 "distillrec.teachers.ensemble", "distillrec.teachers.sequential")
_USER_CHUNK = 1024  # users encoded at once by `representations`


def model_class(name: str) -> type["Recommender"]:
    """The registered model class called `name`; unknown names list every valid one."""
    for module in MODEL_MODULES:
        if name in MODELS:
            break
        if importlib.util.find_spec(module) is not None:
            importlib.import_module(module)
    return MODELS.get(name)


def registered_name(model_cls: type, fallback: str) -> str:
    """The registry name of a model class (run directories rebuild models by it)."""
    return next((n for n in MODELS.names() if MODELS.get(n) is model_cls), fallback)


@dataclass(frozen=True)
class IdMaps:
    """Index <-> id as in the user's data, for users and items."""

    user_ids: np.ndarray
    item_ids: np.ndarray

    @classmethod
    def of(cls, dataset) -> "IdMaps":
        return cls(np.asarray(dataset.user_ids).astype(str), np.asarray(dataset.item_ids).astype(str))

    def users(self, ids: Sequence[Any]) -> torch.Tensor:
        return torch.as_tensor(_lookup(self._user_index, ids, "user"), dtype=torch.long)

    def items(self, ids: Sequence[Any]) -> torch.Tensor:
        return torch.as_tensor(_lookup(self._item_index, ids, "item"), dtype=torch.long)

    @property
    def _user_index(self) -> dict[str, int]:
        return _index(self, "user_ids")

    @property
    def _item_index(self) -> dict[str, int]:
        return _index(self, "item_ids")


def _index(maps: IdMaps, field: str) -> dict[str, int]:
    cache = maps.__dict__.setdefault("_cache", {})  # frozen dataclass: built once, kept aside
    if field not in cache:
        cache[field] = {str(value): i for i, value in enumerate(getattr(maps, field))}
    return cache[field]


def _lookup(index: dict[str, int], ids: Sequence[Any], what: str) -> list[int]:
    unknown = [str(i) for i in ids if str(i) not in index]
    if unknown:
        shown = ", ".join(repr(u) for u in unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        raise DistillrecError(f"unknown {what} id(s) {shown}: not in the model's data"
                              + ("; for a new user use recommend_new_user" if what == "user" else ""))
    return [index[str(i)] for i in ids]


def dot_similarity(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a [B, d] against b [N, d] -> [B, N], or against per-row candidates b [B, C, d] -> [B, C]."""
    if b.dim() == 3:
        return torch.einsum("bd,bcd->bc", a, b)
    return a @ b.T


def blend(parts: Sequence[torch.Tensor], scale: float) -> torch.Tensor:
    """One new-user vector from several [d] estimates (a profile tower's output, the mean of
    recent items): one alone is returned as is; several are each normalised and summed (so
    neither dominates by scale), and the direction gets length `scale`."""
    if len(parts) == 1:
        return parts[0]
    direction = sum(F.normalize(p, dim=-1) for p in parts)
    return scale * F.normalize(direction, dim=-1)


class Recommender(nn.Module):
    #: which batches the model trains on: "pairs" (user, positive item, sampled negatives)
    #: or "sequences" (each user's chronological history, next-item targets).
    batch_kind: str = "pairs"
    #: name of the recommendation loss in `distillrec.train.losses.REC_LOSSES`.
    rec_loss: str = "bpr"
    #: batch size the Trainer uses when its config leaves it unset (RecBole's 2048 for pairs).
    default_batch_size: int = 2048
    #: what `encode_new_user` accepts: "recent_items" (item indices the user interacted
    #: with), "attributes" (profile records); empty: the model cannot encode new users.
    new_user_inputs: tuple[str, ...] = ("recent_items",)
    #: whether `encode_new_item` works (a feature or text item tower).
    encodes_new_items: bool = False

    # --- training ----------------------------------------------------------------------------

    @classmethod
    def build(cls, dataset, split, **params) -> "Recommender":
        """A model sized for `split` (n_users, n_items) that may read `dataset`'s user and item
        side tables; `params` are the model's own hyper-parameters from config."""
        raise NotImplementedError

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Scalar training loss for one batch (recommendation loss only; KD is added outside).

        The generic version serves "pairs" models: batch {"user": [B], "pos": [B]} plus
        "neg": [B, n_neg] for sampled losses. Sequence models override it."""
        rec = REC_LOSSES.get(self.rec_loss)
        if rec.candidates == "full":
            return rec(self.score(batch["user"]), batch["pos"])
        if rec.margin_fn is not None:
            return rec.margin_fn(self.pair_margins(batch["user"], batch["pos"], batch["neg"]))
        candidates = torch.cat([batch["pos"].unsqueeze(1), batch["neg"]], dim=1)
        scores = self.pair_scores(batch["user"], candidates)
        return rec(scores[:, 0], scores[:, 1:])

    def pair_margins(self, users: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
        """s(user, positive) - s(user, negative): users [B], positives [B], negatives [B, n_neg]
        -> [B, n_neg]. From `pair_scores` here; a model with a cheaper form overrides it."""
        scores = self.pair_scores(users, torch.cat([positives.unsqueeze(1), negatives], dim=1))
        return scores[:, :1] - scores[:, 1:]

    def pair_scores(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Scores of candidate items per user: users [B], items [B, C] -> [B, C]."""
        item_vectors = self.item_vectors(items.reshape(-1)).reshape(*items.shape, -1)
        return self.similarity(self.user_vectors(users), item_vectors)

    def set_history(self, interactions: pd.DataFrame) -> None:
        """Everything the model may see before scoring (train for validation; train + valid
        for test; everything when serving): `Split.history(part)`. It is also what
        `recommend(exclude_seen=True)` leaves out. Models that read histories (SASRec,
        pooling towers) build their inputs in `read_history`."""
        self.seen = interactions[["user", "item"]]
        self.read_history(interactions)

    def read_history(self, interactions: pd.DataFrame) -> None:
        """Hook of `set_history` for history-based models; ID models ignore the history."""

    def score(self, users: torch.Tensor) -> torch.Tensor:
        """Scores of every item for each user index in `users`: shape [len(users), n_items]."""
        return self.similarity(self.user_vectors(users), self.item_vectors())

    # --- vectors -----------------------------------------------------------------------------

    def user_vectors(self, users: torch.Tensor) -> torch.Tensor:
        """[len(users), d] for user indices (history models: from the last `set_history`).
        Models that give only `representations` (factorised teachers) get their rows."""
        return self._represented("user")[users]

    def item_vectors(self, items: torch.Tensor | None = None) -> torch.Tensor:
        """[len(items), d] for item indices, every item when None."""
        table = self._represented("item")
        return table if items is None else table[items]

    def _represented(self, side: str) -> torch.Tensor:
        if type(self).representations is Recommender.representations:  # neither is defined: no vectors
            raise DistillrecError(f"{type(self).__name__} has no {side} vectors")
        return self.representations()[side]

    def similarity(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """How the model scores user vectors against item vectors (see `dot_similarity` for
        shapes): dot products unless the model says otherwise (cosine / temperature)."""
        return dot_similarity(a, b)

    def representations(self) -> dict[str, torch.Tensor]:
        """{"user": [n_users, d], "item": [n_items, d]}: every user and item vector."""
        items = self.item_vectors()
        users = torch.arange(self.n_users_known(), device=items.device)
        return {"user": torch.cat([self.user_vectors(chunk) for chunk in users.split(_USER_CHUNK)]), "item": items}

    def n_users_known(self) -> int:
        """Users the model has a row for (index 0 .. n - 1)."""
        raise NotImplementedError(f"{type(self).__name__} does not say how many users it knows")

    # --- what distillation and transfer read -----------------------------------------------

    def distill_user_vectors(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The user vector of every batch row [B, d], as distillation compares it with the
        teacher's vector of the row's user (`batch["user"]`)."""
        return self.user_vectors(batch["user"])

    def distill_items(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The distinct items a batch trains on (its positives)."""
        return batch["pos"].unique()

    def id_tables(self) -> dict[str, torch.Tensor]:
        """Writable views of the ID embedding tables {"user": [n_users, d], "item": [n_items, d]}
        (either may be absent) that initialisation from a teacher overwrites."""
        raise DistillrecError(f"{type(self).__name__} has no ID embeddings to initialise")

    # --- recommending: ids as in the user's data ---------------------------------------------

    def bind(self, ids: IdMaps, history: pd.DataFrame | None = None) -> "Recommender":
        """Give the model its id maps (and, optionally, the history `recommend` excludes and
        history models read); returns the model."""
        self.ids = ids
        if history is not None:
            self.set_history(history)
        return self

    def recommend(self, user_ids, k: int = 10, exclude_seen: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Top-k item ids and scores for known users: one id gives ([k], [k]); a list gives
        ([n, k], [n, k]). exclude_seen leaves out the items of the last `set_history`."""
        single = np.ndim(user_ids) == 0
        ids = self._ids()
        users = ids.users([user_ids] if single else list(user_ids))
        self.eval()
        with torch.no_grad():
            scores = self.score(users).float().clone()
        if exclude_seen:
            scores = self._mask_seen(scores, users)
        return self._top(scores, k, single)

    def recommend_new_user(self, *, attributes: Mapping[str, Any] | None = None, recent_items: Sequence[Any] = (),
                           k: int = 10, exclude_seen: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Top-k item ids and scores for one user the model has never seen, from a profile
        (`attributes`, where the model reads them) and/or the ids of recent items."""
        recent = self._ids().items(list(recent_items)) if len(recent_items) else torch.empty(0, dtype=torch.long)
        self.eval()
        with torch.no_grad():
            scores = self.score_new_user(attributes=attributes, recent_items=recent)[None].float().clone()
        if exclude_seen and len(recent):
            scores[0, recent] = float("-inf")
        return self._top(scores, k, single=True)

    def similar_items(self, item_ids, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The k items closest to each given item (cosine of item vectors, itself left out)."""
        single = np.ndim(item_ids) == 0
        items = self._ids().items([item_ids] if single else list(item_ids))
        self.eval()
        with torch.no_grad():
            unit = F.normalize(self.item_vectors().float(), dim=-1)
            scores = unit[items] @ unit.T
        scores[torch.arange(len(items)), items] = float("-inf")
        return self._top(scores, k, single)

    def encode_new_user(self, *, attributes: Mapping[str, Any] | None = None,
                        recent_items: torch.Tensor | None = None) -> torch.Tensor:
        """[d] user vector of a new user. The generic version folds the recent items in as the
        mean of their vectors; models with a profile tower override it."""
        if attributes:
            raise DistillrecError(f"{type(self).__name__} reads no user attributes: give recent_items "
                                  "(ids of items the new user interacted with)")
        if recent_items is None or not len(recent_items):
            raise DistillrecError("a new user needs recent_items (ids of items they interacted with)")
        return self.item_vectors(recent_items).mean(dim=0)

    def score_new_user(self, *, attributes: Mapping[str, Any] | None = None,
                       recent_items: torch.Tensor | None = None) -> torch.Tensor:
        """[n_items] scores of a new user: `encode_new_user` against every item (models whose
        score has more than a similarity, such as an item-to-item term, override it)."""
        vector = self.encode_new_user(attributes=attributes, recent_items=recent_items)
        return self.similarity(vector[None], self.item_vectors())[0]

    def encode_new_item(self, records: Sequence[Mapping[str, Any]]) -> torch.Tensor:
        """[len(records), d] item vectors of new items from their raw attributes."""
        raise DistillrecError(f"{type(self).__name__} cannot encode new items: it has no item feature "
                              "tower (a two-tower or content student can)")

    def _ids(self) -> IdMaps:
        ids = getattr(self, "ids", None)
        if ids is None:
            raise DistillrecError("the model has no id maps: call model.bind(IdMaps.of(dataset)) first "
                                  "(distillrec.fit, distill and load_model do it)")
        return ids

    def _mask_seen(self, scores: torch.Tensor, users: torch.Tensor) -> torch.Tensor:
        seen = getattr(self, "seen", None)
        if seen is None:
            raise DistillrecError("exclude_seen: the model has no history; call model.set_history(...) "
                                  "or pass exclude_seen=False")
        row = pd.Series(np.arange(len(users)), index=users.numpy())
        mine = seen[seen["user"].isin(row.index)]
        scores[torch.as_tensor(row[mine["user"]].to_numpy()), torch.as_tensor(mine["item"].to_numpy())] = float("-inf")
        return scores

    def _top(self, scores: torch.Tensor, k: int, single: bool) -> tuple[np.ndarray, np.ndarray]:
        from distillrec.evaluation.evaluator import rank_top_k

        if not 1 <= k <= scores.shape[1]:
            raise DistillrecError(f"k must be in 1..{scores.shape[1]} (the catalog), got {k}")
        top = rank_top_k(scores, k)
        values = scores.gather(1, top)
        ids = self.ids.item_ids[top.numpy()]
        ids, values = np.where(torch.isinf(values).numpy(), None, ids), values.numpy()
        return (ids[0], values[0]) if single else (ids, values)

    # --- serving hooks -----------------------------------------------------------------------

    def serving_vectors(self) -> dict[str, torch.Tensor]:
        """{"user", "item"} in serving space, where a dot product plus `history_scores` equals
        `score` (users as of the current history); models may add what their towers need
        (e.g. "item_raw")."""
        with torch.no_grad():
            return {k: v.detach().float() for k, v in self.representations().items()}

    def history_scores(self, users: torch.Tensor) -> torch.Tensor | None:
        """[B, n_items]: the part of `score` that no cached vector holds, read from each user's
        history per request (the LM teacher's item-to-item term); None when score is all dot."""
        return None

    def serving_spec(self) -> dict[str, Any]:
        """What a bundle's service needs to know, as JSON: {"similarity", "temperature",
        "towers" (ONNX towers over feature columns: new users from attributes, new items),
        "pools_history" (max items the user tower pools, or None), "title_buckets" (the item
        tower hashes titles into this many buckets, or None), "content_dim" (the item tower
        needs a content vector of this size, or None)}."""
        return {"similarity": "dot", "temperature": None, "towers": False, "pools_history": None,
                "title_buckets": None, "content_dim": None}

    def export_graphs(self) -> dict[str, tuple[nn.Module, dict[str, torch.Tensor]]]:
        """{"user_tower" | "item_tower": (module, example inputs by name)} for ONNX export."""
        raise DistillrecError(f"{type(self).__name__} cannot be exported as a bundle (no tower graphs)")

    def saved_state(self) -> dict[str, Any]:
        """JSON that, with the weights, rebuilds the model without its data (`restore`)."""
        return {}

    @classmethod
    def restore(cls, params: Mapping[str, Any], tensors: Mapping[str, torch.Tensor],
                state: Mapping[str, Any]) -> "Recommender":
        """The model rebuilt from its params, weights and `saved_state` alone (a bundle)."""
        raise DistillrecError(f"{cls.__name__} is rebuilt from its run's data, not from a bundle")

    # --- cost --------------------------------------------------------------------------------

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def size_bytes(self) -> int:
        tensors = list(self.parameters()) + list(self.buffers())
        return sum(t.numel() * t.element_size() for t in tensors)
