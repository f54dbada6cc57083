"""Property: the compiled, indexed engine decides exactly as a naive interpreter of the YAML.

Random rules (nested all-of / any-of / not over every operator, inline and named
lists) and random events (fields present or missing) go through the real loader,
compiler, index and engine; a small independent interpreter in this file reads the
same rules as plain data and must agree on which rules match each event.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sentinel.engine import Engine, check_examples, load_rule_files
from sentinel.events import Event

LISTS: dict[str, tuple[Any, ...]] = {
    "svc": (22, 443),
    "nets": ("10.20.0.0/24", "2001:db8::1"),
    "names": ("tcp", "/etc/passwd", "tally-config"),
    "domains": ("kpu.go.id",),
}
IPS = ["10.20.0.10", "10.20.0.11", "10.20.1.5", "2001:db8::1", "203.0.113.50"]
NETS = ["10.20.0.0/24", "10.20.0.0/16", "2001:db8::/32", "0.0.0.0/0", "203.0.113.50"]
PORTS = [22, 443, 5432, 8080]
TEXT = {
    "proto": ["tcp", "udp"],
    "tcp_flags": ["S", "SA", "FA"],
    "direction": ["inbound", "outbound"],
    "path": ["/etc/passwd", "/etc/tally/a.conf", "/opt/tally/bin/t"],
    "qname": ["kpu.go.id", "x.kpu.go.id", "evilkpu.go.id", "a.b.evil.com"],
}
LISTY = {"path_tags": ["tally-config", "accounts", "ssh"], "changed": ["content", "mode"]}
KINDS = {
    "net.connection": {"src_ip": "ip", "dst_ip": "ip", "dst_port": "int", "src_port": "int",
                       "proto": "str", "tcp_flags": "str", "direction": "str",
                       "src_internal": "bool"},
    "fim.modified": {"path": "str", "path_tags": "list", "changed": "list", "offline": "bool",
                     "uid_after": "int"},
    "net.dns": {"qname": "str", "src_ip": "ip", "is_response": "bool"},
}
REGEXES = ["^10\\.", "db8", "^[a-z]+$", "conf$", "\\.go\\.id$"]
GLOBS = ["10.20.*", "*.conf", "/etc/*", "*kpu.go.id"]


def values(field: str, typ: str) -> st.SearchStrategy[Any]:
    if typ == "ip":
        return st.sampled_from(IPS)
    if typ == "int":
        return st.sampled_from(PORTS)
    if typ == "bool":
        return st.booleans()
    if typ == "list":
        return st.sampled_from(LISTY[field])
    return st.sampled_from(TEXT[field])


def field_test(field: str, typ: str) -> st.SearchStrategy[Any]:
    v = values(field, typ)
    opts: list[st.SearchStrategy[Any]] = [
        v,
        st.lists(v, min_size=1, max_size=3),
        st.builds(lambda x: {"equals": x}, v),
        st.builds(lambda x: {"not_equals": x}, v),
        st.builds(lambda x: {"in": x}, st.lists(v, min_size=1, max_size=3)),
        st.builds(lambda x: {"not_in": x}, st.lists(v, min_size=1, max_size=3)),
        st.builds(lambda b: {"exists": b}, st.booleans()),
    ]
    if typ == "int":
        opts += [st.builds(lambda o, n: {o: n}, st.sampled_from(["gt", "gte", "lt", "lte"]),
                           st.sampled_from([0, 22, 443, 5000])),
                 st.sampled_from([{"in": "svc"}, {"not_in": "svc"}, "$svc"])]
    if typ == "ip":
        opts += [st.builds(lambda o, n: {o: n}, st.sampled_from(["cidr", "not_cidr"]),
                           st.one_of(st.sampled_from(NETS),
                                     st.lists(st.sampled_from(NETS), min_size=1, max_size=2))),
                 st.sampled_from([{"in": "nets"}, {"cidr": "nets"}, {"not_cidr": "nets"}])]
    if typ in ("str", "list"):
        opts += [st.builds(lambda o, s: {o: s},
                           st.sampled_from(["startswith", "endswith", "contains"]),
                           st.sampled_from(["/etc", "conf", "t", "tally", "kpu.go.id", "S"])),
                 st.builds(lambda r: {"regex": r}, st.sampled_from(REGEXES)),
                 st.builds(lambda g: {"glob": g}, st.sampled_from(GLOBS)),
                 st.sampled_from([{"in": "names"}, {"not_in": "names"}, "$names",
                                  {"domain_in": "domains"}, {"not_domain_in": ["kpu.go.id"]}])]
    return st.one_of(opts)


def condition(kind: str) -> st.SearchStrategy[Any]:
    fields = KINDS[kind]

    def mapping(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        entry = st.one_of(
            st.sampled_from(sorted(fields)).flatmap(
                lambda f: st.tuples(st.just(f), field_test(f, fields[f]))),
            st.tuples(st.just("not"), children),
            st.tuples(st.sampled_from(["all_of", "any_of"]),
                      st.lists(children, min_size=1, max_size=3)),
        )
        return st.lists(entry, min_size=1, max_size=3, unique_by=lambda e: e[0]).map(dict)

    leaf = st.sampled_from(sorted(fields)).flatmap(
        lambda f: field_test(f, fields[f]).map(lambda t: {f: t}))
    return st.recursive(leaf, lambda ch: st.one_of(
        mapping(ch), st.lists(ch, min_size=1, max_size=3)), max_leaves=8)


def rule_strategy() -> st.SearchStrategy[tuple[str, Any]]:
    return st.sampled_from(sorted(KINDS)).flatmap(
        lambda k: st.tuples(st.just(k), condition(k)))


def event_strategy() -> st.SearchStrategy[tuple[str, dict[str, Any]]]:
    def fields(kind: str) -> st.SearchStrategy[dict[str, Any]]:
        spec = KINDS[kind]
        parts = {}
        for f, typ in spec.items():
            v: st.SearchStrategy[Any] = (
                st.lists(values(f, typ), max_size=3, unique=True) if typ == "list"
                else values(f, typ))
            parts[f] = st.one_of(st.none(), v)
        return st.fixed_dictionaries(parts).map(
            lambda d: {k: v for k, v in d.items() if v is not None})
    return st.sampled_from(sorted(KINDS)).flatmap(lambda k: st.tuples(st.just(k), fields(k)))


# -- the naive interpreter ---------------------------------------------------


def n_cond(cond: Any, ev: dict[str, Any], kind: str) -> bool:
    if isinstance(cond, list):
        return any(n_cond(c, ev, kind) for c in cond)
    return all(n_entry(k, v, ev, kind) for k, v in cond.items())


def n_entry(key: str, arg: Any, ev: dict[str, Any], kind: str) -> bool:
    if key == "not":
        return not n_cond(arg, ev, kind)
    if key == "all_of":
        return all(n_cond(c, ev, kind) for c in arg)
    if key == "any_of":
        return any(n_cond(c, ev, kind) for c in arg)
    typ = KINDS[kind][key]
    value = ev.get(key)
    if isinstance(arg, dict):
        return all(n_op(value, op, a, typ) for op, a in arg.items())
    if isinstance(arg, str) and arg.startswith("$"):
        return n_op(value, "in", arg[1:], typ)
    if isinstance(arg, list):
        return n_op(value, "in", arg, typ)
    return n_op(value, "equals", arg, typ)


def n_items(a: Any) -> list[Any]:
    if isinstance(a, str) and a in LISTS:
        return list(LISTS[a])
    return a if isinstance(a, list) else [a]


def n_op(value: Any, op: str, a: Any, typ: str) -> bool:
    if op == "exists":
        return (value is not None) == a
    if op.startswith("not_"):
        return not n_op(value, op[4:], a, typ)
    if value is None:
        return False
    if typ == "list":
        return any(n_op(x, op, a, "str") for x in value)
    if op in ("equals", "in"):
        return any(n_eq(value, x, typ) for x in n_items(a))
    if op == "cidr":
        addr = ipaddress.ip_address(value)
        return any(addr in ipaddress.ip_network(n, strict=False) for n in n_items(a))
    if op == "domain_in":
        return any(value == d or value.endswith("." + d) for d in n_items(a))
    if op in ("gt", "gte", "lt", "lte"):
        return {"gt": value > a, "gte": value >= a, "lt": value < a, "lte": value <= a}[op]
    text = str(value)
    if op == "startswith":
        return text.startswith(a)
    if op == "endswith":
        return text.endswith(a)
    if op == "contains":
        return a in text
    if op == "regex":
        return re.search(a, text) is not None
    if op == "glob":
        return fnmatch.fnmatchcase(text, a)
    raise AssertionError(op)


def n_eq(value: Any, item: Any, typ: str) -> bool:
    if typ == "ip":
        try:
            net = ipaddress.ip_network(item, strict=False)
        except ValueError:
            return False
        return ipaddress.ip_address(value) in net
    if typ == "int":
        return not isinstance(item, bool) and isinstance(item, int) and value == item
    if typ == "bool":
        return isinstance(item, bool) and value is item
    return isinstance(item, str) and value == item


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(rules=st.lists(rule_strategy(), min_size=1, max_size=6),
       events=st.lists(event_strategy(), min_size=1, max_size=6))
def test_compiled_engine_agrees_with_naive_interpreter(
    rules: list[tuple[str, Any]], events: list[tuple[str, dict[str, Any]]]
) -> None:
    doc = {"rules": [{"id": f"r{i}", "title": "t", "severity": "low", "kind": kind,
                      "match": cond} for i, (kind, cond) in enumerate(rules)]}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rules.yaml"
        path.write_text(yaml.safe_dump(doc), encoding="utf-8")
        rs = load_rule_files([path], LISTS)
    eng = Engine(rs, host="h")
    for kind, fields in events:
        got = [a.rule for a in eng.process(Event(kind, 0.0, "h", "network", dict(fields)))]
        want = [f"r{i}" for i, (k, cond) in enumerate(rules)
                if k == kind and n_cond(cond, fields, kind)]
        assert got == want, (kind, fields)


# -- any input: a RuleSet or a ProblemError, never a crash -------------------------

WORDS = ["id", "title", "severity", "kind", "match", "threshold", "change", "schedule",
         "severity_during", "suppress", "examples", "tags", "enabled", "at_least", "window",
         "group_by", "distinct", "sum", "key", "value", "period", "during", "outside",
         "no_match", "events", "repeat", "event", "every", "dst_port", "src_ip", "qname",
         "path_tags", "changed", "qname|len", "dst_ip+dst_port", "in", "not_in", "cidr",
         "regex", "glob", "gt", "exists", "not", "any_of", "all_of", "domain_in", "counting",
         "net.connection", "net.dns", "fim.*", "svc", "$svc", "high", "1m", "{src_ip}", "{i}"]
SCALARS = st.one_of(st.sampled_from(WORDS), st.integers(-3, 70000), st.booleans(), st.none(),
                    st.text(max_size=6), st.sampled_from(["10.0.0.0/8", "[", "(?P<", "0777"]))
TREES = st.recursive(SCALARS, lambda ch: st.one_of(
    st.lists(ch, max_size=4), st.dictionaries(st.sampled_from(WORDS), ch, max_size=5)),
    max_leaves=25)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.dictionaries(st.sampled_from(WORDS), TREES, max_size=8))
def test_loader_reports_problems_and_never_crashes(body: dict[str, Any]) -> None:
    from sentinel.engine import ProblemError
    from sentinel.events import COMMON_FIELDS

    doc = {"rules": [{"id": "x", "title": "t", "severity": "low", "kind": "net.connection",
                      **body}]}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rules.yaml"
        path.write_text(yaml.safe_dump(doc), encoding="utf-8")
        try:
            rs = load_rule_files([path], LISTS)
        except ProblemError as exc:
            assert exc.problems
            assert all(p.mark.line >= 1 and p.mark.col >= 1 for p in exc.problems)
            return
    check_examples(rs)
    eng = Engine(rs, host="h")
    fields = {f: "10.0.0.1" for f in COMMON_FIELDS if f not in ("kind", "time")}
    eng.process(Event("net.connection", 0.0, "h", "network", {"src_ip": "10.0.0.1", **fields}))
    eng.advance(10_000)


# -- the indexed engine raises exactly the alerts of the plain loop ----------------

STATEFUL = [
    {},
    {"threshold": {"at_least": 2, "window": "10s", "group_by": "src_ip"}},
    {"threshold": {"at_least": 2, "window": "5s", "distinct": "dst_port"}},
    {"change": {"key": "src_ip", "value": "dst_port"}},
    {"suppress": {"key": "src_ip", "period": "5s"}},
    {"threshold": {"at_least": 2, "window": "10s"}, "suppress": {"period": "20s"}},
]
SITE_LISTS: dict[str, tuple[Any, ...]] = {
    **LISTS,
    "server_0": ("10.20.0.10",), "server_1": ("10.77.1.10",), "server_2": ("10.20.0.11",),
    "outbound": ("203.0.113.50:443", "10.20.0.11:22"),
    "macs": ("02:00:00:00:00:01", "02:00:00:00:00:10"),
}
CONN_TESTS = [
    {"dst_ip": {"in": "server_{k}"}}, {"src_ip": {"in": "server_{k}"}},
    {"dst_ip+dst_port": {"in": "outbound"}}, {"dst_ip+dst_port": {"not_in": "outbound"}},
    {"dst_port": [22, 443]}, {"proto": "udp"}, {"src_ip": {"cidr": "10.20.0.0/16"}},
    {"src_ip|lower": {"in": ["10.20.0.11"]}}, {"any_of": [{"dst_port": 22}, {"proto": "udp"}]},
]
DNS_TESTS = [
    {"qname": {"domain_in": "domains"}}, {"qname": {"not_domain_in": "domains"}},
    {"qname|parent": {"domain_in": ["go.id"]}}, {"src_ip": {"in": "server_{k}"}},
    {"is_response": False},
]
ARP_TESTS = [{"sender_mac": {"in": "macs"}}, {"sender_ip": {"in": "server_{k}"}},
             {"sender_mac": {"not_in": "macs"}}, {"op": "request"}]
SHAPES = {"net.connection": CONN_TESTS, "net.dns": DNS_TESTS, "net.arp": ARP_TESTS}


@st.composite
def site_rules(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Rules of the pack's shape, some copied per server (ids and list names differ)."""
    out: list[dict[str, Any]] = []
    for i in range(draw(st.integers(1, 5))):
        kind = draw(st.sampled_from(sorted(SHAPES)))
        tests = draw(st.lists(st.sampled_from(SHAPES[kind]), min_size=1, max_size=3))
        extra = dict(draw(st.sampled_from(STATEFUL))) if kind == "net.connection" else {}
        for k in range(draw(st.integers(1, 3))):  # copies, as a site writes one per server
            match: dict[str, Any] = {}
            for t in tests:
                match.update(yaml.safe_load(yaml.safe_dump(t).replace("{k}", str(k))))
            out.append({"id": f"r{i}-{k}", "title": "t {kind}", "severity": "low",
                        "kind": kind, "match": match, **extra})
    return out


