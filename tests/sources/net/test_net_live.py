"""Live capture: real traffic between two network namespaces over a veth pair.

The capture runs in this process, on threads inside the watched namespace
``a``; the traffic comes from namespace ``b`` (kernel TCP/UDP sockets, and
frames crafted with scapy for DNS, ARP and ICMP). Static neighbour entries
keep the kernel from adding ARP/ND of its own; the ICMPv6 multicast chatter
of a link coming up (to ff02::/16) is left out of the comparisons.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from netkit import (
    VethPair,
    in_netns,
    ip,
    needs_netns,
    send_frames,
    site_config,
    veth_pair,
    wait_for,
)
from scapy.layers.dns import DNS, DNSQR
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6, IPv6ExtHdrHopByHop
from scapy.layers.l2 import ARP, Ether

from sentinel.events import Event
from sentinel.metrics import Metrics
from sentinel.sources.net import NetworkSource, build_network_source

pytestmark = [pytest.mark.root, pytest.mark.timeout(120)]

LONG_NAME = "Averyveryverylonglabel-that-goes-past-the-snaplen.Results.Tally.KPU.go.id"


class Collector:
    """Thread-safe list of emitted events."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.lock = threading.Lock()

    def __call__(self, ev: Event) -> None:
        with self.lock:
            self.events.append(ev)

    def find(self, kind: str, **fields: Any) -> list[dict[str, Any]]:
        with self.lock:
            evs = list(self.events)
        out = []
        for e in evs:
            d = e.to_dict()
            if e.kind == kind and all(d.get(k) == v for k, v in fields.items()):
                out.append(d)
        return out

    def one(self, kind: str, **fields: Any) -> dict[str, Any]:
        wait_for(lambda: bool(self.find(kind, **fields)), what=f"{kind} {fields}")
        found = self.find(kind, **fields)
        assert len(found) == 1, found
        return found[0]


@pytest.fixture
def pair() -> Iterator[VethPair]:
    needs_netns()
    with veth_pair() as p:
        yield p


def start(pair: VethPair, tmp: Path, interfaces: list[str], snaplen: int = 64, **kw: Any
          ) -> tuple[NetworkSource, Collector, Metrics]:
    config = site_config(tmp, interfaces="[" + ", ".join(interfaces) + "]", snaplen=snaplen,
                         flow_timeout="1s")
    # the watched side is the host; its /24 and /64 are home
    config = _with_host(config, pair)
    metrics = Metrics()
    src = NetworkSource(config, metrics, **kw)
    got = Collector()
    in_netns(pair.a, lambda: src.start(got))
    return src, got, metrics


def _with_host(config: Any, pair: VethPair) -> Any:
    import dataclasses
    import ipaddress

    host = dataclasses.replace(config.host, addresses=(
        ipaddress.ip_address(pair.A4), ipaddress.ip_address(pair.A6)))
    net = dataclasses.replace(config.network, home_nets=(
        ipaddress.ip_network("10.99.0.0/24"), ipaddress.ip_network("fd00:99::/64")))
    return dataclasses.replace(config, host=host, network=net)


def _ready(pair: VethPair, got: Collector) -> None:
    """Wait until the ring is live: a probe frame from b shows up as an event."""
    probe = Ether(src=pair.BMAC, dst=pair.AMAC) / ARP(
        op=2, psrc="10.99.0.250", hwsrc="02:00:00:99:00:fa", pdst=pair.A4, hwdst=pair.AMAC)
    deadline_hits: list[int] = []

    def seen() -> bool:
        deadline_hits.append(1)
        if len(deadline_hits) % 10 == 1:
            send_frames(pair.b, pair.vb, [bytes(probe)])
        return bool(got.find("net.arp", sender_ip="10.99.0.250"))

    wait_for(seen, what="the capture to see a probe frame")


