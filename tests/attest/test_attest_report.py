"""The incident report: every journaled alert, escaped, with delivery and integrity
status, rendered by a real headless Chromium whose screenshot shows chart and table."""

from __future__ import annotations

import html
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path

import pytest
from attest_helpers import make_files, write_baseline
from attest_scenario import (
    COUNTING,
    XSS_PATH,
    XSS_QNAME,
    Incident,
    receiver,
    run_incident,
    webhooks,
)

from sentinel.attest.chart import SEVERITY_COLOURS
from sentinel.cli import main
from sentinel.config import Config
from sentinel.sinks.journal import journal_files

CHROMIUM = "/usr/bin/chromium"
TABLE_HEADER = (0x26, 0x32, 0x38)  # th background in report.py's CSS


class _Tags(HTMLParser):
    """Every tag and attribute of a page, to prove nothing active or remote is in it."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


@pytest.fixture
def incident(site: Callable[..., Config], tmp_path: Path) -> Incident:
    with receiver() as server:
        config = site(schedules=COUNTING, webhooks=webhooks(server.server_address[1]))
        write_baseline(config.state_dir, make_files(tmp_path / "opt", 5))
        return run_incident(config, server)


def _journal_ids(config: Config) -> list[str]:
    ids = []
    for f in journal_files(config.in_state(config.outputs.journal.path)):
        for line in f.read_text().splitlines():
            ids.append(json.loads(line)["alert"]["id"])
    return ids


def _report(incident: Incident, out: Path, *extra: str, code: int = 0) -> str:
    """The page written; ``code`` is the exit status expected (1: does not verify)."""
    assert main(["report", "-c", str(incident.config.source), "-o", str(out), *extra]) == code
    return out.read_text(encoding="utf-8")


def _row(page: str, alert_id: str) -> str:
    start = page.index(f'<tr id="alert-{alert_id}">')
    return page[start:page.index("</tr>", start)]


def test_report_holds_every_journaled_alert_escaped(incident: Incident, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    page = _report(incident, tmp_path / "incident.html")
    ids = _journal_ids(incident.config)
    assert len(ids) == len(incident.alerts) == 8
    for aid in ids:
        assert f'id="alert-{aid}"' in page
    assert XSS_QNAME not in page
    assert html.escape(XSS_QNAME) in page
    assert XSS_PATH not in page
    parser = _Tags()
    parser.feed(page)
    tags = {t for t, _ in parser.tags}
    assert not tags & {"script", "img", "iframe", "object", "embed", "link", "image"}
    for tag, attrs in parser.tags:
        assert "src" not in attrs, tag
        # links only within the page (incident group -> its alert rows)
        assert str(attrs.get("href", "#")).startswith("#"), (tag, attrs)
        assert not any(a.startswith("on") for a in attrs), tag
    assert "Content-Security-Policy" in page
    assert "journal intact" in page
    assert "2 attestations valid" in page
    assert "tally-01" in page
    out = capsys.readouterr().out
    assert "8 alerts; journal intact; attestations valid" in out


def test_report_shows_delivery_per_recipient(incident: Incident, tmp_path: Path) -> None:
    """Accepted, refused for good, and still waiting: each shows as such on its alert."""
    page = _report(incident, tmp_path / "incident.html")
    crit = next(a for a in incident.alerts if a.severity == "critical")
    low = next(a for a in incident.alerts if a.severity == "low")
    row = _row(page, crit.id)
    assert "bawaslu: delivered" in row
    assert "ministry-csirt: failed" in row
    assert "HTTP 404" in row
    assert "observer: pending" in row
    row = _row(page, low.id)
    assert "observer: pending" in row
    assert "bawaslu" not in row  # low alerts are not routed to it


def test_since_and_until_select_the_window(incident: Incident, tmp_path: Path) -> None:
    crit = next(a for a in incident.alerts if a.severity == "critical")
    page = _report(incident, tmp_path / "w.html", "--since", "2024-02-14T14:00:00+07:00",
                   "--until", "2024-02-14T15:00:00+07:00")
    shown = [a.id for a in incident.alerts if f'id="alert-{a.id}"' in page]
    assert shown == [crit.id]


def test_an_edited_journal_record_is_reported(incident: Incident, tmp_path: Path) -> None:
    path = incident.config.in_state(incident.config.outputs.journal.path)
    path.write_text(path.read_text().replace('"severity":"critical"', '"severity":"low"'))
    page = _report(incident, tmp_path / "t.html", code=1)
    assert "journal TAMPERED" in page
    assert "record fails its MAC" in page


@pytest.mark.parametrize("bad_time", ["0001-01-01T00:00:00.000Z", "0001-01-01T00:00:00+01:00",
                                      "9999-12-31T23:59:59-10:00", "not a time"])
def test_a_record_with_a_year_1_time_is_rendered_and_flagged(incident: Incident,
                                                             tmp_path: Path,
                                                             bad_time: str) -> None:
    """A `time` tampered to year 1 once crashed the chart; it (and a time past year
    9999 in UTC, or no time at all) is shown, flagged, and the other alerts and the
    timeline are still there."""
    path = incident.config.in_state(incident.config.outputs.journal.path)
    lines = path.read_text().splitlines(keepends=True)
    victim = json.loads(lines[0])["alert"]
    lines[0] = lines[0].replace(f'"time":"{victim["time"]}"', f'"time":"{bad_time}"')
    path.write_text("".join(lines))
    page = _report(incident, tmp_path / "y1.html", code=1)
    row = _row(page, victim["id"])
    assert html.escape(bad_time).split("T")[0] in row
    assert "time implausible" in row
    assert "record fails its MAC" in row
    assert "1 alert with an implausible time" in page
    assert page.count('<tr id="alert-') == len(incident.alerts)
    assert '<svg xmlns="http://www.w3.org/2000/svg" class="timeline"' in page
    others = [a for a in incident.alerts if a.id != victim["id"]]
    assert all("time implausible" not in _row(page, a.id) for a in others)


def test_a_cut_journal_tail_is_caught_by_the_attestation(incident: Incident,
                                                          tmp_path: Path) -> None:
    """Dropping the last records leaves a chain that verifies on its own; the attested
    journal head is what shows they are gone."""
    path = incident.config.in_state(incident.config.outputs.journal.path)
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-2]))
    page = _report(incident, tmp_path / "t.html", code=1)
    assert "journal intact" in page
    assert "attestations NOT VALID" in page
    assert "DOES NOT match the journal" in page


def test_bad_times_are_refused(incident: Incident, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["report", "-c", str(incident.config.source), "-o", str(tmp_path / "x.html"),
                 "--since", "yesterday"])
    assert code == 2
    assert "'yesterday' is not a time" in capsys.readouterr().err
    assert not (tmp_path / "x.html").exists()


def _screenshot(page: Path, png: Path, profile: Path) -> None:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", f"--user-data-dir={profile}", "--hide-scrollbars",
           f"--screenshot={png}", "--window-size=1280,2000", page.as_uri()]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert png.exists(), f"chromium wrote no screenshot: {done.stderr[-2000:]}"


def _near(px: tuple[int, ...], rgb: tuple[int, int, int], tol: int = 6) -> bool:
    return all(abs(a - b) <= tol for a, b in zip(px[:3], rgb, strict=True))


def _rgb(hex_colour: str) -> tuple[int, int, int]:
    return (int(hex_colour[1:3], 16), int(hex_colour[3:5], 16), int(hex_colour[5:7], 16))


@pytest.mark.slow
def test_report_renders_chart_and_table_in_chromium(incident: Incident, tmp_path: Path) -> None:
    """The screenshot has bars of every severity above the alert table's header band."""
    if not Path(CHROMIUM).exists():
        pytest.skip("needs the chromium package")
    from PIL import Image

    page = tmp_path / "incident.html"
    _report(incident, page)
    png = tmp_path / "incident.png"
    _screenshot(page, png, tmp_path / "profile")
    if keep := os.environ.get("SENTINEL_KEEP_SCREENSHOT"):  # for a human to look at
        shutil.copy(png, keep)
    img = Image.open(png).convert("RGB")
    w, h = img.size
    px = img.load()
    assert px is not None
    header_rows = [y for y in range(h)
                   if sum(_near(px[x, y], TABLE_HEADER) for x in range(0, w, 8)) > w // 8 // 2]
    assert header_rows, "no table header band in the screenshot"
    table_top = header_rows[0]
    assert table_top > 300, "the table should come after the timeline"
    for sev, colour in SEVERITY_COLOURS.items():
        rgb = _rgb(colour)
        n = sum(_near(px[x, y], rgb) for y in range(0, table_top, 2) for x in range(0, w, 2))
        # the legend swatch alone is ~36 samples: only a drawn bar gets past 300
        assert n > 300, f"no {sev} bar in the chart region (found {n} pixels)"
    # table rows below the header: the striped background alternates
    stripe = (0xF5, 0xF7, 0xF8)
    striped = [y for y in range(table_top, h)
               if sum(_near(px[x, y], stripe, 2) for x in range(0, w, 8)) > w // 8 // 3]
    assert len(striped) > 20, "no striped table rows under the header"


@pytest.mark.slow
def test_report_layout_in_chromium(incident: Incident, tmp_path: Path) -> None:
    """Three days asked, 3.7 hours of alerts: in the rendered page the bars spread over
    the plot, the axis ends with a label that stays inside the chart, and the incidents
    table comes between the timeline and the alert table."""
    if not Path(CHROMIUM).exists():
        pytest.skip("needs the chromium package")
    from PIL import Image

    page = tmp_path / "layout.html"
    _report(incident, page, "--since", "2024-02-13T00:00:00Z", "--until",
            "2024-02-16T00:00:00Z")
    png = tmp_path / "layout.png"
    _screenshot(page, png, tmp_path / "profile")
    if keep := os.environ.get("SENTINEL_KEEP_SCREENSHOT"):  # for a human to look at
        shutil.copy(png, keep)
    img = Image.open(png).convert("RGB")
    w, h = img.size
    px = img.load()
    assert px is not None
    bands = [y for y in range(h)
             if sum(_near(px[x, y], TABLE_HEADER) for x in range(0, w, 8)) > w // 8 // 2]
    tops = [y for y in bands if y - 1 not in bands]
    assert len(tops) >= 3, "incidents, alerts and delivery tables each have a header"
    chart_bottom = tops[0]
    # the plot's frame: the outermost columns with a run as tall as the plot of pixels
    # that are not page white (nothing else in the chart region is that tall)

    def run(x: int) -> tuple[int, int]:
        """The longest vertical run of non-white pixels in column ``x``: (first, end)."""
        best: tuple[int, int] = (0, 0)
        start: int | None = None
        for y in range(chart_bottom):
            if max(255 - c for c in px[x, y][:3]) > 3:
                start = y if start is None else start
                if y - start + 1 > best[1] - best[0]:
                    best = (start, y + 1)
            else:
                start = None
        return best

    runs = {x: run(x) for x in range(w)}
    tall = [x for x, (first, end) in runs.items() if end - first > 200]
    assert tall, "no plot frame in the screenshot"
    plot_left, plot_right = min(tall), max(tall)
    plot_top, plot_bottom = runs[plot_left]
    bar_cols = [x for x in range(plot_left, plot_right)
                if any(_near(px[x, y], _rgb(c)) for c in SEVERITY_COLOURS.values()
                       for y in range(plot_top + 20, plot_bottom, 6))]
    assert max(bar_cols) - min(bar_cols) > 0.8 * (plot_right - plot_left), \
        "the timeline does not span the alerts"

    def dark(x: int, y: int) -> bool:
        return max(px[x, y][:3]) < 140

    labels = range(plot_bottom + 5, plot_bottom + 26)
    end_label = [x for x in range(plot_right - 90, plot_right + 1)
                 if any(dark(x, y) for y in labels)]
    assert end_label, "the axis has no label at its end"
    assert not [x for x in range(plot_right + 3, plot_right + 13)
                if any(dark(x, y) for y in labels)], "an axis label runs past the chart"
    assert tops[0] > plot_bottom, "the incidents table comes after the timeline"
