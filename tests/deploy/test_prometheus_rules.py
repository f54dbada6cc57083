"""The Prometheus alert rules: promtool checks and unit-tests them, every alert
has a firing and a quiet case, they read only metrics sentinel exports, and a
real Prometheus fires one from a live sentinel metrics endpoint."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest

from sentinel.config import MetricsConfig
from sentinel.metrics import Metrics
from sentinel.sinks.metrics_http import MetricsServer
from tests.conftest import REPO
from tests.prom import PROMTOOL, Prometheus, exposed_names, metric_names, need, wait_until

RULES = REPO / "deploy" / "prometheus" / "sentinel-rules.yml"
RULE_TESTS = REPO / "deploy" / "prometheus" / "sentinel-rules.test.yml"
#: metrics the rules may read that sentinel does not export itself
PROMETHEUS_OWN = {"up"}


def alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return [r for g in doc["groups"] for r in g["rules"] if "alert" in r]


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([need(PROMTOOL), *args], capture_output=True, text=True,
                          timeout=120, check=False, cwd=RULES.parent)


def test_promtool_check_rules_passes() -> None:
    p = promtool("check", "rules", RULES.name)
    assert p.returncode == 0, p.stdout + p.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in p.stdout


def test_promtool_unit_tests_pass() -> None:
    p = promtool("test", "rules", RULE_TESTS.name)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "SUCCESS" in p.stdout + p.stderr


def test_promtool_unit_tests_can_fail(tmp_path: Path) -> None:
    """Changing a threshold breaks the unit tests: they pin the rules' behaviour."""
    (tmp_path / RULES.name).write_text(
        RULES.read_text().replace("sentinel_delivery_oldest_pending_seconds > 300",
                                  "sentinel_delivery_oldest_pending_seconds > 900"))
    (tmp_path / RULE_TESTS.name).write_text(RULE_TESTS.read_text())
    p = subprocess.run([need(PROMTOOL), "test", "rules", RULE_TESTS.name], capture_output=True,
                       text=True, timeout=120, check=False, cwd=tmp_path)
    assert p.returncode != 0
    assert "SentinelDeliveryStalled" in p.stdout + p.stderr


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    firing, quiet = set(), set()
    for group in tests:
        for case in group["alert_rule_test"]:
            (firing if case["exp_alerts"] else quiet).add(case["alertname"])
    names = {r["alert"] for r in alert_rules()}
    assert names == firing, f"no firing case: {names - firing}"
    assert names == quiet, f"no quiet case: {names - quiet}"


def test_every_alert_has_severity_summary_and_description() -> None:
    for r in alert_rules():
        assert r["labels"]["severity"] in ("critical", "warning"), r["alert"]
        assert r["annotations"]["summary"] and r["annotations"]["description"], r["alert"]


def test_rules_read_only_metrics_sentinel_exports() -> None:
    exported = exposed_names(generate_latest(Metrics(CollectorRegistry()).registry).decode())
    assert "sentinel_alerts_total" in exported  # labelled, no series yet: from # TYPE
    for r in alert_rules():
        unknown = metric_names(r["expr"]) - exported - PROMETHEUS_OWN
        assert not unknown, f"{r['alert']} reads {unknown}, which sentinel does not export"


@pytest.mark.slow
def test_real_prometheus_fires_the_critical_alert_rule_from_a_live_endpoint(
        tmp_path: Path) -> None:
    m = Metrics(CollectorRegistry())
    server = MetricsServer(MetricsConfig(listen=("127.0.0.1", 0)), m, lambda: {"engine": True})
    server.start()
    try:
        host, port = server.address
        with Prometheus(tmp_path, [f"{host}:{port}"], rule_files=[RULES]) as prom:
            prom.wait_for('up{job="sentinel"}', lambda r: list(r.values()) == [1.0])
            assert not [a for a in prom.alerts() if a["labels"]["alertname"] ==
                        "SentinelCriticalAlert"]
            m.alerts.labels("tally-db-unauthorized-access", "critical").inc()

            def fired() -> list[dict[str, Any]]:
                return [a for a in prom.alerts()
                        if a["labels"]["alertname"] == "SentinelCriticalAlert"
                        and a["state"] == "firing"]

            alerts = wait_until("SentinelCriticalAlert to fire", fired)
            assert alerts[0]["labels"]["rule"] == "tally-db-unauthorized-access"
            assert alerts[0]["labels"]["instance"] == f"{host}:{port}"
    finally:
        server.stop()
