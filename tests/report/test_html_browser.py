"""The report as a real browser renders it: headless Chromium, no network, no JavaScript needed."""

import struct
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
PLOT_IDS = {"plot-metrics", "plot-lift", "plot-size", "plot-training", "plot-latency"}

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="needs headless Chromium at /usr/bin/chromium (apt-get install chromium)")


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", *args],
        capture_output=True, text=True, timeout=120, check=True)


class _RenderedImages(HTMLParser):
    def __init__(self):
        super().__init__()
        self.figure: str | None = None
        self.images: dict[str | None, dict] = {}

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "figure":
            self.figure = attrs.get("id")
        elif tag == "img":
            self.images[self.figure] = attrs


def test_rendered_dom_keeps_every_plot_inline(report, tmp_path):
    dom = chromium(tmp_path, "--dump-dom", report.as_uri()).stdout
    assert "<main>" in dom and "distillrec report" in dom
    parser = _RenderedImages()
    parser.feed(dom)
    assert set(parser.images) == PLOT_IDS
    for attrs in parser.images.values():
        assert attrs["src"].startswith("data:image/png;base64,iVBORw0KGgo")  # base64 of the PNG signature
        assert len(attrs["src"]) > 5_000


def test_screenshot_is_produced(report, tmp_path):
    shot = tmp_path / "report.png"
    chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,4000", report.as_uri())
    png = shot.read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert struct.unpack(">II", png[16:24]) == (1280, 4000)
    assert len(png) > 100_000  # a blank page of this size is about 23 kB
