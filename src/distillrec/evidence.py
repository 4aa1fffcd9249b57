"""The before/after evidence of a run: which model is compared with which, paired per user on
each split, paired across split seeds, and broken down by how active users are.

Pairs: every distilled model against its own undistilled student, the teacher against each
student, and the config's `compare` pairs; a comparison names the `model` and what it is
compared with (`vs`), and "base" and "other" hold their values. Per split (`split_comparisons`)
the test NDCG@10 of both models is paired user by user (Wilcoxon signed-rank and paired t) and
split into quartiles of users' training interactions (`by_activity`); the test interactions'
hit@10 is paired interaction by interaction and split into quartiles of the items' training
interactions (`by_item_activity`: each group's value is its recall@10). Across split seeds
(`summarise_splits`) the per-split values are paired (t-test) and reported as mean ± std. The
values come from each stage's `per_user.parquet` and `per_interaction.parquet`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from distillrec.config import ExperimentConfig
from distillrec.evaluation.significance import activity_groups, breakdown, format_p, paired_splits, paired_users
from distillrec.evaluation.scoring import read_per_interaction, read_per_user

METRIC = "ndcg@10"
SUMMARISED = ("ndcg@10", "recall@10", "ndcg@20", "recall@20")


def pairs(config: ExperimentConfig) -> list[tuple[str, str]]:
    """(base, other) model names to compare, in report order."""
    out = [(entry.student, entry.name) for entry in config.distilled]
    if config.teacher is not None:
        out += [(student.name, "teacher") for student in config.students]
    return out + [pair for pair in map(tuple, config.compare) if pair not in out]

#: the two breakdowns: key -> what its quartiles group by
BREAKDOWNS = {"by_activity": "users' training items", "by_item_activity": "items' training interactions"}


def split_comparisons(config: ExperimentConfig, split, model_dirs: dict[str, Path]) -> list[dict]:
    """One row per pair on this split: the paired per-user test and the activity breakdown
    (pairs whose per-user values are missing, e.g. stages cached by an older version, are skipped)."""
    counts = np.bincount(split.train["user"].to_numpy(np.int64), minlength=split.n_users)
    item_counts = np.bincount(split.train["item"].to_numpy(np.int64), minlength=split.n_items)
    rows = []
    for base, other in pairs(config):
        a, b = (read_per_user(model_dirs[name]) if name in model_dirs else None for name in (base, other))
        if a is None or b is None:
            continue
        groups = activity_groups(counts, a[0])
        row = {"model": other, "vs": base, "metric": f"test {METRIC}", **paired_users(a, b),
               "by_activity": breakdown(a[0], a[1], b[0], b[1], groups)}
        hits = [read_per_interaction(model_dirs[name], split.n_items) for name in (base, other)]
        if all(h is not None for h in hits):
            (pairs_a, items, hit_a), (pairs_b, _, hit_b) = hits
            item_groups = activity_groups(item_counts, items, unit="interaction")
            row["by_item_activity"] = breakdown(pairs_a, hit_a, pairs_b, hit_b, item_groups)
        rows.append(row)
    return rows


def summarise_splits(config: ExperimentConfig, out: Path, per_split: dict[int, dict], selections: dict,
                     *, wall_seconds: float) -> dict:
    """The aggregate metrics.json of a resampled run: per model mean ± std over split seeds,
    each pair's lift with its across-split paired test, and the per-split per-user tests."""
    from distillrec import artifacts

    seeds = list(per_split)
    first = per_split[seeds[0]]
    summary = {}
    for name in first["models"]:
        summary[name] = {"role": first["models"][name].get("role")}
        for part in ("valid", "test"):
            for metric in SUMMARISED:
                values = [per_split[s]["models"][name][part][metric] for s in seeds
                          if (per_split[s]["models"][name].get(part) or {}).get(metric) is not None]
                if len(values) == len(seeds):
                    summary[name][f"{part} {metric}"] = {"mean": float(np.mean(values)),
                                                         "std": float(np.std(values, ddof=1)) if len(values) > 1
                                                         else 0.0, "values": values}
    comparisons = []
    for base, other in pairs(config):
        if base not in first["models"] or other not in first["models"]:
            continue
        values = {name: [per_split[s]["models"][name]["test"][METRIC] for s in seeds] for name in (base, other)}
        per_user = [{"seed": s, **{k: v for k, v in row.items() if k != "by_activity"}}
                    for s in seeds for row in per_split[s].get("comparisons", [])
                    if (row["vs"], row["model"]) == (base, other)]
        comparisons.append({"model": other, "vs": base, "metric": f"test {METRIC}",
                            **paired_splits(values[base], values[other]), "per_split": per_user,
                            **{key: _mean_breakdown(per_split, seeds, base, other, key) for key in BREAKDOWNS}})
    scenarios = summarise_scenarios(per_split, seeds)
    return {"seeds": seeds, "models": _mean_models(per_split, seeds), "summary": summary, "comparisons": comparisons,
            **({"scenarios": scenarios} if scenarios else {}),
            "tuning": {name: {k: v for k, v in record.items() if k != "history"} for name, record in selections.items()},
            "splits": {str(s): str(out / f"split-{s}") for s in seeds},
            "config": config.model_dump(mode="json"), "versions": artifacts.package_versions(),
            "data_fingerprint": first["data_fingerprint"], "wall_seconds": wall_seconds}


