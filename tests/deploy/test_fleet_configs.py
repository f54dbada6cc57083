"""The fleet examples: deploy/alertmanager/alertmanager.yml passes ``amtool
check-config``, routes critical alerts to both receivers and, in a real
Alertmanager, groups by site and rule and inhibits a site's medium alerts while
a critical one of that site fires; deploy/prometheus/prometheus.yml passes
``promtool check config`` together with its rules and target files."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from sentinel.config_reader import load_config
from tests.conftest import REPO
from tests.e2e.alertmanager_cluster import AMTOOL, Node, WebhookReceiver, binary, wait_for
from tests.prom import PROMTOOL, need

AM_CONFIG = REPO / "deploy" / "alertmanager" / "alertmanager.yml"
PROM_DIR = REPO / "deploy" / "prometheus"
PROM_CONFIG = PROM_DIR / "prometheus.yml"
TARGETS = PROM_DIR / "targets" / "tally-servers.example.yml"


def amtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([binary(AMTOOL), *args], capture_output=True, text=True, timeout=60,
                          check=False)


def promtool(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([need(PROMTOOL), "check", "config", config.name], capture_output=True,
                          text=True, timeout=60, check=False, cwd=config.parent)


def test_amtool_check_config_passes() -> None:
    p = amtool("check-config", str(AM_CONFIG))
    assert p.returncode == 0, p.stdout + p.stderr
    assert "SUCCESS" in p.stdout and "1 inhibit rules" in p.stdout


def test_amtool_check_config_rejects_a_broken_copy(tmp_path: Path) -> None:
    """The check above can fail: a route naming a receiver that does not exist."""
    broken = tmp_path / "alertmanager.yml"
    broken.write_text(AM_CONFIG.read_text().replace("receiver: ministry-csirt",
                                                    "receiver: ministry-csrit"))
    p = amtool("check-config", str(broken))
    assert p.returncode != 0
    assert "ministry-csrit" in p.stdout + p.stderr


@pytest.mark.parametrize(("severity", "receivers"), [
    ("critical", "bawaslu,ministry-csirt"),
    ("high", "bawaslu"),
    ("medium", "bawaslu"),
    ("warning", "bawaslu"),  # the Prometheus rules' second severity
    ("low", "quiet"),
    ("info", "quiet"),
])
def test_routes_by_severity(severity: str, receivers: str) -> None:
    p = amtool("config", "routes", "test", f"--config.file={AM_CONFIG}",
               f"severity={severity}", "site=kota-bandung", "alertname=gateway-arp-spoof")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == receivers


def _local_copy(tmp: Path, receiver: str) -> str:
    """The example config, its receivers pointed at ``receiver`` (one path each),
    its token files in ``tmp``, and its waits shortened for a test."""
    doc: dict[str, Any] = yaml.safe_load(AM_CONFIG.read_text())
    for r in doc["receivers"]:
        for w in r.get("webhook_configs", []):
            w["url"] = f"{receiver}/{r['name']}"
            token = tmp / f"{r['name']}.token"
            token.write_text(f"token-{r['name']}\n")
            w["http_config"]["authorization"]["credentials_file"] = str(token)
    for route in [doc["route"], *doc["route"]["routes"]]:
        for k in ("group_wait", "group_interval"):
            if k in route:
                route[k] = "1s"
    return yaml.safe_dump(doc)


def _alert(site: str, rule: str, severity: str, host: str,
           incident: str | None = None) -> dict[str, Any]:
    """An alert labelled as sentinel's Alertmanager webhook labels it (sinks/alertmanager)."""
    from sentinel.alert import Alert
    from sentinel.config import HostConfig
    from sentinel.sinks.alertmanager import am_item

    extra = {"incident": incident} if incident else {}
    alert = Alert(rule=rule, title=f"{rule} on {host}", severity=severity, time=0.0,
                  host=host, source="network", tags=(), event={}, extra=extra)
    labels = am_item(alert, HostConfig(name=host, addresses=(), site=site,
                                       region="jawa-barat"))["labels"]
    return {"labels": labels, "annotations": {"summary": f"{rule} on {host}"}}


