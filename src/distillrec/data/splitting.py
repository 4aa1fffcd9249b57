"""Split protocols: turn a Dataset into a train / valid / test `Split`.

Protocols, by the name `make_split` knows them under:
  random     per user, shuffled, cut by ratios (RecBole `RS`, `group_by: user`)
  temporal   per user, in time order, cut by the same ratios
  loo        per user, last interaction to test, second-to-last to valid (RecBole `LS`)
  cold-user  a fraction of users held out of train entirely; the rest split randomly
  cold-item  a fraction of items held out of train entirely; the rest split randomly

Every part keeps the `Dataset.interactions` columns and dtypes and its row order (user, then
time). Randomness comes only from `numpy.random.default_rng(seed)`. The work is vectorised:
each row gets its position within its user's ordering, and per-user part sizes cut on it.
"""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Sequence
from typing import Callable

import numpy as np
import pandas as pd

from distillrec.data.dataset import Dataset
from distillrec.data.split import Split
from distillrec.errors import DistillrecError
from distillrec.registry import Registry

Ratios = Sequence[float]
SplitFunction = Callable[..., Split]

SPLITS: Registry[SplitFunction] = Registry("split")
DEFAULT_RATIOS = (0.8, 0.1, 0.1)
TRAIN, VALID, TEST = 0, 1, 2
REVEALED = -1  # a cold user's visible history: in no part


# --------------------------------------------------------------------------- protocols

@SPLITS.register("random")
def random_split(ds: Dataset, ratios: Ratios = DEFAULT_RATIOS, seed: int = 0) -> Split:
    """Per user: shuffle the user's interactions, then cut them by `ratios`.

    Part sizes per user follow RecBole 1.2.1 `Dataset._calcu_split_ids` exactly (see
    `part_sizes`), so each user has as many train / valid / test interactions as under
    RecBole's `RS` split with `group_by: user`; which interactions land where differs, as
    the shuffle comes from numpy, not torch.
    """
    ratios = _check_ratios("random", ratios)
    _check_seed("random", seed)
    inter = ds.interactions
    order = _shuffled_order(inter, np.random.default_rng(seed))
    part = _cut(inter, order, part_sizes(_counts(inter, ds.n_users), ratios))
    return _split("random", ds, part, {"ratios": list(ratios), "seed": seed})


@SPLITS.register("temporal")
def temporal_split(ds: Dataset, ratios: Ratios = DEFAULT_RATIOS) -> Split:
    """Per user, in time order (ties keep table order): the oldest interactions train, then
    valid, then the newest test. Part sizes are those of `random_split` (RecBole's rule)."""
    ratios = _check_ratios("temporal", ratios)
    inter = ds.interactions
    part = _cut(inter, _chronological_order(inter), part_sizes(_counts(inter, ds.n_users), ratios))
    return _split("temporal", ds, part, {"ratios": list(ratios)})


@SPLITS.register("loo")
def leave_one_out(ds: Dataset) -> Split:
    """Per user, in time order: last interaction to test, second-to-last to valid, rest train.

    Short histories follow RecBole's `LS: valid_and_test` (`_split_index_by_leave_one_out`),
    which always leaves at least one interaction in train: a user with 1 interaction is
    train only; a user with 2 has one train and one test interaction and none in valid.
    """
    inter = ds.interactions
    n = _counts(inter, ds.n_users)
    sizes = np.stack([np.zeros_like(n), (n >= 3).astype(np.int64), (n >= 2).astype(np.int64)], axis=1)
    sizes[:, TRAIN] = n - sizes[:, VALID] - sizes[:, TEST]
    part = _cut(inter, _chronological_order(inter), sizes)
    return _split("loo", ds, part, {})


