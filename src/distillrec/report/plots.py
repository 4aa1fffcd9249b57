"""Plots of a run's metrics, as PNG bytes for the HTML report.

Each function takes the run's metrics dict and returns PNG bytes, or None when the metrics hold
no data for that plot (the report then prints a one-line note instead of an empty image).
Figures are drawn on matplotlib's Agg canvas directly, without pyplot, so no global figure
state or display backend is involved.
"""

from __future__ import annotations

import io
from collections import defaultdict

from distillrec.errors import DistillrecError
from distillrec.report.summary import format_lift, lift, ordered_models

try:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch
    from matplotlib.ticker import PercentFormatter
except ImportError:
    raise DistillrecError("the HTML report needs matplotlib: pip install 'distillrec[report]'") from None

ROLE_COLOURS = {"teacher": "#6a3d9a", "baseline": "#9e9e9e", "distilled": "#1f78b4"}
OTHER_COLOUR = "#444444"
GAIN, LOSS = "#1a9850", "#d73027"
DPI = 110
QUALITY = (("ndcg@10", "NDCG@10"), ("recall@10", "Recall@10"), ("hit@10", "Hit@10"))


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    # No "Software" stamp: the same metrics give the same bytes across matplotlib patch versions.
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    return buffer.getvalue()


def _role_colour(entry: dict) -> str:
    return ROLE_COLOURS.get(entry.get("role"), OTHER_COLOUR)


def _role_legend(fig: Figure, roles: set[str]) -> None:
    handles = [Patch(color=ROLE_COLOURS[r], label=r) for r in ROLE_COLOURS if r in roles]
    # "outside" makes the constrained layout reserve a band for the legend above the panels.
    fig.legend(handles=handles, loc="outside upper center", ncol=len(handles), frameon=False)


def _label_x(ax, names: list[str]) -> None:
    """Model names under the bars; at least three bar slots, so one or two bars stay slim."""
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    pad = max(0.0, (3 - len(names)) / 2)
    ax.set_xlim(-0.5 - pad, len(names) - 0.5 + pad)


def metric_bars(metrics: dict, part: str = "test") -> bytes | None:
    """NDCG@10, Recall@10 and Hit@10 of every model, one panel per metric, bars coloured by role."""
    models = [(n, e) for n, e in ordered_models(metrics) if any(k in e.get(part, {}) for k, _ in QUALITY)]
    if not models:
        return None
    names = [n for n, _ in models]
    colours = [_role_colour(e) for _, e in models]
    panel_width = max(3.0, 0.5 * len(models) + 1.0)
    # Side by side while the panels fit the page width; stacked for many models.
    side_by_side = len(models) <= 6
    grid = (1, len(QUALITY)) if side_by_side else (len(QUALITY), 1)
    size = (len(QUALITY) * panel_width, 3.6) if side_by_side else (panel_width, 3.0 * len(QUALITY))
    fig = Figure(figsize=size, layout="constrained")
    for ax, (key, label) in zip(fig.subplots(*grid), QUALITY):
        values = [e.get(part, {}).get(key) for _, e in models]
        bars = ax.bar(range(len(names)), [v or 0.0 for v in values], color=colours)
        ax.bar_label(bars, labels=["–" if v is None else f"{v:.3f}" for v in values], fontsize=7, padding=2)
        ax.set_title(label, fontsize=10)
        ax.margins(y=0.15)
        _label_x(ax, names)
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
    _role_legend(fig, {e.get("role") for _, e in models})
    return _png(fig)


def lift_points(metrics: dict) -> list[tuple[str, float, float | None]]:
    """(label, lift, error) per distillation method: from the multi-seed `ablation` section when
    present, else one point per distilled model (no error bar)."""
    rows = metrics.get("ablation", {}).get("rows", [])
    points = []
    for row in rows:
        if row.get("lift_mean") is None:
            continue
        error = row.get("lift_std")
        if error is None and row.get("ndcg@10_std") is not None and row.get("ndcg@10_mean"):
            # Relative to a fixed baseline b = mean / (1 + lift), a spread of NDCG is a spread
            # of lift scaled by 1 / b.
            error = row["ndcg@10_std"] * (1 + row["lift_mean"]) / row["ndcg@10_mean"]
        points.append((str(row.get("method", "?")), row["lift_mean"], error))
    if points:
        return points
    for name, entry in ordered_models(metrics):
        if entry.get("role") == "distilled":
            value = lift(metrics, name)
            if value is not None:
                points.append((name, value, None))
    return points


def lift_bars(metrics: dict) -> bytes | None:
    """Relative NDCG@10 lift over the undistilled baseline per distillation method, green for a
    gain and red for a loss, with ±1 standard deviation over seeds when known."""
    points = lift_points(metrics)
    if not points:
        return None
    labels = [p[0] for p in points]
    values = [p[1] for p in points]
    errors = [p[2] or 0.0 for p in points]
    fig = Figure(figsize=(7.0, 0.45 * len(points) + 1.4), layout="constrained")
    ax = fig.subplots()
    positions = range(len(points))[::-1]  # first method on top
    ax.barh(list(positions), values, color=[GAIN if v >= 0 else LOSS for v in values],
            xerr=errors if any(errors) else None, capsize=3, error_kw={"elinewidth": 1})
    for y, value, error in zip(positions, values, errors):
        side = 1 if value >= 0 else -1  # label beyond the end of the error bar, away from zero
        ax.annotate(format_lift(value), (value + side * error, y), xytext=(side * 5, 0),
                    textcoords="offset points", ha="left" if side > 0 else "right", va="center", fontsize=8)
    ax.set_yticks(list(positions), labels, fontsize=8)
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.xaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    ax.set_xlabel("relative NDCG@10 change over the undistilled student")
    ax.margins(x=0.2)
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    return _png(fig)


