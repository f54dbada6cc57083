"""The election rule pack as a whole: it checks clean against config.example.yaml,
every rule proves itself with examples, file changes found offline are never
below high and say so, and rules/README.md documents every rule."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from scenariokit import EXAMPLE_CONFIG, sentinel

from sentinel.alert import SEVERITY_RANK
from sentinel.config_reader import load_config
from sentinel.engine import Engine, RuleSet, load_rules
from sentinel.events import Event
from tests.conftest import EXAMPLE_SECRETS, REPO


@pytest.fixture(scope="module")
def pack() -> RuleSet:
    with pytest.MonkeyPatch.context() as mp:
        for k, v in EXAMPLE_SECRETS.items():
            mp.setenv(k, v)
        return load_rules(load_config(EXAMPLE_CONFIG))


def test_sentinel_check_passes_on_the_example_config() -> None:
    done = sentinel("check", "-c", EXAMPLE_CONFIG)
    assert done.returncode == 0, done.stderr
    assert re.search(r"\b\d+ rules from \d+ files OK, \d+ examples passed", done.stdout
                     + done.stderr)


def test_every_rule_has_examples_both_ways(pack: RuleSet) -> None:
    lacking = [r.id for r in pack if {ex.expect for ex in r.examples} != {True, False}]
    assert lacking == []


def test_rules_are_tagged_for_routing(pack: RuleSet) -> None:
    """Network rules carry the tag the ministry's webhook takes; file rules carry 'fim'."""
    wrong = [r.id for r in pack
             if ("network" in r.tags) != all(k.startswith("net.") for k in r.kinds)
             or ("fim" in r.tags) != all(k.startswith("fim.") for k in r.kinds)]
    assert wrong == []


def test_any_file_change_found_offline_is_at_least_high_and_says_so(pack: RuleSet) -> None:
    """Detection 19 over the whole pack: every file-change example, replayed as found
    by a baseline comparison, raises alerts that are all high or critical and carry
    'found offline' in their titles."""
    kinds = {"fim.created", "fim.modified", "fim.deleted", "fim.moved", "fim.attrib"}
    tried = 0
    for rule in pack:
        for ex in rule.examples:
            for ev in ex.events:
                if ev.kind not in kinds:
                    continue
                offline = dataclasses.replace(ev, fields={**ev.fields, "offline": True})
                alerts = Engine(pack, host="t").process(offline)
                if ex.expect and ev is ex.events[-1]:
                    assert alerts, f"{rule.id}: {ex.label} raised nothing when found offline"
                for a in alerts:
                    assert SEVERITY_RANK[a.severity] >= SEVERITY_RANK["high"], (a.rule, a.title)
                    assert "found offline" in a.title, a.title
                tried += 1
    assert tried >= 30


def test_live_file_changes_do_not_claim_to_be_offline(pack: RuleSet) -> None:
    for rule in pack:
        for ex in rule.examples:
            for ev in ex.events:
                if not ev.kind.startswith("fim.") or ev.kind == "fim.baseline_invalid":
                    continue
                live = Event(ev.kind, ev.time, ev.host, ev.source, {**ev.fields,
                                                                      "offline": False})
                for a in Engine(pack, host="t").process(live):
                    assert "offline" not in a.title, a.title


def _readme_table() -> dict[str, dict[str, Any]]:
    text = (REPO / "rules" / "README.md").read_text(encoding="utf-8")
    start = text.index("## The election rule pack")
    rows: dict[str, dict[str, Any]] = {}
    for line in text[start:].splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        m = re.fullmatch(r"`([a-z0-9.-]+)`", cells[0]) if len(cells) >= 7 else None
        if m:
            rows[m.group(1)] = {"severity": cells[3], "cells": cells}
    return rows


def test_readme_table_documents_every_rule(pack: RuleSet) -> None:
    """rules/README.md has one row per rule: what, why, severity, ATT&CK, lists, tuning."""
    rows = _readme_table()
    assert sorted(rows) == sorted(r.id for r in pack)
    for r in pack:
        cells = rows[r.id]["cells"]
        assert r.severity in rows[r.id]["severity"], r.id
        assert re.search(r"T\d{4}", cells[4]), f"{r.id}: no ATT&CK technique"
        assert all(cells[i] for i in range(7)), f"{r.id}: an empty cell"


