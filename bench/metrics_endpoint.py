"""Cost of one scrape of the metrics endpoint, against a plain-HTTP baseline in the same run.

A registry shaped like a busy tally server's (every family moved; R rules x 5
severities of alerts, the event kinds, 3 webhook targets, 2 interfaces) is
served on loopback, and N scrapes are timed for each way of serving it:

* plain HTTP, no auth                    -- the baseline (1.00)
* basic auth, bcrypt cost 12, cached     -- what a 15 s scrape pays with the cache
* basic auth, bcrypt cost 12, uncached   -- what every scrape would pay without it
* TLS (new connection each scrape, as Prometheus does when keep-alive is off)
* plain HTTP beside S slowloris clients (default 200) that keep their request
  heads open, trickling a byte each half second

Printed as milliseconds per scrape and as ratios against the baseline (the
uncached run does a tenth as many scrapes: each costs a bcrypt round).

    .venv/bin/python bench/metrics_endpoint.py [--scrapes N] [--rules R] [--slow S]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import http.client
import logging
import socket
import ssl
import tempfile
import threading
import time
from pathlib import Path

import bcrypt
from prometheus_client import CollectorRegistry

from sentinel import logs
from sentinel.config import MetricsConfig, TLSServerConfig
from sentinel.events import KIND_FIELDS
from sentinel.metrics import Metrics
from sentinel.sinks import metrics_http
from sentinel.sinks.metrics_http import MetricsServer

PASSWORD = "correct horse battery staple"


def busy_metrics(rules: int) -> Metrics:
    m = Metrics(CollectorRegistry())
    for i in range(rules):
        for sev in ("critical", "high", "medium", "low", "info"):
            m.alerts.labels(f"rule-{i:03d}", sev).inc(i)
        m.rule_state_evictions.labels(f"rule-{i:03d}").inc()
    for kind in KIND_FIELDS:
        m.events.labels("fim" if kind.startswith("fim") else "network", kind).inc(1000)
    for iface in ("eth0", "eth1"):
        m.packets.labels(iface).inc(10**7)
        m.packets_dropped.labels(iface).inc(3)
        m.capture_errors.labels(iface).inc(0)
    for target in ("bawaslu", "ministry-csirt", "alertmanager"):
        for result in ("success", "retry", "failed"):
            m.deliveries.labels(target, result).inc(10)
        m.delivery_queue_depth.labels(target).set(0)
        m.delivery_oldest_pending.labels(target).set(0)
    for reason in ("startup", "periodic", "overflow"):
        m.fim_rescans.labels(reason).inc()
    for c in ("engine", "network", "fim", "delivery"):
        m.component_up.labels(c).set(1)
    for _ in range(1000):
        m.rule_eval_seconds.observe(2e-5)
    return m


def scrape_ms(server: MetricsServer, n: int, auth: str | None,
              ctx: ssl.SSLContext | None) -> float:
    host, port = server.address
    headers = {"Accept-Encoding": "gzip"}
    if auth:
        headers["Authorization"] = auth
    start = time.perf_counter()
    for _ in range(n):
        conn = (http.client.HTTPSConnection(host, port, context=ctx) if ctx
                else http.client.HTTPConnection(host, port))
        conn.request("GET", "/metrics", headers=headers)
        r = conn.getresponse()
        r.read()
        assert r.status == 200, r.status
        conn.close()
    return (time.perf_counter() - start) / n * 1000


class Slowloris:
    """S connections that send a request head a byte at a time and never finish it."""

    def __init__(self, address: tuple[str, int], n: int) -> None:
        self.socks = [socket.create_connection(address, timeout=5) for _ in range(n)]
        for s in self.socks:
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._trickle, name="bench-slowloris",
                                        daemon=True)
        self._thread.start()

    def _trickle(self) -> None:
        while not self._stop.wait(0.5):
            for s in self.socks:
                with contextlib.suppress(OSError):
                    s.sendall(b"X")

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        for s in self.socks:
            s.close()


def self_signed(directory: Path) -> tuple[Path, Path]:
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    c, k = directory / "cert.pem", directory / "key.pem"
    c.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    k.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
    return c, k


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scrapes", type=int, default=200)
    ap.add_argument("--rules", type=int, default=60)
    ap.add_argument("--slow", type=int, default=200, help="slowloris clients in the last run")
    args = ap.parse_args()
    logs.configure(level=logging.WARNING)
    m = busy_metrics(args.rules)
    users = (("prometheus", bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(12)).decode()),)
    auth = "Basic " + base64.b64encode(f"prometheus:{PASSWORD}".encode()).decode()
    loopback = ("127.0.0.1", 0)
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as d:
        cert, key = self_signed(Path(d))
        ctx = ssl.create_default_context(cafile=str(cert))
        runs = [
            ("plain HTTP (baseline)", MetricsConfig(listen=loopback), None, None, None),
            ("basic auth, cached", MetricsConfig(listen=loopback, basic_auth=users), auth,
             None, None),
            ("basic auth, uncached", MetricsConfig(listen=loopback, basic_auth=users), auth,
             None, 0.0),
            ("TLS", MetricsConfig(listen=loopback, tls=TLSServerConfig(cert, key)), None,
             ctx, None),
            (f"beside {args.slow} slowloris", MetricsConfig(listen=loopback), None, None,
             None),
        ]
        for label, cfg, header, tls, ttl in runs:
            s = MetricsServer(cfg, m, dict)
            if ttl is not None:
                assert s.auth is not None
                s.auth = metrics_http.BasicAuth(cfg.basic_auth, ttl=ttl)
            s.start()
            slow = Slowloris(s.address, args.slow) if "slowloris" in label else None
            try:
                scrape_ms(s, 3, header, tls)  # warm up
                # a bcrypt round per scrape: a tenth as many is plenty to measure
                n = max(5, args.scrapes // 10) if ttl == 0.0 else args.scrapes
                results[label] = scrape_ms(s, n, header, tls)
            finally:
                if slow is not None:
                    slow.close()
                s.stop()
    series = sum(len(f.samples) for f in m.registry.collect())
    base = results["plain HTTP (baseline)"]
    print(f"metrics endpoint: {series} samples, {args.scrapes} scrapes each"
          f" ({max(5, args.scrapes // 10)} uncached)")
    for label, ms in results.items():
        print(f"  {label:24s} {ms:8.2f} ms/scrape   {ms / base:7.2f}x baseline")


if __name__ == "__main__":
    main()
