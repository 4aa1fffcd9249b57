"""The run report: one self-contained HTML file (inline CSS, plots as data: URIs, no scripts and
no external resources), so it can be mailed, archived or opened offline as it is."""

from __future__ import annotations

import base64
import datetime
import html
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import yaml

from distillrec import artifacts
from distillrec.errors import DistillrecError
from distillrec.report import plots
from distillrec.report.summary import COLUMNS, MISSING, format_lift, summary_rows


@dataclass(frozen=True)
class PlotSpec:
    id: str
    title: str
    caption: str
    draw: Callable[[dict], bytes | None]
    missing: str  # why the plot is absent when `draw` has no data


PLOTS = (
    PlotSpec("plot-metrics", "Quality per model",
             "NDCG@10, Recall@10 and Hit@10 on the test split (full ranking), coloured by role.",
             plots.metric_bars, "no model has test metrics"),
    PlotSpec("plot-lift", "Lift per distillation method",
             "Relative NDCG@10 change of each distilled student over the same student trained "
             "without distillation; error bars are ±1 standard deviation over seeds.",
             plots.lift_bars, "no distilled model has a baseline to compare with"),
    PlotSpec("plot-size", "Accuracy versus size",
             "NDCG@10 against the number of parameters (log scale) of students trained with and "
             "without distillation.",
             plots.size_curve, "fewer than two models have both a parameter count and NDCG@10"),
    PlotSpec("plot-training", "Training curves",
             "Validation NDCG@10 and training loss per epoch; a dot marks the epoch whose weights were kept.",
             plots.training_curves, "no model recorded a per-epoch history"),
    PlotSpec("plot-latency", "Scoring latency",
             "Milliseconds to score the full catalog for one user (log scale), coloured by role.",
             plots.latency_bars, "no model has a measured scoring latency"),
)

CSS = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222;
       background: #fafafa; margin: 0; }
