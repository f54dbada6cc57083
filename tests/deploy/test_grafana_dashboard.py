"""The Grafana dashboard: importable JSON with a ${DS_PROMETHEUS} input, panels
that read only metrics sentinel exports (so it cannot drift from metrics.py),
and every query valid and answered by a real Prometheus scraping sentinel."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from sentinel.config import MetricsConfig
from sentinel.metrics import Metrics
from sentinel.sinks.metrics_http import MetricsServer
from tests.conftest import REPO
from tests.prom import Prometheus, exposed_names, metric_names, populate, wait_until

DASHBOARD = REPO / "deploy" / "grafana" / "sentinel.json"
DS = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
#: what the issue asks the dashboard to show, as the metrics that show it
MUST_SHOW = {
    "alerts by severity and rule": "sentinel_alerts_total",
    "events by kind": "sentinel_events_total",
    "packets": "sentinel_packets_total",
    "drops": "sentinel_packets_dropped_total",
    "delivery queue depth": "sentinel_delivery_queue_depth",
    "delivery oldest pending": "sentinel_delivery_oldest_pending_seconds",
    "delivery results": "sentinel_deliveries_total",
    "FIM watched files": "sentinel_fim_watched_files",
    "FIM rescans by reason": "sentinel_fim_rescans_total",
    "FIM baseline valid": "sentinel_fim_baseline_valid",
    "reloads": "sentinel_config_reloads_total",
    "attestation freshness": "sentinel_attestation_last_timestamp_seconds",
    "rule-state evictions": "sentinel_rule_state_evictions_total",
}


def dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text()))


def panels() -> Iterator[dict[str, Any]]:
    for p in dashboard()["panels"]:
        yield p
        yield from p.get("panels", [])


def queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target."""
    return [(p["title"], t["expr"]) for p in panels() for t in p.get("targets", [])]


def exported() -> set[str]:
    return exposed_names(generate_latest(Metrics(CollectorRegistry()).registry).decode())


def test_dashboard_declares_the_prometheus_datasource_input() -> None:
    d = dashboard()
    assert [i["name"] for i in d["__inputs"]] == ["DS_PROMETHEUS"]
    assert d["__inputs"][0]["pluginId"] == "prometheus"
    assert d["uid"] and d["title"] == "sentinel"
    for p in panels():
        if p["type"] == "row":
            continue
        assert p["datasource"] == DS, p["title"]
        for t in p["targets"]:
            assert t["datasource"] == DS, p["title"]
    for var in d["templating"]["list"]:
        assert var["datasource"] == DS
    # nothing refers to a concrete datasource of someone's Grafana
    uids = set(re.findall(r'"uid":\s*"([^"]+)"', DASHBOARD.read_text()))
    assert uids <= {"${DS_PROMETHEUS}", "-- Grafana --", "sentinel-overview"}, uids


def test_panel_ids_are_unique_and_the_grid_does_not_overlap() -> None:
    ids = [p["id"] for p in panels()]
    assert len(ids) == len(set(ids))
    taken: set[tuple[int, int]] = set()
    for p in panels():
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24, p["title"]
        cells = {(x, y) for x in range(g["x"], g["x"] + g["w"])
                 for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & taken, f"{p['title']} overlaps another panel"
        taken |= cells


def test_every_query_reads_only_metrics_sentinel_exports() -> None:
    names = exported()
    assert "sentinel_alerts_total" in names and "sentinel_rule_eval_seconds_bucket" in names
    for title, expr in queries():
        unknown = metric_names(expr) - names - {"up"}
        assert not unknown, f"panel {title!r} reads {unknown}, not in sentinel.metrics"


def test_the_drift_check_catches_a_renamed_metric() -> None:
    expr = 'sum by (iface) (rate(sentinel_packets_droped_total{instance=~"$instance"}[5m]))'
    assert metric_names(expr) - exported() == {"sentinel_packets_droped_total"}


def test_the_dashboard_shows_what_operators_need() -> None:
    read = set().union(*(metric_names(e) for _, e in queries()))
    missing = {what for what, metric in MUST_SHOW.items() if metric not in read}
    assert not missing, missing


def test_fleet_variables_narrow_region_then_site_then_instance() -> None:
    """A SOC picks a region, then a site in it, then hosts at that site."""
    variables = {v["name"]: v["query"]["query"] for v in dashboard()["templating"]["list"]}
    assert list(variables) == ["region", "site", "instance"]
    assert variables["region"] == "label_values(sentinel_host_info, region)"
    assert 'region=~"$region"' in variables["site"]
    assert 'region=~"$region"' in variables["instance"]
    assert 'site=~"$site"' in variables["instance"]
    for query in variables.values():
        series = re.match(r"label_values\((\w+)", query)
        assert series is not None and series.group(1) in exported(), query


def grafana_to_promql(expr: str) -> str:
    """Substitute Grafana's variables as Grafana would for a short window."""
    return (expr.replace("$__rate_interval", "10s").replace("$__range", "1m")
            .replace("$instance", ".*"))


@pytest.mark.slow
def test_every_query_answers_from_a_real_prometheus_scraping_sentinel(tmp_path: Path) -> None:
    m = Metrics(CollectorRegistry())
    populate(m)
    stop = threading.Event()

    def keep_moving() -> None:  # rates and increases need counters that move
        while not stop.wait(0.3):
            populate(m)

    mover = threading.Thread(target=keep_moving, name="test-metrics-mover", daemon=True)
    mover.start()
    server = MetricsServer(MetricsConfig(listen=("127.0.0.1", 0)), m, dict)
    server.start()
    try:
        host, port = server.address
        with Prometheus(tmp_path, [f"{host}:{port}"]) as prom:
            pending = {grafana_to_promql(e): t for t, e in queries()}
            # the variables' series: host info with its site and region labels
            pending['sentinel_host_info{region="jawa-barat", site="kota-contoh"}'] = "variables"

            def all_answer() -> bool:
                for q in list(pending):
                    if prom.query(q):  # also fails the test on a PromQL syntax error
                        del pending[q]
                return not pending

            try:
                wait_until("every dashboard query to return data", all_answer, timeout=40)
            except pytest.fail.Exception:
                pytest.fail(f"queries with no data: {pending}")
    finally:
        stop.set()
        mover.join(5)
        server.stop()
