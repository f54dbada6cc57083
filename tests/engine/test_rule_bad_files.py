"""Bad rule files: each is reported at its exact FILE:LINE:COL with what is valid."""

from __future__ import annotations

from pathlib import Path

import pytest
from enginekit import windows

from sentinel.engine import load_rule_files
from sentinel.engine.fields import fields_of
from sentinel.events import KIND_FIELDS
from sentinel.located import Mark, ProblemError

KINDS = ", ".join(KIND_FIELDS)
CONN_FIELDS = ", ".join(sorted(fields_of(["net.connection"])))
LISTS = {"admin_net": ("10.20.1.0/28",)}
HEAD = "rules:\n  - id: r\n    title: t\n    severity: high\n    kind: net.connection\n"
SCHEDULES = {"counting": windows(("2024-02-14T13:00:00+07:00", "2024-02-15T23:59:00+07:00"))}

# (name, file text, the one problem expected; F is the file's path)
BAD: list[tuple[str, str, str]] = [
    ('yaml syntax',
     'rules:\n  - id: r\n    title: [unclosed\n',
     "F:4:1: YAML syntax error: expected ',' or ']', but got '<stream end>' (while parsing "
     'a flow sequence)'),
    ('top not mapping',
     '- id: r\n',
     'F:1:1: a rule file must be a mapping, got a list'),
    ('unknown top key',
     'rulez: []\n',
     "F:1:1: unknown key 'rulez' in a rule file; valid keys: lists, rules, example_site,"
     " examples_against"),
    ('unknown rule key',
     HEAD + '    match: {dst_port: 22}\n    severty: high\n',
     "F:7:5: rule 'r': unknown key 'severty' in a rule; valid keys: id, title, description, "
     'severity, tags, kind, match, threshold, change, schedule, severity_during, suppress, '
     'examples, enabled, i18n, incident'),
    ('missing match',
     HEAD,
     "F:2:5: rule 'r': a rule is missing required key 'match'"),
    ('bad severity',
     'rules:\n  - id: r\n    title: t\n    severity: urgent\n    kind: net.connection\n'
     '    match: {dst_port: 22}\n',
     "F:4:15: rule 'r': severity is 'urgent'; valid: critical, high, medium, low, info"),
    ('unknown kind',
     'rules:\n  - id: r\n    title: t\n    severity: high\n    kind: net.conection\n'
     '    match: {dst_port: 22}\n',
     "F:5:11: rule 'r': unknown event kind 'net.conection'; valid: {KINDS} (or a pattern "
     'such as fim.*)'),
    ('unknown field',
     HEAD + '    match:\n      dst_prot: 22\n',
     "F:7:7: rule 'r': unknown field 'dst_prot' for net.connection; valid: {CONN_FIELDS} "
     "(did you mean 'dst_port'?)"),
    ('field of other kind',
     HEAD + '    match:\n      qname: x\n',
     "F:7:7: rule 'r': unknown field 'qname' for net.connection; valid: {CONN_FIELDS}"),
    ('unknown operator',
     HEAD + '    match:\n      src_ip: {cidrr: 10.0.0.0/8}\n',
     "F:7:16: rule 'r': unknown operator 'cidrr' (did you mean 'cidr'?); valid: equals, "
     'not_equals, in, not_in, cidr, not_cidr, domain_in, not_domain_in, glob, regex, '
     'startswith, endswith, contains, gt, gte, lt, lte, exists'),
    ('unknown list',
     HEAD + '    match:\n      src_ip: {in: admin_nett}\n',
     "F:7:20: rule 'r': src_ip: in: unknown list 'admin_nett' (did you mean 'admin_net'?): "
     "define it under `lists:` (what each list of the pack holds: rules/README.md, 'The"
     " election rule pack'); valid lists: admin_net"),
    ('bad regex',
     HEAD + "    match:\n      iface: {regex: 'eth[0-'}\n",
     "F:7:22: rule 'r': iface: regex: bad regular expression 'eth[0-': unterminated "
     'character set at position 3'),
    ('bad cidr',
     HEAD + '    match:\n      src_ip: {cidr: [10.0.0.0/8, 10.300.0.0/16]}\n',
     "F:7:35: rule 'r': src_ip: cidr: '10.300.0.0/16' is not an address or network; valid: "
     'an address or a network, e.g. 10.20.0.10, 10.20.0.0/24, 2001:db8::/48'),
    ('bad window',
     HEAD + '    match: {dst_port: 22}\n    threshold: {at_least: 5, window: 5 minutes}\n',
     "F:7:38: rule 'r': threshold.window: bad duration '5 minutes'; valid: a number with a "
     'unit ms, s, m, h, d (e.g. 30s, 5m, 1h, 1h30m)'),
    ('number on text field',
     HEAD + '    match:\n      proto: 6\n',
     "F:7:14: rule 'r': proto is text, but YAML read an integer (6) here; quote the value as"
     ' written, e.g. "0644"'),
    ('octal mode read as a number',
     'rules:\n  - id: r\n    title: t\n    severity: high\n    kind: fim.attrib\n'
     '    match:\n      mode_after: 0777\n',
     "F:7:19: rule 'r': mode_after is text, but YAML read an integer (511) here; quote the"
     ' value as written, e.g. "0644"'),
    ('rcode is text',
     'rules:\n  - id: r\n    title: t\n    severity: high\n    kind: net.dns\n'
     '    match:\n      rcode: [3, NXDOMAIN]\n',
     "F:7:15: rule 'r': rcode is text, but YAML read an integer (3) here; quote the value as"
     ' written, e.g. "0644"'),
    ('text on number field',
     HEAD + '    match:\n      dst_port: ssh\n',
     "F:7:17: rule 'r': dst_port holds numbers; 'ssh' is not one"),
    ('gt on text',
     HEAD + '    match:\n      proto: {gt: 3}\n',
     "F:7:19: rule 'r': proto: gt compares numbers; proto is text; to compare its length "
     'use proto|len'),
    ('cidr on non-address',
     HEAD + '    match:\n      proto: {cidr: 10.0.0.0/8}\n',
     "F:7:21: rule 'r': proto: cidr needs an address field (src_ip, dst_ip, sender_ip, "
     'target_ip); proto is text'),
    ('unknown schedule',
     HEAD + '    match: {dst_port: 22}\n    schedule: {during: countng}\n',
     "F:7:24: rule 'r': schedule.during: unknown schedule 'countng'; valid: counting"),
    ('duplicate id',
     HEAD + '    match: {dst_port: 22}\n  - id: r\n    title: t\n    severity: low\n'
            '    kind: net.dns\n    match: {qname: x}\n',
     "F:7:9: rule 'r': duplicate rule id 'r'; first defined at F:2:9"),
    ('duplicate key',
     HEAD + '    match: {dst_port: 22}\n    title: again\n',
     "F:7:5: duplicate key 'title' (first at line 3)"),
    ('empty match',
     HEAD + '    match: {}\n',
     "F:6:12: rule 'r': match: an empty mapping; give at least one field test"),
    ('unknown transform',
     'rules:\n  - id: r\n    title: t\n    severity: high\n    kind: net.dns\n    match:\n'
     '      qname|parnet: x\n',
     "F:7:7: rule 'r': unknown transform 'parnet' in 'qname|parnet'; valid: lower, len, "
     'labels, longest_label, parent, registered, entropy'),
    ('placeholder unknown',
     "rules:\n  - id: r\n    title: 'from {src_ipp}'\n    severity: high\n"
     '    kind: net.connection\n    match: {dst_port: 22}\n',
     "F:3:12: rule 'r': title: placeholder {src_ipp}: unknown field 'src_ipp' for "
     'net.connection; valid: {CONN_FIELDS}'),
    ('threshold missing at_least',
     HEAD + '    match: {dst_port: 22}\n    threshold: {window: 1m}\n',
     "F:7:16: rule 'r': threshold is missing required key 'at_least'"),
    ('threshold and change',
     HEAD + '    match: {dst_port: 22}\n    threshold: {at_least: 2, window: 1m}\n'
            '    change: {key: src_ip, value: src_port}\n',
     "F:8:13: rule 'r': a rule has a threshold or a change, not both"),
    ('bad example field',
     HEAD + '    match: {dst_port: 22}\n    examples:\n      match:\n'
            '        - {kind: net.connection, dst_prt: 22}\n',
     "F:9:34: rule 'r': examples.match[0]: net.connection has no field 'dst_prt'; valid: "
     '{CONN_FIELDS}'),
    ('example bad type',
     HEAD + '    match: {dst_port: 22}\n    examples:\n      match:\n'
            "        - {kind: net.connection, dst_port: '22'}\n",
     "F:9:44: rule 'r': examples.match[0].dst_port: must be a whole number, got a string"),
    ('exists non bool',
     HEAD + '    match:\n      tcp_flags: {exists: yes please}\n',
     "F:7:27: rule 'r': tcp_flags: exists must be true or false, got a string"),
    ('bad id',
     "rules:\n  - id: 'bad id!'\n    title: t\n    severity: high\n"
     '    kind: net.connection\n    match: {dst_port: 22}\n',
     "F:2:9: rule 'bad id!': id 'bad id!' must start with a letter or digit and use "
     "letters, digits, '_', '-', '.'"),
    ('list item mapping',
     'lists:\n  ports: [22, {a: 1}]\n',
     'F:2:15: lists.ports: items are single values (addresses, networks, ports, names, '
     '"ip:port"), got a mapping'),
    ('list redefined',
     'lists:\n  admin_net: [10.0.0.0/8]\n',
     "F:2:3: list 'admin_net' is already defined at config.yaml:9:3; list names are shared "
     'by the config and every rule file'),
    ('named list without fitting items',
     HEAD + '    match:\n      dst_port: {in: admin_net}\n',
     "config.yaml:9:3: rule 'r': lists.admin_net[0]: '10.20.1.0/28' is not a whole number;"
     " the list is used as dst_port: in, which takes a port number 0-65535, e.g. 443"),
    ('suppress bad period',
     HEAD + '    match: {dst_port: 22}\n    suppress: {key: src_ip, period: -5m}\n',
     "F:7:37: rule 'r': suppress.period: bad duration '-5m'; valid: a number with a unit "
     'ms, s, m, h, d (e.g. 30s, 5m, 1h, 1h30m)'),
    ('domain_in on number',
     HEAD + '    match:\n      dst_port: {domain_in: [kpu.go.id]}\n',
     "F:7:29: rule 'r': dst_port: domain_in needs a text field such as qname; dst_port is a "
     'number'),
    ('severity_during bad',
     HEAD + '    match: {dst_port: 22}\n    severity_during: {counting: severe}\n',
     "F:7:33: rule 'r': severity_during.counting is 'severe'; valid: critical, high, "
     'medium, low, info'),
    ('not takes condition',
     HEAD + '    match:\n      not: 5\n',
     "F:7:12: rule 'r': match.not must be a mapping of field to value (all must hold) or a "
     'list of such mappings (any must hold), got an integer'),
    ('any_of needs list',
     HEAD + '    match:\n      any_of: {dst_port: 22}\n',
     "F:7:15: rule 'r': any_of takes a list of conditions, got a mapping"),
    ('no value',
     HEAD + '    match:\n      dst_port:\n',
     "F:7:16: rule 'r': no value for field 'dst_port'; to test that it is present write "
     '{exists: true}'),
    ('sum of text',
     'rules:\n  - id: r\n    title: t\n    severity: high\n    kind: net.flow\n'
     '    match: {final: true}\n    threshold: {at_least: 10, sum: proto, window: 1m}\n',
     "F:7:36: rule 'r': threshold.sum adds up numbers; proto is text"),
]


