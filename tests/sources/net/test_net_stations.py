"""Stations learned from every frame that opens a flow, not only from ARP: a MAC
flood (frames from made-up MACs) and IPv6-only stations are seen (#17.5)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from netkit import VethPair, send_frames, site_config, write_pcap
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from structlog.testing import capture_logs
from support import wait_for
from test_net_live import _ready, pair, start

from sentinel.metrics import Metrics
from sentinel.sources.net import iter_pcap_events
from sentinel.sources.net import stations as stations_module
from sentinel.sources.net.stations import BURST_WINDOW, LEARN, LEARN_BURST, StationTable

__all__ = ["pair"]  # the fixture, used by name

T0 = 1_707_890_400.0
TALLY_MAC = "02:00:00:00:00:10"


def stations(tmp: Path, frames: list[tuple[float, Any]]) -> list[dict[str, Any]]:
    pcap = write_pcap(tmp / "s.pcap", 1, [(t, bytes(f)) for t, f in frames])
    return [e.to_dict() for e in iter_pcap_events([pcap], site_config(tmp), Metrics())
            if e.kind == "net.station"]


def test_frames_that_open_flows_name_new_stations_after_the_learning_time(
        tmp_path: Path) -> None:
    known, late4, late6 = "02:00:00:00:01:01", "02:00:00:00:07:04", "02:00:00:00:07:06"
    frames = [
        # learned: seen in the first five minutes, silently
        (T0, Ether(src=known, dst=TALLY_MAC) / IP(src="10.20.0.21", dst="10.20.0.10")
         / TCP(sport=40000, dport=443, flags="S")),
        # the same station later, on a new flow: not new
        (T0 + LEARN + 1, Ether(src=known, dst=TALLY_MAC)
         / IP(src="10.20.0.21", dst="10.20.0.10") / TCP(sport=40001, dport=443, flags="S")),
        # new after the learning time: over IPv4 TCP (the fast path), IPv6 TCP, and UDP
        (T0 + LEARN + 2, Ether(src=late4, dst=TALLY_MAC)
         / IP(src="10.20.0.77", dst="10.20.0.10") / TCP(sport=40002, dport=443, flags="S")),
        (T0 + LEARN + 3, Ether(src=late6, dst=TALLY_MAC)
         / IPv6(src="2001:db8::77", dst="2001:db8::10") / TCP(sport=40003, dport=443,
                                                              flags="S")),
        (T0 + LEARN + 4, Ether(src="02:00:00:00:07:17", dst=TALLY_MAC)
         / IP(src="10.20.0.78", dst="10.20.0.10") / UDP(sport=40004, dport=161)),
        # a known flow's later packets are not looked at again
        (T0 + LEARN + 5, Ether(src=late4, dst=TALLY_MAC)
         / IP(src="10.20.0.77", dst="10.20.0.10") / TCP(sport=40002, dport=443, flags="A")),
    ]
    got = stations(tmp_path, frames)
    assert [(e["change"], e["sender_mac"], e["sender_ip"]) for e in got] == [
        ("new", late4, "10.20.0.77"), ("new", late6, "2001:db8::77"),
        ("new", "02:00:00:00:07:17", "10.20.0.78")]
    assert all(e["previous_mac"] is None for e in got)


def test_a_flood_ends_the_learning_time() -> None:
    """More than LEARN_BURST new MACs within a minute are no segment introducing itself:
    a flood in the first five minutes (a daemon started during one, a capture of one)
    is reported from the MAC past the burst on, and stays so."""
    seen: list[tuple[Any, ...]] = []
    ended: list[tuple[float, str, int]] = []
    table = StationTable(lambda *a: seen.append(a), on_learned=lambda *a: ended.append(a))
    addr = bytes([10, 99, 0, 1])
    for i in range(LEARN_BURST + 30):
        table.frame(T0 + i * 0.001, b"\x06" + i.to_bytes(5, "big"), addr)
    assert len(seen) == 30 and all(s[4] == "new" for s in seen)
    assert seen[0][2] == b"\x06" + LEARN_BURST.to_bytes(5, "big")
    table.frame(T0 + 100, b"\x08" * 6, addr)  # still in the first five minutes
    assert len(seen) == 31
    # told once, with why and how many were learned
    assert ended == [(T0 + LEARN_BURST * 0.001, "burst", LEARN_BURST)]


def test_a_segment_introducing_itself_at_a_steady_pace_is_learned() -> None:
    """A large segment's stations turning up over the first minutes, up to LEARN_BURST
    in every minute, stay learned silently; once learning is over, new is new."""
    seen: list[tuple[Any, ...]] = []
    ended: list[tuple[float, str, int]] = []
    table = StationTable(lambda *a: seen.append(a), on_learned=lambda *a: ended.append(a))
    addr = bytes([10, 20, 0, 1])
    for i in range(4 * LEARN_BURST):  # LEARN_BURST a minute for four minutes
        table.frame(T0 + i * BURST_WINDOW / LEARN_BURST, b"\x02" + i.to_bytes(5, "big"), addr)
    assert seen == [] and ended == []
    table.frame(T0 + LEARN, b"\x04" * 6, addr)
    assert [s[4] for s in seen] == ["new"]
    assert ended == [(T0 + LEARN, "time", 4 * LEARN_BURST)]
    table.frame(T0 + LEARN + 1, b"\x06" * 6, addr)
    assert len(ended) == 1


def test_ip_frames_feed_no_flip_flops() -> None:
    """An IP frame's sender address may be anyone's behind a router: only ARP maps
    addresses to MACs, so forwarded traffic cannot make a flip-flop."""
    seen: list[tuple[Any, ...]] = []
    table = StationTable(lambda *a: seen.append(a), learn=0.0)
    a, router1, router2 = bytes([198, 51, 100, 9]), b"\x02" * 6, b"\x04" * 6
    for mac in (router1, router2, router1):
        table.frame(1.0, mac, a)
    assert [s[4] for s in seen] == ["new", "new"]
    assert not table.addrs


@pytest.mark.root
@pytest.mark.timeout(120)
def test_live_frames_from_made_up_macs_are_new_stations(pair: VethPair, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Live, the kernel parses the link layer and the sender's MAC comes from the ring's
    link-layer address: frames from made-up MACs (a MAC flood) are new stations, the
    flooding tool's truncated frames too."""
    monkeypatch.setattr(stations_module, "LEARN", 0.0)  # no five minutes to wait here
    with capture_logs() as logged:
        src, got, metrics = start(pair, tmp_path, [pair.va])
        try:
            _flood(pair, got, metrics)
        finally:
            src.stop()
    # the end of learning is one line, for the interface captured
    ended = [x for x in logged if x["event"] == "station_learning_ended"]
    assert [(x["iface"], x["reason"]) for x in ended] == [(pair.va, "time")]


