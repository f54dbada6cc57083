"""The report as a responder acts on it: rows in time order, a timeline zoomed to the
alerts, alerts grouped by incident or source, every recipient's routing, texts in
the report's language, and exit codes that say when the page cannot be trusted."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable
from datetime import UTC
from pathlib import Path

import pytest
from attest_helpers import make_files, write_baseline
from attest_scenario import (
    COUNTING,
    T0,
    XSS_PATH,
    Incident,
    alerts,
    receiver,
    run_incident,
    webhooks,
)
from prometheus_client import CollectorRegistry

from sentinel.alert import Alert
from sentinel.attest.chart import text_width, timeline_svg, zoom
from sentinel.attest.evidence import Entry, gather
from sentinel.attest.incidents import group_key, groups
from sentinel.attest.report import render
from sentinel.cli import main
from sentinel.config import Config
from sentinel.metrics import Metrics
from sentinel.sinks import build_delivery


@pytest.fixture
def incident(site: Callable[..., Config], tmp_path: Path) -> Incident:
    with receiver() as server:
        config = site(schedules=COUNTING, webhooks=webhooks(server.server_address[1]))
        write_baseline(config.state_dir, make_files(tmp_path / "opt", 5))
        return run_incident(config, server)


def _journal(config: Config, sent: list[Alert]) -> None:
    """Journal ``sent`` in the order given, through the real delivery."""
    d = build_delivery(config, Metrics(CollectorRegistry()))
    try:
        for a in sent:
            d.submit(a)
    finally:
        d.close(5.0)


def _row_ids(page: str) -> list[str]:
    return re.findall(r'<tr id="alert-([^"]+)">', page)


def _svg(page: str) -> str:
    return page[page.index("<svg"):page.index("</svg>")]


# -- 1: time order -------------------------------------------------------------------


def test_alert_rows_are_in_time_order_not_journal_order(site: Callable[..., Config],
                                                        tmp_path: Path) -> None:
    config = site()
    sent = alerts()
    shuffled = sent[3:] + sent[:3][::-1]  # journaled out of order, as retries leave it
    _journal(config, shuffled)
    page = render(gather(config, None, None, T0 + 5 * 3600))
    assert _row_ids(page) == [a.id for a in sorted(sent, key=lambda a: a.time)]


def test_an_implausible_time_sorts_where_its_time_puts_it_still_flagged(
        incident: Incident, tmp_path: Path) -> None:
    path = incident.config.in_state(incident.config.outputs.journal.path)
    lines = path.read_text().splitlines(keepends=True)
    victim = json.loads(lines[-1])["alert"]  # the last alert, tampered to year 1
    lines[-1] = lines[-1].replace(f'"time":"{victim["time"]}"',
                                  '"time":"0001-01-01T00:00:00.000Z"')
    path.write_text("".join(lines))
    out = tmp_path / "r.html"
    assert main(["report", "-c", str(incident.config.source), "-o", str(out)]) == 1
    page = out.read_text()
    ids = _row_ids(page)
    assert ids[0] == victim["id"]
    assert ids[1:] == [a.id for a in incident.alerts if a.id != victim["id"]]
    first_row = page[page.index(f'<tr id="alert-{victim["id"]}">'):]
    assert "time implausible" in first_row[:first_row.index("</tr>")]


# -- 2: the timeline -----------------------------------------------------------------


def _bars(svg: str) -> list[float]:
    return [float(x) for x in re.findall(r'<rect class="bar \w+" x="([\d.]+)"', svg)]


def test_timeline_zooms_to_the_alerts_inside_a_wide_window(incident: Incident,
                                                           tmp_path: Path) -> None:
    """Three days asked, 3.7 hours of alerts: the bars spread over the plot, not one bar."""
    out = tmp_path / "z.html"
    assert main(["report", "-c", str(incident.config.source), "-o", str(out),
                 "--since", "2024-02-13T00:00:00Z", "--until", "2024-02-16T00:00:00Z"]) == 0
    svg = _svg(out.read_text())
    bars = _bars(svg)
    assert len(set(bars)) >= 6  # alerts 5 minutes or more apart are separate bars
    plot = 1180 - 48 - 12
    assert max(bars) - min(bars) > 0.8 * plot
    assert 'aria-label="alerts per 5 minutes' in svg
    # the counting window opens 50 minutes after the first alert: its band is drawn
    band = re.search(r'<rect x="([\d.]+)" y="14" width="([\d.]+)" [^>]*fill="#e8f5e9">'
                     r"<title>counting</title>", svg)
    assert band is not None
    assert min(bars) < float(band.group(1)) < max(bars)


def test_zoom_pads_the_span_and_stays_inside_the_asked_window() -> None:
    start, end = zoom([1000.0, 1000.0 + 36000], None, None, (0.0, 1.0))
    assert start == 1000.0 - 1800 and end == 1000.0 + 36000 + 1800  # 5 % each side
    start, end = zoom([5000.0], 4900.0, None, (0.0, 1.0))
    assert start == 4900.0 and end == 5300.0  # at least 5 minutes, not before --since
    assert zoom([], 100.0, 200.0, (0.0, 1.0)) == (100.0, 200.0)


def _text_extents(svg: str) -> list[tuple[str, float, float]]:
    out = []
    for m in re.finditer(r'<text x="([\d.-]+)"([^>]*)>([^<]*)<', svg):
        found = re.search(r'text-anchor="(\w+)"', m.group(2))
        anchor = found.group(1) if found else "start"
        x, label = float(m.group(1)), html.unescape(m.group(3))
        w = text_width(label)
        left = x - w if anchor == "end" else x - w / 2 if anchor == "middle" else x
        out.append((label, left, left + w))
    return out


@pytest.mark.parametrize("span", [600, 3600, 5 * 3600, 86400, 7 * 86400, 90 * 86400])
def test_no_timeline_label_reaches_past_the_svg(span: int) -> None:
    start = T0 + 1234.0
    windows = [("counting-window-with-a-long-name", start + span * 0.97, start + span * 2)]
    svg = timeline_svg([(start + span / 2, "high")], start, start + span, windows)
    texts = _text_extents(svg)
    assert len(texts) > 8
    for label, left, right in texts:
        assert left >= 0 and right <= 1180, (label, left, right)


# -- 3 and 5: incidents and sources --------------------------------------------------


def test_alerts_are_grouped_by_incident_key_else_source_address_else_path() -> None:
    def entry(seq: int, t: float, sev: str, rule: str, event: dict[str, object],
              **extra: object) -> Entry:
        return Entry(seq, {"id": f"a{seq}", "rule": rule, "severity": sev, "event": event,
                           **extra}, t, True)

    scan = {"kind": "net.connection", "src_ip": "10.20.5.7"}
    other = {"kind": "net.dns", "src_ip": "10.20.0.10"}
    fim = {"kind": "fim.modified", "path": "/opt/tally/bin/app"}
    es = [entry(1, 50.0, "low", "port-scan", scan, incident="scan:10.20.5.7"),
          entry(2, 10.0, "medium", "dns-unknown", other),
          entry(3, 60.0, "critical", "port-scan", scan, incident="scan:10.20.5.7"),
          entry(4, 30.0, "high", "binary-modified", fim),
          entry(5, 40.0, "high", "db-access", scan)]
    assert group_key(es[0].alert) == ("incident", "scan:10.20.5.7")
    assert group_key(es[4].alert) == ("source", "10.20.5.7")  # no incident key: by address
    assert group_key(es[3].alert) == ("file", "/opt/tally/bin/app")
    got = groups(es)
    assert [(g.kind, g.key) for g in got] == [
        ("source", "10.20.0.10"), ("file", "/opt/tally/bin/app"), ("source", "10.20.5.7"),
        ("incident", "scan:10.20.5.7")]
    scan_group = got[3]
    assert [e.seq for e in scan_group.entries] == [1, 3]
    assert scan_group.worst == "critical"
    assert scan_group.rules == ["port-scan"]


def test_incident_section_counts_times_and_links_rows(incident: Incident,
                                                      tmp_path: Path) -> None:
    from sentinel.i18n import zone

    ev = gather(incident.config, None, None, T0 + 5 * 3600)
    page = render(ev, "en", zone("Asia/Jakarta"))
    section = page[page.index('<table id="incidents">'):]
    section = section[:section.index("</table>")]
    rows = re.findall(r'<tr id="incident-\d+">(.*?)</tr>', section)
    assert len(rows) == 3
    net, dns, fim = rows  # in time order of the first alert
    assert "10.20.5.7" in net and '<td class="num">5</td>' in net and ">high<" in net
    for rule in ("flow-summary", "ntp-other-server", "tally-db-unauthorized-access"):
        assert rule in net
    assert "2024-02-14T05:10:00.000Z" in net and "2024-02-14 12:10:00 WIB" in net  # first
    assert "2024-02-14T08:52:00.000Z" in net and "2024-02-14 15:52:00 WIB" in net  # last
    assert "10.20.0.10" in dns and '<td class="num">2</td>' in dns
    assert html.escape(XSS_PATH) in fim and XSS_PATH not in fim and ">critical<" in fim
    net_ids = [a.id for a in incident.alerts if a.event.get("src_ip") == "10.20.5.7"
               and a.event["kind"] == "net.connection"]
    assert re.findall(r'href="#alert-([^"]+)"', net) == net_ids
    for aid in net_ids:
        assert f'<tr id="alert-{aid}">' in page  # every link has its target


# -- 4 and 7: routing and language ---------------------------------------------------

ROUTED = """\
- name: soc
  url: "https://soc.example:8443/hooks/T0/SECRET-TOKEN?k=v"
  min_severity: medium
  include_tags: [tally-db, network]
  exclude_tags: [noisy]
  include_rules: [tally-db-unauthorized-access]
  exclude_rules: [flow-summary]
  language: id
