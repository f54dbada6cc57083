"""Stealth-scan probes, flows picked up mid-way and retransmitted SYNs (#17.1, #14.8)."""

from __future__ import annotations

from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP
from scapy.packet import Raw
from test_net_flows import A, B, run


@pytest.mark.parametrize(("scan", "flags"), [
    ("fin", "F"), ("null", ""), ("xmas", "FPU"), ("ack", "A"), ("maimon", "FA"),
    ("window", "A"),
])
def test_stealth_probe_is_a_connection_marked_probe(tmp_path: Path, scan: str,
                                                    flags: str) -> None:
    """A segment without SYN that opens a flow from the client side reaches the scan rules."""
    events, _ = run(tmp_path, [
        (0, IP(src=B, dst=A) / TCP(sport=61000, dport=port, flags=flags))
        for port in (22, 80, 443)
    ] + [(1, IP(src=A, dst=B) / TCP(sport=80, dport=61000, flags="R"))])
    conns = [e for e in events if e["kind"] == "net.connection"]
    assert [(c["src_ip"], c["dst_ip"], c["dst_port"]) for c in conns] == [
        (B, A, 22), (B, A, 80), (B, A, 443)]
    assert all(c["probe"] and not c["midstream"] for c in conns)
    assert {c["tcp_flags"] for c in conns} == {flags}
    assert not [e for e in events if e["kind"] == "net.established"]


def test_probe_from_a_low_source_port_still_names_the_prober(tmp_path: Path) -> None:
    """FIN, NULL and Xmas probes are never part of a connection: the sender is the source."""
    events, _ = run(tmp_path, [(0, IP(src=B, dst=A) / TCP(sport=53, dport=8080, flags="F"))])
    (conn,) = [e for e in events if e["kind"] == "net.connection"]
    assert (conn["src_ip"], conn["src_port"], conn["dst_port"], conn["probe"]) == (
        B, 53, 8080, True)


def test_synack_without_its_syn_is_a_midstream_connection(tmp_path: Path) -> None:
    events, _ = run(tmp_path, [(0, IP(src=A, dst=B) / TCP(sport=5432, dport=50123, flags="SA"))])
    assert [e["kind"] for e in events] == [
        "net.connection", "net.tcp_synack", "net.established", "net.flow"]
    conn = events[0]
    assert (conn["src_ip"], conn["dst_port"], conn["midstream"], conn["probe"]) == (
        B, 5432, True, False)
    assert events[2]["midstream"] is True and events[3]["established"] is True


def test_server_ack_first_then_data_is_one_midstream_connection(tmp_path: Path) -> None:
    """A pure ACK from the server side opens nothing; the data that follows announces it."""
    events, _ = run(tmp_path, [
        (0, IP(src=A, dst=B) / TCP(sport=443, dport=50000, flags="A")),
        (1, IP(src=B, dst=A) / TCP(sport=50000, dport=443, flags="PA") / Raw(b"x" * 40)),
        (2, IP(src=A, dst=B) / TCP(sport=443, dport=50000, flags="PA") / Raw(b"y" * 40)),
    ])
    assert [e["kind"] for e in events] == ["net.connection", "net.established", "net.flow"]
    assert (events[0]["src_ip"], events[0]["dst_port"], events[0]["midstream"]) == (B, 443, True)


def test_retransmitted_syn_after_a_reset_is_not_a_new_connection(tmp_path: Path) -> None:
    """#14.8: a connect scan re-sends the same SYN (same sequence number) after the RST."""
    syn = IP(src=B, dst=A) / TCP(sport=40000, dport=23, flags="S", seq=777)
    rst = IP(src=A, dst=B) / TCP(sport=23, dport=40000, flags="RA", ack=778)
    events, _ = run(tmp_path, [(0, syn), (0.1, rst), (1, syn), (1.1, rst), (3, syn), (3.1, rst)])
    conns = [e for e in events if e["kind"] == "net.connection"]
    assert len(conns) == 1
    flows = [e for e in events if e["kind"] == "net.flow"]
    assert len(flows) == 1 and flows[0]["established"] is False


def test_established_only_when_the_server_accepts(tmp_path: Path) -> None:
    events, _ = run(tmp_path, [
        (0, IP(src=B, dst=A) / TCP(sport=40001, dport=22, flags="S", seq=5)),
        (0.1, IP(src=A, dst=B) / TCP(sport=22, dport=40001, flags="SA", seq=9, ack=6)),
        (0.2, IP(src=B, dst=A) / TCP(sport=40002, dport=23, flags="S", seq=5)),
        (0.3, IP(src=A, dst=B) / TCP(sport=23, dport=40002, flags="RA", ack=6)),
    ])
    est = [e for e in events if e["kind"] == "net.established"]
    assert [(e["src_ip"], e["dst_port"], e["midstream"]) for e in est] == [(B, 22, False)]
    flows = {e["dst_port"]: e["established"] for e in events if e["kind"] == "net.flow"}
    assert flows == {22: True, 23: False}


