"""Is a distilled model really better than its undistilled twin? Paired tests and breakdowns.

Two models evaluated on the same split are compared *paired*: per user (`paired_users`,
values from `Evaluator.per_user`) or per split seed (`paired_splits`). Pairing removes the
spread between users (or splits) that both models share, so a small but consistent lift
can be told from noise, which comparing two means alone cannot do.
`activity_groups` and `breakdown` show where a lift comes from, e.g. whether distillation
helps users with short histories most.

Every value returned is a plain Python float, int or None (JSON-ready), never rounded.
"""

from __future__ import annotations

from typing import Mapping, Sequence, Union

import numpy as np

from distillrec.errors import DistillrecError

#: per-user metric values: {user: value}, or (users, values) as `Evaluator.per_user` returns.
PerUser = Union[Mapping[int, float], tuple[Sequence[int], Sequence[float]]]


def paired_users(base: PerUser, other: PerUser) -> dict:
    """Compare `other` with `base` over the users both were evaluated on.

    Returns {"n_users", "base", "other" (mean values), "lift" (other / base - 1; None if the
    base mean is 0), "wilcoxon_p", "t_p"} (two-sided p-values). The Wilcoxon signed-rank
    test is the main one, as per-user metrics (ndcg, recall, hit) are far from normal and
    mostly ties at 0; zero_method="zsplit" counts users with equal values half for each
    side instead of dropping them, which would overstate a lift. It is None when every
    difference is zero. The paired t-test (None with one user or constant differences)
    tests the mean itself, the quantity reported.
    """
    base_users, base_values = _as_arrays(base, "base")
    other_users, other_values = _as_arrays(other, "other")
    shared, in_base, in_other = np.intersect1d(base_users, other_users, assume_unique=True, return_indices=True)
    if len(shared) == 0:
        raise DistillrecError(f"no user is shared by base ({len(base_users)} users) and other "
                              f"({len(other_users)} users); evaluate both on the same split part")
    b, o = base_values[in_base], other_values[in_other]
    return {"n_users": int(len(shared)), "base": float(b.mean()), "other": float(o.mean()),
            "lift": _lift(float(b.mean()), float(o.mean())),
            "wilcoxon_p": _wilcoxon_p(o - b), "t_p": _t_p(b, o)}


def format_p(value: float | None) -> str:
    """A p-value for a table: two significant digits, "<1e-4" below that, "–" when undefined."""
    return "–" if value is None else f"{value:.2g}" if value >= 1e-4 else "<1e-4"


def paired_splits(base: Sequence[float], other: Sequence[float]) -> dict:
    """Compare `other` with `base` over split seeds: one metric value per seed, same order.

    Per-user tests say whether a lift holds on *this* split; repeating over seeds says
    whether it survives a different split. Returns {"n_splits", "base_mean", "base_std",
    "other_mean", "other_std" (sample std, ddof=1; 0.0 for a single split), "lift" (of the
    means; None if the base mean is 0), "lift_mean", "lift_std" (of the per-split relative
    lifts; None if a base value is 0), "t_p" (paired t-test, two-sided; None with fewer than
    2 splits or when the differences do not vary beyond rounding)}.
    """
    b, o = np.asarray(base, dtype=np.float64), np.asarray(other, dtype=np.float64)
    if b.ndim != 1 or b.shape != o.shape or len(b) == 0:
        raise DistillrecError(f"paired_splits needs one value per split for both models, in the same order; "
                              f"got {len(np.atleast_1d(b))} base and {len(np.atleast_1d(o))} other values")
    lifts = None if np.any(b == 0) else o / b - 1
    return {"n_splits": int(len(b)), "base_mean": float(b.mean()), "base_std": _std(b),
            "other_mean": float(o.mean()), "other_std": _std(o),
            "lift": _lift(float(b.mean()), float(o.mean())),
            "lift_mean": None if lifts is None else float(lifts.mean()),
            "lift_std": None if lifts is None else _std(lifts), "t_p": _t_p(b, o)}


