"""Loading: folders, named lists across files and config, digest, examples."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from enginekit import conn, fired, load, write

from sentinel.config_reader import load_config
from sentinel.engine import Engine, ProblemError, check_examples, load_rule_files, load_rules

RULE = """
rules:
  - id: {rid}
    title: t
    severity: low
    kind: net.connection
    match: {{dst_port: {{in: {lst}}}}}
"""


def test_folder_loads_yaml_and_yml_sorted_and_skips_others(tmp_path: Path) -> None:
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    write(rules_dir, RULE.format(rid="b", lst="[2]"), "b.yml")
    write(rules_dir, RULE.format(rid="a", lst="[1]"), "a.yaml")
    write(rules_dir, "not: yaml rules", "README.md")
    (rules_dir / ".keep").write_text("")
    cfg = write(tmp_path, "host: {name: h, addresses: [10.0.0.1]}\nstate_dir: st\n"
                "rules: {paths: [rules/]}\n", "config.yaml")
    rs = load_rules(load_config(cfg))
    assert [r.id for r in rs] == ["a", "b"]
    assert rs.files == (rules_dir / "a.yaml", rules_dir / "b.yml")
    assert len(rs) == 2


def test_empty_rules_folder_is_fine(tmp_path: Path) -> None:
    (tmp_path / "rules").mkdir()
    cfg = write(tmp_path, "host: {name: h, addresses: [10.0.0.1]}\nrules: {paths: [rules]}\n",
                "config.yaml")
    rs = load_rules(load_config(cfg))
    assert (len(rs), rs.files) == (0, ())
    assert Engine(rs).process(conn(0)) == []


def test_lists_come_from_config_and_any_rule_file(tmp_path: Path) -> None:
    """A rule may use a list defined in a later file, or in the config."""
    first = write(tmp_path, RULE.format(rid="uses-later", lst="ports_b")
                  + RULE.format(rid="uses-config", lst="ports_c").replace("rules:\n", ""),
                  "1.yaml")
    second = write(tmp_path, "lists:\n  ports_b: [2222]\n", "2.yaml")
    rs = load_rule_files([first, second], {"ports_c": (8080,)})
    eng = Engine(rs)
    assert fired(eng, conn(0, dst_port=2222), conn(0, dst_port=8080)) == [
        "uses-later", "uses-config"]


def test_digest_is_sha256_over_the_files(tmp_path: Path) -> None:
    a = write(tmp_path, RULE.format(rid="a", lst="[1]"), "a.yaml")
    d1 = load_rule_files([a]).digest()
    assert len(d1) == 64 and d1 == load_rule_files([a]).digest()
    a.write_text(a.read_text() + "# a comment changes the bytes\n")
    assert load_rule_files([a]).digest() != d1
    int(d1, 16)
    assert d1 != hashlib.sha256(b"").hexdigest()


def test_disabled_rule_is_checked_but_not_loaded(tmp_path: Path) -> None:
    text = RULE.format(rid="retired", lst="[1]") + "    enabled: false\n"
    assert len(load(tmp_path, text)) == 0
    with pytest.raises(ProblemError):
        load(tmp_path, text.replace("dst_port", "dst_prt"))


EXAMPLES = """
rules:
  - id: db
    title: t
    severity: critical
    kind: net.connection
    match: {dst_port: 5432, src_ip: {not_in: [10.20.0.11]}}
    examples:
      match:
        - {kind: net.connection, src_ip: 10.20.0.99, dst_port: 5432}
        - {kind: net.connection, src_ip: 10.20.0.11, dst_port: 5432}
      no_match:
        - {kind: net.connection, src_ip: 10.20.0.11, dst_port: 5432}
        - {kind: net.connection, src_ip: 10.20.0.99, dst_port: 5432}
  - id: scan
    title: t
    severity: medium
    kind: net.connection
    match: {src_internal: false}
    threshold: {at_least: 4, distinct: dst_port, window: 10s, group_by: src_ip}
    examples:
      match:
        - {repeat: 4, event: {kind: net.connection, src_internal: false, src_ip: 1.2.3.4,
                              dst_port: "{i}"}}
        - {events: [{kind: net.connection, src_internal: false, src_ip: 1.2.3.4, dst_port: 1},
                    {kind: net.connection, src_internal: false, src_ip: 1.2.3.4, dst_port: 2},
                    {kind: net.connection, src_internal: false, src_ip: 1.2.3.4, dst_port: 3},
                    {kind: net.connection, src_internal: false, src_ip: 1.2.3.4, dst_port: 4}]}
      no_match:
        - {repeat: 4, every: 5s, event: {kind: net.connection, src_internal: false,
                                         src_ip: 1.2.3.4, dst_port: "{i}"}}
"""


def test_examples_disagreeing_are_problems_at_the_example(tmp_path: Path) -> None:
    rs = load(tmp_path, EXAMPLES)
    assert rs.example_count() == 7
    problems = check_examples(rs)
    got = [(p.mark.line, p.mark.col, p.rule_id, p.message) for p in problems]
    assert got == [
        (10, 11, "db", "examples.match[1]: the event should raise an alert but did not (check"
         " the kind, every field test, the schedule and any threshold; examples run against"
         " the config's lists: its folder has no example site)"),
        (13, 11, "db", "examples.no_match[1]: the event should not raise an alert but did: t"
         " (examples run against the config's lists: its folder has no example site)"),
    ]


def test_example_engines_are_isolated(tmp_path: Path) -> None:
    """Each example starts with empty state: the threshold examples do not add up."""
    rs = load(tmp_path, EXAMPLES)
    assert [p.rule_id for p in check_examples(rs)] == ["db", "db"]
