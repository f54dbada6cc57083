"""Fleet capacity: N sentinel metrics endpoints scraped by one real Prometheus.

Each simulated sentinel is the daemon's own metrics endpoint
(:class:`sentinel.sinks.metrics_http.MetricsServer`) on a loopback port, serving
its own :class:`sentinel.metrics.Metrics` registry populated as a busy tally
server's would be by the end of election day: every event kind, every rule of
the default pack ``rules/`` at each severity it can raise, one capture
interface, the delivery lanes of the reference config plus a three-node
Alertmanager cluster, every component. Counters keep moving while Prometheus
scrapes.

One real Prometheus (Debian package ``prometheus``) finds them through
``file_sd_configs``, as ``deploy/prometheus/prometheus.yml`` does: it starts
with an empty target file and scrapes only itself (the baseline), then the
file is filled with the N endpoints (host, site and region labels).

Prints series per sentinel, scrape duration (Prometheus's own
``scrape_duration_seconds``), Prometheus memory per series (the growth of
``process_resident_memory_bytes`` and of the Go heap in use over the baseline,
divided by the growth of ``prometheus_tsdb_head_series``) and the series,
samples/s and memory extrapolated to 550 sites and 10,000 servers.

    .venv/bin/python bench/fleet.py [--sentinels 50] [--interval 2] [--duration 90]
"""

from __future__ import annotations

import argparse
import base64
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from sentinel import logs
from sentinel.config import MetricsConfig
from sentinel.config_reader import load_config
from sentinel.engine import load_rules
from sentinel.events import KIND_FIELDS, SOURCES
from sentinel.metrics import Metrics
from sentinel.sinks.metrics_http import MetricsServer

REPO = Path(__file__).resolve().parents[1]
#: lanes of the reference config (two json webhooks) plus an HA Alertmanager target
TARGETS = ("bawaslu", "ministry-csirt", "am-cluster[0]", "am-cluster[1]", "am-cluster[2]")
DELIVERY_RESULTS = ("success", "retry", "failed", "error")
IFACES = ("eth0",)
PRODUCTION_INTERVAL = 15.0  # deploy/prometheus/prometheus.yml
FLEETS = (("550 sites (one tally server each)", 550), ("10,000 servers", 10_000))


def rule_severities() -> list[tuple[str, str]]:
    """(rule id, severity) for every severity each rule of the default pack can raise."""
    # the example config names its webhook secrets by variable; throwaway values
    # let it load here (nothing is sent anywhere)
    for var in ("SENTINEL_BAWASLU_SECRET", "SENTINEL_MINISTRY_SECRET"):
        os.environ.setdefault(var, "whsec_" + base64.b64encode(os.urandom(24)).decode())
    rules = load_rules(load_config(REPO / "config.example.yaml")).rules
    out = []
    for r in rules:
        for sev in dict.fromkeys([r.severity, *(s for _, s in r.severity_during)]):
            out.append((r.id, sev))
    return out


class SimulatedSentinel:
    """One registry shaped like a long-running daemon's, on its own endpoint."""

    def __init__(self, rules: list[tuple[str, str]]) -> None:
        self.metrics = m = Metrics(CollectorRegistry())
        self.rules = rules
        components = ["engine", "network", "fim", "delivery",
                      *(f"delivery:{t}" for t in TARGETS)]
        for c in components:
            m.component_up.labels(c).set(1)
        m.start_time.set(time.time())
        m.rules_loaded.set(len({r for r, _ in rules}))
        m.fim_watched_files.set(1800)
        m.fim_baseline_valid.set(1)
        m.config_last_reload_time.set(time.time())
        m.attestation_last_time.set(time.time())
        m.info.info({"host": "tally", "site": "site", "region": "region"})
        self.step()
        self.server = MetricsServer(MetricsConfig(listen=("127.0.0.1", 0)), m,
                                    lambda: dict.fromkeys(components, True))

    def step(self) -> None:
        """Move every series, as traffic, alerts and deliveries would."""
        m = self.metrics
        for kind in KIND_FIELDS:
            m.events.labels(SOURCES[kind], kind).inc(17)
        for rule, sev in self.rules:
            m.alerts.labels(rule, sev).inc()
            m.rule_state_evictions.labels(rule).inc(0)
        for iface in IFACES:
            m.packets.labels(iface).inc(5000)
            m.packets_dropped.labels(iface).inc(0)
            m.capture_errors.labels(iface).inc(0)
        m.decode_errors.inc(3)
        m.ip_fragments.inc(1)
        m.flows_active.set(400)
        for reason in ("idle", "end", "capacity"):
            m.flows_evicted.labels(reason).inc(10)
        for reason in ("startup", "overflow", "watch_limit", "periodic"):
            m.fim_rescans.labels(reason).inc(0)
        for stage in ("read", "event"):
            m.fim_errors.labels(stage).inc(0)
        for i in range(50):
            m.rule_eval_seconds.observe(2e-6 * (i + 1))
        for result in ("success", "failure"):
            m.config_reloads.labels(result).inc(0)
            m.attestations.labels(result).inc(0)
        for t in TARGETS:
            for result in DELIVERY_RESULTS:
                m.deliveries.labels(t, result).inc(1)
            m.delivery_queue_depth.labels(t).set(0)
            m.delivery_oldest_pending.labels(t).set(0)
        m.journal_records.inc(len(self.rules))


