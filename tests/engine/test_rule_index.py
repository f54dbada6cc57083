"""The index hands each event only the rules that could match it; one failing rule
never stops the others; the evaluation-time histogram is fed."""

from __future__ import annotations

from pathlib import Path

from enginekit import conn, ev, fired, load
from prometheus_client import CollectorRegistry

from sentinel.engine import Engine
from sentinel.metrics import Metrics


def many(n: int, match: str) -> str:
    return "rules:\n" + "".join(
        f"  - {{id: r{i}, title: t, severity: low, kind: net.connection,"
        f" match: {match.format(i=i)}}}\n" for i in range(n))


def test_equality_rules_are_looked_up_by_value(tmp_path: Path) -> None:
    rules = load(tmp_path, many(200, "{{dst_port: {i}, proto: tcp}}"))
    assert [r.id for r in rules.index.candidates(conn(dst_port=17))] == ["r17"]
    assert list(rules.index.candidates(conn(dst_port=5000))) == []


def test_address_rules_are_found_by_range(tmp_path: Path) -> None:
    rules = load(tmp_path, many(200, "{{src_ip: {{cidr: '10.{i}.0.0/16'}}}}")
                 + "  - {id: wide, title: t, severity: low, kind: net.connection,"
                   " match: {src_ip: {cidr: 10.0.0.0/8}}}\n")
    got = [r.id for r in rules.index.candidates(conn(src_ip="10.42.7.7"))]
    assert got == ["r42", "wide"]
    assert [r.id for r in rules.index.candidates(conn(src_ip="192.0.2.1"))] == []


def test_every_indexed_test_must_hold_for_a_rule_to_be_a_candidate(tmp_path: Path) -> None:
    """Not only the most selective test (dst_port) narrows: proto, low in values, does too."""
    rules = load(tmp_path, many(3, "{{proto: udp, dst_port: {i}}}"))
    eng = Engine(rules)
    assert list(rules.index.candidates(conn(dst_port=1, proto="tcp"))) == []
    assert [r.id for r in rules.index.candidates(conn(dst_port=1, proto="udp"))] == ["r1"]
    assert fired(eng, conn(dst_port=1, proto="tcp")) == []
    assert fired(eng, conn(dst_port=1, proto="udp")) == ["r1"]


def test_rules_without_an_indexable_test_see_every_event_of_their_kind(tmp_path: Path) -> None:
    rules = load(tmp_path, many(2, "{{dst_port: {{not_in: [{i}]}}}}"))
    assert [r.id for r in rules.index.candidates(conn(dst_port=9))] == ["r0", "r1"]
    assert list(rules.index.candidates(ev("net.dns", qname="x"))) == []


def test_alerts_come_in_rule_order_across_index_buckets(tmp_path: Path) -> None:
    text = ("rules:\n"
            "  - {id: a, title: t, severity: low, kind: net.connection, match: {dst_port: 22}}\n"
            "  - {id: b, title: t, severity: low, kind: net.connection,"
            " match: {src_ip: {cidr: 10.0.0.0/8}}}\n"
            "  - {id: c, title: t, severity: low, kind: net.connection,"
            " match: {proto: {not_equals: udp}}}\n"
            "  - {id: d, title: t, severity: low, kind: net.connection, match: {dst_port: 22}}\n")
    assert fired(Engine(load(tmp_path, text)), conn(dst_port=22, src_ip="10.1.1.1")) == [
        "a", "b", "c", "d"]


def test_a_failing_rule_does_not_stop_the_others(tmp_path: Path) -> None:
    """A malformed event (qname a number) breaks one rule's transform, not the event."""
    text = ("rules:\n"
            "  - {id: long, title: t, severity: low, kind: net.dns, match: {qname|len: {gt: 1}}}\n"
            "  - {id: any-a, title: t, severity: low, kind: net.dns, match: {qtype: A}}\n")
    eng = Engine(load(tmp_path, text))
    assert fired(eng, ev("net.dns", qname=12345, qtype="A")) == ["any-a"]
    assert fired(eng, ev("net.dns", qname="www.kpu.go.id", qtype="A")) == ["long", "any-a"]


def test_evaluation_time_is_sampled_into_the_histogram(tmp_path: Path) -> None:
    reg = CollectorRegistry()
    eng = Engine(load(tmp_path, many(1, "{{dst_port: 22}}")), metrics=Metrics(reg))
    for i in range(64):
        eng.process(conn(i))
    count = reg.get_sample_value("sentinel_rule_eval_seconds_count")
    assert count is not None and 1 <= count <= 64


def test_any_of_branches_sharing_a_field_are_indexed_by_the_union(tmp_path: Path) -> None:
    text = ("rules:\n"
            "  - {id: clear, title: t, severity: low, kind: net.connection, match:"
            " [{proto: tcp, dst_port: [21, 23]}, {proto: udp, dst_port: 69}]}\n")
    rules = load(tmp_path, text)
    cand = rules.index.candidates
    assert [r.id for r in cand(conn(dst_port=69, proto="tcp"))] == ["clear"]
    assert [r.id for r in cand(conn(dst_port=23))] == ["clear"]
    assert list(cand(conn(dst_port=22))) == []
    eng = Engine(rules)
    assert fired(eng, conn(dst_port=69, proto="tcp"), conn(dst_port=69, proto="udp")) == [
        "clear"]


