"""Small helpers the scenarios share: validated params, item text embeddings through the
content-hash cache, a thinned training part, and a model blended with popularity."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable, Sequence, TypeVar

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, ValidationError

from distillrec.data.split import Split
from distillrec.errors import DistillrecError

P = TypeVar("P", bound=BaseModel)


class StrictParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


def parse_params(model: type[P], raw: dict[str, Any], scenario: str) -> P:
    """The scenario's params, or one line naming the bad key (raised before anything is written)."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"])
            message = "unknown key" if error["type"] == "extra_forbidden" else error["msg"]
            problems.append(f"scenario.params.{where}: {message}")
        raise DistillrecError(f"scenario {scenario!r}: " + "; ".join(problems)) from None


def item_texts(items, template: str) -> list[str]:
    from distillrec.teachers.templates import TextTemplate

    return TextTemplate(template).render(items, "item")


def encode_texts(texts: list[str], template: str, encoder: str | None = None) -> torch.Tensor:
    """Language-model embeddings of `texts` (the bundled MiniLM unless `encoder` names another
    model), read from the embedding cache when the same texts were encoded before."""
    from distillrec.teachers.cache import encode_cached
    from distillrec.teachers.encoders import TextEncoder

    # A clone: the cache returns an inference-mode tensor, which a model buffer cannot be reloaded into.
    return encode_cached(TextEncoder(encoder), texts, template=template, progress=False)[0].clone()


def subsample_train(split: Split, fraction: float, seed: int) -> Split:
    """The split with each user's training interactions thinned to round(fraction * n), at
    least one, drawn with `seed`; valid and test are unchanged (the same users, the same
    ground truth), so every sparsity is measured on one protocol."""
    if not 0 < fraction <= 1:
        raise DistillrecError(f"train fraction must be in (0, 1], got {fraction!r}")
    if fraction == 1:
        return split
    train = split.train
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(train))
    users = train["user"].to_numpy()[order]
    order = order[np.argsort(users, kind="stable")]          # grouped by user, random within
    users = train["user"].to_numpy()[order]
    start = np.r_[0, np.flatnonzero(users[1:] != users[:-1]) + 1]
    counts = np.diff(np.r_[start, len(users)])
    position = np.arange(len(users)) - np.repeat(start, counts)
    keep_per_user = np.maximum(1, np.rint(fraction * counts).astype(np.int64))
    kept = np.sort(order[position < np.repeat(keep_per_user, counts)])  # table order kept
    return replace(split, train=train.iloc[kept].reset_index(drop=True),
                   params={**split.params, "train_fraction": fraction, "train_fraction_seed": seed})


def zscore(scores: torch.Tensor) -> torch.Tensor:
    """Each row standardised over the catalog (a constant row becomes zeros)."""
    scores = scores.double()
    mean, std = scores.mean(dim=1, keepdim=True), scores.std(dim=1, keepdim=True)
    return (scores - mean) / torch.where(std > 0, std, torch.ones_like(std))


def blend_scorer(model: Callable, popularity: Callable, weight: float) -> Callable:
    """(1 - weight) * zscore(model) + weight * zscore(popularity)."""
    return lambda users: (1 - weight) * zscore(model(users)) + weight * zscore(popularity(users))


def best(candidates: Sequence, value: Callable[[Any], float]) -> tuple[Any, list[float]]:
    """(the first candidate with the highest value, every candidate's value)."""
    values = [float(value(candidate)) for candidate in candidates]
    return candidates[int(np.argmax(values))], values