def summarise_scenarios(per_split: dict[int, dict], seeds: list[int]) -> dict:
    """Each scenario's table over split seeds: a row's numbers become their mean over splits
    and "<column> std" their spread over splits (each split has its own held-out entities and
    teacher, so this is the variance that means something); its paired comparisons
    (`details["paired"]`) are paired again over splits. Rows match by their text columns."""
    out = {}
    for name, first in (per_split[seeds[0]].get("scenarios") or {}).items():
        results = [per_split[s].get("scenarios", {}).get(name) for s in seeds]
        if any(r is None for r in results):
            continue
        table = [_row_over_splits(row, [r["table"] for r in results]) for row in first["table"]]
        paired = [pair for row in first.get("details", {}).get("paired", [])
                  if (pair := _pair_over_splits(row, results, seeds)) is not None]
        # The notes' figures (selections, lifts) are one split's: say so, the table is the mean.
        notes = (f"Mean ± std over split seeds {seeds} (each split: its own held-out set and teacher). "
                 f"Split {seeds[0]}'s notes (its own figures): " + first.get("notes", ""))
        out[name] = {"table": table, "notes": notes, "details": {"paired": paired}}
    return out


def _row_over_splits(row: dict, tables: list[list[dict]]) -> dict:
    """`row`'s text columns, and each number's mean and std over the splits' matching rows."""
    label = {k: v for k, v in row.items() if not isinstance(v, (int, float)) or isinstance(v, bool)}
    matches = [next((r for r in table if all(r.get(k) == v for k, v in label.items())), {}) for table in tables]
    merged = dict(label)
    for key in row:
        values = [m[key] for m in matches if isinstance(m.get(key), (int, float))]
        if key in label or key.endswith(" std") or len(values) != len(tables):
            continue
        merged[key] = float(np.mean(values))
        merged[f"{key} std"] = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return merged


def _pair_over_splits(row: dict, results: list[dict], seeds: list[int]) -> dict | None:
    """One per-split paired comparison (model vs base on a metric) paired again over splits."""
    which = (row["model"], row["vs"], row["metric"])
    cells = [next((c for c in r.get("details", {}).get("paired", [])
                   if (c["model"], c["vs"], c["metric"]) == which), None) for r in results]
    if any(c is None for c in cells):
        return None
    return {"model": row["model"], "vs": row["vs"], "metric": row["metric"],
            **paired_splits([c["base"] for c in cells], [c["other"] for c in cells]),
            "per_split": [{"seed": s, **c} for s, c in zip(seeds, cells)]}


def _mean_breakdown(per_split: dict[int, dict], seeds: list[int], base: str, other: str,
                    key: str = "by_activity") -> list[dict]:
    """Activity quartiles averaged over splits (each split's quartiles come from its own training
    data), with each quartile's values paired over splits (t-test)."""
    tables = [row[key] for s in seeds for row in per_split[s].get("comparisons", [])
              if (row["vs"], row["model"]) == (base, other) and key in row]
    if len(tables) != len(seeds) or len({len(t) for t in tables}) != 1:
        return []
    out = []
    for i, group in enumerate(tables[0]):
        cells = [t[i] for t in tables]
        b = [c["base"] for c in cells if c["base"] is not None]
        o = [c["other"] for c in cells if c["other"] is not None]
        out.append({"group": group["group"], "n_users": int(np.mean([c["n_users"] for c in cells])),
                    "base": float(np.mean(b)) if b else None, "other": float(np.mean(o)) if o else None,
                    "lift": (float(np.mean(o)) / float(np.mean(b)) - 1) if b and o and np.mean(b) else None,
                    "splits_better": sum(c["other"] > c["base"] for c in cells
                                         if c["base"] is not None and c["other"] is not None),
                    "t_p": paired_splits(b, o)["t_p"] if len(b) == len(o) == len(cells) > 1 else None})
    return out