@SPLITS.register("cold-user")
def cold_user_split(ds: Dataset, fraction: float = 0.1, reveal: int = 0,
                    ratios: Ratios = DEFAULT_RATIOS, seed: int = 0) -> Split:
    """Hold out `fraction` of the users: none of their interactions is in train.

    - Cold users: `fraction` of all users, rounded (at least one; at least one stays warm),
      drawn at random among the users with more than `reveal` interactions, so each keeps
      some ground truth. Half go to valid and the rest (the odd one too) to test, each with
      all its interactions: the unit held out is the user, not the interaction.
    - `reveal=k`: each cold user's first k interactions in time order go to `split.revealed`,
      the history a model may see when scoring that user; they are never ground truth.
    - Warm users are split as by `random_split(ratios)`, so valid and test also measure them;
      `split.cold_users` tells the two populations apart.
    """
    _check_fraction("cold-user", fraction)
    _check_seed("cold-user", seed)
    if isinstance(reveal, bool) or not isinstance(reveal, numbers.Integral) or reveal < 0:
        raise DistillrecError(f"split 'cold-user': reveal must be an integer >= 0, got {reveal!r}")
    ratios = _check_ratios("cold-user", ratios)
    inter = ds.interactions
    rng = np.random.default_rng(seed)
    n = _counts(inter, ds.n_users)
    n_cold = _held_out_count("cold-user", fraction, int((n > 0).sum()), "users")
    eligible = np.flatnonzero(n > reveal)
    if len(eligible) < n_cold:
        raise DistillrecError(
            f"split 'cold-user': {n_cold} cold users wanted but only {len(eligible)} users have "
            f"more than reveal={reveal} interactions (expected a smaller fraction or reveal)")
    cold = rng.choice(eligible, size=n_cold, replace=False)
    valid_users = cold[: n_cold // 2]

    user = inter["user"].to_numpy()
    # Every user gets the usual random cut; cold users' rows are relabelled just below.
    part = _cut(inter, _shuffled_order(inter, rng), part_sizes(n, ratios))
    is_cold = np.isin(user, cold)
    # Revealed history is each cold user's oldest interactions: it comes before what is asked.
    revealed = is_cold & (_positions(inter, _chronological_order(inter)) < reveal)
    part[is_cold] = np.where(np.isin(user[is_cold], valid_users), VALID, TEST)
    part[revealed] = REVEALED
    split = _split("cold-user", ds, part, {"fraction": fraction, "reveal": int(reveal),
                                           "ratios": list(ratios), "seed": seed})
    split.cold_users = np.sort(cold).astype(np.int64)
    split.revealed = inter[revealed].reset_index(drop=True)
    return split


@SPLITS.register("cold-item")
def cold_item_split(ds: Dataset, fraction: float = 0.1, ratios: Ratios = DEFAULT_RATIOS,
                    seed: int = 0) -> Split:
    """Hold out `fraction` of the items: none of their interactions is in train.

    - Cold items: `fraction` of the items with interactions, rounded (at least one; at least
      one stays warm), drawn at random. Half go to valid and the rest (the odd one too) to
      test, each with all its interactions, so an item is new either at validation or at
      test time, and refitting on train + valid never sees a test item.
    - Each user's warm-item interactions are split as by `random_split(ratios)`.
    - A user whose interactions are mostly with cold items may have none left in train; such
      users stay (they are cold-start users in effect) and nothing is dropped.
    """
    _check_fraction("cold-item", fraction)
    _check_seed("cold-item", seed)
    ratios = _check_ratios("cold-item", ratios)
    inter = ds.interactions
    rng = np.random.default_rng(seed)
    items_seen = np.flatnonzero(np.bincount(inter["item"].to_numpy(), minlength=ds.n_items) > 0)
    n_cold = _held_out_count("cold-item", fraction, len(items_seen), "items")
    cold = rng.choice(items_seen, size=n_cold, replace=False)
    valid_items = cold[: n_cold // 2]

    item = inter["item"].to_numpy()
    is_cold = np.isin(item, cold)
    warm = inter[~is_cold]
    order = _shuffled_order(warm, rng)
    part = np.empty(len(inter), np.int64)
    part[~is_cold] = _part_of(warm["user"].to_numpy(), _positions(warm, order),
                              part_sizes(_counts(warm, ds.n_users), ratios))
    part[is_cold] = np.where(np.isin(item[is_cold], valid_items), VALID, TEST)
    split = _split("cold-item", ds, part, {"fraction": fraction, "ratios": list(ratios), "seed": seed})
    split.cold_items = np.sort(cold).astype(np.int64)
    return split


def make_split(ds: Dataset, name: str, **params) -> Split:
    """Split `ds` by the protocol called `name` with its parameters (as given in a config).

    Unknown names and parameters raise a `DistillrecError` listing the valid ones; the
    effective parameters, defaults included, are recorded in `split.params`.
    """
    function = SPLITS.get(name)
    accepted = list(inspect.signature(function).parameters)[1:]  # all but the dataset
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise DistillrecError(f"split {name!r} has no parameter {', '.join(map(repr, unknown))}; "
                              f"expected some of: {', '.join(accepted) or '(none)'}")
    return function(ds, **params)


def make_seeded_split(ds: Dataset, name: str, seed: int, **params) -> Split:
    """`make_split` with an experiment's seed, which deterministic protocols (loo, temporal)
    do not take."""
    if "seed" in inspect.signature(SPLITS.get(name)).parameters:
        params = {"seed": seed, **params}
    return make_split(ds, name, **params)


# --------------------------------------------------------------------------- part sizes

def part_sizes(n: np.ndarray, ratios: Ratios) -> np.ndarray:
    """[len(n), 3] int64: how many of a user's `n` interactions go to train, valid, test.

    RecBole 1.2.1 `Dataset._calcu_split_ids`, vectorised: each later part gets
    floor(ratio * n); train gets the rest; then, from the last part backwards and while
    train keeps more than one interaction, a part whose ratio * n lies in (0, 1) is raised
    to one, taken from train. So n=1 -> (1,0,0), 2 -> (1,0,1), 3 -> (1,1,1), 10 -> (8,1,1)
    at ratios 0.8/0.1/0.1. Ratios are normalised by their sum first, as RecBole does.
    """
    n = np.asarray(n, dtype=np.int64)
    total = sum(ratios)
    ratios = [r / total for r in ratios]
    sizes = np.stack([(r * n).astype(np.int64) for r in ratios], axis=1)
    sizes[:, 0] = n - sizes[:, 1:].sum(axis=1)
    for i in range(1, len(ratios)):
        exact = ratios[-i] * n
        # RecBole stops at the first check where train has <= 1 left; train only shrinks,
        # so "still > 1 now" is the same condition as "never stopped so far".
        bump = (sizes[:, 0] > 1) & (exact > 0) & (exact < 1)
        sizes[bump, -i] += 1
        sizes[bump, 0] -= 1
    return sizes


# --------------------------------------------------------------------------- machinery

def _counts(inter: pd.DataFrame, n_users: int) -> np.ndarray:
    return np.bincount(inter["user"].to_numpy(), minlength=n_users).astype(np.int64)


def _shuffled_order(inter: pd.DataFrame, rng: np.random.Generator) -> np.ndarray:
    """Row order grouping users together, random within each user."""
    order = rng.permutation(len(inter))
    return order[np.argsort(inter["user"].to_numpy()[order], kind="stable")]


def _chronological_order(inter: pd.DataFrame) -> np.ndarray:
    """Row order grouping users together, by timestamp within each user (ties: table order)."""
    order = np.argsort(inter["timestamp"].to_numpy(), kind="stable")
    return order[np.argsort(inter["user"].to_numpy()[order], kind="stable")]


def _positions(inter: pd.DataFrame, order: np.ndarray) -> np.ndarray:
    """For each row, its 0-based rank within its user in `order` (grouped by user)."""
    user_in_order = inter["user"].to_numpy()[order]
    group_start = np.r_[True, user_in_order[1:] != user_in_order[:-1]]
    start_of_row = np.maximum.accumulate(np.where(group_start, np.arange(len(order)), 0))
    positions = np.empty(len(order), np.int64)
    positions[order] = np.arange(len(order)) - start_of_row
    return positions


def _part_of(user: np.ndarray, position: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Part index (TRAIN, VALID, TEST) of each row from its position and its user's sizes."""
    train_end = sizes[user, TRAIN]
    valid_end = train_end + sizes[user, VALID]
    return (position >= train_end).astype(np.int64) + (position >= valid_end)


def _cut(inter: pd.DataFrame, order: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    return _part_of(inter["user"].to_numpy(), _positions(inter, order), sizes)


def _split(name: str, ds: Dataset, part: np.ndarray, params: dict) -> Split:
    """A Split whose parts are the rows of `ds.interactions` labelled TRAIN, VALID, TEST
    (rows labelled otherwise belong to none); table order and dtypes are kept."""
    inter = ds.interactions
    train, valid, test = (inter[part == code].reset_index(drop=True) for code in (TRAIN, VALID, TEST))
    return Split(name, train, valid, test, n_users=ds.n_users, n_items=ds.n_items, params=params)


# --------------------------------------------------------------------------- parameter checks

def _check_ratios(split: str, ratios: Ratios) -> tuple[float, float, float]:
    try:
        values = tuple(float(r) for r in ratios)
    except (TypeError, ValueError):
        raise DistillrecError(f"split {split!r}: ratios must be three numbers (train, valid, test), "
                              f"got {ratios!r}") from None
    if len(values) != 3 or any(not math.isfinite(r) or r < 0 for r in values):
        raise DistillrecError(f"split {split!r}: ratios must be three numbers >= 0 (train, valid, test), "
                              f"got {ratios!r}")
    if not math.isclose(sum(values), 1.0, abs_tol=1e-6):
        raise DistillrecError(f"split {split!r}: ratios must sum to 1, got {ratios!r} (sum {sum(values):g})")
    return values


def _check_fraction(split: str, fraction: float) -> None:
    if isinstance(fraction, bool) or not isinstance(fraction, numbers.Real) or not 0 < fraction < 1:
        raise DistillrecError(f"split {split!r}: fraction must be a number in (0, 1), got {fraction!r}")


def _check_seed(split: str, seed: int) -> None:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise DistillrecError(f"split {split!r}: seed must be an integer >= 0, got {seed!r}")


def _held_out_count(split: str, fraction: float, available: int, what: str) -> int:
    """fraction * available rounded half up, at least one, leaving at least one warm."""
    count = max(1, int(fraction * available + 0.5))
    if count >= available:
        raise DistillrecError(f"split {split!r}: fraction={fraction} of {available} {what} leaves none "
                              f"warm (expected a smaller fraction or more {what})")
    return count
