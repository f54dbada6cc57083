"""A receiver that drips its answer one byte a second: each request ends at the target's
timeout in all (not per read), and the lane's gauges stay true while it waits.
The receiver is a real socket server on loopback."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sentinel.metrics import Metrics
from sentinel.sinks.http import Transport
from tests.sinks.conftest import hook, make_alert, make_config, metric
from tests.sinks.receiver import wait_for

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class Dripper:
    """Reads a request, then answers one byte every ``every`` seconds."""

    def __init__(self, every: float = 1.0) -> None:
        self.every = every
        self.requests = 0
        self._stop = threading.Event()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/hook"
        self._thread = threading.Thread(target=self._accept, name="test-dripper", daemon=True)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # closed at the end of the test
            threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            data = b""
            try:
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                self.requests += 1
                for i in range(len(ANSWER)):
                    if self._stop.wait(self.every):
                        return
                    conn.sendall(ANSWER[i:i + 1])
            except OSError:
                return  # the sender gave up: what the test wants

    @contextmanager
    def running(self) -> Iterator[Dripper]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self.sock.close()


def test_a_dripping_answer_ends_at_the_overall_deadline() -> None:
    """Every read arrives within the timeout, so only a deadline on the whole request
    can end it: 59 bytes at 1 byte/s would otherwise take about a minute."""
    with Dripper(every=0.5).running() as slow:
        transport = Transport(hook("soc", slow.url, timeout=1.0), slow.url)
        try:
            t0 = time.monotonic()
            out = transport.post(b"{}")
            took = time.monotonic() - t0
        finally:
            transport.close()
    assert out.result == "retry"
    assert "overall deadline" in out.reason
    # 1 s deadline against ~30 s of dripping: a wide margin for a loaded machine
    assert took < 8.0, f"the request took {took:.1f}s with a 1s timeout"


def test_oldest_pending_gauge_grows_while_a_request_is_in_flight(
        tmp_path: Path, start: Any, metrics: Metrics) -> None:
    with Dripper(every=1.0).running() as slow:
        d = start(make_config(tmp_path, hook("soc", slow.url, timeout=60.0)))
        d.submit(make_alert())
        wait_for(lambda: slow.requests == 1, what="the request to reach the receiver")
        assert metric(metrics, "sentinel_delivery_queue_depth", target="soc") == 1
        wait_for(lambda: metric(metrics, "sentinel_delivery_oldest_pending_seconds",
                                target="soc") >= 2.0,
                 timeout=15, what="the oldest-pending gauge to grow during the request")
