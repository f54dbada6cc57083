"""Evasions the tally server's kernel accepts, sent live between two namespaces (#17.2).

Namespace ``a`` is the tally server: real sockets listen there and sentinel
captures on its side of the veth pair. Namespace ``b`` sends crafted frames: a
SYN in 8-byte IP fragments, a SYN behind 13 IPv6 destination-options headers,
a DNS query in two IP fragments, an ICMPv6 redirect. Each test first proves
that the kernel took the evasion (it answered the SYN with a SYN-ACK; the UDP
socket received the query; its route changed), then that sentinel saw what the
kernel saw.
"""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest
from netkit import VethPair, in_netns, send_frames
from scapy.layers.dns import DNS, DNSQR
from scapy.layers.inet import IP, TCP, UDP, fragment
from scapy.layers.inet6 import ICMPv6ND_Redirect, ICMPv6NDOptDstLLAddr, IPv6, IPv6ExtHdrDestOpt
from scapy.layers.l2 import Ether
from scapy.packet import Packet
from support import wait_for
from test_net_live import _ready, pair, start

__all__ = ["pair"]  # the fixture, used by name

pytestmark = [pytest.mark.root, pytest.mark.timeout(120)]


def _listen(pair: VethPair, family: socket.AddressFamily, addr: str) -> socket.socket:
    return in_netns(pair.a, lambda: socket.create_server((addr, 8443), family=family))


def test_live_syn_in_8_byte_fragments(pair: VethPair, tmp_path: Path) -> None:
    src, got, _ = start(pair, tmp_path, [pair.va])
    listener = _listen(pair, socket.AF_INET, pair.A4)
    try:
        _ready(pair, got)
        syn = IP(src=pair.B4, dst=pair.A4, id=4242) / TCP(sport=45001, dport=8443, flags="S",
                                                         seq=1000)
        frags = fragment(syn, fragsize=8)
        assert len(frags) == 3 and all(len(bytes(f)) <= 28 for f in frags)
        eth = Ether(src=pair.BMAC, dst=pair.AMAC)
        send_frames(pair.b, pair.vb, [bytes(eth / f) for f in frags])
        # the kernel reassembled the SYN and accepted it: its SYN-ACK is on the wire
        synack = got.one("net.tcp_synack", src_ip=pair.A4, dst_port=45001)
        assert synack["src_port"] == 8443
        conn = got.one("net.connection", src_ip=pair.B4, src_port=45001)
        assert (conn["dst_port"], conn["tcp_flags"], conn["probe"]) == (8443, "S", False)
        got.one("net.established", src_ip=pair.B4, src_port=45001)
        tiny = got.one("net.fragment", src_ip=pair.B4)
        assert (tiny["anomaly"], tiny["proto"]) == ("tiny", "tcp")
    finally:
        listener.close()
        src.stop()


def test_live_syn_behind_13_ipv6_destination_options(pair: VethPair, tmp_path: Path) -> None:
    src, got, _ = start(pair, tmp_path, [pair.va])
    listener = _listen(pair, socket.AF_INET6, pair.A6)
    try:
        _ready(pair, got)
        pkt: Packet = IPv6(src=pair.B6, dst=pair.A6)
        for _ in range(13):
            pkt = pkt / IPv6ExtHdrDestOpt()
        pkt = pkt / TCP(sport=45002, dport=8443, flags="S", seq=2000)
        send_frames(pair.b, pair.vb, [bytes(Ether(src=pair.BMAC, dst=pair.AMAC) / pkt)])
        synack = got.one("net.tcp_synack", src_ip=pair.A6, dst_port=45002)
        assert synack["src_port"] == 8443
        conn = got.one("net.connection", src_ip=pair.B6, src_port=45002)
        assert (conn["dst_ip"], conn["dst_port"]) == (pair.A6, 8443)
    finally:
        listener.close()
        src.stop()


def test_live_dns_query_in_two_ip_fragments(pair: VethPair, tmp_path: Path) -> None:
    src, got, _ = start(pair, tmp_path, [pair.va])

    def bind() -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((pair.A4, 53))
        s.settimeout(10)
        return s

    server = in_netns(pair.a, bind)
    try:
        _ready(pair, got)
        query = IP(src=pair.B4, dst=pair.A4, id=777) / UDP(sport=45003, dport=53) / DNS(
            id=9, rd=1, qd=DNSQR(qname="frag.exfil-example.net", qtype="TXT"))
        query = IP(bytes(query))  # checksums and lengths filled in
        frags = [fragment(query, fragsize=16)[0], _rest(query, 16)]
        send_frames(pair.b, pair.vb, [bytes(Ether(src=pair.BMAC, dst=pair.AMAC) / f)
                                      for f in frags])
        data, peer = server.recvfrom(4096)  # the kernel delivered the reassembled query
        assert peer == (pair.B4, 45003) and bytes(DNS(data).qd[0].qname) == (
            b"frag.exfil-example.net.")
        dns = got.one("net.dns", src_ip=pair.B4)
        assert (dns["qname"], dns["qtype"], dns["is_response"]) == (
            "frag.exfil-example.net", "TXT", False)
    finally:
        server.close()
        src.stop()


