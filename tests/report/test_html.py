import base64
import html
import re
import struct
from html.parser import HTMLParser

import pytest
import yaml

from distillrec.errors import DistillrecError
from distillrec.report.html import PLOTS, write_report
from distillrec.report.plots import lift_points

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PLOT_IDS = ["plot-metrics", "plot-lift", "plot-size", "plot-training", "plot-latency"]


class _Images(HTMLParser):
    """Collects each <img> with the id of the <figure> around it."""

    def __init__(self):
        super().__init__()
        self.figure: str | None = None
        self.images: dict[str, dict] = {}

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "figure":
            self.figure = attrs.get("id")
        elif tag == "img":
            self.images[self.figure] = attrs

    def handle_endtag(self, tag):
        if tag == "figure":
            self.figure = None


def decode_png(uri: str) -> tuple[bytes, int, int]:
    prefix = "data:image/png;base64,"
    assert uri.startswith(prefix)
    png = base64.b64decode(uri[len(prefix):], validate=True)
    assert png.startswith(PNG_SIGNATURE)
    width, height = struct.unpack(">II", png[16:24])  # IHDR, the first chunk
    return png, width, height


def images(text: str) -> dict[str, dict]:
    parser = _Images()
    parser.feed(text)
    return parser.images


def test_every_plot_is_an_inline_png_with_caption(report):
    text = report.read_text(encoding="utf-8")
    found = images(text)
    assert list(found) == PLOT_IDS == [spec.id for spec in PLOTS]
    for plot_id, attrs in found.items():
        png, width, height = decode_png(attrs["src"])
        assert len(png) > 5_000 and width > 300 and height > 150, plot_id
        assert attrs["alt"]
    assert text.count("<figcaption>") == len(PLOT_IDS)
    assert 'class="omitted"' not in text


def test_report_is_self_contained(report):
    text = report.read_text(encoding="utf-8")
    assert "http://" not in text and "https://" not in text
    assert "<script" not in text and "<link" not in text
    assert all(src.startswith("data:") for src in re.findall(r'src="([^"]*)"', text))
    assert [p.name for p in report.parent.iterdir()] == ["report.html"]  # no temp file left behind


def test_header_summary_and_config(report, metrics):
    text = report.read_text(encoding="utf-8")
    assert metrics["data_fingerprint"] in text
    assert "2025-01-01 12:00 UTC" in text and "torch 2.13.0+cpu" in text
    assert '<td class="gain">+10.0%</td>' in text and '<td class="loss">−5.0%</td>' in text
    config_block = re.search(r'<section id="config">.*?<pre>(.*?)</pre>', text, re.S).group(1)
    assert yaml.safe_load(html.unescape(config_block)) == metrics["config"]


def test_scenarios_and_ablation_are_rendered_and_escaped(report):
    text = report.read_text(encoding="utf-8")
    scenarios = text[text.index('<section id="scenarios">'):]
    assert "<h3>cold-item</h3>" in scenarios
    assert "Items unseen in training &lt;scored by content&gt;." in scenarios
    assert '<td class="text">mf+ranking</td><td>0.0500</td>' in scenarios
    assert '<section id="ablation">' in text and "<th>ndcg@10_std</th>" in text


def test_plots_without_data_are_replaced_by_a_note(tmp_path):
    only_pop = {"models": {"pop": {"role": "baseline", "params": 0, "test": {"ndcg@10": 0.1, "hit@10": 0.3}}},
                "config": {"dataset": "ml-100k"}}
    text = write_report(only_pop, tmp_path / "report.html").read_text(encoding="utf-8")
    assert list(images(text)) == ["plot-metrics"]
    for plot_id in PLOT_IDS[1:]:
        note = re.search(rf'<p class="omitted" id="{plot_id}-omitted">([^<]*)</p>', text)
        assert note and "omitted" in note.group(1), plot_id
    assert 'id="scenarios"' not in text and 'id="ablation"' not in text


def test_bad_scenario_table_raises_before_writing(tmp_path, metrics):
    metrics["scenarios"]["cold-item"]["table"] = [["mf", 0.01]]
    with pytest.raises(DistillrecError, match="scenario 'cold-item': row 0 is list"):
        write_report(metrics, tmp_path / "report.html")
    assert list(tmp_path.iterdir()) == []


def test_lift_error_bars_from_seed_spread(metrics):
    points = lift_points(metrics)
    assert [p[0] for p in points] == ["ranking", "feature"]
    # NDCG std over seeds relative to the baseline NDCG (mean / (1 + lift)).
    assert abs(points[0][2] - 0.004 * 1.10 / 0.22) < 1e-12
    metrics["ablation"]["rows"][0]["lift_std"] = 0.03
    assert lift_points(metrics)[0][2] == 0.03
    del metrics["ablation"]
    assert [(p[0], p[2]) for p in lift_points(metrics)] == [("mf+ranking", None), ("mf+feature", None)]