"""


def test_delivery_table_shows_every_routing_setting(site: Callable[..., Config]) -> None:
    config = site(webhooks=ROUTED)
    _journal(config, alerts())
    page = render(gather(config, None, None, T0 + 5 * 3600), "en", site_language="en")
    table = page[page.index('<table id="delivery">'):]
    table = table[:table.index("</table>")]
    for name, value in (("min severity", "medium"), ("include tags", "tally-db"),
                        ("include tags", "network"), ("exclude tags", "noisy"),
                        ("include rules", "tally-db-unauthorized-access"),
                        ("exclude rules", "flow-summary"), ("language", "id")):
        assert f"<dt>{name}</dt>" in table and value in table, name
    assert "https://soc.example:8443/..." in table
    assert "SECRET-TOKEN" not in page and "k=v" not in page


def test_report_in_indonesian_has_no_english_chips_or_tables(incident: Incident) -> None:
    ev = gather(incident.config, None, None, T0 + 5 * 3600)
    page = render(ev, "id")
    for indonesian in ("jurnal utuh", "2 atestasi sah", "1 pengiriman gagal",
                       "Insiden dan sumber", "Insiden atau sumber", "alamat sumber",
                       "Perutean", "tingkat minimum", "sertakan tag", "Tidak dirutekan",
                       "rantai sah hingga urutan 0", "sesuai dengan jurnal", "Jendela aktif",
                       "bawaslu: terkirim", "batang: 5 menit", "utuh: 8 catatan dalam 1 berkas",
                       "diperiksa dengan kunci publik", "TXT dari 10.20.0.10 ke 10.20.0.2",
                       "(berubah: content)", "percobaan gagal sejauh ini", "(masuk)"):
        assert indonesian in page, indonesian
    for english in ("journal intact", "attestations valid", "delivery failed",
                    "Incidents and sources", "Routing", "Not routed", "matches the journal",
                    "Windows open", "bars:", "intact:", "checked with", " from 10.20.0.10",
                    "changed:", "failed attempts"):
        assert english not in page, english


# -- 6: exit codes -------------------------------------------------------------------


def test_report_exits_1_and_says_why_when_the_journal_does_not_verify(
        incident: Incident, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = incident.config.in_state(incident.config.outputs.journal.path)
    path.write_text(path.read_text().replace('"severity":"critical"', '"severity":"low"'))
    out = tmp_path / "t.html"
    assert main(["report", "-c", str(incident.config.source), "-o", str(out)]) == 1
    assert "journal TAMPERED" in out.read_text()  # the page is still written
    err = capsys.readouterr().err
    assert "the journal does not verify: TAMPERED" in err
    assert "Traceback" not in err


def test_report_exits_1_when_the_attested_head_is_gone(
        incident: Incident, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = incident.config.in_state(incident.config.outputs.journal.path)
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:-2]))
    out = tmp_path / "t.html"
    assert main(["report", "-c", str(incident.config.source), "-o", str(out)]) == 1
    assert out.exists()
    err = capsys.readouterr().err
    assert "the attestations do not verify" in err
    assert "no longer matches the head signed by attestation 1" in err


def test_report_exits_1_when_the_journal_cannot_be_checked(
        incident: Incident, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A journal key deleted by an intruder leaves a journal nobody can check: not 0."""
    key = incident.config.in_state(incident.config.outputs.journal.key.file or Path("x"))
    key.unlink()
    out = tmp_path / "t.html"
    assert main(["report", "-c", str(incident.config.source), "-o", str(out)]) == 1
    assert "the journal is not checked" in capsys.readouterr().err


