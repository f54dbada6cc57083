"""A normal election day at the reference site raises no alert at all.

The capture holds what the tally server sees on a busy counting afternoon:
forty counting stations on 443, the app server on 5432, an administrator's SSH
session, DNS for kpu.go.id names, NTP, uploads to the central aggregation
server, ARP (the gateway with its real MAC) and pings inside the site. The file
activity is the tally application writing new result files. A pack that alerts
on any of this would be ignored on the day it matters.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.dns import DNS, DNSQR
from scapy.layers.inet import TCP, UDP
from scapy.packet import Raw
from scenariokit import (
    ADMIN,
    APP_SERVER,
    CENTRAL,
    DNS_SERVER,
    GATEWAY,
    GATEWAY_MAC,
    NTP_SERVER,
    T0,
    TALLY,
    TALLY_MAC,
    Capture,
    FimSite,
    Live,
    mac_of,
    replay,
)

MINUTES = 15
STATIONS = [f"10.20.0.{i}" for i in range(21, 61)]
NAMES = ["kpu.go.id", "pemilu.kpu.go.id", "sirekap.kpu.go.id", "api.sirekap.kpu.go.id",
         "infopemilu.kpu.go.id"]


def normal_day() -> Capture:
    c = Capture()
    end = T0 + MINUTES * 60
    # ARP as the day starts: everyone finds the tally server and the gateway
    c.arp_request(T0, TALLY_MAC, TALLY, GATEWAY)
    c.arp_reply(T0 + 0.001, GATEWAY_MAC, GATEWAY, TALLY_MAC, TALLY)
    for i, station in enumerate(STATIONS):
        t = T0 + 0.01 * (i + 1)
        c.arp_request(t, mac_of(station), station, TALLY)
        c.arp_reply(t + 0.001, TALLY_MAC, TALLY, mac_of(station), station)
    for ip in (APP_SERVER, DNS_SERVER, NTP_SERVER):
        c.arp_request(T0 + 1, TALLY_MAC, TALLY, ip)
        c.arp_reply(T0 + 1.001, mac_of(ip), ip, TALLY_MAC, TALLY)
    port = 30000
    # counting stations submit and check results over HTTPS every couple of minutes
    for i, station in enumerate(STATIONS):
        t = T0 + 2 + i * 1.7
        while t < end:
            port += 1
            c.tcp_session(t, station, port, TALLY, 443, up=3000, down=8000)
            t += 110 + (i % 7) * 3
    # the app server: one long-lived database connection with queries every 10 s
    c.syn(T0 + 1.5, APP_SERVER, 39000, TALLY, 5432)
    c.ip(T0 + 1.501, TALLY, APP_SERVER, TCP(sport=5432, dport=39000, flags="SA", seq=1, ack=1))
    t = T0 + 2
    while t < end:
        c.ip(t, APP_SERVER, TALLY, TCP(sport=39000, dport=5432, flags="PA") / Raw(b"Q" * 200))
        c.ip(t + 0.003, TALLY, APP_SERVER, TCP(sport=5432, dport=39000, flags="PA")
             / Raw(b"D" * 1400))
        t += 10
    # and short connections from its worker pool
    for k in range(20):
        port += 1
        c.tcp_session(T0 + 30 + k * 40, APP_SERVER, port, TALLY, 5432, up=500, down=4000)
    # an administrator's SSH session, typing now and then
    c.syn(T0 + 5, ADMIN, 38000, TALLY, 22)
    c.ip(T0 + 5.001, TALLY, ADMIN, TCP(sport=22, dport=38000, flags="SA", seq=1, ack=1))
    for k in range(MINUTES * 2):
        t = T0 + 6 + k * 30
        c.ip(t, ADMIN, TALLY, TCP(sport=38000, dport=22, flags="PA") / Raw(b"k" * 64))
        c.ip(t + 0.01, TALLY, ADMIN, TCP(sport=22, dport=38000, flags="PA") / Raw(b"o" * 300))
    # the tally server's own needs: names under kpu.go.id, time, uploads to the centre
    for k in range(MINUTES):
        t = T0 + 10 + k * 60
        for j, name in enumerate(NAMES):
            c.dns(t + j * 0.1, TALLY, name, "A", sport=41000 + (k * 10 + j) % 20000)
            c.dns(t + j * 0.1 + 0.05, TALLY, name, "AAAA", sport=43000 + (k * 10 + j) % 20000)
        c.ntp(t + 20)
    for k in range(MINUTES // 2):
        port += 1
        c.tcp_session(T0 + 60 + k * 120, TALLY, port, CENTRAL, 443, up=250_000, down=2000)
    # monitoring pings inside the site, and ARP refreshes (the gateway's real MAC)
    for k in range(MINUTES):
        t = T0 + 15 + k * 60
        c.ping(t, GATEWAY, TALLY)
        c.ping(t + 1, TALLY, GATEWAY)
        c.ping(t + 2, ADMIN, TALLY)
        c.arp_request(t + 3, GATEWAY_MAC, GATEWAY, TALLY)
        c.arp_reply(t + 3.001, TALLY_MAC, TALLY, GATEWAY_MAC, GATEWAY)
        c.arp_request(t + 4, TALLY_MAC, TALLY, GATEWAY)
        c.arp_reply(t + 4.001, GATEWAY_MAC, GATEWAY, TALLY_MAC, TALLY)
    # the tally server renews its DHCP lease (unicast, then a broadcast rebind) and the
    # site's DHCP server (the gateway) answers; its resolver stack sends mDNS and LLMNR
    for k, dst in enumerate((GATEWAY, "255.255.255.255")):
        t = T0 + 400 + k * 60
        c.ip(t, TALLY, dst, UDP(sport=68, dport=67) / BOOTP(ciaddr=TALLY)
             / DHCP(options=[("message-type", "request"), "end"]))
        c.ip(t + 0.002, GATEWAY, TALLY, UDP(sport=67, dport=68) / BOOTP(op=2, yiaddr=TALLY)
             / DHCP(options=[("message-type", "ack"), "end"]))
    for k in range(3):
        t = T0 + 500 + k * 90
        c.ip(t, TALLY, "224.0.0.251", UDP(sport=5353, dport=5353)
             / DNS(qd=DNSQR(qname="tally-01.local", qtype="A")))
        c.ip(t + 0.1, TALLY, "224.0.0.252", UDP(sport=50000 + k, dport=5355)
             / DNS(qd=DNSQR(qname="tally-01", qtype="A")))
    return c


@pytest.fixture(scope="module")
def normal_capture(tmp_path_factory: pytest.TempPathFactory
                   ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(alerts, events) of the normal day's capture."""
    pcap = normal_day().write(tmp_path_factory.mktemp("normal") / "normal-day.pcap")
    with ThreadPoolExecutor(max_workers=2) as pool:
        alerts = pool.submit(replay, pcap)
        events = pool.submit(replay, pcap, "--events")
        return alerts.result(), events.result()