main { max-width: 1240px; margin: 0 auto; padding: 24px 24px 48px; background: #fff; }
h1 { margin: 0 0 4px; font-size: 26px; }
h2 { margin: 36px 0 12px; padding-bottom: 4px; border-bottom: 2px solid #e3e3e3; font-size: 20px; }
h3 { margin: 24px 0 8px; font-size: 16px; }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 12px 0 0;
          font-size: 14px; }
dl.meta dt { font-weight: 600; color: #555; }
dl.meta dd { margin: 0; }
code { font: 13px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; word-break: break-all; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: 13px; font-variant-numeric: tabular-nums; }
th, td { padding: 4px 7px; border-bottom: 1px solid #e6e6e6; white-space: nowrap; }
th { background: #f2f2f2; text-align: right; }
td { text-align: right; }
th:first-child, td:first-child, td.text, th.text { text-align: left; }
tr.teacher td:first-child { border-left: 4px solid #6a3d9a; }
tr.baseline td:first-child { border-left: 4px solid #9e9e9e; }
tr.distilled td:first-child { border-left: 4px solid #1f78b4; }
td.gain { color: #1a7f37; font-weight: 600; }
td.loss { color: #c62828; font-weight: 600; }
figure { margin: 20px 0 28px; }
figure img { display: block; max-width: 100%; height: auto; }
figcaption { color: #555; font-size: 14px; margin-top: 6px; }
figcaption strong { color: #222; }
p.note { color: #555; font-size: 14px; }
p.omitted { color: #777; font-style: italic; font-size: 14px; }
pre { background: #f6f8fa; border: 1px solid #e3e3e3; padding: 12px 16px; overflow-x: auto;
      font: 13px/1.45 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
"""


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _config_value(config: dict, *keys: str):
    """The first of `keys` present in the config, also looked up under its `data` section."""
    for section in (config, config.get("data") or {}):
        for key in keys:
            if section.get(key) is not None:
                return section[key]
    return None


def _describe(value) -> str:
    """A dataset or split setting for the header: its name when it is a mapping with one."""
    if isinstance(value, dict):
        return str(value.get("name") or value.get("path") or value.get("kind") or value)
    return MISSING if value is None else str(value)


def _title(metrics: dict) -> str:
    return f"distillrec report — {_describe(_config_value(metrics.get('config') or {}, 'dataset'))}"


def _header(metrics: dict) -> str:
    config = metrics.get("config") or {}
    versions = metrics.get("versions") or {}
    seed = metrics.get("seed", config.get("seed"))
    date = metrics.get("date") or datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    rows = [
        ("Dataset", _describe(_config_value(config, "dataset"))),
        ("Split", _describe(_config_value(config, "split"))),
        ("Seed", MISSING if seed is None else seed),
        ("Date", date),
        ("Versions", ", ".join(f"{name} {version}" for name, version in versions.items()) or MISSING),
    ]
    items = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in rows)
    fingerprint = metrics.get("data_fingerprint")
    items += f"<dt>Data fingerprint</dt><dd><code>{_e(fingerprint or MISSING)}</code></dd>"
    return f'<header><h1>{_e(_title(metrics))}</h1><dl class="meta">{items}</dl></header>'


def _summary_section(metrics: dict) -> str:
    headers = ["Model", "Role", *(c.header for c in COLUMNS), "NDCG@10 lift", "vs"]
    head = "".join(f'<th{" class=text" if h in ("Role", "vs") else ""}>{_e(h)}</th>' for h in headers)
    body = []
    for row in summary_rows(metrics):
        lift_class = "" if row.lift is None else ("gain" if row.lift >= 0 else "loss")
        cells = "".join(f"<td>{_e(c)}</td>" for c in row.cells)
        body.append(f'<tr class="{_e(row.role)}"><td>{_e(row.name)}</td><td class="text">{_e(row.role)}</td>'
                    f'{cells}<td class="{lift_class}">{_e(format_lift(row.lift))}</td>'
                    f'<td class="text">{_e(row.reference or MISSING)}</td></tr>')
    return ('<section id="summary"><h2>Summary</h2>'
            '<p class="note">Test split, full ranking over the catalog. Lift: relative NDCG@10 '
            'change of a distilled student over the same student without distillation, and of '
            'the teacher over the best baseline.</p>'
            f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div></section>')


def _figure(spec: PlotSpec, metrics: dict) -> str:
    png = spec.draw(metrics)
    if png is None:
        return f'<p class="omitted" id="{spec.id}-omitted">{_e(spec.title)}: omitted — {_e(spec.missing)}.</p>'
    uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    return (f'<figure id="{spec.id}"><img src="{uri}" alt="{_e(spec.title)}">'
            f"<figcaption><strong>{_e(spec.title)}.</strong> {_e(spec.caption)}</figcaption></figure>")


def _format_cell(value) -> str:
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def generic_table(rows: list[dict], where: str) -> str:
    """An HTML table of dict rows; columns in order of first appearance, text left-aligned."""
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            raise DistillrecError(f"{where}: row {index} is {type(row).__name__}, expected a mapping "
                                  "of column name to value")
    columns = list(dict.fromkeys(key for row in rows for key in row))
    numeric = {c for c in columns if all(isinstance(r.get(c), (int, float, type(None))) for r in rows)}

    def cell_class(column: str) -> str:
        return "" if column in numeric else ' class="text"'

    head = "".join(f"<th{cell_class(c)}>{_e(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td{cell_class(c)}>{_e(_format_cell(row.get(c)))}</td>" for c in columns)
                   + "</tr>" for row in rows)
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _evidence_section(metrics: dict) -> str:
    """Lifts with their paired tests, and where they come from (users' activity)."""
    if not metrics.get("comparisons"):
        return ""
    from distillrec.evidence import activity_rows, comparison_rows

    seeds = metrics.get("seeds")
    note = (f"Mean ± std over split seeds {seeds}; p: paired t-test over splits, and each split's "
            "Wilcoxon signed-rank test over users' test NDCG@10." if seeds else
            "Test NDCG@10 paired user by user: Wilcoxon signed-rank and paired t-test, two-sided.")
    return ('<section id="evidence"><h2>Lifts and significance</h2>'
            f'<p class="note">{_e(note)}</p>{generic_table(comparison_rows(metrics), "comparisons")}'
            '<h3>By users\' training interactions (quartiles)</h3>'
            f'{generic_table(activity_rows(metrics), "comparisons by activity")}</section>')


def _ablation_section(metrics: dict) -> str:
    rows = (metrics.get("ablation") or {}).get("rows") or []
    if not rows:
        return ""
    return ('<section id="ablation"><h2>Ablation</h2>'
            '<p class="note">One row per distillation method, mean and standard deviation over seeds.</p>'
            f'{generic_table(rows, "ablation")}</section>')


def _scenario_sections(metrics: dict) -> str:
    scenarios = metrics.get("scenarios") or {}
    if not scenarios:
        return ""
    parts = ['<section id="scenarios"><h2>Scenarios</h2>']
    for name, scenario in scenarios.items():
        parts.append(f"<h3>{_e(name)}</h3>")
        if scenario.get("notes"):
            parts.append(f'<p class="note">{_e(scenario["notes"])}</p>')
        if scenario.get("table"):
            parts.append(generic_table(scenario["table"], f"scenario {name!r}"))
    parts.append("</section>")
    return "".join(parts)


def _config_section(metrics: dict) -> str:
    config = metrics.get("config") or {}
    text = yaml.safe_dump(config, sort_keys=False, allow_unicode=True) if config else "(not recorded)\n"
    return f'<section id="config"><h2>Configuration</h2><pre>{_e(text)}</pre></section>'


def render_report(metrics: dict) -> str:
    """The report of a run's aggregate metrics as one HTML document."""
    # The tables first: a malformed one fails at once, before seconds of plotting.
    tables = _evidence_section(metrics) + _ablation_section(metrics) + _scenario_sections(metrics)
    figures = "".join(_figure(spec, metrics) for spec in PLOTS)
    return ("<!DOCTYPE html>\n"
            f'<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_e(_title(metrics))}</title><style>{CSS}</style></head><body><main>"
            f"{_header(metrics)}{_summary_section(metrics)}"
            f'<section id="plots"><h2>Plots</h2>{figures}</section>'
            f"{tables}{_config_section(metrics)}"
            "</main></body></html>\n")


def write_report(metrics: dict, path: str | Path) -> Path:
    """Write the report of `metrics` to `path` atomically and return the path."""
    path = Path(path)
    artifacts.write_text(path, render_report(metrics))
    return path