def test_live_events_for_tcp_udp_dns_arp_icmp_ipv6(pair: VethPair, tmp_path: Path) -> None:
    src, got, metrics = start(pair, tmp_path, [pair.va])
    try:
        _ready(pair, got)
        listener = in_netns(pair.a, lambda: socket.create_server((pair.A4, 8443)))
        listener6 = in_netns(pair.a, lambda: socket.create_server(
            (pair.A6, 8443), family=socket.AF_INET6))

        def tcp_client() -> tuple[int, int]:
            c = socket.create_connection((pair.A4, 8443))
            port = c.getsockname()[1]
            c.sendall(b"v" * 3000)
            c.close()
            c6 = socket.create_connection((pair.A6, 8443))
            port6 = c6.getsockname()[1]
            c6.close()
            return port, port6

        port, port6 = in_netns(pair.b, tcp_client)
        for lst in (listener, listener6):
            conn, _ = lst.accept()
            while conn.recv(65536):
                pass
            conn.close()
            lst.close()

        def refused_and_udp() -> tuple[int, int]:
            r = socket.socket()
            with pytest.raises(ConnectionRefusedError):
                r.connect((pair.A4, 9))
            rport = r.getsockname()[1]
            r.close()
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            u.bind((pair.B4, 0))
            u.sendto(b"hello", (pair.A4, 5999))
            uport = u.getsockname()[1]
            u.close()
            return rport, uport

        rport, uport = in_netns(pair.b, refused_and_udp)
        eth = Ether(src=pair.BMAC, dst=pair.AMAC)
        send_frames(pair.b, pair.vb, [
            bytes(eth / IP(src=pair.B4, dst=pair.A4) / UDP(sport=33333, dport=53)
                  / DNS(rd=1, qd=DNSQR(qname=LONG_NAME, qtype="TXT"))),
            bytes(eth / ARP(op=2, psrc="10.99.0.254", hwsrc="02:00:00:99:00:fe", pdst=pair.A4,
                            hwdst=pair.AMAC)),
            bytes(eth / IP(src=pair.B4, dst=pair.A4) / ICMP(type=8, id=7, seq=1)),
            bytes(eth / IPv6(src=pair.B6, dst=pair.A6) / ICMPv6EchoRequest(id=7, seq=1)),
        ])

        inbound = {"direction": "inbound", "src_internal": True, "dst_internal": True,
                   "iface": pair.va}
        outbound = {**inbound, "direction": "outbound"}
        c = got.one("net.connection", src_port=port, dst_ip=pair.A4)
        assert {k: c[k] for k in ("proto", "src_ip", "dst_ip", "dst_port", "tcp_flags")} == {
            "proto": "tcp", "src_ip": pair.B4, "dst_ip": pair.A4, "dst_port": 8443,
            "tcp_flags": "S"}
        assert {k: c[k] for k in inbound} == inbound
        s = got.one("net.tcp_synack", dst_port=port, dst_ip=pair.B4)
        assert s | {"time": None} == {
            "kind": "net.tcp_synack", "time": None, "host": "tally-01", "source": "network",
            "src_ip": pair.A4, "src_port": 8443, "dst_ip": pair.B4, "dst_port": port,
            **outbound, "tcp_flags": "SA"}
        f = got.one("net.flow", src_port=port, dst_ip=pair.A4, dst_port=8443)
        assert f["final"] is True and f["proto"] == "tcp" and f["dst_port"] == 8443
        # snaplen 64 cut every frame, yet the flow counts what crossed the wire
        assert f["bytes_out"] >= 3000 + 3 * 54, f
        assert 3 * 54 <= f["bytes_in"] < 1000, f
        assert f["packets"] >= 6 and f["duration"] >= 0

        c6 = got.one("net.connection", src_port=port6, dst_ip=pair.A6)
        assert (c6["src_ip"], c6["dst_ip"], c6["direction"], c6["dst_internal"]) == (
            pair.B6, pair.A6, "inbound", True)
        assert got.one("net.tcp_synack", dst_port=port6, dst_ip=pair.B6)["src_ip"] == pair.A6

        refused = got.one("net.connection", src_port=rport, dst_port=9)
        assert (refused["dst_port"], refused["tcp_flags"]) == (9, "S")
        # a RST answers, not a SYN-ACK
        assert not got.find("net.tcp_synack", dst_port=rport, src_port=9)
        rf = got.one("net.flow", src_port=rport, dst_port=9)
        assert (rf["packets"], rf["final"], rf["bytes_in"] > 0) == (2, True, True)

        u = got.one("net.connection", src_port=uport, proto="udp")
        assert {k: u[k] for k in ("proto", "dst_ip", "dst_port", "tcp_flags")} == {
            "proto": "udp", "dst_ip": pair.A4, "dst_port": 5999, "tcp_flags": ""}
        uf = got.one("net.flow", src_port=uport, proto="udp")  # ends by idle timeout (1 s)
        assert (uf["bytes_out"], uf["bytes_in"], uf["packets"], uf["final"]) == (
            14 + 20 + 8 + 5, 0, 1, True)
        # port unreachable for the UDP datagram and for the DNS query (no server in a)
        wait_for(lambda: len(got.find("net.icmp", type=3, code=3, dst_ip=pair.B4)) == 2,
                 what="two ICMP port unreachables")
        for unreach in got.find("net.icmp", type=3, code=3, dst_ip=pair.B4):
            assert {k: unreach[k] for k in outbound} == outbound

        d = got.one("net.dns", is_response=False)
        assert d | {"time": None} == {
            "kind": "net.dns", "time": None, "host": "tally-01", "source": "network",
            "src_ip": pair.B4, "dst_ip": pair.A4, **inbound, "qname": LONG_NAME.lower(),
            "qtype": "TXT", "is_response": False, "rcode": "NOERROR"}
        assert got.one("net.connection", src_port=33333)["dst_port"] == 53

        a = got.one("net.arp", sender_ip="10.99.0.254")
        assert a | {"time": None} == {
            "kind": "net.arp", "time": None, "host": "tally-01", "source": "network",
            "op": "reply", "sender_ip": "10.99.0.254", "sender_mac": "02:00:00:99:00:fe",
            "target_ip": pair.A4, "target_mac": pair.AMAC, "iface": pair.va}

        ping = got.one("net.icmp", type=8, src_ip=pair.B4)
        assert {k: ping[k] for k in inbound} == inbound and ping["code"] == 0
        got.one("net.icmp", type=0, src_ip=pair.A4, dst_ip=pair.B4)  # the kernel's echo reply
        got.one("net.icmp", type=128, src_ip=pair.B6, dst_ip=pair.A6)
        got.one("net.icmp", type=129, src_ip=pair.A6, dst_ip=pair.B6)

        noise = [e for e in got.find("net.icmp") if not e["dst_ip"].startswith("ff02:")
                 and e["type"] not in (0, 3, 8, 128, 129)]
        assert noise == []
        reg = metrics.registry
        assert reg.get_sample_value("sentinel_packets_total", {"iface": pair.va}) >= 20
        assert reg.get_sample_value("sentinel_decode_errors_total") == 0
        assert reg.get_sample_value("sentinel_events_total",
                                    {"source": "network", "kind": "net.arp"}) >= 2
    finally:
        src.stop()
    assert not src.alive()
    n = len(got.events)
    send_frames(pair.b, pair.vb, [bytes(Ether(src=pair.BMAC, dst=pair.AMAC) / ARP(op=2))])
    assert len(got.events) == n  # nothing is emitted after stop() returned