def test_normal_day_traffic_raises_no_alert(
        normal_capture: tuple[list[dict[str, Any]], list[dict[str, Any]]]) -> None:
    alerts, _ = normal_capture
    assert [(a["rule"], a["title"]) for a in alerts] == []


def test_normal_day_capture_holds_the_whole_day(
        normal_capture: tuple[list[dict[str, Any]], list[dict[str, Any]]]) -> None:
    """The silence is earned: every kind of traffic the pack watches is in the capture."""
    _, events = normal_capture
    kinds: dict[str, int] = {}
    for e in events:
        kinds[e["kind"]] = kinds.get(e["kind"], 0) + 1
    assert kinds.get("net.connection", 0) >= 300
    assert kinds.get("net.tcp_synack", 0) >= 300
    assert kinds.get("net.dns", 0) >= 4 * MINUTES * len(NAMES) // 2
    assert kinds.get("net.arp", 0) >= 2 * len(STATIONS)
    assert kinds.get("net.icmp", 0) >= 4 * MINUTES
    assert kinds.get("net.flow", 0) >= 300
    pairs = {(e.get("src_ip"), e.get("dst_ip"), e.get("dst_port")) for e in events
             if e["kind"] == "net.connection"}
    assert {(TALLY, CENTRAL, 443), (TALLY, DNS_SERVER, 53), (TALLY, NTP_SERVER, 123),
            (APP_SERVER, TALLY, 5432), (ADMIN, TALLY, 22)} <= pairs
    assert {e["qname"] for e in events if e["kind"] == "net.dns"} == set(NAMES)


# -- file activity -------------------------------------------------------------------


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    lv = Live(FimSite(tmp_path))
    lv.source.start(lv.emit)
    try:
        yield lv
    finally:
        lv.source.stop()


def test_new_result_files_raise_no_alert(live: Live) -> None:
    results = live.site.at("/var/lib/tally/results")
    written: list[Path] = []
    for n in range(3, 23):  # written in one go
        p = results / f"tps-{n:03d}.json"
        p.write_text(f'{{"tps": {n}, "a": {n * 3}, "b": {n * 5}}}\n')
        written.append(p)
    for n in range(23, 28):  # written to a temporary file, then renamed into place
        tmp = results / f"tps-{n:03d}.json.tmp"
        tmp.write_text(f'{{"tps": {n}}}\n')
        os.rename(tmp, results / f"tps-{n:03d}.json")
        written.append(results / f"tps-{n:03d}.json")
    sub = results / "kecamatan-07"  # a new folder of exports
    sub.mkdir()
    for n in range(3):
        with open(sub / f"tps-7{n:02d}.json", "w") as f:  # written in pieces
            f.write('{"tps": ')
            f.flush()
            f.write(f'{700 + n}}}\n')
        written.append(sub / f"tps-7{n:02d}.json")
    live.barrier()
    created = {e.fields["path"] for e in live.snapshot() if e.kind == "fim.created"}
    assert {str(p) for p in written} <= created  # the files were seen ...
    assert [(a.rule, a.title) for a in live.alerts()] == []  # ... and are normal
