"""Every condition operator and their combinations, on real compiled rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from enginekit import load, rule

from sentinel.engine import Engine
from sentinel.events import SOURCES, Event

LISTS: dict[str, tuple[Any, ...]] = {
    "tally_services": (22, 443, 5432),
    "admin_net": ("10.20.1.0/28",),
    "mixed": ("10.20.0.10", "2001:db8::/32"),
    "allowed_outbound": ("203.0.113.50:443", "10.20.0.2:53", "[2001:db8::53]:53",
                         "10.30.0.0/24:123"),
    "allowed_domains": ("kpu.go.id",),
    "conf_dirs": ("/etc/tally/", "/etc/ssh/"),
    "watched_tags": ("tally-config", "accounts"),
}

C = "net.connection"
D = "net.dns"
F = "fim.modified"

# (name, match YAML, kind, event fields, expected)
CASES: list[tuple[str, str, str, dict[str, Any], bool]] = [
    ("equals number", "dst_port: 5432", C, {"dst_port": 5432}, True),
    ("equals number, other", "dst_port: 5432", C, {"dst_port": 443}, False),
    ("equals text", "proto: udp", C, {"proto": "udp"}, True),
    ("equals text, other", "proto: udp", C, {"proto": "tcp"}, False),
    ("equals boolean", "src_internal: false", C, {"src_internal": False}, True),
    ("equals boolean, other", "src_internal: false", C, {"src_internal": True}, False),
    ("equals op form", "dst_port: {equals: 22}", C, {"dst_port": 22}, True),
    ("list of values is any-of", "dst_port: [22, 443]", C, {"dst_port": 443}, True),
    ("list of values, none", "dst_port: [22, 443]", C, {"dst_port": 80}, False),
    ("not_equals", "proto: {not_equals: tcp}", C, {"proto": "udp"}, True),
    ("not_equals, equal", "proto: {not_equals: tcp}", C, {"proto": "tcp"}, False),
    ("not_equals, missing field", "proto: {not_equals: tcp}", C, {}, True),
    ("equals, missing field", "proto: tcp", C, {}, False),
    ("address equality normalizes", "dst_ip: 2001:DB8:0::1", C, {"dst_ip": "2001:db8::1"}, True),
    ("in inline list", "dst_port: {in: [22, 5432]}", C, {"dst_port": 5432}, True),
    ("in named list", "dst_port: {in: tally_services}", C, {"dst_port": 22}, True),
    ("in named list, not there", "dst_port: {in: tally_services}", C, {"dst_port": 23}, False),
    ("$name shorthand", "dst_port: $tally_services", C, {"dst_port": 443}, True),
    ("not_in named list", "dst_port: {not_in: tally_services}", C, {"dst_port": 23}, True),
    ("not_in, listed", "dst_port: {not_in: tally_services}", C, {"dst_port": 22}, False),
    ("not_in, missing field", "dst_port: {not_in: tally_services}", C, {}, True),
    ("in mixed list: address", "dst_ip: {in: mixed}", C, {"dst_ip": "10.20.0.10"}, True),
    ("in mixed list: v6 net", "dst_ip: {in: mixed}", C, {"dst_ip": "2001:db8:5::1"}, True),
    ("cidr v4 literal", "src_ip: {cidr: 10.20.1.0/28}", C, {"src_ip": "10.20.1.15"}, True),
    ("cidr v4, just outside", "src_ip: {cidr: 10.20.1.0/28}", C, {"src_ip": "10.20.1.16"},
     False),
    ("cidr v6 literal", "src_ip: {cidr: '2001:db8::/32'}", C, {"src_ip": "2001:db8:ffff::1"},
     True),
    ("cidr v6, outside", "src_ip: {cidr: '2001:db8::/32'}", C, {"src_ip": "2001:db9::1"}, False),
    ("cidr v4 never matches v6", "src_ip: {cidr: 0.0.0.0/0}", C, {"src_ip": "::1"}, False),
    ("cidr list", "src_ip: {cidr: [10.0.0.0/8, 192.168.0.0/16]}", C,
     {"src_ip": "192.168.3.4"}, True),
    ("cidr named list", "src_ip: {cidr: admin_net}", C, {"src_ip": "10.20.1.3"}, True),
    ("not_cidr", "src_ip: {not_cidr: admin_net}", C, {"src_ip": "10.20.0.3"}, True),
    ("not_cidr, inside", "src_ip: {not_cidr: admin_net}", C, {"src_ip": "10.20.1.3"}, False),
    ("in a list of networks", "src_ip: {in: admin_net}", C, {"src_ip": "10.20.1.1"}, True),
    ("glob", "path: {glob: '/etc/tally/*.conf'}", F, {"path": "/etc/tally/a.conf"}, True),
    ("glob, no", "path: {glob: '/etc/tally/*.conf'}", F, {"path": "/etc/tally/a.yaml"}, False),
    ("glob is anchored", "path: {glob: 'tally*'}", F, {"path": "/etc/tally"}, False),
    ("glob list", "path: {glob: ['*.sh', '*.py']}", F, {"path": "/x/y.py"}, True),
    ("regex searches", "qname: {regex: '^[a-z0-9]{40,}\\.'}", D,
     {"qname": "a" * 45 + ".evil.com"}, True),
    ("regex, no", "qname: {regex: '^[a-z0-9]{40,}\\.'}", D, {"qname": "www.kpu.go.id"}, False),
    ("startswith", "path: {startswith: /etc/tally/}", F, {"path": "/etc/tally/x"}, True),
    ("startswith, no", "path: {startswith: /etc/tally/}", F, {"path": "/etc/tallyx"}, False),
    ("startswith named list", "path: {startswith: $conf_dirs}", F, {"path": "/etc/ssh/k"}, True),
    ("endswith", "path: {endswith: [.sh, .py]}", F, {"path": "/opt/a.sh"}, True),
    ("contains", "qname: {contains: xn--}", D, {"qname": "xn--80ak6aa92e.com"}, True),
    ("contains, no", "qname: {contains: xn--}", D, {"qname": "kpu.go.id"}, False),
    ("gt", "bytes_out: {gt: 1000}", "net.flow", {"bytes_out": 1001}, True),
    ("gt at the limit", "bytes_out: {gt: 1000}", "net.flow", {"bytes_out": 1000}, False),
    ("gte at the limit", "bytes_out: {gte: 1000}", "net.flow", {"bytes_out": 1000}, True),
    ("lt", "duration: {lt: 0.5}", "net.flow", {"duration": 0.49}, True),
    ("lte at the limit", "duration: {lte: 0.5}", "net.flow", {"duration": 0.5}, True),
    ("lt, above", "duration: {lt: 0.5}", "net.flow", {"duration": 0.6}, False),
    ("range with two operators", "dst_port: {gte: 1024, lt: 2048}", C, {"dst_port": 2047}, True),
    ("range, out", "dst_port: {gte: 1024, lt: 2048}", C, {"dst_port": 2048}, False),
    ("exists", "tcp_flags: {exists: true}", C, {"tcp_flags": "S"}, True),
    ("exists, missing", "tcp_flags: {exists: true}", C, {}, False),
    ("exists false, missing", "tcp_flags: {exists: false}", C, {}, True),
    ("exists false, null is missing", "dest_path: {exists: false}", F, {"dest_path": None},
     True),
    ("domain_in: the domain", "qname: {domain_in: allowed_domains}", D, {"qname": "kpu.go.id"},
     True),
    ("domain_in: a subdomain", "qname: {domain_in: allowed_domains}", D,
     {"qname": "x.y.kpu.go.id"}, True),
    ("domain_in: dot boundary", "qname: {domain_in: allowed_domains}", D,
     {"qname": "evilkpu.go.id"}, False),
    ("domain_in: parent only", "qname: {domain_in: allowed_domains}", D, {"qname": "go.id"},
     False),
    ("not_domain_in", "qname: {not_domain_in: allowed_domains}", D, {"qname": "evil.com"}, True),
    ("not_domain_in, allowed", "qname: {not_domain_in: allowed_domains}", D,
     {"qname": "www.kpu.go.id"}, False),
    ("ip:port pair listed", "dst_ip+dst_port: {in: allowed_outbound}", C,
     {"dst_ip": "203.0.113.50", "dst_port": 443}, True),
    ("ip:port pair, other port", "dst_ip+dst_port: {not_in: allowed_outbound}", C,
     {"dst_ip": "203.0.113.50", "dst_port": 80}, True),
    ("ip:port pair, IPv6", "dst_ip+dst_port: {in: allowed_outbound}", C,
     {"dst_ip": "2001:db8::53", "dst_port": 53}, True),
    ("ip:port pair, network part", "dst_ip+dst_port: {in: allowed_outbound}", C,
     {"dst_ip": "10.30.0.77", "dst_port": 123}, True),
    ("ip:port pair, network, wrong port", "dst_ip+dst_port: {in: allowed_outbound}", C,
     {"dst_ip": "10.30.0.77", "dst_port": 124}, False),
    ("transform len", "qname|len: {gt: 60}", D, {"qname": "a" * 61}, True),
    ("transform longest_label", "qname|longest_label: {gt: 50}", D,
     {"qname": "a" * 51 + ".evil.com"}, True),
    ("transform longest_label, short labels", "qname|longest_label: {gt: 50}", D,
     {"qname": "a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r.s.t.u.v.w.x.y.z.evil.com"}, False),
    ("transform labels", "qname|labels: {gte: 6}", D, {"qname": "a.b.c.d.e.f"}, True),
    ("transform parent", "qname|parent: t.evil.com", D, {"qname": "abc.t.evil.com"}, True),
    ("transform registered", "qname|registered: kpu.go.id", D, {"qname": "a.b.kpu.go.id"}, True),
    ("transform registered .com", "qname|registered: evil.com", D, {"qname": "a.b.evil.com"},
     True),
    ("transform lower", "iface|lower: eth0", C, {"iface": "ETH0"}, True),
    ("list field: scalar is contains", "changed: mode", F, {"changed": ["content", "mode"]},
     True),
    ("list field: not there", "changed: mode", F, {"changed": ["content"]}, False),
    ("list field: in any", "path_tags: {in: watched_tags}", F, {"path_tags": ["x", "accounts"]},
     True),
    ("list field: in none", "path_tags: {in: watched_tags}", F, {"path_tags": ["ssh"]}, False),
    ("list field: not_in", "path_tags: {not_in: watched_tags}", F, {"path_tags": ["ssh"]}, True),
    ("list field: not_in, one listed", "path_tags: {not_in: watched_tags}", F,
     {"path_tags": ["ssh", "accounts"]}, False),
    ("list field: len", "changed|len: {gte: 2}", F, {"changed": ["mode", "uid"]}, True),
    ("list field: empty list", "changed: mode", F, {"changed": []}, False),
    ("list field sent as one value", "changed: mode", F, {"changed": "mode"}, True),
    ("list field sent as one value is not split", "changed: m", F, {"changed": "mode"}, False),
    ("tcp flags SYN-ACK", "tcp_flags: SA", C, {"tcp_flags": "SA"}, True),
    ("tcp flags SYN only", "tcp_flags: SA", C, {"tcp_flags": "S"}, False),
    ("common field host", "host: tally-01", C, {}, True),
    ("rcode is text", "rcode: NXDOMAIN", D, {"rcode": "NXDOMAIN"}, True),
    ("file mode is octal text", "mode_after: '0777'", F, {"mode_after": "0777"}, True),
    ("mapping is all-of", "{proto: tcp, dst_port: 22}", C, {"proto": "tcp", "dst_port": 23},
     False),
    ("mapping is all-of, both", "{proto: tcp, dst_port: 22}", C,
     {"proto": "tcp", "dst_port": 22}, True),
    ("list is any-of", "[{dst_port: 22}, {proto: udp}]", C, {"proto": "udp", "dst_port": 9},
     True),
    ("list is any-of, none", "[{dst_port: 22}, {proto: udp}]", C,
     {"proto": "tcp", "dst_port": 9}, False),
    ("any_of", "any_of: [{dst_port: 22}, {dst_port: 23}]", C, {"dst_port": 23}, True),
    ("all_of", "all_of: [{dst_port: {gt: 20}}, {dst_port: {lt: 30}}]", C, {"dst_port": 31},
     False),
    ("not", "not: {src_ip: {cidr: admin_net}}", C, {"src_ip": "10.20.0.9"}, True),
    ("not, inside", "not: {src_ip: {cidr: admin_net}}", C, {"src_ip": "10.20.1.9"}, False),
    ("nested", "{proto: tcp, any_of: [{dst_port: 22, not: {src_ip: {cidr: admin_net}}},"
     " {dst_port: 5432, src_ip: {not_in: [10.20.0.11]}}]}", C,
     {"proto": "tcp", "dst_port": 5432, "src_ip": "10.20.0.12"}, True),
    ("nested, allowed", "{proto: tcp, any_of: [{dst_port: 22, not: {src_ip: {cidr: admin_net}}},"
     " {dst_port: 5432, src_ip: {not_in: [10.20.0.11]}}]}", C,
     {"proto": "tcp", "dst_port": 22, "src_ip": "10.20.1.2"}, False),
]


@pytest.mark.parametrize(("match", "kind", "fields", "expected"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_operator(tmp_path: Path, match: str, kind: str, fields: dict[str, Any],
                  expected: bool) -> None:
    """The named operator or combination decides as its row says."""
    rules = load(tmp_path, rule(match, kind), lists=LISTS)
    event = Event(kind, 0.0, "tally-01", SOURCES[kind], fields)
    alerts = Engine(rules, host="tally-01").process(event)
    assert bool(alerts) is expected


def test_other_kind_never_matches(tmp_path: Path) -> None:
    """A rule for net.connection ignores a DNS event even when the fields would fit."""
    rules = load(tmp_path, rule("src_ip: 10.0.0.1"), lists=LISTS)
    event = Event("net.dns", 0.0, "h", "network", {"src_ip": "10.0.0.1"})
    assert Engine(rules).process(event) == []


def test_kind_pattern_and_list(tmp_path: Path) -> None:
    """kind: takes a pattern (fim.*) or a list of kinds."""
    text = rule("path: /etc/passwd", kind="fim.*").replace("id: r", "id: a") + \
        rule("src_ip: 10.0.0.1", kind="[net.connection, net.flow]", rid="b").replace("rules:\n",
                                                                                  "")
    rules = load(tmp_path, text)
    eng = Engine(rules)
    for kind in ("fim.created", "fim.deleted", "fim.attrib"):
        assert [a.rule for a in eng.process(Event(kind, 0, "h", "fim",
                                                   {"path": "/etc/passwd"}))] == ["a"]
    for kind in ("net.connection", "net.flow"):
        assert [a.rule for a in eng.process(Event(kind, 0, "h", "network",
                                                   {"src_ip": "10.0.0.1"}))] == ["b"]