def test_report_exits_0_when_everything_verifies(incident: Incident, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "-c", str(incident.config.source), "-o",
                 str(tmp_path / "ok.html")]) == 0
    assert capsys.readouterr().err == ""


def test_delivery_status_exits_1_and_names_dead_letters(
        incident: Incident, capsys: pytest.CaptureFixture[str]) -> None:
    crit = next(a for a in incident.alerts if a.severity == "critical")
    cfg = str(incident.config.source)
    assert main(["delivery", "status", "-c", cfg]) == 1
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if crit.id in x)
    assert "2024-02-14T07:40:00.000Z tally-binary-modified: Tally binary modified" in line
    assert "HTTP 404" in line
    assert main(["delivery", "status", "-c", cfg, "--format", "json"]) == 1
    rows = {r["lane"]: r for r in json.loads(capsys.readouterr().out)["targets"]}
    (dead,) = rows["ministry-csirt"]["dead"]
    assert dead["id"] == crit.id and dead["rule"] == "tally-binary-modified"
    assert dead["title"] == "Tally binary modified"
    assert dead["time"] == "2024-02-14T07:40:00.000Z"


def test_delivery_status_shows_control_characters_escaped() -> None:
    from sentinel.commands.delivery import _shown

    assert _shown("Query for \x1b[2Jevil\x07") == "Query for \\x1b[2Jevil\\x07"