def _mean_models(per_split: dict[int, dict], seeds: list[int]) -> dict:
    """Each model's row with its metrics averaged over split seeds (cost from the first split),
    so the summary table and plots read a resampled run like a single one."""
    first = per_split[seeds[0]]["models"]
    out = {}
    for name, entry in first.items():
        row = {k: v for k, v in entry.items() if k not in ("history", "tuning")}
        for part in ("valid", "test"):
            keys = [k for k, v in (entry.get(part) or {}).items() if isinstance(v, (int, float))]
            row[part] = {k: float(np.mean([per_split[s]["models"][name][part][k] for s in seeds])) for k in keys}
        out[name] = row
    return out


def _lift(value: float | None) -> str:
    return "–" if value is None else f"{value:+.1%}"


def comparison_rows(metrics: dict) -> list[dict]:
    """The lifts as display rows: per split seed pairs when the run is resampled, else per user."""
    rows = []
    for c in metrics.get("comparisons") or []:
        if "n_splits" in c:  # resampled
            per_user = c.get("per_split") or []
            rows.append({"model": c["model"], "vs": c["vs"],
                         f"vs {METRIC}": f"{c['base_mean']:.4f} ± {c['base_std']:.4f}",
                         f"model {METRIC}": f"{c['other_mean']:.4f} ± {c['other_std']:.4f}",
                         "lift": _lift(c["lift"]), "lift ± std": f"{_lift(c['lift_mean'])} ± {c['lift_std'] or 0:.1%}"
                         if c.get("lift_mean") is not None else "–",
                         "p (splits, paired t)": format_p(c["t_p"]),
                         "p (users, Wilcoxon) per split": " / ".join(format_p(r["wilcoxon_p"]) for r in per_user),
                         "splits better": f"{sum(r['other'] > r['base'] for r in per_user)}/{c['n_splits']}"})
        else:
            rows.append({"model": c["model"], "vs": c["vs"], f"vs {METRIC}": f"{c['base']:.4f}",
                         f"model {METRIC}": f"{c['other']:.4f}", "lift": _lift(c["lift"]),
                         "p (users, Wilcoxon)": format_p(c["wilcoxon_p"]), "p (users, paired t)": format_p(c["t_p"]),
                         "users": c["n_users"]})
    return rows


def activity_rows(metrics: dict) -> list[dict]:
    """Each pair's lift within quartiles of users' training interactions (test NDCG@10) and of
    items' training interactions (the test interactions' recall@10)."""
    rows = []
    for c in metrics.get("comparisons") or []:
        for key, grouped in BREAKDOWNS.items():
            for group in c.get(key) or []:
                rows.append({"model": c["model"], "vs": c["vs"], "grouped by": grouped, "group": group["group"],
                             "metric": METRIC if key == "by_activity" else "recall@10",
                             "n": group["n_users"], "vs value": group["base"], "model value": group["other"],
                             "lift": _lift(group["lift"]),
                             **({"splits better": f"{group['splits_better']}/{c['n_splits']}",
                                 "p (splits, paired t)": format_p(group.get("t_p"))} if "n_splits" in c
                                else {"p (Wilcoxon)": format_p(group.get("wilcoxon_p"))})})
    return rows


def scenario_pair_rows(paired: list[dict]) -> list[dict]:
    """A scenario's paired comparisons as display rows: over users on one split, or over
    split seeds (with each split's per-user Wilcoxon p) when the run is resampled."""
    rows = []
    for c in paired:
        if "n_splits" in c:
            rows.append({"model": c["model"], "vs": c["vs"], "metric": c["metric"],
                         "vs value": f"{c['base_mean']:.4f} ± {c['base_std']:.4f}",
                         "model value": f"{c['other_mean']:.4f} ± {c['other_std']:.4f}", "lift": _lift(c["lift"]),
                         "p (splits, paired t)": format_p(c["t_p"]),
                         "p (users, Wilcoxon) per split": " / ".join(format_p(r["wilcoxon_p"]) for r in c["per_split"])})
        else:
            rows.append({"model": c["model"], "vs": c["vs"], "metric": c["metric"], "users": c["n_users"],
                         "vs value": f"{c['base']:.4f}", "model value": f"{c['other']:.4f}",
                         "lift": _lift(c["lift"]), "p (users, Wilcoxon)": format_p(c["wilcoxon_p"]),
                         "p (users, paired t)": format_p(c["t_p"])})
    return rows
