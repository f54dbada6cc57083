"""IP fragments reassembled as Linux does, IPv6 header chains, DNS over TCP across
segments (#17.2): crafted captures replayed through the real decoder."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

from netkit import site_config, write_pcap
from scapy.layers.dns import DNS, DNSQR
from scapy.layers.inet import IP, TCP, UDP, fragment
from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, fragment6
from scapy.layers.l2 import Ether
from scapy.packet import Packet, Raw

from sentinel.metrics import Metrics
from sentinel.sources.net import iter_pcap_events
from sentinel.sources.net.reassembly import Reassembler

T0 = 1_707_890_400.0
ATT, TALLY = "10.20.0.66", "10.20.0.10"
ATT6, TALLY6 = "2001:db8::66", "2001:db8::10"


def run(tmp: Path, pkts: list[Packet], gap: float = 0.001) -> tuple[list[dict[str, Any]], Metrics]:
    frames = [(T0 + i * gap, bytes(Ether() / p)) for i, p in enumerate(pkts)]
    pcap = write_pcap(tmp / "f.pcap", 1, frames)
    metrics = Metrics()
    return [e.to_dict() for e in iter_pcap_events([pcap], site_config(tmp), metrics)], metrics


def of(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e["kind"] == kind]


def result(m: Metrics, name: str) -> float:
    return m.registry.get_sample_value("sentinel_ip_reassembly_total", {"result": name}) or 0


def test_syn_in_8_byte_fragments_is_a_connection_and_a_tiny_fragment(tmp_path: Path) -> None:
    syn = IP(src=ATT, dst=TALLY, id=4321) / TCP(sport=40000, dport=5432, flags="S", seq=9)
    frags = fragment(syn, fragsize=8)
    assert len(frags) == 3  # 20 bytes of TCP header: 8 + 8 + 4
    events, m = run(tmp_path, list(reversed(frags)))  # out of order, too
    (conn,) = of(events, "net.connection")
    assert (conn["src_ip"], conn["dst_port"], conn["tcp_flags"]) == (ATT, 5432, "S")
    (tiny,) = of(events, "net.fragment")
    assert (tiny["anomaly"], tiny["src_ip"], tiny["proto"], tiny["ip_version"]) == (
        "tiny", ATT, "tcp", 4)
    assert result(m, "reassembled") == 1
    flow = of(events, "net.flow")[0]
    assert flow["bytes_out"] == sum(len(Ether() / f) for f in frags) and flow["packets"] == 1


def test_overlapping_fragments_discard_the_datagram_and_are_reported(tmp_path: Path) -> None:
    syn = IP(src=ATT, dst=TALLY, id=77) / TCP(sport=40000, dport=5432, flags="S")
    first, second, third = fragment(syn, fragsize=8)
    # a fragment at offset 8 rewriting bytes 8..23: overlaps the second and third
    rogue = IP(src=ATT, dst=TALLY, id=77, proto=6, frag=1, flags="MF") / Raw(b"\0" * 16)
    events, m = run(tmp_path, [first, second, rogue, third])
    assert not of(events, "net.connection")
    assert [f["anomaly"] for f in of(events, "net.fragment")] == ["tiny", "overlap"]
    assert result(m, "overlap") == 1


def test_a_duplicate_fragment_is_ignored_and_the_first_copy_wins(tmp_path: Path) -> None:
    syn = IP(src=ATT, dst=TALLY, id=78) / TCP(sport=40000, dport=5432, flags="S")
    first, second, third = fragment(syn, fragsize=8)
    # the same offset and length again, now claiming another port: Linux keeps the first
    dup = first.copy()
    dup[Raw].load = struct.pack("!HH", 40000, 22) + bytes(first[Raw].load)[4:]
    events, m = run(tmp_path, [first, dup, second, third])
    assert [c["dst_port"] for c in of(events, "net.connection")] == [5432]
    assert result(m, "duplicate") == 1 and not [
        f for f in of(events, "net.fragment") if f["anomaly"] == "overlap"]


def test_incomplete_datagram_times_out_after_30_seconds(tmp_path: Path) -> None:
    syn = IP(src=ATT, dst=TALLY, id=79) / TCP(sport=40000, dport=22, flags="S")
    first, second, third = fragment(syn, fragsize=8)
    events, m = run(tmp_path, [first, second, third], gap=16)  # the last one 32 s late
    assert not of(events, "net.connection")
    assert result(m, "timeout") == 1


def test_dns_query_in_two_ipv4_fragments(tmp_path: Path) -> None:
    q = IP(src=TALLY, dst="10.20.0.2", id=80) / UDP(sport=41000, dport=53) / DNS(
        rd=1, qd=DNSQR(qname="exfil.example.net", qtype="TXT"))
    frags = fragment(q, fragsize=16)
    events, _ = run(tmp_path, frags[:1] + frags[1:])
    assert len(frags) >= 2
    (dns,) = of(events, "net.dns")
    assert (dns["qname"], dns["qtype"]) == ("exfil.example.net", "TXT")


def test_syn_behind_13_ipv6_destination_options_headers(tmp_path: Path) -> None:
    pkt: Packet = IPv6(src=ATT6, dst=TALLY6)
    for _ in range(13):
        pkt = pkt / IPv6ExtHdrDestOpt()
    pkt = pkt / TCP(sport=40000, dport=22, flags="S")
    events, m = run(tmp_path, [pkt])
    (conn,) = of(events, "net.connection")
    assert (conn["src_ip"], conn["dst_ip"], conn["dst_port"]) == (ATT6, TALLY6, 22)
    assert m.registry.get_sample_value("sentinel_decode_errors_total") == 0


def test_dns_query_in_two_ipv6_fragments_after_destination_options(tmp_path: Path) -> None:
    q = (IPv6(src=TALLY6, dst="2001:db8::2") / IPv6ExtHdrFragment(id=5)
         / IPv6ExtHdrDestOpt() / UDP(sport=41001, dport=53)
         / DNS(rd=1, qd=DNSQR(qname="v6.exfil.example.net", qtype="A")))
    frags = fragment6(q, 80)
    assert len(frags) == 2
    events, m = run(tmp_path, frags)
    (dns,) = of(events, "net.dns")
    assert dns["qname"] == "v6.exfil.example.net" and dns["src_ip"] == TALLY6
    assert result(m, "reassembled") == 1


def test_dns_over_tcp_split_across_segments_out_of_order(tmp_path: Path) -> None:
    msg = bytes(DNS(id=3, rd=1, qd=DNSQR(qname="split.exfil.example.net", qtype="TXT")))
    stream = struct.pack("!H", len(msg)) + msg
    c2s = IP(src=TALLY, dst="10.20.0.2")
    parts = [stream[:1], stream[1:9], stream[9:]]
    seqs = [101, 102, 110]
    segs = [c2s / TCP(sport=42000, dport=53, flags="PA", seq=s) / Raw(p)
            for s, p in zip(seqs, parts, strict=True)]
    events, _ = run(tmp_path, [
        c2s / TCP(sport=42000, dport=53, flags="S", seq=100),
        segs[0], segs[2], segs[1],  # the last piece before the middle one
        segs[1],                    # and a retransmission
    ])
    (dns,) = of(events, "net.dns")
    assert (dns["qname"], dns["qtype"]) == ("split.exfil.example.net", "TXT")


class _Sink:
    def __init__(self) -> None:
        self.seen: list[str] = []

    def fragment(self, ts: float, src: bytes, dst: bytes, proto: int, anomaly: str,
                 version: int) -> None:
        self.seen.append(anomaly)


def test_memory_is_bounded_by_bytes_and_datagrams() -> None:
    m = Metrics()
    r = Reassembler(_Sink(), m, max_bytes=10_000, max_datagrams=50)
    for i in range(200):  # first halves only: none ever completes
        r.add(float(i) / 1000, 4, b"\1\2\3\4", b"\5\6\7\10", i, 17, 0, True, b"x" * 400, 434)
        assert r.held <= 10_000 and len(r.pending) <= 50
    assert result(m, "capacity") >= 150


def test_ipv6_first_fragment_without_its_tcp_header_is_dropped_as_linux_does(
        tmp_path: Path) -> None:
    """RFC 8200: the first fragment carries every header through the transport header;
    Linux drops one that does not, so the datagram never completes, and it is reported."""
    syn = (IPv6(src=ATT6, dst=TALLY6) / IPv6ExtHdrFragment(id=9)
           / TCP(sport=40000, dport=22, flags="S"))
    frags = fragment6(syn, 56)  # 40 + 8 + 8 bytes: only 8 bytes of TCP header in the first
    assert len(frags) >= 2
    events, m = run(tmp_path, frags)
    assert not of(events, "net.connection")
    (tiny,) = of(events, "net.fragment")
    assert (tiny["anomaly"], tiny["ip_version"], tiny["proto"]) == ("tiny", 6, "tcp")
    assert result(m, "truncated_chain") == 1
