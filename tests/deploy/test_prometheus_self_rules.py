"""The silent-sensor Prometheus rules (deploy/prometheus/sentinel-self-rules.yml):
promtool checks and unit-tests them, each alert has a firing and a quiet case,
and they read only metrics a running daemon exports."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import CollectorRegistry, generate_latest

from sentinel.config import Config, HostConfig
from sentinel.metrics import Metrics
from sentinel.selfwatch import SelfGuard
from tests.conftest import REPO
from tests.prom import PROMTOOL, exposed_names, metric_names, need

RULES = REPO / "deploy" / "prometheus" / "sentinel-self-rules.yml"
RULE_TESTS = REPO / "deploy" / "prometheus" / "sentinel-self-rules.test.yml"


def alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return [r for g in doc["groups"] for r in g["rules"] if "alert" in r]


def promtool(*args: str, cwd: Path = RULES.parent) -> subprocess.CompletedProcess[str]:
    return subprocess.run([need(PROMTOOL), *args], capture_output=True, text=True,
                          timeout=120, check=False, cwd=cwd)


def test_promtool_check_and_unit_tests_pass() -> None:
    p = promtool("check", "rules", RULES.name)
    assert p.returncode == 0, p.stdout + p.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in p.stdout
    t = promtool("test", "rules", RULE_TESTS.name)
    assert t.returncode == 0, t.stdout + t.stderr


def test_the_unit_tests_pin_the_thresholds(tmp_path: Path) -> None:
    """Loosening 'twice the interval' to three times breaks the attestation case."""
    (tmp_path / RULES.name).write_text(RULES.read_text().replace(
        "> 2 * sentinel_attestation_interval_seconds",
        "> 3 * sentinel_attestation_interval_seconds"))
    (tmp_path / RULE_TESTS.name).write_text(RULE_TESTS.read_text())
    p = promtool("test", "rules", RULE_TESTS.name, cwd=tmp_path)
    assert p.returncode != 0
    assert "SentinelAttestationStale" in p.stdout + p.stderr


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    firing, quiet = set(), set()
    for group in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for case in group["alert_rule_test"]:
            (firing if case["exp_alerts"] else quiet).add(case["alertname"])
    names = {r["alert"] for r in alert_rules()}
    assert names == firing, f"no firing case: {names - firing}"
    assert names == quiet, f"no quiet case: {names - quiet}"


def test_rules_read_only_metrics_the_daemon_exports(tmp_path: Path) -> None:
    metrics = Metrics(CollectorRegistry())
    config = Config(source=tmp_path / "config.yaml", host=HostConfig("tally-01", ()),
                    state_dir=tmp_path)
    SelfGuard(config, metrics, lambda _alert: None)  # registers the self-protection metrics
    exported = exposed_names(generate_latest(metrics.registry).decode())
    for r in alert_rules():
        unknown = metric_names(r["expr"]) - exported
        assert not unknown, f"{r['alert']} reads {unknown}, which sentinel does not export"
