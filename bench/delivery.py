"""Delivery throughput and memory: sentinel's journal+spool+signed POST against bare POSTs.

In one run, against one loopback HTTP receiver:

* baseline: a bare ``requests.Session`` posting the same alert bodies, one
  after the other, nothing journaled, spooled or signed;
* sentinel, ``fsync: record`` (the default: every alert fsynced to the
  journal and the spool before ``submit`` returns) and ``fsync: none``,
  measured from the first ``submit`` until the receiver has every alert.

Prints alerts/s for each and the ratio to the baseline. Then memory: a
backlog of N and of 10xN alerts is spooled while the receiver is down, then
drained; the peak of Python allocations (tracemalloc) while draining is
printed for both, with their ratio — near 1 when memory does not grow with the
backlog.

    .venv/bin/python bench/delivery.py [--alerts N]
"""

from __future__ import annotations

import argparse
import socket
import tempfile
import threading
import time
import tracemalloc
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests

from sentinel.alert import Alert
from sentinel.config import (
    Config,
    HostConfig,
    JournalConfig,
    OutputsConfig,
    Secret,
    WebhookConfig,
)
from sentinel.metrics import Metrics
from sentinel.sinks import build_delivery
from sentinel.sinks.journal import alert_json

SECRET = Secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "bench")


class Sink:
    """A loopback receiver counting the alerts it accepted."""

    def __init__(self, port: int = 0) -> None:
        self.count = 0
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with outer.lock:
                    outer.count += 1
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, name="bench-receiver",
                         daemon=True).start()

    def wait(self, n: int, timeout: float = 600.0) -> None:
        deadline = time.monotonic() + timeout
        while self.count < n:
            if time.monotonic() > deadline:
                raise SystemExit(f"receiver got {self.count} of {n}")
            time.sleep(0.005)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def alerts(n: int) -> list[Alert]:
    return [Alert(rule="bench", title=f"alert {i}", severity="high", time=time.time(),
                  host="tally-01", source="network", tags=("network",),
                  event={"kind": "net.connection", "src_ip": "10.20.5.7", "dst_port": 5432})
            for i in range(n)]


def config(state: Path, url: str, fsync: str) -> Config:
    hook = WebhookConfig(name="bench", urls=(url,), secret=SECRET, retry_initial=0.05,
                         retry_max=0.2)
    return Config(source=state / "c.yaml", host=HostConfig("tally-01", ()), state_dir=state,
                  outputs=OutputsConfig(journal=JournalConfig(fsync=fsync), webhooks=(hook,)))


def baseline(n: int) -> float:
    sink = Sink()
    bodies = [alert_json(a) for a in alerts(n)]
    s = requests.Session()
    t = time.perf_counter()
    for b in bodies:
        s.post(sink.url, data=b, headers={"Content-Type": "application/json"}, timeout=10)
    elapsed = time.perf_counter() - t
    sink.close()
    return n / elapsed


def sentinel(n: int, fsync: str) -> float:
    sink = Sink()
    batch = alerts(n)
    with tempfile.TemporaryDirectory() as tmp:
        d = build_delivery(config(Path(tmp), sink.url, fsync), Metrics())
        t = time.perf_counter()
        for a in batch:
            d.submit(a)
        sink.wait(n)
        elapsed = time.perf_counter() - t
        d.close(5)
    sink.close()
    return n / elapsed


def drain_peak(n: int) -> float:
    """Peak MiB allocated while draining a backlog of ``n`` spooled alerts."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        cfg = config(Path(tmp), f"http://127.0.0.1:{port}/hook", "none")
        d = build_delivery(cfg, Metrics())
        for a in alerts(n):
            d.submit(a)
        d.close(5)
        sink = Sink(port)
        tracemalloc.start()
        d = build_delivery(cfg, Metrics())
        sink.wait(n)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        d.close(5)
        sink.close()
    return peak / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--alerts", type=int, default=2000)
    args = ap.parse_args()
    n = args.alerts
    base = baseline(n)
    print(f"baseline bare POST:          {base:9.0f} alerts/s")
    for fsync in ("record", "none"):
        rate = sentinel(n, fsync)
        print(f"sentinel fsync={fsync:<7}      {rate:9.0f} alerts/s"
              f"  ratio {rate / base:.2f}x of baseline")
    small, big = drain_peak(n // 4), drain_peak(n * 10 // 4)
    print(f"drain peak memory, backlog {n // 4:>6}: {small:6.2f} MiB")
    print(f"drain peak memory, backlog {n * 10 // 4:>6}: {big:6.2f} MiB"
          f"  ratio {big / small:.2f}x for 10x the backlog")


if __name__ == "__main__":
    main()