def test_live_capture_on_any_names_the_interface_and_sees_loopback_once(
        pair: VethPair, tmp_path: Path) -> None:
    src, got, _ = start(pair, tmp_path, ["any"])
    try:
        _ready(pair, got)
        assert got.find("net.arp", sender_ip="10.99.0.250")[0]["iface"] == pair.va

        def loopback() -> int:
            lst = socket.create_server(("127.0.0.1", 0))
            c = socket.create_connection(lst.getsockname())
            port = c.getsockname()[1]
            lst.accept()[0].close()
            c.close()
            lst.close()
            return port

        port = in_netns(pair.a, loopback)
        c = got.one("net.connection", src_port=port)  # one, though lo carries it twice
        assert (c["iface"], c["direction"], c["src_ip"]) == ("lo", "transit", "127.0.0.1")
    finally:
        src.stop()


def test_a_failing_interface_is_counted_and_retried_while_others_capture(
        pair: VethPair, tmp_path: Path) -> None:
    late = f"snd{pair.va[2:]}"[:15]
    src, got, metrics = start(pair, tmp_path, [pair.va, late], retry_initial=0.05,
                              retry_max=0.2)
    try:
        errors = lambda: metrics.registry.get_sample_value(  # noqa: E731
            "sentinel_capture_errors_total", {"iface": late}) or 0
        wait_for(lambda: errors() >= 2, what="retries of the missing interface")
        _ready(pair, got)  # the good interface captures meanwhile
        # but the source is not healthy while one configured interface is not captured
        assert not src.alive()
        assert src.components() == {f"network:{pair.va}": True, f"network:{late}": False}
        up = lambda name: metrics.registry.get_sample_value(  # noqa: E731
            "sentinel_capture_up", {"iface": name})
        assert (up(pair.va), up(late)) == (1.0, 0.0)
        peer = f"{late}p"[:15]
        ip("-n", pair.a, "link", "add", late, "type", "veth", "peer", "name", peer)
        ip("-n", pair.a, "addr", "add", "10.98.0.1/24", "dev", late)
        ip("-n", pair.a, "link", "set", peer, "up")
        ip("-n", pair.a, "link", "set", late, "up")
        ip("-n", pair.a, "neigh", "replace", "10.98.0.2", "lladdr", "02:00:00:98:00:02",
           "dev", late, "nud", "permanent")

        def send() -> None:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                u.bind(("10.98.0.1", 40404))
                u.sendto(b"x", ("10.98.0.2", 4040))

        def seen() -> bool:
            in_netns(pair.a, send)
            return bool(got.find("net.connection", src_port=40404, iface=late))

        wait_for(seen, what="capture on the interface once it exists")
        assert src.alive()
        assert up(late) == 1.0
    finally:
        src.stop()