def test_example_config_in_a_real_alertmanager_routes_groups_and_inhibits(
        tmp_path: Path) -> None:
    with WebhookReceiver() as rx:
        node = Node(tmp_path / "am", _local_copy(tmp_path, rx.url))
        node.start()
        try:
            wait_for("alertmanager ready", node.ready)
            node.post([
                _alert("site-a", "gateway-arp-spoof", "critical", "tally-a"),
                _alert("site-a", "dns-unapproved-domain", "medium", "tally-a"),
                _alert("site-b", "dns-unapproved-domain", "medium", "tally-b1"),
                _alert("site-b", "dns-unapproved-domain", "medium", "tally-b2"),
                _alert("site-b", "ssh-from-outside-admin-net", "high", "tally-b1"),
                # one scan: three rules, one incident, one notification
                _alert("site-b", "port-scan-of-tally-server", "high", "tally-b1",
                       "source 10.20.0.66"),
                _alert("site-b", "udp-probe-of-tally-server", "medium", "tally-b1",
                       "source 10.20.0.66"),
                _alert("site-b", "scan-ended", "medium", "tally-b1", "source 10.20.0.66"),
            ])

            def state(site: str, rule: str) -> str:
                got = [a["status"] for a in node.alerts()
                       if a["labels"]["site"] == site and a["labels"]["alertname"] == rule]
                return got[0]["state"] if got else "missing"

            wait_for("site-a's medium alert inhibited",
                     lambda: state("site-a", "dns-unapproved-domain") == "suppressed")
            assert state("site-b", "dns-unapproved-domain") == "active"
            wait_for("the notifications", lambda: len(rx.received()) >= 5)
            # every group flushes group_wait after the one POST above; give the
            # inhibited one a further group_interval in which it must not appear
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline:
                assert len(rx.received()) == 5, rx.received()
                time.sleep(0.1)
            by_path: dict[str, list[tuple[tuple[str, str], list[str]]]] = {}
            for path, n in rx.received():
                key = (n["groupLabels"]["site"], n["groupLabels"]["group"])
                what = sorted(f"{a['labels']['host']} {a['labels']['alertname']}"
                              for a in n["alerts"])
                by_path.setdefault(path, []).append((key, what))
        finally:
            node.stop()
    assert sorted(by_path["/ministry-csirt"]) == [
        (("site-a", "gateway-arp-spoof"), ["tally-a gateway-arp-spoof"])]
    assert sorted(by_path["/bawaslu"]) == [
        (("site-a", "gateway-arp-spoof"), ["tally-a gateway-arp-spoof"]),
        # one group per site and rule: two hosts of site-b in one notification
        (("site-b", "dns-unapproved-domain"),
         ["tally-b1 dns-unapproved-domain", "tally-b2 dns-unapproved-domain"]),
        # one group per incident: the scan's three rules in one notification
        (("site-b", "source 10.20.0.66"),
         ["tally-b1 port-scan-of-tally-server", "tally-b1 scan-ended",
          "tally-b1 udp-probe-of-tally-server"]),
        (("site-b", "ssh-from-outside-admin-net"), ["tally-b1 ssh-from-outside-admin-net"]),
    ]
    assert set(by_path) == {"/bawaslu", "/ministry-csirt"}
    # each receiver authenticates with its own token file
    auth = dict(zip([p for p, _ in rx.received()], rx.authorizations, strict=True))
    assert auth == {"/bawaslu": "Bearer token-bawaslu",
                    "/ministry-csirt": "Bearer token-ministry-csirt"}


def test_promtool_check_config_passes_with_rules_and_targets() -> None:
    p = promtool(PROM_CONFIG)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "SUCCESS: 2 rule files found" in p.stdout
    assert "sentinel-rules.yml" in p.stdout
    assert "sentinel-self-rules.yml" in p.stdout


def test_promtool_check_config_reads_the_target_files(tmp_path: Path) -> None:
    """The target files are checked too: a broken one fails the config check."""
    copy = tmp_path / "prometheus"
    shutil.copytree(PROM_DIR, copy)
    bad = copy / "targets" / TARGETS.name
    bad.write_text(bad.read_text() + "- targets: [10.99.0.10:9917\n")
    p = promtool(copy / PROM_CONFIG.name)
    assert p.returncode != 0
    assert "targets/*.yml" in p.stdout + p.stderr


def test_prometheus_example_scrapes_job_sentinel_from_target_files() -> None:
    doc = yaml.safe_load(PROM_CONFIG.read_text())
    (job,) = doc["scrape_configs"]
    assert job["job_name"] == "sentinel"  # what the rules and the dashboard select on
    assert job["file_sd_configs"][0]["files"] == ["targets/*.yml"]
    assert doc["rule_files"] == ["sentinel-rules.yml", "sentinel-self-rules.yml"]
    # every Alertmanager node listed on its own: no load balancer in between
    assert len(doc["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]) == 3


def test_every_target_names_its_host_site_and_region() -> None:
    """The labels sentinel's own alerts carry (host.name, host.site, host.region),
    so Prometheus's alerts group and inhibit with them."""
    entries = yaml.safe_load(TARGETS.read_text())
    assert entries
    for e in entries:
        assert set(e["labels"]) == {"host", "site", "region"}, e
        assert len(e["targets"]) == 1
    assert len({e["labels"]["site"] for e in entries}) == len(entries)


def test_the_site_config_in_docs_fleet_loads_with_every_node_a_lane(tmp_path: Path) -> None:
    """docs/fleet.md's per-site config is valid and names all three nodes."""
    text = (REPO / "docs" / "fleet.md").read_text()
    block = re.findall(r"```yaml\n(.*?)```", text, re.S)[0]
    cfg = tmp_path / "config.yaml"
    cfg.write_text(block + f"state_dir: {tmp_path}\n")
    config = load_config(cfg)
    assert (config.host.site, config.host.region) == ("kota-bandung", "jawa-barat")
    (hook,) = config.outputs.webhooks
    assert hook.format == "alertmanager"
    assert len(hook.urls) == 3