def problems_of(folder: Path, text: str) -> list[str]:
    path = folder / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ProblemError) as info:
        load_rule_files([path], LISTS, {"admin_net": Mark("config.yaml", 9, 3)}, SCHEDULES,
                        origin="config.yaml")
    return [str(p).replace(str(path), "F") for p in info.value.problems]


@pytest.mark.parametrize(("text", "expected"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_rule_file(tmp_path: Path, text: str, expected: str) -> None:
    """The file's one fault is reported at its exact position with the exact message."""
    want = expected.replace("{KINDS}", KINDS).replace("{CONN_FIELDS}", CONN_FIELDS)
    assert problems_of(tmp_path, text) == [want]


def test_table_is_large_enough() -> None:
    assert len(BAD) >= 25


def test_every_problem_of_every_file_is_reported_in_order(tmp_path: Path) -> None:
    """Faults of two files and several rules come together, sorted by file and position."""
    a = tmp_path / "a.yaml"
    b = tmp_path / "b.yaml"
    a.write_text("rules:\n  - id: one\n    title: t\n    severity: hgh\n    kind: net.dns\n"
                 "    match: {qnme: x}\n", encoding="utf-8")
    b.write_text("rules:\n  - id: two\n    title: t\n    severity: low\n    kind: net.arp\n"
                 "    match: {op: {equal: reply}}\n", encoding="utf-8")
    with pytest.raises(ProblemError) as info:
        load_rule_files([b, a])
    got = [(p.mark.file, p.mark.line, p.mark.col, p.rule_id) for p in info.value.problems]
    assert got == [(str(a), 4, 15, "one"), (str(a), 6, 13, "one"), (str(b), 6, 18, "two")]