STUDENT_MARKERS = ("o", "s", "^", "D", "v", "P")


def _size_series(metrics: dict) -> dict[tuple[str | None, str], list[tuple[float, float, str]]]:
    """(student, role) -> [(params, ndcg@10, point label)], from `size_curve` or else the models
    (then grouped by role only, the student None)."""
    series: dict[tuple[str | None, str], list[tuple[float, float, str]]] = defaultdict(list)
    for point in metrics.get("size_curve", []):
        if point.get("params") and point.get("ndcg@10") is not None:
            key = (str(point.get("student", "student")), "distilled" if point.get("distilled") else "baseline")
            series[key].append((point["params"], point["ndcg@10"], f"d={point['dim']}" if "dim" in point else ""))
    if series:
        return series
    for name, entry in ordered_models(metrics):
        value = entry.get("test", {}).get("ndcg@10")
        if entry.get("params") and value is not None:  # non-learned baselines have 0 parameters
            series[(None, entry.get("role", "other"))].append((entry["params"], value, name))
    return series


def _series_style(student: str | None, role: str, students: list[str | None]) -> dict:
    """Colour by role as in the other plots (distilled solid, undistilled dashed), one marker per
    student, the teacher a lone star."""
    if role == "teacher":
        return {"marker": "*", "markersize": 14, "linestyle": "none", "color": ROLE_COLOURS["teacher"],
                "label": "teacher"}
    kind = "distilled" if role == "distilled" else "not distilled"
    return {"marker": STUDENT_MARKERS[students.index(student) % len(STUDENT_MARKERS)],
            "linestyle": "-" if role == "distilled" else "--",
            "color": ROLE_COLOURS.get(role, OTHER_COLOUR),
            "label": kind if student is None else f"{student}, {kind}"}


def size_curve(metrics: dict) -> bytes | None:
    """NDCG@10 against the number of parameters (log scale): distilled and undistilled students
    as two lines, so the gap between them shows what distillation buys at each size."""
    series = _size_series(metrics)
    if sum(len(points) for points in series.values()) < 2:
        return None
    students = list(dict.fromkeys(student for student, _ in series))
    fig = Figure(figsize=(7.0, 4.2), layout="constrained")
    ax = fig.subplots()
    for (student, role), points in series.items():
        points.sort()
        xs, ys, _ = zip(*points)
        style = _series_style(student, role, students)
        if len(set(xs)) < len(xs):  # several models of one size: a line through them means nothing
            style["linestyle"] = "none"
        ax.plot(xs, ys, **style)
        for x, y, name in points:
            ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xscale("log")
    ax.margins(x=0.08, y=0.08)  # room for the labels of the end points
    ax.set_xlabel("parameters (log scale)")
    ax.set_ylabel("NDCG@10")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return _png(fig)


def training_curves(metrics: dict) -> bytes | None:
    """Validation NDCG@10 and training loss per epoch of every model that recorded a history;
    a dot marks the epoch whose weights were kept."""
    models = [(n, e) for n, e in ordered_models(metrics) if e.get("history")]
    if not models:
        return None
    fig = Figure(figsize=(11.0, 4.0), layout="constrained")
    quality_ax, loss_ax = fig.subplots(1, 2)
    for index, (name, entry) in enumerate(models):
        colour = f"C{index % 10}"
        scored = [(h["epoch"], h["valid"]["ndcg@10"]) for h in entry["history"]
                  if "ndcg@10" in h.get("valid", {})]
        losses = [(h["epoch"], h["loss"]) for h in entry["history"] if h.get("loss") is not None]
        if scored:
            quality_ax.plot(*zip(*scored), color=colour, label=name, linewidth=1.2)
            best = dict(scored).get(entry.get("best_epoch"))
            if best is not None:
                quality_ax.plot([entry["best_epoch"]], [best], "o", color=colour)
        if losses:
            loss_ax.plot(*zip(*losses), color=colour, label=name, linewidth=1.2)
    quality_ax.set_title("validation NDCG@10", fontsize=10)
    loss_ax.set_title("training loss", fontsize=10)
    for ax in (quality_ax, loss_ax):
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    quality_ax.legend(fontsize=8)
    return _png(fig)


def latency_bars(metrics: dict) -> bytes | None:
    """Milliseconds to score the full catalog for one user, per model (log scale)."""
    models = [(n, e) for n, e in ordered_models(metrics) if (e.get("latency_ms_per_user") or 0) > 0]
    if not models:
        return None
    names = [n for n, _ in models]
    fig = Figure(figsize=(max(5.0, 0.6 * len(models) + 2.0), 3.8), layout="constrained")
    ax = fig.subplots()
    bars = ax.bar(range(len(names)), [e["latency_ms_per_user"] for _, e in models],
                  color=[_role_colour(e) for _, e in models])
    ax.bar_label(bars, fmt="%.3g", fontsize=7, padding=2)
    ax.set_yscale("log")
    ax.set_ylabel("ms per user (log scale)")
    ax.margins(y=0.2)
    _label_x(ax, names)
    ax.grid(axis="y", alpha=0.3, which="both")
    ax.set_axisbelow(True)
    _role_legend(fig, {e.get("role") for _, e in models})
    return _png(fig)
