"""`sentinel check` on good and bad rule folders, as an operator runs it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from enginekit import write

from tests.conftest import REPO

CONFIG = """
host: {name: tally-01, addresses: [10.20.0.10]}
state_dir: state
rules: {paths: [rules/]}
lists:
  app_server: [10.20.0.11]
  allowed_domains: [kpu.go.id]
schedules:
  counting: [{start: "2024-02-14T13:00:00+07:00", end: "2024-02-15T23:59:00+07:00"}]
"""

GOOD = """
rules:
  - id: tally-db-unauthorized-access
    title: "Tally database reached from {src_ip}"
    severity: critical
    tags: [tally-db]
    kind: net.connection
    match:
      dst_port: 5432
      src_ip: {not_in: app_server}
    examples:
      match:
        - {kind: net.connection, src_ip: 10.20.0.99, dst_port: 5432}
      no_match:
        - {kind: net.connection, src_ip: 10.20.0.11, dst_port: 5432}
"""

DNS = """
rules:
  - id: dns-outside-allowed
    title: "DNS query for {qname}"
    severity: high
    kind: net.dns
    match: {is_response: false, qname: {not_domain_in: allowed_domains}}
    examples:
      match: [{kind: net.dns, is_response: false, qname: evilkpu.go.id}]
      no_match: [{kind: net.dns, is_response: false, qname: www.kpu.go.id}]
"""


def check(folder: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sentinel", "check", "-c", str(folder / "config.yaml"), *extra],
        capture_output=True, text=True, timeout=60, cwd=folder,
    )


def site(tmp_path: Path, *files: tuple[str, str]) -> Path:
    write(tmp_path, CONFIG, "config.yaml")
    rules = tmp_path / "rules"
    rules.mkdir()
    for name, text in files:
        write(rules, text, name)
    return rules


def test_good_rules_pass_with_a_summary(tmp_path: Path) -> None:
    site(tmp_path, ("db.yaml", GOOD), ("dns.yaml", DNS))
    proc = check(tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "2 rules from 2 files OK, 4 examples passed"
    assert proc.stderr == ""


def test_good_rules_json(tmp_path: Path) -> None:
    site(tmp_path, ("db.yaml", GOOD))
    proc = check(tmp_path, "--format", "json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert (out["ok"], out["rules"], out["files"], out["examples"]) == (True, 1, 1, 2)
    assert len(out["digest"]) == 64


def test_empty_rules_folder_passes(tmp_path: Path) -> None:
    site(tmp_path)
    (tmp_path / "rules" / ".keep").write_text("")
    proc = check(tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "0 rules from 0 files OK, 0 examples passed"


def test_bad_rules_exit_2_with_every_problem_snippet_and_caret(tmp_path: Path) -> None:
    rules = site(tmp_path, ("db.yaml", GOOD.replace("not_in: app_server", "not_inn: app_server")),
                 ("dns.yaml", DNS.replace("qname: {not", "qnme: {not")))
    proc = check(tmp_path)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    db, dns = rules / "db.yaml", rules / "dns.yaml"
    assert lines[0].startswith(f"{db}:9:16: rule 'tally-db-unauthorized-access': unknown"
                               " operator 'not_inn' (did you mean 'not_in'?); valid: equals,")
    assert lines[1] == "        src_ip: {not_inn: app_server}"
    assert lines[2] == "  " + " " * 15 + "^"
    assert lines[3].startswith(f"{dns}:6:33: rule 'dns-outside-allowed': unknown field 'qnme'"
                               " for net.dns; valid: ")
    assert "Traceback" not in proc.stderr


def test_failing_example_exit_2(tmp_path: Path) -> None:
    rules = site(tmp_path, ("db.yaml", GOOD.replace("src_ip: 10.20.0.11, dst_port: 5432}",
                                                    "src_ip: 10.20.0.12, dst_port: 5432}")))
    proc = check(tmp_path)
    assert proc.returncode == 2
    first = proc.stderr.splitlines()[0]
    assert first == (f"{rules / 'db.yaml'}:14:11: rule 'tally-db-unauthorized-access':"
                     " examples.no_match[0]: the event should not raise an alert but did:"
                     " Tally database reached from 10.20.0.12 (examples run against the"
                     " config's lists: its folder has no example site)")


def test_bad_rules_json(tmp_path: Path) -> None:
    rules = site(tmp_path, ("db.yaml", GOOD.replace("severity: critical", "severity: urgent")))
    proc = check(tmp_path, "--format", "json")
    assert proc.returncode == 2
    out = json.loads(proc.stderr)
    assert out == {"ok": False, "errors": [{
        "file": str(rules / "db.yaml"), "line": 4, "col": 15,
        "rule": "tally-db-unauthorized-access",
        "message": "severity is 'urgent'; valid: critical, high, medium, low, info"}]}


def test_yaml_syntax_error_in_a_rule_file(tmp_path: Path) -> None:
    rules = site(tmp_path, ("db.yaml", "rules:\n  - id: x\n    title: 'unclosed\n"))
    proc = check(tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"{rules / 'db.yaml'}:4:1: YAML syntax error:")


def test_example_config_and_default_pack_check_clean(example_secrets: dict[str, str]) -> None:
    """The shipped config.example.yaml with whatever rules/ holds passes `sentinel check`."""
    proc = subprocess.run(
        [sys.executable, "-m", "sentinel", "check", "-c", str(REPO / "config.example.yaml")],
        capture_output=True, text=True, timeout=120, cwd=REPO, env={**os.environ},
    )
    assert proc.returncode == 0, proc.stderr
    assert re.fullmatch(r"\d+ rules from \d+ files OK, \d+ examples passed",
                        proc.stdout.splitlines()[-1])


# -- another site: the pack's examples use the facts they were written for (#14) -----

#: config.example.yaml's lists for another site: only site facts differ
OTHER_V4 = """lists:
  tally_server: [172.16.8.20]
  tally_mac: ["0a:00:00:00:08:20"]
  gateway_ip: [172.16.8.1]
  gateway_mac: ["0a:00:00:00:08:01"]
  counting_net: [172.16.8.0/23]
  admin_net: [172.16.30.0/29]
  app_server: [172.16.8.21]
  dns_servers: [172.16.8.2]
  ntp_servers: [172.16.8.3]
  dhcp_servers: [172.16.8.1]
  central_servers: [192.0.2.80]
  allowed_outbound: ["192.0.2.80:8443", "172.16.8.2:53", "172.16.8.3:123"]
  allowed_domains: [pemilu.example]
  tally_services: [2222, 8443, 6432]
  tally_db_ports: [6432]
  tally_web_ports: [8443]
  ssh_ports: [2222]
  login_accounts: [petugas]