def activity_groups(train_counts: Mapping[int, int] | np.ndarray, users: np.ndarray,
                    n_groups: int = 4, unit: str = "item") -> list[tuple[str, np.ndarray]]:
    """[(label, bool mask over `users`)]: the users split by how many training interactions they have.

    train_counts: per user, as a mapping (absent users count 0) or an array indexed by user.
    Groups are quantile bins of the users' counts (quartiles by default): the inner edges are
    np.quantile of the counts, and a user goes to the bin (lower edge, upper edge] holding
    their count, as pandas.qcut does. A user's bin depends only on their count, so users
    with the same count always share a group; heavy ties can therefore make bins unequal
    in size or empty, and empty bins are dropped. Labels give the counts actually present,
    e.g. "16–26 items" (`unit` names what is counted). Grouping test interactions by their
    items' training counts works the same way: pass the items' counts and the pairs' items.
    """
    if n_groups < 1:
        raise DistillrecError(f"n_groups must be >= 1, got {n_groups}")
    users = np.asarray(users, dtype=np.int64)
    if isinstance(train_counts, Mapping):
        counts = np.array([train_counts.get(int(u), 0) for u in users], dtype=np.int64)
    else:
        counts = np.asarray(train_counts, dtype=np.int64)[users]
    if len(counts) == 0:
        return []
    edges = np.quantile(counts, np.linspace(0, 1, n_groups + 1)[1:-1])
    bins = np.searchsorted(edges, counts, side="left")  # number of edges strictly below the count
    groups = []
    for g in range(n_groups):
        mask = bins == g
        if mask.any():
            low, high = int(counts[mask].min()), int(counts[mask].max())
            label = f"{low}–{high} {unit}s" if low != high else f"{low} {unit}" + ("" if low == 1 else "s")
            groups.append((label, mask))
    return groups


def breakdown(base_users, base_values, other_users, other_values,
              groups: Sequence[tuple[str, np.ndarray]]) -> list[dict]:
    """Per group: {"group", "n_users", "base", "other", "lift", "wilcoxon_p"} (see `paired_users`).

    groups: (label, bool mask over base_users), e.g. activity_groups(counts, base_users).
    A group whose users the other model was not evaluated on has n_users 0 and None values.
    """
    base_users = np.asarray(base_users, dtype=np.int64)
    base_values = np.asarray(base_values, dtype=np.float64)
    rows = []
    for label, mask in groups:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != base_users.shape:
            raise DistillrecError(f"group {label!r}: mask has shape {mask.shape}; expected one entry "
                                  f"per base user {base_users.shape}")
        if len(np.intersect1d(base_users[mask], np.asarray(other_users, dtype=np.int64))):
            paired = paired_users((base_users[mask], base_values[mask]), (other_users, other_values))
        else:
            paired = {"n_users": 0, "base": None, "other": None, "lift": None, "wilcoxon_p": None}
        rows.append({"group": label, **{k: paired[k] for k in ("n_users", "base", "other", "lift", "wilcoxon_p")}})
    return rows


def _as_arrays(per_user: PerUser, what: str) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(per_user, Mapping):
        users, values = list(per_user.keys()), list(per_user.values())
    else:
        users, values = per_user
    users, values = np.asarray(users, dtype=np.int64), np.asarray(values, dtype=np.float64)
    if users.ndim != 1 or users.shape != values.shape:
        raise DistillrecError(f"{what}: expected one value per user, got {users.shape} users and "
                              f"{values.shape} values")
    if len(np.unique(users)) != len(users):
        raise DistillrecError(f"{what}: a user appears more than once")
    return users, values


def _lift(base: float, other: float) -> float | None:
    return None if base == 0 else other / base - 1


def _std(values: np.ndarray) -> float:
    return float(values.std(ddof=1)) if len(values) > 1 else 0.0


def _wilcoxon_p(differences: np.ndarray) -> float | None:
    from scipy.stats import wilcoxon

    if not np.any(differences):
        return None
    return float(wilcoxon(differences, zero_method="zsplit", alternative="two-sided").pvalue)


def _t_p(base: np.ndarray, other: np.ndarray) -> float | None:
    from scipy.stats import ttest_rel

    differences = other - base
    # Differences equal up to rounding (0.3 - 0.2 vs 0.1 - 0.0) would give a meaningless t.
    scale = max(float(np.abs(base).max()), float(np.abs(other).max()))
    if len(differences) < 2 or np.ptp(differences) <= 1e-12 * scale:
        return None
    p = float(ttest_rel(other, base, alternative="two-sided").pvalue)
    return None if np.isnan(p) else p
