"""Replay: crafted captures in every link type give exactly the expected events.

One conversation at the reference site (a database connection with data and
teardown, DNS over UDP and TCP, ICMP, IPv6 with extension headers, ICMPv6,
fragments, IPv4 options, ARP) is framed in each supported link type and
written with scapy; every field of every event is compared with what the
conversation must produce. Byte counts are the frame lengths each test wrote.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from netkit import site_config, write_pcap
from scapy.layers.dns import DNS, DNSQR
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_RR, fragment
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrHopByHop
from scapy.layers.l2 import ARP, CookedLinux, CookedLinuxV2, Dot1AD, Dot1Q, Ether
from scapy.layers.ppp import PPP, PPPoE
from scapy.packet import Packet, Raw
from scapy.utils import PcapNgWriter

from sentinel.events import format_time
from sentinel.metrics import Metrics
from sentinel.sources.net import ReplayStats, iter_pcap_events

T0 = 1_707_890_400.0  # 2024-02-14T06:00:00Z
DB, APP, DNS_SRV, CENTRAL = "10.20.0.10", "10.20.0.11", "10.20.0.2", "203.0.113.50"
HOST6, PEER6, OUT6 = "2001:db8::10", "2001:db8::7", "2001:db8:ffff::1"
GW_MAC, ROGUE_MAC, TALLY_MAC = "02:00:00:00:00:01", "02:00:00:00:00:66", "02:00:00:00:00:10"

ETYPE = {IP: 0x0800, IPv6: 0x86DD, ARP: 0x0806}


def _etype(p: Packet) -> int:
    return next(v for k, v in ETYPE.items() if isinstance(p, k))


def _ppp_proto(p: Packet) -> int:
    return 0x0021 if isinstance(p, IP) else 0x0057


#: link type name -> (pcap link type, frame builder, carries ARP)
LINKS: dict[str, tuple[int, Callable[[Packet], bytes], bool]] = {
    "ethernet": (1, lambda p: bytes(Ether(src=TALLY_MAC, dst=GW_MAC, type=_etype(p)) / p),
                 True),
    "vlan": (1, lambda p: bytes(Ether(src=TALLY_MAC, dst=GW_MAC) / Dot1Q(vlan=20,
                                                                          type=_etype(p)) / p),
             True),
    "qinq": (1, lambda p: bytes(Ether(src=TALLY_MAC, dst=GW_MAC) / Dot1AD(vlan=3)
                                / Dot1Q(vlan=20, type=_etype(p)) / p), True),
    "pppoe": (1, lambda p: bytes(Ether(src=TALLY_MAC, dst=GW_MAC, type=0x8864)
                                 / PPPoE(sessionid=1) / PPP(proto=_ppp_proto(p)) / p), False),
    "sll": (113, lambda p: bytes(CookedLinux(pkttype=0, lladdrtype=1, lladdrlen=6,
                                             src=b"\x02\0\0\0\0\x10\0\0", proto=_etype(p)) / p),
            True),
    "sll2": (276, lambda p: bytes(CookedLinuxV2(proto=_etype(p), ifindex=2, lladdrtype=1,
                                                lladdrlen=6, src=b"\x02\0\0\0\0\x10\0\0") / p),
             True),
    "raw": (101, bytes, False),
    "ipv4/ipv6": (228, bytes, False),  # 228 for IPv4 files; 229 behaves the same
    "null": (0, lambda p: struct.pack("<I", 2 if isinstance(p, IP) else 30) + bytes(p), False),
    "null-big-endian": (0, lambda p: struct.pack(">I", 2 if isinstance(p, IP) else 10)
                        + bytes(p), False),
    "loop": (108, lambda p: struct.pack(">I", 2 if isinstance(p, IP) else 24) + bytes(p), False),
    "ppp": (9, lambda p: b"\xff\x03" + struct.pack("!H", _ppp_proto(p)) + bytes(p), False),
    "cisco-hdlc": (104, lambda p: b"\x0f\x00" + struct.pack("!H", _etype(p)) + bytes(p), True),
}


def conversation(with_arp: bool) -> list[Packet]:
    """Network-layer packets in order (the test frames them)."""
    c2s = IP(src=APP, dst=DB)
    s2c = IP(src=DB, dst=APP)
    q = DNS(id=1, rd=1, qd=DNSQR(qname="WWW.Kpu.GO.id", qtype="AAAA"))
    r = DNS(id=1, qr=1, rcode=3, qd=DNSQR(qname="WWW.Kpu.GO.id", qtype="AAAA"))
    tcp_q = bytes(DNS(id=2, rd=1, qd=DNSQR(qname="tcp.kpu.go.id", qtype="TXT")))
    big = IP(src=DB, dst=CENTRAL, id=99) / UDP(sport=7000, dport=7001) / Raw(b"f" * 1200)
    frag1, frag2 = fragment(big, fragsize=608)  # 1,208 bytes of UDP: 608 + 600
    pkts: list[Packet] = [
        c2s / TCP(sport=40000, dport=5432, flags="S", seq=1),
        s2c / TCP(sport=5432, dport=40000, flags="SA", seq=9, ack=2),
        c2s / TCP(sport=40000, dport=5432, flags="PA", seq=2, ack=10) / Raw(b"q" * 100),
        c2s / TCP(sport=40000, dport=5432, flags="FA", seq=102, ack=10),
        s2c / TCP(sport=5432, dport=40000, flags="FA", seq=10, ack=103),
        IP(src=DB, dst=DNS_SRV) / UDP(sport=3333, dport=53) / q,
        IP(src=DNS_SRV, dst=DB) / UDP(sport=53, dport=3333) / r,
        IP(src=DB, dst=DNS_SRV) / TCP(sport=41000, dport=53, flags="S"),
        IP(src=DB, dst=DNS_SRV) / TCP(sport=41000, dport=53, flags="PA", seq=1)
        / Raw(struct.pack("!H", len(tcp_q)) + tcp_q),
        IP(src=DB, dst=CENTRAL) / ICMP(type=8, code=0, id=1, seq=1),
        IPv6(src=HOST6, dst=OUT6) / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt()
        / TCP(sport=50000, dport=443, flags="S"),
        IPv6(src=PEER6, dst=HOST6) / ICMPv6EchoRequest(id=1, seq=1),
        frag1,
        frag2,
        IP(src="10.20.0.99", dst=DB, options=[IPOption_RR()]) / UDP(sport=5000, dport=6000)
        / Raw(b"o"),
    ]
    if with_arp:
        pkts.append(ARP(op=2, psrc="10.20.0.1", hwsrc=ROGUE_MAC, pdst=DB, hwdst=TALLY_MAC))
    return pkts


def ev(kind: str, i: int, **fields: Any) -> dict[str, Any]:
    if kind == "net.connection":
        fields = {"probe": False, "midstream": False, **fields}
    elif kind == "net.flow":
        fields = {"established": False, **fields}
    return {"kind": kind, "time": format_time(T0 + i), "host": "tally-01", "source": "network",
            **fields}


def ends(src: str, dst: str, direction: str, src_int: bool, dst_int: bool) -> dict[str, Any]:
    return {"src_ip": src, "dst_ip": dst, "direction": direction, "src_internal": src_int,
            "dst_internal": dst_int}


def expected(sizes: list[int], with_arp: bool) -> list[dict[str, Any]]:
    """What the conversation must produce; ``sizes`` are the frame lengths written."""
    last = len(sizes) - 1
    dns_out = ends(DB, DNS_SRV, "outbound", True, True)
    out = [
        ev("net.connection", 0, proto="tcp", src_ip=APP, src_port=40000, dst_ip=DB,
           dst_port=5432, direction="inbound", src_internal=True, dst_internal=True,
           iface="pcap", tcp_flags="S"),
        ev("net.tcp_synack", 1, src_ip=DB, src_port=5432, dst_ip=APP, dst_port=40000,
           direction="outbound", src_internal=True, dst_internal=True, iface="pcap",
           tcp_flags="SA"),
        ev("net.established", 1, proto="tcp", src_ip=APP, src_port=40000, dst_ip=DB,
           dst_port=5432, direction="inbound", src_internal=True, dst_internal=True,
           iface="pcap", tcp_flags="SA", midstream=False),
        ev("net.flow", 4, proto="tcp", src_ip=APP, src_port=40000, dst_ip=DB, dst_port=5432,
           direction="inbound", src_internal=True, dst_internal=True, established=True,
           bytes_out=sizes[0] + sizes[2] + sizes[3], bytes_in=sizes[1] + sizes[4],
           bytes_out_delta=sizes[0] + sizes[2] + sizes[3], bytes_in_delta=sizes[1] + sizes[4],
           packets=5, duration=4.0, final=True, iface="pcap"),
        ev("net.connection", 5, proto="udp", src_ip=DB, src_port=3333, dst_ip=DNS_SRV,
           dst_port=53, direction="outbound", src_internal=True, dst_internal=True,
           iface="pcap", tcp_flags=""),
        ev("net.dns", 5, **dns_out, qname="www.kpu.go.id", qtype="AAAA", is_response=False,
           rcode="NOERROR", iface="pcap"),
        ev("net.dns", 6, **ends(DNS_SRV, DB, "inbound", True, True), qname="www.kpu.go.id",
           qtype="AAAA", is_response=True, rcode="NXDOMAIN", iface="pcap"),
        ev("net.connection", 7, proto="tcp", src_ip=DB, src_port=41000, dst_ip=DNS_SRV,
           dst_port=53, direction="outbound", src_internal=True, dst_internal=True,
           iface="pcap", tcp_flags="S"),
        ev("net.dns", 8, **dns_out, qname="tcp.kpu.go.id", qtype="TXT", is_response=False,
           rcode="NOERROR", iface="pcap"),
        ev("net.icmp", 9, **ends(DB, CENTRAL, "outbound", True, False), type=8, code=0,
           target_ip=None, redirected_ip=None, iface="pcap"),
        ev("net.connection", 10, proto="tcp", src_ip=HOST6, src_port=50000, dst_ip=OUT6,
           dst_port=443, direction="outbound", src_internal=True, dst_internal=False,
           iface="pcap", tcp_flags="S"),
        ev("net.icmp", 11, **ends(PEER6, HOST6, "inbound", True, True), type=128, code=0,
           target_ip=None, redirected_ip=None, iface="pcap"),
        # the datagram, reassembled once its second fragment is in
        ev("net.connection", 13, proto="udp", src_ip=DB, src_port=7000, dst_ip=CENTRAL,
           dst_port=7001, direction="outbound", src_internal=True, dst_internal=False,
           iface="pcap", tcp_flags=""),
        ev("net.connection", 14, proto="udp", src_ip="10.20.0.99", src_port=5000, dst_ip=DB,
           dst_port=6000, direction="inbound", src_internal=True, dst_internal=True,
           iface="pcap", tcp_flags=""),
    ]
    if with_arp:
        out.append(ev("net.arp", 15, op="reply", sender_ip="10.20.0.1", sender_mac=ROGUE_MAC,
                      target_ip=DB, target_mac=TALLY_MAC, iface="pcap"))
    # open flows are flushed at the end of the file, timed at its last packet
    for (src, sport, dst, dport, proto, direction, d_int, idx, bin_idx) in (
        (DB, 3333, DNS_SRV, 53, "udp", "outbound", True, [5], [6]),
        (DB, 41000, DNS_SRV, 53, "tcp", "outbound", True, [7, 8], []),
        (HOST6, 50000, OUT6, 443, "tcp", "outbound", False, [10], []),
        ("10.20.0.99", 5000, DB, 6000, "udp", "inbound", True, [14], []),
    ):
        first, final = min(idx + bin_idx), max(idx + bin_idx)
        out.append(ev("net.flow", last, proto=proto, src_ip=src, src_port=sport, dst_ip=dst,
                      dst_port=dport, direction=direction, src_internal=True,
                      dst_internal=d_int, bytes_out=sum(sizes[i] for i in idx),
                      bytes_in=sum(sizes[i] for i in bin_idx),
                      # one report per flow here: what is new is everything
                      bytes_out_delta=sum(sizes[i] for i in idx),
                      bytes_in_delta=sum(sizes[i] for i in bin_idx), packets=len(idx + bin_idx),
                      duration=float(final - first), final=True, iface="pcap",
                      established=bool(bin_idx)))
    # both fragments' frames count, as one packet of the flow
    out.append(ev("net.flow", last, proto="udp", src_ip=DB, src_port=7000, dst_ip=CENTRAL,
                  dst_port=7001, direction="outbound", src_internal=True, dst_internal=False,
                  bytes_out=sizes[12] + sizes[13], bytes_in=0,
                  bytes_out_delta=sizes[12] + sizes[13], bytes_in_delta=0, packets=1,
                  duration=0.0, final=True, iface="pcap"))
    return out


def _canon(events: list[dict[str, Any]]) -> list[str]:
    return sorted(json.dumps(e, sort_keys=True) for e in events)


def replay(paths: list[Path], tmp: Path, **network: Any) -> tuple[list[dict[str, Any]], Metrics,
                                                                   ReplayStats]:
    metrics = Metrics()
    stats = ReplayStats()
    config = site_config(tmp, **network)
    events = [e.to_dict() for e in iter_pcap_events(paths, config, metrics, stats=stats)]
    return events, metrics, stats


@pytest.mark.parametrize("link", list(LINKS))
def test_every_kind_and_field_in_each_link_type(link: str, tmp_path: Path) -> None:
    linktype, frame, with_arp = LINKS[link]
    frames = [frame(p) for p in conversation(with_arp)]
    pcap = write_pcap(tmp_path / "c.pcap", linktype,
                      [(T0 + i, f) for i, f in enumerate(frames)])
    events, metrics, stats = replay([pcap], tmp_path)
    assert _canon(events) == _canon(expected([len(f) for f in frames], with_arp))
    reg = metrics.registry
    assert reg.get_sample_value("sentinel_decode_errors_total") == 0
    assert reg.get_sample_value("sentinel_ip_fragments_total") == 2
    assert reg.get_sample_value("sentinel_ip_reassembly_total", {"result": "reassembled"}) == 1
    assert reg.get_sample_value("sentinel_packets_total", {"iface": "pcap"}) == len(frames)
    assert stats.packets == len(frames) and stats.unsupported == {}
    assert reg.get_sample_value("sentinel_events_total",
                                {"source": "network", "kind": "net.dns"}) == 3


def test_raw_ipv6_link_type(tmp_path: Path) -> None:
    pkt = IPv6(src=PEER6, dst=HOST6) / ICMPv6EchoRequest()
    pcap = write_pcap(tmp_path / "v6.pcap", 229, [(T0, bytes(pkt))])
    events, _, _ = replay([pcap], tmp_path)
    assert [(e["kind"], e["src_ip"], e["type"]) for e in events] == [("net.icmp", PEER6, 128)]


@pytest.mark.parametrize(("nanos", "big"), [(True, False), (False, True), (True, True)])
def test_pcap_variants_nanosecond_and_big_endian(nanos: bool, big: bool, tmp_path: Path) -> None:
    frame = bytes(Ether() / IP(src=DB, dst=CENTRAL) / ICMP(type=8))
    pcap = write_pcap(tmp_path / "v.pcap", 1, [(T0 + 0.123456789, frame)], nanos=nanos, big=big)
    events, _, _ = replay([pcap], tmp_path)
    assert [e["time"] for e in events] == ["2024-02-14T06:00:00.123Z"]


def test_pcapng_with_every_kind(tmp_path: Path) -> None:
    frames = [Ether(src=TALLY_MAC, dst=GW_MAC) / p for p in conversation(True)]
    for i, f in enumerate(frames):
        f.time = T0 + i
    path = tmp_path / "c.pcapng"
    writer = PcapNgWriter(str(path))
    for f in frames:
        writer.write(f)
    writer.close()
    events, _, stats = replay([path], tmp_path)
    assert _canon(events) == _canon(expected([len(bytes(f)) for f in frames], True))
    assert stats.packets == len(frames)


def test_flow_bytes_are_wire_lengths_when_the_capture_is_cut_short(tmp_path: Path) -> None:
    c2s, s2c = IP(src=APP, dst=DB), IP(src=DB, dst=APP)
    pkts = [c2s / TCP(sport=40001, dport=443, flags="S"),
            s2c / TCP(sport=443, dport=40001, flags="SA"),
            c2s / TCP(sport=40001, dport=443, flags="PA") / Raw(b"d" * 1400),
            c2s / TCP(sport=40001, dport=443, flags="R")]
    frames = [bytes(Ether() / p) for p in pkts]
    pcap = write_pcap(tmp_path / "cut.pcap", 1, [(T0 + i, f) for i, f in enumerate(frames)],
                      snaplen=68)
    events, metrics, _ = replay([pcap], tmp_path)
    flow = next(e for e in events if e["kind"] == "net.flow")
    assert (flow["bytes_out"], flow["bytes_in"], flow["packets"], flow["final"]) == (
        len(frames[0]) + len(frames[2]) + len(frames[3]), len(frames[1]), 4, True)
    assert metrics.registry.get_sample_value("sentinel_decode_errors_total") == 0


def test_unsupported_link_type_counts_every_frame_as_a_decode_error(tmp_path: Path) -> None:
    pcap = write_pcap(tmp_path / "x.pcap", 147, [(T0, b"\0" * 60), (T0 + 1, b"\0" * 60)])
    events, metrics, stats = replay([pcap], tmp_path)
    assert events == []
    assert metrics.registry.get_sample_value("sentinel_decode_errors_total") == 2
    assert stats.unsupported == {str(pcap): 147}


def _block(btype: int, body: bytes, e: str = "<") -> bytes:
    body += b"\0" * (-len(body) % 4)
    n = len(body) + 12
    return struct.pack(e + "II", btype, n) + body + struct.pack(e + "I", n)


def _pcapng(e: str = "<") -> tuple[bytes, list[bytes]]:
    """Two interfaces (Ethernet in ns, raw IP in us with an offset), EPBs and an SPB."""
    shb = _block(0x0A0D0D0A, struct.pack(e + "IHHq", 0x1A2B3C4D, 1, 0, -1), e)
    opt = lambda code, raw: struct.pack(e + "HH", code, len(raw)) + raw + b"\0" * (  # noqa: E731
        -len(raw) % 4)
    idb_eth = _block(1, struct.pack(e + "HHI", 1, 0, 0) + opt(9, b"\x09") + opt(0, b""), e)
    idb_raw = _block(1, struct.pack(e + "HHI", 101, 0, 0) + opt(14, struct.pack(e + "q", 100))
                     + opt(0, b""), e)
    eth = bytes(Ether() / IP(src=DB, dst=CENTRAL) / ICMP(type=8))
    raw = bytes(IP(src=DB, dst=CENTRAL) / ICMP(type=13))

    def epb(iface: int, ticks: int, frame: bytes) -> bytes:
        return _block(6, struct.pack(e + "IIIII", iface, ticks >> 32, ticks & 0xFFFFFFFF,
                                     len(frame), len(frame)) + frame, e)

    spb = _block(3, struct.pack(e + "I", len(eth)) + eth, e)
    data = (shb + idb_eth + idb_raw + epb(0, int(T0 * 1e9) + 250_000_000, eth)
            + epb(1, int(T0 * 1e6), raw) + spb)
    return data, [eth, raw]


def test_pcapng_interfaces_resolutions_offsets_and_simple_blocks(tmp_path: Path) -> None:
    for order in ("<", ">"):
        data, _ = _pcapng(order)
        path = tmp_path / f"multi{order == '>'}.pcapng"
        path.write_bytes(data)
        events, _, stats = replay([path], tmp_path)
        icmp = [(e["type"], e["time"]) for e in events]
        assert icmp == [
            (8, "2024-02-14T06:00:00.250Z"),  # nanosecond ticks
            (13, "2024-02-14T06:01:40.000Z"),  # microseconds + if_tsoffset of 100 s
            (8, "2024-02-14T06:01:40.000Z"),  # a simple packet block: the last time seen
        ], order
        assert stats.packets == 3 and stats.truncated == []


def test_a_file_cut_inside_a_record_is_read_up_to_the_cut(tmp_path: Path) -> None:
    frames = [bytes(Ether() / IP(src=DB, dst=CENTRAL) / ICMP(type=8, seq=i)) for i in range(3)]
    full = write_pcap(tmp_path / "full.pcap", 1, [(T0 + i, f) for i, f in enumerate(frames)])
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(full.read_bytes()[:-10])
    events, _, stats = replay([cut], tmp_path)
    assert [e["kind"] for e in events] == ["net.icmp", "net.icmp"]
    assert stats.truncated == [str(cut)] and stats.packets == 2