"""
OTHER_V6 = """lists:
  tally_server: ["2001:db8:40::10"]
  tally_mac: ["0a:00:00:00:40:10"]
  gateway_ip: ["2001:db8:40::1"]
  gateway_mac: ["0a:00:00:00:40:01"]
  counting_net: ["2001:db8:40::/64"]
  admin_net: ["2001:db8:41::/120"]
  app_server: ["2001:db8:40::11"]
  dns_servers: ["2001:db8:40::2"]
  ntp_servers: ["2001:db8:40::3"]
  dhcp_servers: ["2001:db8:40::1"]
  central_servers: ["2001:db8:ffff::50"]
  allowed_outbound: ["[2001:db8:ffff::50]:443", "[2001:db8:40::2]:53", "[2001:db8:40::3]:123"]
  allowed_domains: [pemilu.example]
  tally_services: [22, 443, 5432]
  tally_db_ports: [5432]
  tally_web_ports: [443]
  ssh_ports: [22]
  login_accounts: [petugas]
"""


def example_config(tmp_path: Path, lists: str | None = None, edit: tuple[str, str] = ("", "")
                   ) -> Path:
    """config.example.yaml with the pack named where it is, its lists replaced by
    ``lists`` (a whole ``lists:`` section) and one text replacement ``edit``."""
    text = (REPO / "config.example.yaml").read_text()
    text = text.replace("paths: [rules/]", f"paths: [{REPO / 'rules'}/]")
    if lists is not None:
        start = text.index("\nlists:\n") + 1
        end = text.index("\n# Named time windows")
        text = text[:start] + lists + text[end:]
    if edit[0]:
        assert edit[0] in text
        text = text.replace(*edit)
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def check_config(config: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sentinel", "check", "-c", str(config), *extra],
                          capture_output=True, text=True, timeout=120, cwd=config.parent)


@pytest.mark.parametrize("lists", [OTHER_V4, OTHER_V6], ids=["ipv4", "ipv6"])
def test_pack_passes_check_at_another_site_with_only_lists_changed(
        tmp_path: Path, lists: str, example_secrets: dict[str, str]) -> None:
    """Another addressing plan in lists: every example of the unchanged pack still passes."""
    proc = check_config(example_config(tmp_path, lists))
    assert proc.returncode == 0, proc.stderr
    assert re.fullmatch(r"\d+ rules from \d+ files OK, \d+ examples passed",
                        proc.stdout.splitlines()[-1])


SITE_FACTS = """
example_site:
  lists:
    app_server: [10.20.0.11]
    allowed_domains: [kpu.go.id]