def _flood(pair: VethPair, got: Any, metrics: Metrics) -> None:
    """Frames from made-up MACs, IPv6 and truncated among them: each a new station."""
    _ready(pair, got)
    made_up = [f"06:00:00:00:{i // 256:02x}:{i % 256:02x}" for i in range(40)]
    frames = [bytes(Ether(src=mac, dst="0a:11:22:33:44:55")
                    / IP(src=f"10.66.{i}.1", dst=f"10.77.{i}.1")
                    / TCP(sport=1000 + i, dport=80, flags="S"))
              for i, mac in enumerate(made_up)]
    frames.append(bytes(Ether(src="06:00:00:00:06:06", dst=pair.AMAC)
                        / IPv6(src="2001:db8::66", dst=pair.A6) / UDP(dport=9)))
    # a flooding tool's frame: 34 bytes, an IPv4 header claiming a TCP header it
    # lacks. The kernel filter must not drop it for reading ports past its end.
    cut = bytes(Ether(src="06:00:00:00:03:04", dst="0a:11:22:33:44:55")
                / IP(src="10.66.200.1", dst="10.77.200.1", len=40, proto=6))[:34]
    assert len(cut) == 34
    frames.append(cut)
    send_frames(pair.b, pair.vb, frames)
    wait_for(lambda: len(got.find("net.station", change="new")) >= 42, what="42 stations")
    new = {e["sender_mac"]: e["sender_ip"] for e in got.find("net.station", change="new")}
    assert all(new[m] == f"10.66.{i}.1" for i, m in enumerate(made_up))
    assert new["06:00:00:00:06:06"] == "2001:db8::66"
    assert new["06:00:00:00:03:04"] == "10.66.200.1"
    assert metrics.decode_errors._value.get() >= 1  # the cut frame, counted