def test_a_scan_is_summed_up_once_its_source_goes_quiet(tmp_path: Path) -> None:
    """#17.7: net.scan carries the scan's real size, a minute after its last probe."""
    probes = [(i * 0.01, IP(src=B, dst=A) / TCP(sport=61000, dport=1 + i, flags="F"))
              for i in range(300)]
    later = [(100.0, IP(src="10.20.0.99", dst=A) / TCP(sport=50000, dport=443, flags="S"))]
    events, _ = run(tmp_path, probes + later)
    (scan,) = [e for e in events if e["kind"] == "net.scan"]
    assert (scan["src_ip"], scan["dst_ip"], scan["ports"], scan["hosts"], scan["connections"],
            scan["probes"], scan["answered"]) == (B, A, 300, 1, 300, 300, 0)
    assert scan["time"] < next(e["time"] for e in events if e.get("src_ip") == "10.20.0.99")


def test_a_source_below_the_scan_figures_is_not_summed_up(tmp_path: Path) -> None:
    events, _ = run(tmp_path, [(i, IP(src=B, dst=A) / TCP(sport=40000 + i, dport=443,
                                                          flags="S", seq=i))
                               for i in range(20)])
    assert not [e for e in events if e["kind"] == "net.scan"]


def test_a_client_ack_first_then_data_becomes_a_midstream_connection(tmp_path: Path) -> None:
    """Picked up at a client's bare ACK (which looks like an ACK probe), a flow that then
    carries data is announced again as the connection it is, for the policy rules."""
    events, _ = run(tmp_path, [
        (0, IP(src=B, dst=A) / TCP(sport=50000, dport=22, flags="A")),
        (1, IP(src=A, dst=B) / TCP(sport=22, dport=50000, flags="PA") / Raw(b"y" * 40)),
    ])
    conns = [(e["probe"], e["midstream"]) for e in events if e["kind"] == "net.connection"]
    assert conns == [(True, False), (False, True)]
    assert [e["kind"] for e in events].count("net.established") == 1


def test_other_ip_protocols_to_one_host_are_connections_named_by_protocol(
        tmp_path: Path) -> None:
    """SCTP (ports read as UDP's), GRE and an unassigned protocol sent to one host are
    flows of their own: one net.connection each, then a net.flow; a reply answers it."""
    from scapy.layers.sctp import SCTP, SCTPChunkInit

    events, _ = run(tmp_path, [
        (0, IP(src=B, dst=A) / SCTP(sport=40000, dport=3868) / SCTPChunkInit()),
        (0.1, IP(src=B, dst=A) / SCTP(sport=40000, dport=3868) / SCTPChunkInit()),
        (0.2, IP(src=A, dst=B, proto=47) / Raw(b"\x00\x00\x08\x00" + b"x" * 40)),
        (0.3, IP(src=B, dst=A, proto=47) / Raw(b"\x00\x00\x08\x00")),
        (0.4, IP(src=B, dst=A, proto=253) / Raw(b"probe")),
    ])
    conns = [(e["proto"], e["src_ip"], e["dst_ip"], e["src_port"], e["dst_port"])
             for e in events if e["kind"] == "net.connection"]
    assert conns == [("sctp", B, A, 40000, 3868), ("gre", A, B, 0, 0), ("ip-253", B, A, 0, 0)]
    flows = {e["proto"]: e for e in events if e["kind"] == "net.flow"}
    assert flows["sctp"]["packets"] == 2 and not flows["sctp"]["established"]
    assert flows["gre"]["established"] and flows["gre"]["src_ip"] == A


def test_multicast_routing_and_redundancy_chatter_is_no_connection(tmp_path: Path) -> None:
    """VRRP, OSPF and PIM to their multicast groups, IGMP reports, IPv6's 'no next
    header': the LAN's own protocols are not probes or tunnels, and raise no event."""
    from scapy.layers.inet6 import IPv6

    events, _ = run(tmp_path, [
        (0, IP(src=B, dst="224.0.0.18", proto=112) / Raw(b"\x21\x01\x64\x01")),
        (0.1, IP(src=B, dst="224.0.0.5", proto=89) / Raw(b"\x02\x01")),
        (0.2, IP(src=B, dst="224.0.0.13", proto=103) / Raw(b"\x20\x00")),
        (0.3, IP(src=B, dst="239.1.2.3", proto=2) / Raw(b"\x16\x00\x00\x00\xef\x01\x02\x03")),
        (0.4, IPv6(src="fd00::2", dst="fd00::1", nh=59) / Raw(b"")),
    ])
    assert not [e for e in events if e["kind"] in ("net.connection", "net.flow")]


def test_other_ip_protocols_over_ipv6_are_connections_too(tmp_path: Path) -> None:
    """The same over IPv6, also behind an extension header; 'no next header' is nothing."""
    from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt
    from scapy.layers.sctp import SCTP, SCTPChunkInit

    a6, b6 = "fd00::1", "fd00::2"
    events, _ = run(tmp_path, [
        (0, IPv6(src=b6, dst=a6) / SCTP(sport=40000, dport=3868) / SCTPChunkInit()),
        (0.1, IPv6(src=b6, dst=a6) / IPv6ExtHdrDestOpt() / SCTP(sport=40001, dport=3869)
         / SCTPChunkInit()),
        (0.2, IPv6(src=a6, dst=b6, nh=47) / Raw(b"\x00\x00\x86\xdd" + b"x" * 40)),
        (0.3, IPv6(src=b6, dst=a6, nh=59) / Raw(b"")),
    ])
    conns = [(e["proto"], e["src_ip"], e["dst_port"]) for e in events
             if e["kind"] == "net.connection"]
    assert conns == [("sctp", b6, 3868), ("sctp", b6, 3869), ("gre", a6, 0)]