@pytest.mark.parametrize("command", [["report"], ["delivery", "status"]])
def test_help_documents_the_exit_codes(command: list[str],
                                       capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main([*command, "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "1 written, but the journal or the attestations do not verify" in out \
        or "1 dead letters exist" in out


def test_a_flood_from_one_source_links_its_first_and_last_rows_only() -> None:
    from sentinel.attest.incidents import MAX_LINKS, section

    scan = {"kind": "net.connection", "src_ip": "10.20.5.7"}
    es = [Entry(i, {"id": f"a{i}", "rule": "scan", "severity": "low", "event": scan,
                    "time": "2024-02-14T05:10:00.000Z"}, 1.7e9 + i, True) for i in range(500)]
    html_ = section(es, "en", UTC, str, lambda e: False)
    links = re.findall(r'href="#alert-([^"]+)"', html_)
    assert len(links) == MAX_LINKS
    assert links[0] == "a0" and links[-1] == "a499"
    assert f"… {500 - MAX_LINKS} more" in html_
    assert '<td class="num">500</td>' in html_


def test_braces_in_hostile_names_are_shown_not_formatted(site: Callable[..., Config]) -> None:
    """Event values go into translated templates as values: a query name of ``{0}`` or
    ``{src.__class__}`` is shown as written, in both languages, and breaks nothing."""
    config = site()
    qname = "{src.__class__}{0}{}.evil"
    dns = {"kind": "net.dns", "qname": qname, "qtype": "A", "src_ip": "10.20.0.10",
           "dst_ip": "10.20.0.2"}
    _journal(config, [Alert("dns-unknown-domain", "Query", "medium", T0, "tally-01",
                            "network", ("network",), dns)])
    ev = gather(config, None, None, T0 + 60)
    assert f"{html.escape(qname)} A from 10.20.0.10" in render(ev)
    assert f"{html.escape(qname)} A dari 10.20.0.10" in render(ev, "id")
    conn = {"kind": "net.connection", "proto": "tcp", "src_ip": "10.20.5.7", "src_port": 1,
            "dst_ip": "10.20.0.10", "dst_port": 5432, "direction": "{0}{x.y}"}
    _journal(config, [Alert("db", "Conn", "high", T0 + 1, "tally-01", "network", (), conn)])
    ev = gather(config, None, None, T0 + 60)
    assert "(" + html.escape("{0}{x.y}") + ")" in render(ev, "id")


def test_file_groups_tell_byte_names_apart_and_show_bidi_escaped() -> None:
    """Two names whose text is alike but whose bytes differ (the base64 twin says so)
    are two groups; a right-to-left override in a name is shown escaped, not obeyed."""
    from sentinel.attest.incidents import section

    def fim(seq: int, path: str, b64: str | None = None) -> Entry:
        event: dict[str, object] = {"kind": "fim.modified", "path": path}
        if b64 is not None:
            event["path_b64"] = b64
        return Entry(seq, {"id": f"f{seq}", "rule": "m", "severity": "high", "event": event,
                           "time": "2024-02-14T05:10:00.000Z"}, 1.7e9 + seq, True)

    es = [fim(1, "/opt/tally/a\\xff", "L29wdC90YWxseS9h/w=="),
          fim(2, "/opt/tally/a\\xff", "L29wdC90YWxseS9h/g=="),
          fim(3, "/opt/tally/invoice\u202efdp.exe")]
    assert len(groups(es)) == 3
    page = section(es, "en", UTC, str, lambda e: False)
    assert "\u202e" not in page and "invoice\\u202efdp.exe" in page


def test_journaled_alerts_with_an_incident_key_form_one_group(
        site: Callable[..., Config]) -> None:
    """Alerts of several rules about one scanner share the rule's incident key: one group,
    whatever their events' own addresses."""
    config = site()
    net = {"kind": "net.connection", "src_ip": "10.20.5.7", "dst_ip": "10.20.0.10"}
    probe = {"kind": "net.icmp", "src_ip": "10.20.5.7", "dst_ip": "10.20.0.11", "type": 8,
             "code": 0}
    key = {"incident": "scan:10.20.5.7"}
    sent = [Alert("port-scan", "Scan", "medium", T0, "tally-01", "network", (), net,
                  extra=dict(key)),
            Alert("ping-sweep", "Sweep", "high", T0 + 60, "tally-01", "network", (), probe,
                  extra=dict(key)),
            Alert("db-access", "DB", "low", T0 + 30, "tally-01", "network", (), net)]
    _journal(config, sent)
    page = render(gather(config, None, None, T0 + 600), "id")
    section = page[page.index('<table id="incidents">'):]
    rows = re.findall(r'<tr id="incident-\d+">(.*?)</tr>', section[:section.index("</table>")])
    assert len(rows) == 2
    scan = next(r for r in rows if "scan:10.20.5.7" in r)
    assert scan.startswith("<td>insiden<br>")
    assert '<td class="num">2</td>' in scan and ">tinggi<" in scan
    assert "ping-sweep" in scan and "port-scan" in scan and "db-access" not in scan