@st.composite
def site_events(draw: st.DrawFn) -> list[Event]:
    ips = ["10.20.0.10", "10.77.1.10", "10.20.0.11", "203.0.113.50", "10.20.5.7"]
    out = []
    t = 0.0
    for _ in range(draw(st.integers(1, 12))):
        t += draw(st.sampled_from([0.0, 0.5, 3.0, 11.0]))
        kind = draw(st.sampled_from(sorted(SHAPES)))
        if kind == "net.connection":
            fields: dict[str, Any] = {
                "proto": draw(st.sampled_from(["tcp", "udp"])),
                "src_ip": draw(st.sampled_from(ips)), "dst_ip": draw(st.sampled_from(ips)),
                "dst_port": draw(st.sampled_from([22, 443, 5432])), "src_port": 40000}
        elif kind == "net.dns":
            fields = {"src_ip": draw(st.sampled_from(ips)), "is_response": draw(st.booleans()),
                      "qname": draw(st.sampled_from(TEXT["qname"] + ["KPU.GO.ID.", "go.id"]))}
        else:
            fields = {"op": draw(st.sampled_from(["request", "reply"])),
                      "sender_ip": draw(st.sampled_from(ips)),
                      "sender_mac": draw(st.sampled_from(["02:00:00:00:00:01",
                                                          "02:00:00:00:00:66"]))}
        out.append(Event(kind, t, "h", "network", fields))
    return out


def _shape(a: Any) -> tuple[Any, ...]:
    extra = {k: v for k, v in a.extra.items() if k != "first_alert"}
    return (a.rule, a.title, a.severity, a.count, a.time, repr(sorted(extra.items())))


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(rules=site_rules(), events=site_events())
def test_indexed_engine_raises_exactly_the_alerts_of_the_plain_loop(
    rules: list[dict[str, Any]], events: list[Event]
) -> None:
    """Index, grouping of alike rules and shared state change nothing an alert says."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rules.yaml"
        path.write_text(yaml.safe_dump({"rules": rules}), encoding="utf-8")
        rs = load_rule_files([path], SITE_LISTS)
    fast, plain = Engine(rs, host="h"), Engine(rs, host="h", indexed=False)
    for e in events:
        got = [_shape(a) for a in fast.process(e)]
        want = [_shape(a) for a in plain.process(e)]
        assert got == want, (e.kind, e.fields)
        assert [_shape(a) for a in fast.advance(e.time)] == [
            _shape(a) for a in plain.advance(e.time)]
    assert [_shape(a) for a in fast.flush(1e6)] == [_shape(a) for a in plain.flush(1e6)]