"""


def test_examples_use_the_folder_example_site_not_the_config_lists(tmp_path: Path) -> None:
    """The config's app_server differs from the example site's: the examples still pass."""
    site(tmp_path, ("db.yaml", GOOD), ("example-site.yaml", SITE_FACTS))
    cfg = tmp_path / "config.yaml"
    cfg.write_text(cfg.read_text().replace("app_server: [10.20.0.11]", "app_server: [192.0.2.7]"))
    proc = check(tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "1 rules from 2 files OK, 2 examples passed"


def test_own_rules_opt_in_to_run_examples_against_the_config_lists(tmp_path: Path) -> None:
    """examples_against: site runs a file's examples with the config's lists, even in a
    folder with an example site; without it the same examples fail, saying which facts."""
    own = "examples_against: site\n" + GOOD.replace("id: tally-db-unauthorized-access",
                                                    "id: own-db").replace("10.20.0.11", "192.0.2.7")
    rules = site(tmp_path, ("db.yaml", GOOD), ("example-site.yaml", SITE_FACTS), ("own.yaml", own))
    cfg = tmp_path / "config.yaml"
    cfg.write_text(cfg.read_text().replace("app_server: [10.20.0.11]", "app_server: [192.0.2.7]"))
    proc = check(tmp_path)
    assert proc.returncode == 0, proc.stderr
    (rules / "own.yaml").write_text(own.replace("examples_against: site\n", ""))
    proc = check(tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[0] == (
        f"{rules / 'own.yaml'}:15:11: rule 'own-db': examples.no_match[0]: the event should"
        " not raise an alert but did: Tally database reached from 192.0.2.7 (examples run"
        f" against the example site {rules / 'example-site.yaml'})")


def test_a_list_missing_from_the_example_site_is_reported_as_such(tmp_path: Path) -> None:
    rules = site(tmp_path, ("db.yaml", GOOD), ("example-site.yaml", SITE_FACTS.replace(
        "    app_server: [10.20.0.11]\n", "")))
    proc = check(tmp_path)
    assert proc.returncode == 2
    first = proc.stderr.splitlines()[0]
    assert first.startswith(f"{rules / 'db.yaml'}:9:24: rule 'tally-db-unauthorized-access':"
                            " src_ip: not_in: unknown list 'app_server'")
    assert first.endswith(f"(with the facts of the example site {rules / 'example-site.yaml'})")


# -- list entries: each must fit every use (#14) -------------------------------------


def position(config: Path, text: str) -> str:
    """FILE:LINE:COL of the first occurrence of ``text`` in ``config``."""
    for n, line in enumerate(config.read_text().splitlines(), 1):
        if text in line:
            return f"{config}:{n}:{line.index(text) + 1}"
    raise AssertionError(text)


@pytest.mark.parametrize(("old", "new", "entry", "message"), [
    ("counting_net: [10.20.0.0/24]", "counting_net: [10.20.0.0/24x, 10.30.0.0/24]",
     "10.20.0.0/24x", "lists.counting_net[0]: '10.20.0.0/24x' is not a valid network"),
    ("admin_net: [10.20.1.0/28]", "admin_net: [10.20.1.5/28]", "10.20.1.5/28",
     "lists.admin_net[0]: '10.20.1.5/28' has host bits set; write the network 10.20.1.0/28"
     " or the single address 10.20.1.5"),
    ("tally_server: [10.20.0.10]", "tally_server: [10.20.0.10, tally-01]", "tally-01]",
     "lists.tally_server[1]: 'tally-01' is not an address or network"),
    ("ssh_ports: [22]", "ssh_ports: [22, 70000]", "70000",
     "lists.ssh_ports[1]: 70000 is not a port (0-65535)"),
    ('"203.0.113.50:443", ', '"203.0.113.50", ', '"203.0.113.50"',
     "lists.allowed_outbound[0]: '203.0.113.50' is not \"address:port\""),
    ('tally_mac: ["02:00:00:00:00:10"]', 'tally_mac: ["02:00:00:00:00:1A"]', '"02:00:00:00:00:1A"',
     "lists.tally_mac[0]: '02:00:00:00:00:1A': write MAC addresses in lower case"),
    ('gateway_mac: ["02:00:00:00:00:01"]', 'gateway_mac: ["02:00:00:00:00:01", "gw"]', '"gw"',
     "lists.gateway_mac[1]: 'gw' is not a MAC address"),
    ("allowed_domains: [kpu.go.id]", 'allowed_domains: [kpu.go.id, "kpu go id"]', '"kpu go id"',
     "lists.allowed_domains[1]: 'kpu go id' is not a domain name"),
], ids=["network", "host-bits", "address", "port", "ip:port", "mac-case", "mac", "domain"])
def test_a_bad_list_entry_is_an_error_at_the_entry(
        tmp_path: Path, old: str, new: str, entry: str, message: str,
        example_secrets: dict[str, str]) -> None:
    """A list entry that does not fit a rule's use of the list: FILE:LINE:COL at the entry,
    exit 2 — never silently dropped."""
    config = example_config(tmp_path, edit=(old, new))
    proc = check_config(config)
    assert proc.returncode == 2, proc.stdout
    first = proc.stderr.splitlines()[0]
    assert first.startswith(position(config, entry) + ": rule '"), first
    assert message in first
    assert "Traceback" not in proc.stderr


def test_literal_cidr_out_of_range_is_an_invalid_network(tmp_path: Path) -> None:
    rules = site(tmp_path, ("db.yaml", GOOD.replace("dst_port: 5432\n", "dst_port: 5432\n"
                                                    "      dst_ip: {cidr: 10.0.0.0/33}\n")))
    proc = check(tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[0] == (
        f"{rules / 'db.yaml'}:9:22: rule 'tally-db-unauthorized-access': dst_ip: cidr:"
        " '10.0.0.0/33' is not a valid network: the prefix length of an IPv4 network is a"
        " number from /0 to /32; valid: an address or a network, e.g. 10.20.0.10,"
        " 10.20.0.0/24, 2001:db8::/48")


def test_home_net_with_host_bits_is_refused_at_the_entry(
        tmp_path: Path, example_secrets: dict[str, str]) -> None:
    config = example_config(tmp_path, edit=("home_nets: [10.20.0.0/16]",
                                            "home_nets: [10.20.0.10/16]"))
    proc = check_config(config)
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[0] == (
        f"{position(config, '10.20.0.10/16')}: network.home_nets[0]: '10.20.0.10/16' has host"
        " bits set; write the network 10.20.0.0/16 or the single address 10.20.0.10")


def test_two_example_sites_in_one_folder_and_a_bad_opt_out_are_errors(tmp_path: Path) -> None:
    rules = site(tmp_path, ("db.yaml", "examples_against: config\n" + GOOD),
                 ("example-site.yaml", SITE_FACTS), ("other-site.yaml", SITE_FACTS))
    proc = check(tmp_path)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.startswith(str(rules))]
    assert lines == [
        f"{rules / 'db.yaml'}:1:19: examples_against is 'config'; valid: example_site, site",
        f"{rules / 'other-site.yaml'}:2:3: a second example site in {rules}; the first is"
        f" {rules / 'example-site.yaml'} (one per folder)",
    ]


@pytest.mark.parametrize(("kind", "test", "message"), [
    ("net.dns", '{qname: {not_domain_in: [kpu.go.id, "KPU.go.id"]}}',
     "qname: not_domain_in: 'KPU.go.id': write domain names in lower case"),
    ("net.arp", '{sender_mac: {not_in: ["02:00:00:00:00:AA"]}}',
     "sender_mac: not_in: '02:00:00:00:00:AA': write MAC addresses in lower case"),
    ("net.connection", "{dst_port: {in: [22, 65536]}}",
     "dst_port: in: 65536 is not a port (0-65535)"),
    ("net.connection", '{dst_ip+dst_port: {in: ["203.0.113.50:99999"]}}',
     "dst_ip+dst_port: in: '203.0.113.50:99999' is not \"address:port\""),
], ids=["domain", "mac", "port", "ip:port"])
def test_a_bad_literal_in_a_rule_is_reported_at_itself(
        tmp_path: Path, kind: str, test: str, message: str) -> None:
    rule = (f"rules:\n  - id: lit\n    title: t\n    severity: low\n    kind: {kind}\n"
            f"    match: {test}\n")
    rules = site(tmp_path, ("lit.yaml", rule))
    proc = check(tmp_path)
    assert proc.returncode == 2
    first = proc.stderr.splitlines()[0]
    assert first.startswith(f"{rules / 'lit.yaml'}:6:"), first
    assert f"rule 'lit': {message}" in first