class Prometheus:
    """The real Prometheus, scraping itself and the file_sd target file."""

    def __init__(self, workdir: Path, interval: float) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            sys.exit("bench/fleet.py needs the prometheus binary (Debian package prometheus)")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.targets = workdir / "targets" / "tally-servers.yml"
        self.targets.parent.mkdir()
        self.targets.write_text("[]\n")
        iv = f"{interval:g}s"
        config = {
            "global": {"scrape_interval": iv, "scrape_timeout": iv, "evaluation_interval": iv},
            "scrape_configs": [
                {"job_name": "prometheus",
                 "static_configs": [{"targets": [f"127.0.0.1:{self.port}"]}]},
                {"job_name": "sentinel",
                 "file_sd_configs": [{"files": ["targets/*.yml"], "refresh_interval": "5s"}]},
            ],
        }
        cfg = workdir / "prometheus.yml"
        cfg.write_text(yaml.safe_dump(config))
        self.log = (workdir / "prometheus.log").open("wb")
        self.proc = subprocess.Popen(
            [binary, f"--config.file={cfg}", f"--storage.tsdb.path={workdir / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=self.log, stderr=subprocess.STDOUT)
        self.wait("Prometheus ready", lambda: self._get("/-/ready") is not None, 60)

    def _get(self, path: str) -> str | None:
        try:
            with urllib.request.urlopen(self.url + path, timeout=5) as r:
                return str(r.read().decode())
        except OSError:
            return None

    def wait(self, what: str, cond: Any, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            if self.proc.poll() is not None:
                sys.exit(f"prometheus exited while waiting for {what}")
            if time.monotonic() > deadline:
                sys.exit(f"timed out after {timeout:g} s waiting for {what}")
            time.sleep(0.5)

    def own(self) -> dict[str, float]:
        """Prometheus's own metrics, read from its /metrics."""
        text = self._get("/metrics") or ""
        return {s.name: s.value for f in text_string_to_metric_families(text)
                for s in f.samples if not s.labels}

    def query(self, expr: str) -> list[float]:
        import json

        body = self._get("/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        data = json.loads(body or "{}")
        return [float(r["value"][1]) for r in data.get("data", {}).get("result", [])]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sentinels", type=int, default=50)
    ap.add_argument("--interval", type=float, default=2.0, help="scrape interval, seconds")
    ap.add_argument("--duration", type=float, default=90.0,
                    help="seconds of scraping the fleet before measuring")
    args = ap.parse_args()
    # the figures go to stdout; the endpoints' per-request logs would drown them
    logs.configure(stream=sys.stderr, level=logging.WARNING)

    rules = rule_severities()
    fleet = [SimulatedSentinel(rules) for _ in range(args.sentinels)]
    for s in fleet:
        s.server.start()
    stop = threading.Event()

    def churn() -> None:
        while not stop.wait(1.0):
            for s in fleet:
                s.step()

    mover = threading.Thread(target=churn, name="fleet-churn", daemon=True)
    mover.start()
    with tempfile.TemporaryDirectory(prefix="sentinel-fleet-") as tmp:
        prom = Prometheus(Path(tmp), args.interval)
        try:
            run(prom, fleet, rules, args)
        finally:
            prom.stop()
            stop.set()
            for s in fleet:
                s.server.stop()


def run(prom: Prometheus, fleet: list[SimulatedSentinel], rules: list[tuple[str, str]],
        args: argparse.Namespace) -> None:
    n, iv = len(fleet), args.interval
    # baseline: Prometheus scraping only itself, settled over a few scrapes
    prom.wait("the baseline scrapes", lambda: prom.own().get("prometheus_tsdb_head_series", 0)
              > 0 and len(prom.query('up{job="prometheus"}')) == 1, 60)
    time.sleep(5 * iv)
    base = prom.own()
    base_self = prom.query('scrape_duration_seconds{job="prometheus"}')

    entries = [{"targets": [f"127.0.0.1:{s.server.address[1]}"],
                "labels": {"host": f"tally-{i:03d}", "site": f"site-{i:03d}",
                           "region": f"region-{i % 38:02d}"}} for i, s in enumerate(fleet)]
    tmp = prom.targets.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(entries))
    tmp.rename(prom.targets)  # atomic: Prometheus never reads half a file
    prom.wait(f"all {n} sentinels up",
              lambda: sum(prom.query('up{job="sentinel"}')) == n, 120)
    started = time.monotonic()
    print(f"{n} sentinels up; scraping every {iv:g} s for {args.duration:g} s ...",
          file=sys.stderr)
    time.sleep(args.duration)
    window = f"{int(time.monotonic() - started)}s"
    end = prom.own()

    per_target = prom.query('count by (instance) ({job="sentinel"})')
    scraped = prom.query('scrape_samples_scraped{job="sentinel"}')
    dur_avg = prom.query(f'avg(avg_over_time(scrape_duration_seconds{{job="sentinel"}}'
                         f'[{window}]))')[0]
    dur_max = prom.query(f'max(max_over_time(scrape_duration_seconds{{job="sentinel"}}'
                         f'[{window}]))')[0]
    self_dur = base_self[0] if base_self else float("nan")
    ingest = prom.query(f"rate(prometheus_tsdb_head_samples_appended_total[{window}])")

    series = end["prometheus_tsdb_head_series"] - base["prometheus_tsdb_head_series"]
    rss = end["process_resident_memory_bytes"] - base["process_resident_memory_bytes"]
    heap = end["go_memstats_heap_inuse_bytes"] - base["go_memstats_heap_inuse_bytes"]
    per_sentinel = sum(per_target) / len(per_target)
    bytes_series = rss / series
    samples_held = args.duration / iv

    rule_ids = len({r for r, _ in rules})
    print(f"fleet bench: {n} sentinels, default pack {rule_ids} rules ({len(rules)}"
          f" rule/severity pairs), {len(TARGETS)} delivery lanes, scrape every {iv:g} s")
    print(f"series per sentinel:      {per_sentinel:.0f} in Prometheus"
          f" ({sum(scraped) / len(scraped):.0f} exposed + 5 per-target: up, scrape_*)")
    print(f"scrape duration:          avg {dur_avg * 1000:.1f} ms, max {dur_max * 1000:.1f} ms"
          f" ({dur_avg / self_dur:.1f}x Prometheus scraping itself, {self_dur * 1000:.1f} ms;"
          f" {n} endpoints in one Python process on {os.cpu_count()} cores)")
    print(f"head series:              {base['prometheus_tsdb_head_series']:.0f} baseline ->"
          f" {end['prometheus_tsdb_head_series']:.0f} with the fleet (+{series:.0f})")
    print(f"Prometheus memory:        RSS {base['process_resident_memory_bytes'] / 2**20:.0f}"
          f" -> {end['process_resident_memory_bytes'] / 2**20:.0f} MiB, heap in use"
          f" {base['go_memstats_heap_inuse_bytes'] / 2**20:.0f}"
          f" -> {end['go_memstats_heap_inuse_bytes'] / 2**20:.0f} MiB")
    print(f"memory per series:        {bytes_series:,.0f} B RSS, {heap / series:,.0f} B heap"
          f" (after ~{samples_held:.0f} samples per series)")
    if ingest:
        print(f"ingestion measured:       {ingest[0]:,.0f} samples/s"
              f" (expected {(end['prometheus_tsdb_head_series']) / iv:,.0f})")
    for name, count in FLEETS:
        total = per_sentinel * count
        print(f"{name}: {total:,.0f} series; {total / PRODUCTION_INTERVAL:,.0f} samples/s at"
              f" {PRODUCTION_INTERVAL:g} s ({total / iv:,.0f} at {iv:g} s);"
              f" ~{total * bytes_series / 2**30:.2f} GiB at {bytes_series:,.0f} B/series")


if __name__ == "__main__":
    main()
