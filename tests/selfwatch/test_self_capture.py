"""Capture that goes quiet is an alert and a metric; a heartbeat reaches a json webhook."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.selfwatch.selfkit import Site
from tests.sinks.receiver import Receiver
from tests.support import wait_for


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture
def wire() -> Iterator[tuple[str, str]]:
    """A veth pair: one end here (sentinel captures on it), the peer in a namespace the
    test made (where the test's frames come from)."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and the ip command to make a namespace and a veth pair")
    ns, here, there = f"sntq-{os.getpid()}", f"sq{os.getpid() % 10**8}a", "sqpeer"
    subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
    _ip("netns", "add", ns)
    try:
        _ip("link", "add", here, "type", "veth", "peer", "name", there, "netns", ns)
        # no IPv6 autoconfiguration chatter: the wire carries only what the test sends
        for prefix in ([], ["ip", "netns", "exec", ns]):
            dev = there if prefix else here
            subprocess.run([*prefix, "sysctl", "-qw", f"net.ipv6.conf.{dev}.disable_ipv6=1"],
                           check=True, capture_output=True)
        _ip("link", "set", here, "up")
        _ip("-n", ns, "link", "set", there, "up")
        yield ns, here
    finally:
        subprocess.run(["ip", "link", "del", here], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


def _send(ns: str, n: int) -> None:
    """n broadcast frames from the namespace's end of the wire (bounded)."""
    frame = (b"\xff" * 6 + bytes.fromhex("020000990002") + b"\x08\x06"
             + bytes.fromhex("0001080006040001020000990002") + bytes([10, 99, 0, 2])
             + b"\x00" * 6 + bytes([10, 99, 0, 1]))
    code = ("import socket,sys\ns=socket.socket(socket.AF_PACKET,socket.SOCK_RAW)\n"
            "s.bind(('sqpeer',0))\n"
            "for _ in range(int(sys.argv[2])): s.send(bytes.fromhex(sys.argv[1]))\n")
    subprocess.run(["ip", "netns", "exec", ns, "python3", "-c", code, frame.hex(), str(n)],
                   check=True, capture_output=True, timeout=30)


def _metric(site: Site, name: str) -> float | None:
    with urllib.request.urlopen(f"http://127.0.0.1:{site.port}/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.rsplit(" ", 1)[1])
    return None


def test_an_interface_that_stops_seeing_traffic_is_an_alert_and_a_metric(
        tmp_path: Path, wire: tuple[str, str]) -> None:
    """Traffic, then none for network.quiet_after: sentinel_capture_quiet{iface} is 1 and a
    high alert names the interface; when frames come back, the metric is 0 again."""
    ns, iface = wire
    with Receiver() as rx:
        site = Site(tmp_path, rx, f"network: {{interfaces: [{iface}], quiet_after: 2s}}\n")
        try:
            site.start()
            quiet = f'sentinel_capture_quiet{{iface="{iface}"}}'
            assert _metric(site, quiet) == 0.0
            _send(ns, 20)
            wait_for(lambda: (_metric(site, f'sentinel_packets_total{{iface="{iface}"}}')
                              or 0) >= 20, what="the frames counted")
            alert = site.wait_alert("sentinel-capture-quiet", timeout=30)
            assert alert["severity"] == "high"
            assert alert["event"]["iface"] == iface
            assert _metric(site, quiet) == 1.0
            wait_for(lambda: site.delivered("sentinel-capture-quiet"), what="the webhook")
            _send(ns, 5)
            wait_for(lambda: _metric(site, quiet) == 0.0, what="quiet back to 0")
            assert site.alerts("sentinel-capture-resumed")
        finally:
            site.kill()


def test_an_interface_that_never_saw_traffic_is_not_quiet(
        tmp_path: Path, wire: tuple[str, str]) -> None:
    _, iface = wire
    with Receiver() as rx:
        site = Site(tmp_path, rx, f"network: {{interfaces: [{iface}], quiet_after: 1s}}\n")
        try:
            site.start()
            time.sleep(3)  # three quiet_after periods without a single frame
            assert site.alerts("sentinel-capture-quiet") == []
        finally:
            site.kill()


def test_a_json_webhook_with_heartbeat_gets_one_every_interval_whatever_its_filters(
        tmp_path: Path) -> None:
    """heartbeat: 1s on a min_severity: critical webhook: heartbeats arrive (info), one
    about every second, and none of them is in the journal."""
    with Receiver() as rx:
        site = Site(tmp_path, rx)
        site.config.write_text(site.config.read_text().replace(
            "min_severity: info}", "min_severity: critical, heartbeat: 1s}"))
        try:
            site.start()
            beats = wait_for(lambda: len(site.delivered("sentinel-heartbeat")) >= 3 and
                             site.delivered("sentinel-heartbeat"), what="three heartbeats")
            assert beats[0]["severity"] == "info"
            assert beats[0]["host"] == "tally-01"
            assert len({b["id"] for b in beats}) == len(beats)
            assert site.alerts("sentinel-heartbeat") == []
        finally:
            site.kill()
