"""Thresholds at their edges, change rules, and bounded state with counted evictions."""

from __future__ import annotations

from pathlib import Path

from enginekit import conn, ev, fired, load, rule
from prometheus_client import CollectorRegistry

from sentinel.engine import Engine
from sentinel.events import Event
from sentinel.metrics import Metrics

COUNT = rule("dst_port: 22", extra="""
threshold: {at_least: 3, window: 10s, group_by: src_ip}
""")


def test_count_alerts_exactly_at_the_count(tmp_path: Path) -> None:
    """Two events do not alert; the third (== at_least) does, with count and group."""
    eng = Engine(load(tmp_path, COUNT))
    assert fired(eng, conn(0, dst_port=22), conn(1, dst_port=22)) == []
    alerts = eng.process(conn(2, dst_port=22))
    assert [a.rule for a in alerts] == ["r"]
    a = alerts[0]
    assert a.count == 3
    assert a.extra["group"] == {"src_ip": "10.20.0.50"}
    assert a.extra["threshold"] == {"measure": "count", "field": None, "value": 3,
                                    "at_least": 3, "window_seconds": 10.0}


def test_one_alert_per_crossing_then_rearms(tmp_path: Path) -> None:
    """Staying above the threshold does not re-alert; dropping below and crossing again does."""
    eng = Engine(load(tmp_path, COUNT))
    assert fired(eng, *(conn(t, dst_port=22) for t in (0, 1, 2, 3, 4))) == ["r"]
    # 20s of quiet: the window empties, so a new burst is a new crossing
    assert fired(eng, *(conn(t, dst_port=22) for t in (30, 31, 32))) == ["r"]


def test_window_slides_past_old_events(tmp_path: Path) -> None:
    """An event exactly one window old no longer counts; one just inside does."""
    eng = Engine(load(tmp_path, COUNT))
    assert fired(eng, conn(0, dst_port=22), conn(5, dst_port=22), conn(10, dst_port=22)) == []
    eng2 = Engine(load(tmp_path, COUNT))
    assert fired(eng2, conn(0.001, dst_port=22), conn(5, dst_port=22),
                 conn(10, dst_port=22)) == ["r"]


def test_groups_count_separately(tmp_path: Path) -> None:
    eng = Engine(load(tmp_path, COUNT))
    events = [conn(t, dst_port=22, src_ip=f"10.0.0.{t % 2}") for t in range(4)]
    assert fired(eng, *events) == []
    assert fired(eng, conn(5, dst_port=22, src_ip="10.0.0.1")) == ["r"]


def test_distinct_port_scan(tmp_path: Path) -> None:
    """15 distinct ports from one source in 60s alert; repeats of a port do not count."""
    text = rule("src_internal: false", extra="""
    threshold: {at_least: 15, distinct: dst_port, window: 60s, group_by: [src_ip]}
    """)
    eng = Engine(load(tmp_path, text))
    same = [conn(t, src_internal=False, dst_port=80) for t in range(30)]
    assert fired(eng, *same) == []
    scan = [conn(30 + p, src_internal=False, dst_port=1000 + p) for p in range(13)]
    assert fired(eng, *scan) == []  # 80 and 13 more: 14 distinct ports
    alerts = eng.process(conn(50, src_internal=False, dst_port=2000))
    assert [(a.count, a.extra["threshold"]["value"]) for a in alerts] == [(15, 15)]


def test_distinct_forgets_values_seen_before_the_window(tmp_path: Path) -> None:
    text = rule("src_internal: false", extra="""
    threshold: {at_least: 3, distinct: dst_port, window: 10s, group_by: src_ip}
    """)
    eng = Engine(load(tmp_path, text))
    assert fired(eng, conn(0, src_internal=False, dst_port=1),
                 conn(1, src_internal=False, dst_port=2),
                 conn(11, src_internal=False, dst_port=3)) == []


def test_distinct_of_a_derived_field(tmp_path: Path) -> None:
    """Distinct names per registered domain: the DNS-tunnel pattern."""
    text = rule("is_response: false", kind="net.dns", extra="""
    threshold: {at_least: 3, distinct: qname, window: 60s, group_by: qname|registered}
    """)
    eng = Engine(load(tmp_path, text))
    names = ["a1.t.evil.com", "b2.t.evil.com", "x.other.org", "c3.t.evil.com"]
    alerts = [a for i, n in enumerate(names)
              for a in eng.process(ev("net.dns", i, qname=n, is_response=False))]
    assert [a.extra["group"] for a in alerts] == [{"qname|registered": "evil.com"}]