def ids(rules: object, event: object) -> list[str]:
    return [r.id for r in rules.index.candidates(event)]  # type: ignore[attr-defined]


def test_copies_naming_their_own_server_list_are_candidates_only_for_their_server(
        tmp_path: Path) -> None:
    """The pack's shape: dst_ip in a list of the copy's own, port and source tests beside."""
    lists = {f"server_{k}": (f"10.77.{k}.10",) for k in range(31)}
    text = "rules:\n" + "".join(
        f"  - {{id: db-{k}, title: t, severity: high, kind: net.connection, match:"
        f" {{dst_ip: {{in: server_{k}}}, dst_port: 5432, src_ip: {{not_in: [10.20.0.11]}}}}}}\n"
        for k in range(31))
    rules = load(tmp_path, text, lists)
    assert ids(rules, conn(dst_ip="10.77.7.10", dst_port=5432)) == ["db-7"]
    assert ids(rules, conn(dst_ip="10.77.7.10", dst_port=443)) == []
    assert ids(rules, conn(dst_ip="10.20.0.10", dst_port=5432)) == []


def test_domain_suffixes_are_indexed_on_label_boundaries(tmp_path: Path) -> None:
    text = ("rules:\n"
            "  - {id: kpu, title: t, severity: low, kind: net.dns,"
            " match: {qname: {domain_in: [kpu.go.id]}}}\n"
            "  - {id: evil, title: t, severity: low, kind: net.dns,"
            " match: {qname: {domain_in: ['*.evil.example']}}}\n")
    rules = load(tmp_path, text)
    assert ids(rules, ev("net.dns", qname="www.KPU.go.id.")) == ["kpu"]
    assert ids(rules, ev("net.dns", qname="kpu.go.id")) == ["kpu"]
    assert ids(rules, ev("net.dns", qname="evilkpu.go.id")) == []
    assert ids(rules, ev("net.dns", qname="a.b.evil.example")) == ["evil"]
    assert ids(rules, ev("net.dns", qname=12345)) == []


def test_address_port_pairs_macs_and_file_tags_are_indexed(tmp_path: Path) -> None:
    text = ("rules:\n"
            "  - {id: pair, title: t, severity: low, kind: net.connection,"
            " match: {dst_ip+dst_port: {in: ['203.0.113.50:443', '[2001:db8::1]:22']}}}\n"
            "  - {id: mac, title: t, severity: low, kind: net.arp,"
            " match: {sender_mac: {in: ['02:00:00:00:00:01']}}}\n"
            "  - {id: tag, title: t, severity: low, kind: fim.modified,"
            " match: {path_tags: tally-config}}\n")
    rules = load(tmp_path, text)
    assert ids(rules, conn(dst_ip="203.0.113.50", dst_port=443)) == ["pair"]
    assert ids(rules, conn(dst_ip="2001:db8::1", dst_port=22)) == ["pair"]
    assert ids(rules, conn(dst_ip="203.0.113.50", dst_port=80)) == []
    assert ids(rules, ev("net.arp", sender_mac="02:00:00:00:00:01")) == ["mac"]
    assert ids(rules, ev("net.arp", sender_mac="02:00:00:00:00:66")) == []
    assert ids(rules, ev("fim.modified", path_tags=["accounts", "tally-config"])) == ["tag"]
    assert ids(rules, ev("fim.modified", path_tags=["accounts"])) == []


def test_alike_rules_are_tested_once_yet_each_alerts(tmp_path: Path) -> None:
    """Copies with only their ids and titles changed share one test and one threshold."""
    text = "rules:\n" + "".join(
        f"  - {{id: c{k}, title: copy {k}, severity: low, kind: net.connection,"
        f" match: {{dst_port: 22}}, threshold: {{at_least: 2, window: 10s}}}}\n"
        for k in range(5))
    eng = Engine(load(tmp_path, text))
    assert len(eng._active.groups) == 1
    assert fired(eng, conn(0, dst_port=22)) == []
    alerts = eng.process(conn(1, dst_port=22))
    assert [(a.rule, a.title, a.count) for a in alerts] == [
        (f"c{k}", f"copy {k}", 2) for k in range(5)]


def test_a_rule_added_at_reload_does_not_share_the_state_of_its_older_twin(
        tmp_path: Path) -> None:
    """Alike but younger: its threshold counts from its own first event."""
    one = ("rules:\n  - {id: old, title: t, severity: low, kind: net.connection,"
           " match: {dst_port: 22}, threshold: {at_least: 2, window: 10s}}\n")
    eng = Engine(load(tmp_path, one))
    assert fired(eng, conn(0, dst_port=22)) == []
    two = one + one.split("\n", 1)[1].replace("id: old", "id: new")
    eng.swap(load(tmp_path, two))
    assert fired(eng, conn(1, dst_port=22)) == ["old"]
    assert fired(eng, conn(2, dst_port=22)) == ["new"]
