"""Schedules at their boundaries (timezone-aware), suppression and its summaries, titles."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from enginekit import conn, ev, fired, load, rule, windows
from prometheus_client import CollectorRegistry

from sentinel.engine import Engine
from sentinel.metrics import Metrics

# 13:00 to 23:59 in Western Indonesia time (UTC+7): 06:00Z to 16:59Z
COUNTING = {"counting": windows(("2024-02-14T13:00:00+07:00", "2024-02-14T23:59:00+07:00"))}
START = datetime.fromisoformat("2024-02-14T06:00:00+00:00").timestamp()
END = datetime.fromisoformat("2024-02-14T16:59:00+00:00").timestamp()


def test_during_window_is_start_inclusive_end_exclusive(tmp_path: Path) -> None:
    text = rule("dst_port: 22", extra="schedule: {during: counting}")
    eng = Engine(load(tmp_path, text, schedules=COUNTING))
    assert fired(eng, conn(START - 0.001, dst_port=22)) == []
    assert fired(eng, conn(START, dst_port=22)) == ["r"]
    assert fired(eng, conn(END - 0.001, dst_port=22)) == ["r"]
    assert fired(eng, conn(END, dst_port=22)) == []


def test_outside_window(tmp_path: Path) -> None:
    text = rule("dst_port: 22", extra="schedule: {outside: counting}")
    eng = Engine(load(tmp_path, text, schedules=COUNTING))
    assert fired(eng, conn(START - 0.001, dst_port=22)) == ["r"]
    assert fired(eng, conn(START, dst_port=22)) == []
    assert fired(eng, conn(END, dst_port=22)) == ["r"]


def test_window_offset_is_honoured(tmp_path: Path) -> None:
    """13:30 UTC is 20:30 in UTC+7: inside a 13:00-23:59 (+07:00) window only by offset."""
    early = {"w": windows(("2024-02-14T13:00:00+07:00", "2024-02-14T14:00:00+07:00"))}
    text = rule("dst_port: 22", extra="schedule: {during: w}")
    eng = Engine(load(tmp_path, text, schedules=early))
    t_utc_1330 = datetime.fromisoformat("2024-02-14T13:30:00+00:00").timestamp()
    t_wib_1330 = datetime.fromisoformat("2024-02-14T13:30:00+07:00").timestamp()
    assert fired(eng, conn(t_utc_1330, dst_port=22)) == []
    assert fired(eng, conn(t_wib_1330, dst_port=22)) == ["r"]


def test_severity_during_a_window(tmp_path: Path) -> None:
    """A tally config change is critical during counting, high outside it."""
    text = rule("path_tags: tally-config", kind="fim.modified",
                extra="severity_during: {counting: critical}")
    eng = Engine(load(tmp_path, text, schedules=COUNTING))

    def sev(t: float) -> list[str]:
        return [a.severity for a in eng.process(ev("fim.modified", t, path="/etc/tally/a",
                                                   path_tags=["tally-config"]))]
    assert sev(START - 1) == ["high"]
    assert sev(START) == ["critical"]
    assert sev(END - 1) == ["critical"]
    assert sev(END) == ["high"]


SUPPRESS = rule("dst_port: 22", extra="suppress: {key: src_ip, period: 10m}")


def test_suppression_folds_repeats_and_summarizes_on_advance(tmp_path: Path) -> None:
    reg = CollectorRegistry()
    eng = Engine(load(tmp_path, SUPPRESS), metrics=Metrics(reg))
    first = eng.process(conn(0, dst_port=22))
    assert [a.count for a in first] == [1]
    assert fired(eng, conn(10, dst_port=22), conn(599, dst_port=22)) == []
    assert eng.advance(599.9) == []
    summary = eng.advance(600)
    assert len(summary) == 1
    s = summary[0]
    assert (s.count, s.extra["summary"], s.extra["first_alert"]) == (3, True, first[0].id)
    assert s.extra["group"] == {"src_ip": "10.20.0.50"}
    assert s.title == "t (3 times in 10m)"
    assert eng.advance(10_000) == []  # reported once
    assert reg.get_sample_value("sentinel_alerts_total", {"rule": "r", "severity": "high"}) == 2


def test_flush_at_shutdown_reports_open_folds_now(tmp_path: Path) -> None:
    """Stopping mid-period loses no folded count: the summary comes out dated now."""
    eng = Engine(load(tmp_path, SUPPRESS))
    first = eng.process(conn(0, dst_port=22))
    fired(eng, conn(5, dst_port=22), conn(7, dst_port=22))
    fired(eng, conn(8, dst_port=22, src_ip="10.20.0.51"))  # a key with one alert: no summary
    out = eng.flush(30)
    assert [(a.count, a.time, a.extra["first_alert"]) for a in out] == [(3, 30, first[0].id)]
    assert eng.flush(31) == []
    assert eng.advance(10_000) == []


def test_no_summary_for_a_single_alert(tmp_path: Path) -> None:
    eng = Engine(load(tmp_path, SUPPRESS))
    assert fired(eng, conn(0, dst_port=22)) == ["r"]
    assert eng.advance(601) == []


def test_keys_fold_separately(tmp_path: Path) -> None:
    eng = Engine(load(tmp_path, SUPPRESS))
    assert fired(eng, conn(0, dst_port=22, src_ip="10.0.0.1"),
                 conn(1, dst_port=22, src_ip="10.0.0.2"),
                 conn(2, dst_port=22, src_ip="10.0.0.1")) == ["r", "r"]
    assert [(a.count, a.extra["group"]) for a in eng.advance(700)] == [
        (2, {"src_ip": "10.0.0.1"})]


def test_event_after_period_ends_the_fold_without_advance(tmp_path: Path) -> None:
    """Replay may never call advance between events: the next match closes the period."""
    eng = Engine(load(tmp_path, SUPPRESS))
    eng.process(conn(0, dst_port=22))
    eng.process(conn(1, dst_port=22))
    alerts = eng.process(conn(600, dst_port=22))
    assert [(a.count, "summary" in a.extra) for a in alerts] == [(2, True), (1, False)]


def test_suppression_cap_reports_early_instead_of_losing(tmp_path: Path) -> None:
    text = rule("dst_port: 22", extra="suppress: {key: src_ip, period: 10m, max_keys: 1}")
    reg = CollectorRegistry()
    eng = Engine(load(tmp_path, text), metrics=Metrics(reg))
    eng.process(conn(0, dst_port=22, src_ip="10.0.0.1"))
    eng.process(conn(1, dst_port=22, src_ip="10.0.0.1"))
    alerts = eng.process(conn(2, dst_port=22, src_ip="10.0.0.2"))
    assert [(a.count, a.extra.get("group")) for a in alerts] == [
        (2, {"src_ip": "10.0.0.1"}), (1, None)]
    assert reg.get_sample_value("sentinel_rule_state_evictions_total", {"rule": "r"}) == 1


def test_threshold_alerts_are_suppressed_too(tmp_path: Path) -> None:
    text = rule("dst_port: 22", extra="""
    threshold: {at_least: 2, window: 5s, group_by: src_ip}
    suppress: {key: src_ip, period: 1h}
    """)
    eng = Engine(load(tmp_path, text))
    # two bursts, each a crossing; the second folds into the first alert
    assert fired(eng, conn(0, dst_port=22), conn(1, dst_port=22)) == ["r"]
    assert fired(eng, conn(100, dst_port=22), conn(101, dst_port=22)) == []
    assert eng.advance(3600) == []  # the period began at the first alert, t=1
    assert [a.count for a in eng.advance(3601)] == [4]


def test_title_template(tmp_path: Path) -> None:
    text = """
    rules:
      - id: bin
        title: "Tally binary changed{offline? (found offline)}: {path} [{changed}] {{x}}"
        description: "{path} by uid {uid_after}; {count} event"
        severity: critical
        kind: fim.*
        match: {path_tags: tally-binaries}
    """
    eng = Engine(load(tmp_path, text))
    live = eng.process(ev("fim.modified", 0, path="/opt/tally/bin/t", changed=["content"],
                          path_tags=["tally-binaries"], offline=False))
    offline = eng.process(ev("fim.modified", 0, path="/opt/tally/bin/t", changed=["content",
                                                                                   "mode"],
                             path_tags=["tally-binaries"], offline=True))
    assert live[0].title == "Tally binary changed: /opt/tally/bin/t [content] {x}"
    assert offline[0].title == ("Tally binary changed (found offline): /opt/tally/bin/t"
                                " [content,mode] {x}")
    assert live[0].extra["description"] == "/opt/tally/bin/t by uid -; 1 event"


def test_alert_shape(tmp_path: Path) -> None:
    """The alert carries the rule's id, tags, severity, the event and its time (CONTRACT §4)."""
    text = rule("dst_port: 5432").replace("severity: high", "severity: critical\n    tags: [db]")
    eng = Engine(load(tmp_path, text), host="tally-01")
    (a,) = eng.process(conn(1707890700.5, dst_port=5432))
    d = a.to_dict()
    assert (d["rule"], d["severity"], d["tags"], d["host"], d["source"], d["count"]) == (
        "r", "critical", ["db"], "tally-01", "network", 1)
    assert d["time"] == "2024-02-14T06:05:00.500Z"
    assert d["event"]["dst_port"] == 5432
    assert d["event"]["kind"] == "net.connection"