def _rest(query: Packet, first: int) -> Packet:
    """Everything after the first ``first`` bytes of the IP payload, as one last fragment."""
    ip = query[IP]
    return IP(src=ip.src, dst=ip.dst, id=ip.id, proto=ip.proto, frag=first // 8) / bytes(
        ip.payload)[first:]


def test_live_ipv6_first_fragment_without_tcp_header_is_refused_by_both(
        pair: VethPair, tmp_path: Path) -> None:
    """The kernel drops an IPv6 first fragment that stops inside the TCP header (RFC
    8200): no SYN-ACK. sentinel reports the tiny fragment and sees no connection either."""
    from scapy.layers.inet6 import IPv6ExtHdrFragment, fragment6

    src, got, _ = start(pair, tmp_path, [pair.va])
    listener = _listen(pair, socket.AF_INET6, pair.A6)
    try:
        _ready(pair, got)
        eth = Ether(src=pair.BMAC, dst=pair.AMAC)
        syn = (IPv6(src=pair.B6, dst=pair.A6) / IPv6ExtHdrFragment(id=31)
               / TCP(sport=45004, dport=8443, flags="S", seq=3000))
        marker = IPv6(src=pair.B6, dst=pair.A6) / TCP(sport=45005, dport=8443, flags="S")
        send_frames(pair.b, pair.vb, [bytes(eth / f) for f in fragment6(syn, 56)]
                    + [bytes(eth / marker)])
        # the marker's SYN-ACK comes after any answer to the fragments would have
        got.one("net.tcp_synack", src_ip=pair.A6, dst_port=45005)
        assert not got.find("net.tcp_synack", dst_port=45004)
        assert not got.find("net.connection", src_port=45004)
        tiny = got.one("net.fragment", src_ip=pair.B6)
        assert (tiny["anomaly"], tiny["ip_version"]) == ("tiny", 6)
    finally:
        listener.close()
        src.stop()


def _route(ns: str, dst: str) -> str:
    return subprocess.run(["ip", "-n", ns, "-6", "route", "get", dst], capture_output=True,
                          text=True, check=True).stdout


def test_live_ipv6_redirect_taken_by_the_kernel(pair: VethPair, tmp_path: Path) -> None:
    """b is a's IPv6 router; a redirect from it moves a's traffic for one destination to
    another first hop (an attacker forges it with the router's address as sender)."""
    out = subprocess.run(["ip", "-n", pair.b, "-6", "-o", "addr", "show", "dev", pair.vb,
                          "scope", "link"], capture_output=True, text=True, check=True).stdout
    router = out.split()[3].split("/")[0]
    subprocess.run(["ip", "-n", pair.a, "-6", "route", "add", "default", "via", router, "dev",
                    pair.va], check=True)
    moved, rogue, rogue_mac = "2001:db8:99::50", "fe80::66", "02:00:00:99:00:66"
    assert f"via {router}" in _route(pair.a, moved)
    src, got, _ = start(pair, tmp_path, [pair.va], snaplen=256)
    try:
        _ready(pair, got)
        redirect = (Ether(src=pair.BMAC, dst=pair.AMAC) / IPv6(src=router, dst=pair.A6, hlim=255)
                    / ICMPv6ND_Redirect(tgt=rogue, dst=moved)
                    / ICMPv6NDOptDstLLAddr(lladdr=rogue_mac))
        send_frames(pair.b, pair.vb, [bytes(redirect)])
        # the kernel took it: its route to the destination now leads to the new first hop
        wait_for(lambda: f"via {rogue}" in _route(pair.a, moved), what="the redirected route")
        ev = got.one("net.ndp", op="redirect")
        assert (ev["src_ip"], ev["dst_ip"], ev["direction"]) == (router, pair.A6, "inbound")
        assert (ev["target_ip"], ev["redirected_ip"], ev["mac"]) == (rogue, moved, rogue_mac)
    finally:
        src.stop()
