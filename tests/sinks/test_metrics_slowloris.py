"""Slowloris against the metrics endpoint: hundreds of real sockets trickling header
bytes, and scrapes are still answered; a request head has a deadline and a size cap,
and at the cap of unfinished connections the oldest one makes room."""

from __future__ import annotations

import http.client
import socket
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from prometheus_client import CollectorRegistry

from sentinel.config import MetricsConfig
from sentinel.metrics import Metrics
from sentinel.sinks import http_front
from sentinel.sinks.metrics_http import MetricsServer
from tests.prom import populate

N_SLOW = 200


@contextmanager
def server() -> Iterator[MetricsServer]:
    metrics = Metrics(CollectorRegistry())
    populate(metrics)
    s = MetricsServer(MetricsConfig(listen=("127.0.0.1", 0)), metrics, lambda: {"x": True})
    s.start()
    try:
        yield s
    finally:
        s.stop()


def scrape(address: tuple[str, int]) -> tuple[int, float]:
    """(status, seconds) of one scrape on a fresh connection."""
    t0 = time.monotonic()
    conn = http.client.HTTPConnection(*address, timeout=10)
    try:
        conn.request("GET", "/metrics")
        r = conn.getresponse()
        r.read()
        return r.status, time.monotonic() - t0
    finally:
        conn.close()


def trickle_start(address: tuple[str, int], n: int) -> list[socket.socket]:
    socks = []
    for _ in range(n):
        s = socket.create_connection(address, timeout=5)
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        socks.append(s)
    return socks


def trickle(socks: list[socket.socket], byte: bytes = b"X") -> int:
    """One more header byte on each socket; how many the server has closed."""
    closed = 0
    for s in socks:
        try:
            s.sendall(byte)
        except OSError:
            closed += 1
    return closed


def test_scrapes_are_answered_within_1s_beside_200_trickling_connections() -> None:
    with server() as srv:
        slow = trickle_start(srv.address, N_SLOW)
        try:
            answers = []
            for _ in range(5):  # bounded: 5 rounds of one byte each, a scrape each
                assert trickle(slow) == 0, "a trickling client was dropped before its deadline"
                answers.append(scrape(srv.address))
                time.sleep(0.2)
        finally:
            for s in slow:
                s.close()
    assert [st for st, _ in answers] == [200] * 5
    # the 1 s, on the median of five: one scheduling hiccup of a loaded
    # machine does not decide it, a server that cannot answer does
    took = statistics.median(t for _, t in answers)
    assert took < 1.0, f"median scrape {took:.2f}s beside {N_SLOW} slow clients"


def test_a_request_head_must_be_complete_within_the_deadline(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http_front, "HEAD_TIMEOUT", 1.0)
    with server() as srv:
        [s] = trickle_start(srv.address, 1)
        with s:
            s.settimeout(0.2)
            gone = False
            for _ in range(50):  # a byte every 0.2 s for up to 10 s
                try:
                    s.sendall(b"X")
                    gone = s.recv(1) == b""
                except TimeoutError:
                    continue
                except OSError:
                    gone = True
                if gone:
                    break
            assert gone, "a client trickling its head was never cut off"
        assert scrape(srv.address)[0] == 200


def test_a_request_head_over_the_size_cap_is_dropped() -> None:
    with server() as srv, socket.create_connection(srv.address, timeout=5) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\n")
        try:
            for _ in range(40):
                s.sendall(b"X-Pad: " + b"a" * 1000 + b"\r\n")
            answer = s.recv(100)
        except OSError:
            answer = b""
        assert answer == b""


def test_at_the_cap_the_oldest_unfinished_connection_makes_room(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http_front, "MAX_PENDING", 4)
    with server() as srv:
        idle = [socket.create_connection(srv.address, timeout=5) for _ in range(4)]
        try:
            time.sleep(0.3)  # accepted, in arrival order
            assert scrape(srv.address)[0] == 200
            idle[0].settimeout(5)
            assert idle[0].recv(1) == b"", "the oldest idle connection was kept"
        finally:
            for s in idle:
                s.close()
