"""The trackers that hold state per source, station or stream stay within their bounds
however many an attacker makes up, and still report what they were made for."""

from __future__ import annotations

import struct

from sentinel.sources.net import scans, stations
from sentinel.sources.net.scans import ScanTracker
from sentinel.sources.net.stations import StationTable
from sentinel.sources.net.tcpdns import TcpDnsStreams


def test_scan_tracker_keeps_at_most_max_sources_and_sums_up_the_evicted() -> None:
    reports: list[tuple[bytes, int]] = []
    tracker = ScanTracker(lambda ts, src, dst, ports, *_: reports.append((src, ports)))
    scanner = b"\x0a\x14\x00\x42"
    for port in range(1, 101):  # a scan first
        tracker.connection(0.0, scanner, b"\x0a\x14\x00\x0a", port, False)
    for i in range(scans.MAX_SOURCES + 10):  # then spoofed sources, one connection each
        tracker.connection(1.0, struct.pack("!I", 0x0B000000 + i), b"\x0a\x14\x00\x0a", 80,
                           False)
        assert len(tracker.sources) <= scans.MAX_SOURCES
    assert reports == [(scanner, 100)]  # evicted early, but summed up, not lost


def test_scan_tracker_caps_hosts_and_says_so() -> None:
    got: list[tuple[int, bool]] = []
    tracker = ScanTracker(lambda ts, src, dst, ports, hosts, capped, *_: got.append(
        (hosts, capped)))
    for i in range(scans.MAX_HOSTS + 500):
        tracker.connection(0.0, b"\x0a\x14\x00\x42", struct.pack("!I", 0x0A000000 + i), 445,
                           False)
    tracker.flush(10.0)
    assert got == [(scans.MAX_HOSTS, True)]


def test_station_table_is_bounded() -> None:
    table = StationTable(lambda *a: None, learn=0.0)
    for i in range(stations.MAX_STATIONS + 100):
        table.arp(1.0, struct.pack("!Q", i)[2:], struct.pack("!I", 0x0A000000 + i))
    assert len(table.macs) <= stations.MAX_STATIONS
    assert len(table.addrs) <= stations.MAX_STATIONS


def test_tcp_dns_streams_are_bounded() -> None:
    streams = TcpDnsStreams(max_streams=64)
    for i in range(500):
        streams.segment(b"\1\2\3\4", b"\5\6\7\10", 1024 + i, 53, 100, 0x02, b"", 0, 0)
        streams.segment(b"\1\2\3\4", b"\5\6\7\10", 1024 + i, 53, 101, 0x18, b"\xff\xff" +
                        b"x" * 100, 0, 102)  # a 65,535-byte message announced, never sent
        assert len(streams.streams) <= 64
