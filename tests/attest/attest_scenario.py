"""An incident, for real: alerts through the real delivery (journal, spools, a real
HTTP receiver on loopback), a real baseline and attestations, in a state folder."""

from __future__ import annotations

import socket
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from sentinel.alert import Alert
from sentinel.attest import Attestor, generate_keypair
from sentinel.config import Config
from sentinel.metrics import Metrics
from sentinel.sinks import build_delivery
from tests.support import wait_for

T0 = datetime.fromisoformat("2024-02-14T12:10:00+07:00").timestamp()
XSS_QNAME = "<script>alert(1)</script>"
XSS_PATH = '/opt/tally/bin/"><img src=x onerror=alert(2)>'
COUNTING = """\
counting:
  - {start: "2024-02-14T13:00:00+07:00", end: "2024-02-15T23:59:00+07:00"}
"""




class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        code = 200 if self.path == "/ok" else 404
        self.server.received.append((self.path, code))  # type: ignore[attr-defined]
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def receiver() -> Iterator[ThreadingHTTPServer]:
    """A webhook receiver on loopback: /ok answers 200, anything else 404."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.received = []  # type: ignore[attr-defined]
    t = threading.Thread(target=server.serve_forever, name="test-receiver", daemon=True)
    t.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        t.join(5)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def webhooks(port: int) -> str:
    """Three recipients: one that accepts, one that refuses for good, one that is down."""
    fast = "retry: {initial: 50ms, max: 200ms}"
    return f"""\
- {{name: bawaslu, url: "http://127.0.0.1:{port}/ok", min_severity: high, {fast}}}
- {{name: ministry-csirt, url: "http://127.0.0.1:{port}/gone", min_severity: critical, {fast}}}
- {{name: observer, url: "http://127.0.0.1:{closed_port()}/down", min_severity: info, {fast}}}
"""


def alerts() -> list[Alert]:
    """Alerts of every severity over a few hours, two with hostile content."""
    net = {"kind": "net.connection", "proto": "tcp", "src_ip": "10.20.5.7", "src_port": 51234,
           "dst_ip": "10.20.0.10", "dst_port": 5432, "direction": "inbound"}
    dns = {"kind": "net.dns", "qname": XSS_QNAME, "qtype": "TXT", "src_ip": "10.20.0.10",
           "dst_ip": "10.20.0.2"}
    fim = {"kind": "fim.modified", "path": XSS_PATH, "changed": ["content"],
           "sha256_after": "ab" * 32}
    plan = [
        (0.0, "info", "flow-summary", "Long flow to the aggregation server", net, ("network",)),
        (0.4, "low", "ntp-other-server", "NTP to an unknown server", net, ("network",)),
        (1.1, "medium", "dns-unknown-domain", f"Query for {XSS_QNAME}", dns, ("network",)),
        (1.2, "high", "tally-db-unauthorized-access", "Connection to the tally database", net,
         ("tally-db",)),
        (1.25, "high", "tally-db-unauthorized-access", "Connection to the tally database", net,
         ("tally-db",)),
        (2.5, "critical", "tally-binary-modified", "Tally binary modified", fim,
         ("tally-binaries",)),
        (3.0, "medium", "dns-unknown-domain", "Query for an unknown domain", dns, ("network",)),
        (3.7, "info", "flow-summary", "Long flow to the aggregation server", net, ("network",)),
    ]
    return [Alert(rule, title, sev, T0 + h * 3600, "tally-01", ev["kind"].split(".")[0]
                  .replace("net", "network"), tags, ev)
            for h, sev, rule, title, ev, tags in plan]


def spool_ids(path: Path, table: str) -> set[str]:
    if not path.exists():
        return set()
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return {r[0] for r in db.execute(f"SELECT id FROM {table}")}
    except sqlite3.Error:
        return set()
    finally:
        db.close()


@dataclass
class Incident:
    config: Config
    alerts: list[Alert]
    pubkey: Path


def run_incident(config: Config, server: ThreadingHTTPServer) -> Incident:
    """Deliver the alerts for real, attest before and after, and stop."""
    metrics = Metrics(CollectorRegistry())
    _, pub = generate_keypair(config.in_state(config.attest.key_file))
    delivery = build_delivery(config, metrics)
    now = [T0 - 600]
    attestor = Attestor(config, metrics, lambda: now[0], rules_digest=lambda: "cd" * 32,
                        journal_head=delivery.journal_head)
    try:
        assert attestor.maybe_attest() is not None
        sent = alerts()
        for a in sent:
            delivery.submit(a)
        ok = {a.id for a in sent if a.severity in ("high", "critical")}
        gone = {a.id for a in sent if a.severity == "critical"}
        spool = config.state_dir / "spool"
        wait_for(lambda: len([r for r in server.received if r[0] == "/ok"])  # type: ignore[attr-defined]
                 >= len(ok) and not spool_ids(spool / "bawaslu.db", "pending"),
                 what="bawaslu to take its alerts")
        wait_for(lambda: spool_ids(spool / "ministry-csirt.db", "dead") == gone,
                 what="ministry-csirt to refuse its alert")
        wait_for(lambda: bool(spool_ids(spool / "observer.db", "pending")),
                 what="observer's alerts to wait in the spool")
        now[0] = T0 + 4 * 3600  # after the counting window opened: a boundary
        assert attestor.maybe_attest() is not None
    finally:
        delivery.close(5.0)
    return Incident(config, sent, pub)