def test_sum_of_bytes(tmp_path: Path) -> None:
    """Sum crosses when the running total in the window reaches at_least."""
    text = rule("direction: outbound", kind="net.flow", extra="""
    threshold: {at_least: 1000, sum: bytes_out, window: 5m, group_by: dst_ip}
    """)
    eng = Engine(load(tmp_path, text))

    def flow(t: float, n: int) -> Event:
        return ev("net.flow", t, direction="outbound", dst_ip="198.51.100.7", bytes_out=n)
    assert fired(eng, flow(0, 400), flow(10, 599)) == []
    alerts = eng.process(flow(20, 1))
    assert [(a.count, a.extra["threshold"]["value"]) for a in alerts] == [(3, 1000)]
    eng2 = Engine(load(tmp_path, text))
    # the first 400 leave the 5-minute window before the last flow arrives
    assert fired(eng2, flow(0, 400), flow(10, 599), flow(300, 1)) == []


def test_threshold_groups_are_capped_and_evictions_counted(tmp_path: Path) -> None:
    reg = CollectorRegistry()
    eng = Engine(load(tmp_path, COUNT), metrics=Metrics(reg), max_groups=2)
    # three sources: the first is evicted when the third arrives
    fired(eng, conn(0, dst_port=22, src_ip="10.0.0.1"), conn(0, dst_port=22, src_ip="10.0.0.1"),
          conn(1, dst_port=22, src_ip="10.0.0.2"), conn(2, dst_port=22, src_ip="10.0.0.3"))
    assert reg.get_sample_value("sentinel_rule_state_evictions_total", {"rule": "r"}) == 1
    # its two events were forgotten: a third one does not cross
    assert fired(eng, conn(3, dst_port=22, src_ip="10.0.0.1")) == []


def test_per_rule_cap_overrides_the_engine_cap(tmp_path: Path) -> None:
    text = rule("dst_port: 22", extra="""
    threshold: {at_least: 2, window: 10s, group_by: src_ip, max_groups: 1}
    """)
    reg = CollectorRegistry()
    eng = Engine(load(tmp_path, text), metrics=Metrics(reg), max_groups=100)
    fired(eng, conn(0, dst_port=22, src_ip="10.0.0.1"), conn(1, dst_port=22, src_ip="10.0.0.2"))
    assert reg.get_sample_value("sentinel_rule_state_evictions_total", {"rule": "r"}) == 1


CHANGE = rule("{op: reply, sender_ip: 10.20.0.1}", kind="net.arp", extra="""
change: {key: sender_ip, value: sender_mac}
""")


def arp(t: float, mac: str, ip: str = "10.20.0.1") -> Event:
    return ev("net.arp", t, op="reply", sender_ip=ip, sender_mac=mac)


def test_change_alerts_with_previous_value(tmp_path: Path) -> None:
    """The first MAC is learnt silently; a different one alerts with the previous MAC."""
    eng = Engine(load(tmp_path, CHANGE))
    assert fired(eng, arp(0, "02:00:00:00:00:01"), arp(1, "02:00:00:00:00:01")) == []
    alerts = eng.process(arp(2, "02:66:66:66:66:66"))
    assert [(a.extra["previous"], a.extra["current"], a.extra["key"]) for a in alerts] == [
        ("02:00:00:00:00:01", "02:66:66:66:66:66", {"sender_ip": "10.20.0.1"})]
    # the new value is now the known one; going back is a change again
    assert fired(eng, arp(3, "02:66:66:66:66:66")) == []
    assert fired(eng, arp(4, "02:00:00:00:00:01")) == ["r"]


def test_change_state_is_bounded(tmp_path: Path) -> None:
    text = rule("op: reply", kind="net.arp", extra="""
    change: {key: sender_ip, value: sender_mac, max_keys: 2}
    """)
    reg = CollectorRegistry()
    eng = Engine(load(tmp_path, text), metrics=Metrics(reg))
    for i, ip in enumerate(("10.0.0.1", "10.0.0.2", "10.0.0.3")):
        eng.process(arp(i, "02:00:00:00:00:01", ip))
    assert reg.get_sample_value("sentinel_rule_state_evictions_total", {"rule": "r"}) == 1
    # 10.0.0.1 was evicted: its new MAC is learnt, not reported
    assert fired(eng, arp(5, "02:00:00:00:00:09", "10.0.0.1")) == []
    assert fired(eng, arp(6, "02:00:00:00:00:09", "10.0.0.3")) == ["r"]