def test_build_network_source_is_none_without_interfaces(tmp_path: Path) -> None:
    assert build_network_source(site_config(tmp_path), Metrics()) is None
    src = build_network_source(site_config(tmp_path, interfaces="[eth0]"), Metrics())
    assert isinstance(src, NetworkSource) and src.name == "network"


def test_kernel_drops_are_counted_when_the_consumer_blocks(pair: VethPair,
                                                           tmp_path: Path) -> None:
    """emit blocks (back-pressure); the ring fills; PACKET_STATISTICS drops reach the metric."""
    release = threading.Event()
    got = Collector()

    def slow_emit(ev: Event) -> None:
        release.wait(30)
        got(ev)

    config = _with_host(site_config(tmp_path, interfaces=f"[{pair.va}]", buffer_size="1MiB"),
                        pair)
    metrics = Metrics()
    src = NetworkSource(config, metrics)
    in_netns(pair.a, lambda: src.start(slow_emit))
    try:
        eth = Ether(src=pair.BMAC, dst=pair.AMAC)
        # the ring (4 blocks of 1 MiB, the minimum) holds some 16,000 cut frames
        frame = bytes(eth / IP(src=pair.B4, dst=pair.A4) / UDP(sport=1, dport=2) / (b"z" * 900))
        dropped = lambda: metrics.registry.get_sample_value(  # noqa: E731
            "sentinel_packets_dropped_total", {"iface": pair.va}) or 0
        # the first frame's event blocks the capture thread in emit; the rest pile up
        send_frames(pair.b, pair.vb, [frame] * 60_000)
        release.set()
        wait_for(lambda: dropped() > 0, timeout=15, what="kernel drops in the metric")
        wait_for(lambda: bool(got.find("net.connection", src_port=1)), what="the first event")
    finally:
        release.set()
        src.stop()


def test_kernel_filter_cuts_frames_keeps_dns_whole_and_drops_other_protocols(
        pair: VethPair) -> None:
    """The BPF program (libpcap's port test, relocated) as the kernel runs it."""
    from sentinel.sources.net.capture import RingCapture

    seen: list[tuple[int, int, int]] = []  # EtherType, bytes captured, wire length

    def handle(etype: int, buf: bytes, off: int, end: int, wirelen: int, ts: float,
               mac: int) -> None:
        seen.append((etype, end - off, wirelen))

    cap = in_netns(pair.a, lambda: RingCapture(pair.va, 200, 4 * 2**20))
    stop = threading.Event()
    reader = threading.Thread(target=cap.run, args=(handle, stop, lambda n: None,
                                                    lambda: None), name="test-ring")
    reader.start()
    try:
        eth = Ether(src=pair.BMAC, dst=pair.AMAC)
        ip4 = IP(src=pair.B4, dst=pair.A4)
        frames = [
            bytes(Ether(src=pair.BMAC, dst="01:80:c2:00:00:0e", type=0x88CC) / (b"l" * 100)),
            bytes(eth / ip4 / UDP(sport=7, dport=9) / (b"u" * 1000)),
            bytes(eth / ip4 / UDP(sport=7, dport=53)
                  / DNS(qd=DNSQR(qname=".".join(["a" * 60] * 6) + ".kpu.go.id"))),
            bytes(eth / IPv6(src=pair.B6, dst=pair.A6) / UDP(sport=53, dport=7) / (b"d" * 800)),
            bytes(eth / ip4 / TCP(sport=4053, dport=53, flags="PA") / (b"t" * 700)),
            bytes(eth / IPv6(src=pair.B6, dst=pair.A6) / IPv6ExtHdrHopByHop()
                  / UDP(sport=4000, dport=53) / (b"h" * 900)),
        ]
        send_frames(pair.b, pair.vb, frames)
        wait_for(lambda: len(seen) >= 5, what="the captured frames")
    finally:
        stop.set()
        reader.join()
        cap.close()
    # a's own answers (ICMP port unreachable) are captured too; pick ours by wire length
    sent = {len(f): f for f in frames}
    ours = [(e, n, w) for e, n, w in seen if w in sent]
    net = 14  # the network header follows Ethernet; the cut counts from the frame's start
    assert ours == [
        (0x0800, 200 - net, len(frames[1])),  # cut to snaplen; the wire length stays
        (0x0800, len(frames[2]) - net, len(frames[2])),  # DNS: whole
        (0x86DD, len(frames[3]) - net, len(frames[3])),  # DNS over IPv6: whole
        (0x0800, len(frames[4]) - net, len(frames[4])),  # DNS over TCP: whole
        (0x86DD, len(frames[5]) - net, len(frames[5])),  # behind a hop-by-hop header: whole
    ]  # and the LLDP frame not at all
