"""`sentinel check` on good and bad rule folders, as an operator runs it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

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
                     " config's lists)")


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
