"""Stations learned from every frame that opens a flow, not only from ARP: a MAC
flood (frames from made-up MACs) and IPv6-only stations are seen (#17.5)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from netkit import site_config, write_pcap
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether

from sentinel.metrics import Metrics
from sentinel.sources.net import iter_pcap_events
from sentinel.sources.net.stations import LEARN, StationTable

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