def _conditions(rule: dict[str, Any]) -> str:
    return yaml.safe_dump({k: v for k, v in rule.items()
                           if k in ("match", "threshold", "change", "suppress", "schedule")})


def test_rule_conditions_name_no_site_fact() -> None:
    """Addresses, ports of services, domains and paths of the reference site live in
    the config's lists and path tags, never in a rule's conditions."""
    site_facts = re.compile(r"10\.20\.|203\.0\.113|kpu\.go\.id|02:00:00|/opt/|/etc/|/var/|"
                            r"/root/|\b(22|443|5432|53|123)\b")
    found = []
    for path in sorted((REPO / "rules").glob("*.yaml")):
        for rule in yaml.safe_load(path.read_text()).get("rules", []):
            hit = site_facts.search(_conditions(rule))
            if hit:
                found.append((rule["id"], hit.group(0)))
    assert found == []


def test_another_site_changes_only_its_config(tmp_path: Path) -> None:
    """The same rule files serve a site with other addresses, ports and domains once
    its config's lists say so; the reference site's facts then mean nothing."""
    cfg = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    cfg["rules"]["paths"] = [str(REPO / "rules")]
    cfg["host"]["addresses"] = ["172.16.8.20"]
    cfg["network"]["home_nets"] = ["172.16.0.0/16"]
    cfg["outputs"] = {"metrics": {"enabled": False}}
    cfg["lists"].update({
        "tally_server": ["172.16.8.20"], "tally_mac": ["02:aa:00:00:00:20"],
        "gateway_ip": ["172.16.8.1"], "gateway_mac": ["02:aa:00:00:00:01"],
        "counting_net": ["172.16.8.0/24"], "admin_net": ["172.16.9.0/28"],
        "app_server": ["172.16.8.21"], "allowed_outbound": ["198.51.100.200:443"],
        "allowed_domains": ["pemilu.example"], "tally_db_ports": [5433],
        "tally_services": [22, 443, 5433],
    })
    path = tmp_path / "site-b.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with pytest.MonkeyPatch.context() as mp:
        for k, v in EXAMPLE_SECRETS.items():
            mp.setenv(k, v)
        rules = load_rules(load_config(path))

    def fired(kind: str, **fields: Any) -> set[str]:
        return {a.rule for a in Engine(rules, host="b").process(Event(kind, 0.0, "b", "x",
                                                                         fields))}

    db = {"proto": "tcp", "dst_ip": "172.16.8.20", "dst_port": 5433}
    assert fired("net.established", src_ip="172.16.8.99", **db) == \
        {"tally-db-unauthorized-access"}
    assert fired("net.established", src_ip="172.16.8.21", **db) == set()
    assert fired("net.established", src_ip="10.20.0.99", proto="tcp", dst_ip="10.20.0.10",
                 dst_port=5432) == set()
    out = {"proto": "tcp", "src_ip": "172.16.8.20", "dst_internal": False}
    assert fired("net.connection", dst_ip="198.51.100.200", dst_port=443, **out) == set()
    assert fired("net.connection", dst_ip="203.0.113.50", dst_port=443, **out) == \
        {"tally-outbound-unexpected-destination"}
    dns = {"src_ip": "172.16.8.20", "is_response": False, "qtype": "A"}
    assert fired("net.dns", qname="x.pemilu.example", **dns) == set()
    assert fired("net.dns", qname="kpu.go.id", **dns) == {"dns-query-outside-allowed-domains"}
    assert fired("net.arp", op="reply", sender_ip="172.16.8.1",
                 sender_mac="02:00:00:00:00:01") == {"arp-gateway-spoofed"}


def test_every_rule_has_an_attack_scenario(pack: RuleSet) -> None:
    """No rule ships without a capture or file-operation script that makes it fire."""
    from test_file_scenarios import EXPECTED
    from test_host_scenarios import HOST_SCENARIOS
    from test_network_scenarios import SCENARIOS

    live_only = {"file-permissions-changed", "fim-baseline-invalid",  # see test_file_scenarios
                 "sentinel-own-file-changed"}  # tests/selfwatch/test_self_files.py
    covered = ({s.rule for s in SCENARIOS.values()} | {e[1] for e in EXPECTED.values()}
               | HOST_SCENARIOS)
    assert sorted(r.id for r in pack if r.id not in covered | live_only) == []
