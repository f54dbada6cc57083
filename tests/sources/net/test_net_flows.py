"""The flow table, driven by packet time through replay: ends, expiry, reports, the cap."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from netkit import site_config, write_pcap
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Packet, Raw

from sentinel.events import format_time
from sentinel.metrics import Metrics
from sentinel.sources.net import iter_pcap_events

T0 = 1_707_890_400.0
A, B, C = "10.20.0.10", "10.20.0.11", "10.20.0.12"


def run(tmp: Path, timed: list[tuple[float, Packet]], **network: Any
        ) -> tuple[list[dict[str, Any]], Metrics]:
    pcap = write_pcap(tmp / "f.pcap", 1, [(T0 + t, bytes(Ether() / p)) for t, p in timed])
    metrics = Metrics()
    config = site_config(tmp, **network)
    return [e.to_dict() for e in iter_pcap_events([pcap], config, metrics)], metrics


def kinds(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["kind"], e["time"]) for e in events]


def at(t: float) -> str:
    return format_time(T0 + t)


def evicted(m: Metrics, reason: str) -> float | None:
    return m.registry.get_sample_value("sentinel_flows_evicted_total", {"reason": reason})


def test_idle_flow_is_reported_final_at_its_expiry_time(tmp_path: Path) -> None:
    events, m = run(tmp_path, [
        (0, IP(src=A, dst=B) / UDP(sport=1000, dport=2000)),
        (5, IP(src=B, dst=A) / UDP(sport=2000, dport=1000)),
        (100, IP(src=A, dst=C) / UDP(sport=1001, dport=2001)),
    ], flow_timeout="60s")
    assert kinds(events) == [
        ("net.connection", at(0)), ("net.flow", at(65)), ("net.connection", at(100)),
        ("net.flow", at(100)),
    ]
    first = events[1]
    assert (first["src_port"], first["packets"], first["duration"], first["final"]) == (
        1000, 2, 5.0, True)
    assert evicted(m, "idle") == 1
    assert m.registry.get_sample_value("sentinel_flows_active") == 0


def test_long_flow_reports_totals_every_interval(tmp_path: Path) -> None:
    seg = IP(src=B, dst=A) / TCP(sport=40000, dport=443, flags="A") / Raw(b"x" * 10)
    timed: list[tuple[float, Packet]] = [(0, IP(src=B, dst=A) / TCP(sport=40000, dport=443,
                                                                   flags="S"))]
    timed += [(t, seg) for t in range(30, 721, 30)]
    events, _ = run(tmp_path, timed, flow_timeout="60s", flow_interval="5m")
    flows = [e for e in events if e["kind"] == "net.flow"]
    assert [(f["time"], f["final"], f["packets"]) for f in flows] == [
        (at(300), False, 11), (at(600), False, 21), (at(720), True, 25)]
    # each report also says what is new since the one before: they add up to the total
    assert sum(f["bytes_out_delta"] for f in flows) == flows[-1]["bytes_out"]
    assert [f["bytes_out_delta"] for f in flows] == [
        flows[0]["bytes_out"], flows[1]["bytes_out"] - flows[0]["bytes_out"],
        flows[2]["bytes_out"] - flows[1]["bytes_out"]]
    assert flows[1]["bytes_out_delta"] > 0 and all(f["bytes_in_delta"] == 0 for f in flows)


def test_table_cap_evicts_the_least_recently_active_flow(tmp_path: Path) -> None:
    events, m = run(tmp_path, [
        (0, IP(src=A, dst=B) / UDP(sport=1, dport=9)),
        (1, IP(src=A, dst=B) / UDP(sport=2, dport=9)),
        (2, IP(src=A, dst=B) / UDP(sport=1, dport=9)),  # flow 1 active again
        (3, IP(src=A, dst=B) / UDP(sport=3, dport=9)),  # over the cap of 2: flow 2 goes
    ], max_flows=2)
    flows = [(e["src_port"], e["time"]) for e in events if e["kind"] == "net.flow"]
    assert flows[0] == (2, at(3))
    assert sorted(flows[1:]) == [(1, at(3)), (3, at(3))]  # flushed at the end
    assert evicted(m, "capacity") == 1


def test_syn_retransmission_is_one_connection_and_port_reuse_is_two(tmp_path: Path) -> None:
    syn = IP(src=B, dst=A) / TCP(sport=40000, dport=22, flags="S", seq=1000)
    events, m = run(tmp_path, [
        (0, syn), (1, syn),  # retransmitted
        (2, IP(src=A, dst=B) / TCP(sport=22, dport=40000, flags="RA")),
        # same ports again with a new sequence number: a new connection
        (3, IP(src=B, dst=A) / TCP(sport=40000, dport=22, flags="S", seq=90000)),
    ])
    assert [(k, t) for k, t in kinds(events) if k == "net.connection"] == [
        ("net.connection", at(0)), ("net.connection", at(3))]
    first_flow = next(e for e in events if e["kind"] == "net.flow")
    assert (first_flow["time"], first_flow["packets"], first_flow["final"]) == (at(2), 3, True)
    assert evicted(m, "end") == 1


def test_midstream_tcp_takes_the_higher_port_as_the_initiator(tmp_path: Path) -> None:
    events, _ = run(tmp_path, [
        (0, IP(src=A, dst=B) / TCP(sport=5432, dport=40000, flags="PA") / Raw(b"r" * 50)),
        (1, IP(src=B, dst=A) / TCP(sport=40000, dport=5432, flags="A")),
    ])
    # no SYN seen, but data: still a connection, marked as picked up mid-stream
    assert [e["kind"] for e in events] == ["net.connection", "net.established", "net.flow"]
    conn = events[0]
    assert (conn["src_ip"], conn["dst_port"], conn["midstream"], conn["probe"]) == (
        B, 5432, True, False)
    f = events[2]
    assert (f["src_ip"], f["src_port"], f["dst_ip"], f["dst_port"]) == (B, 40000, A, 5432)
    assert f["bytes_in"] == 14 + 20 + 20 + 50 and f["bytes_out"] == 14 + 20 + 20


def test_synack_first_makes_its_receiver_the_initiator(tmp_path: Path) -> None:
    events, _ = run(tmp_path, [
        (0, IP(src=A, dst=B) / TCP(sport=8080, dport=50123, flags="SA")),
    ])
    synack = next(e for e in events if e["kind"] == "net.tcp_synack")
    assert (synack["src_ip"], synack["src_port"], synack["direction"]) == (A, 8080, "outbound")
    flow = next(e for e in events if e["kind"] == "net.flow")
    assert (flow["src_ip"], flow["src_port"], flow["bytes_in"]) == (B, 50123, 54)


def test_tcp_flow_ends_after_both_fins_and_late_acks_stay_silent(tmp_path: Path) -> None:
    c2s, s2c = IP(src=B, dst=A), IP(src=A, dst=B)
    events, _ = run(tmp_path, [
        (0, c2s / TCP(sport=40000, dport=443, flags="S")),
        (1, c2s / TCP(sport=40000, dport=443, flags="FA")),
        (2, s2c / TCP(sport=443, dport=40000, flags="FA")),
        (3, c2s / TCP(sport=40000, dport=443, flags="A")),  # the last ACK
    ])
    flows = [e for e in events if e["kind"] == "net.flow"]
    assert [(f["time"], f["packets"]) for f in flows] == [(at(2), 3)]


def test_replayed_files_that_go_back_in_time_are_separate_captures(tmp_path: Path) -> None:
    one = write_pcap(tmp_path / "1.pcap", 1, [
        (T0 + 100, bytes(Ether() / IP(src=A, dst=B) / UDP(sport=1, dport=2)))])
    two = write_pcap(tmp_path / "2.pcap", 1, [
        (T0, bytes(Ether() / IP(src=A, dst=B) / UDP(sport=1, dport=2)))])
    config = site_config(tmp_path)
    events = [e.to_dict() for e in iter_pcap_events([one, two], config, Metrics())]
    assert kinds(events) == [("net.connection", at(100)), ("net.flow", at(100)),
                             ("net.connection", at(0)), ("net.flow", at(0))]


def test_a_tftp_answer_from_another_port_is_the_requests_exchange(tmp_path: Path) -> None:
    """TFTP answers from a port of its own: the answer (and the requester's
    acknowledgements there) belongs to the request, its flow's src the requester, and is
    not announced as a datagram sent to the requester. A third host sending to the same
    port, or the server answering after TFTP_EXPECT seconds, is announced."""
    events, _ = run(tmp_path, [
        (0, IP(src=A, dst=B) / UDP(sport=40003, dport=69) / Raw(b"\x00\x01boot\x00octet\x00")),
        (0.01, IP(src=B, dst=A) / UDP(sport=51515, dport=40003) / Raw(b"\x00\x03\x00\x01x")),
        (0.02, IP(src=A, dst=B) / UDP(sport=40003, dport=51515) / Raw(b"\x00\x04\x00\x01")),
        (0.03, IP(src=C, dst=A) / UDP(sport=51516, dport=40003) / Raw(b"\x00\x03\x00\x01x")),
        (31, IP(src=B, dst=A) / UDP(sport=51517, dport=40003) / Raw(b"\x00\x03\x00\x01x")),
    ], flow_timeout="60s")
    conns = [(e["src_ip"], e["src_port"], e["dst_ip"], e["dst_port"]) for e in events
             if e["kind"] == "net.connection"]
    assert conns == [(A, 40003, B, 69), (C, 51516, A, 40003), (B, 51517, A, 40003)]
    answer = next(e for e in events if e["kind"] == "net.flow" and e["dst_port"] == 51515)
    assert (answer["src_ip"], answer["src_port"], answer["dst_ip"]) == (A, 40003, B)
    assert (answer["packets"], answer["established"]) == (2, True)
    assert answer["bytes_in"] > answer["bytes_out"]  # the server's data came in
