"""The decoder never raises: random bytes and mutated real frames, in every link type."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.dns import DNS, DNSQR
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop
from scapy.layers.l2 import ARP, Dot1Q, Ether

from sentinel.commands.replay import empty_config
from sentinel.events import Event
from sentinel.metrics import Metrics
from sentinel.sources.net.decode import LINK_NAMES, Decoder
from sentinel.sources.net.emitter import EventMaker
from sentinel.sources.net.flows import FlowTable

SEEDS = [bytes(f) for f in (
    Ether() / IP(src="10.20.0.10", dst="10.20.0.2") / UDP(sport=5353, dport=53)
    / DNS(qd=DNSQR(qname="www.kpu.go.id")),
    Ether() / Dot1Q(vlan=5) / IP() / TCP(sport=53, dport=4000, flags="PA")
    / (b"\x00\x1d" + bytes(DNS(qd=DNSQR(qname="kpu.go.id")))),
    Ether() / IP(options=b"\x01\x01\x01\x00") / TCP(flags="S"),
    Ether() / IPv6() / IPv6ExtHdrHopByHop() / IPv6ExtHdrFragment() / UDP(dport=53)
    / DNS(qd=DNSQR(qname="a.b")),
    Ether() / ARP(),
    Ether() / IP() / ICMP(),
)]


def make_decoder() -> tuple[Decoder, Metrics, list[Event]]:
    metrics = Metrics()
    out: list[Event] = []
    maker = EventMaker(empty_config(), metrics, out.append, "fuzz")
    flows = FlowTable(maker, metrics, timeout=60, interval=300, max_flows=1000)
    return Decoder(flows, maker, metrics), metrics, out


def errors(m: Metrics) -> float:
    return m.registry.get_sample_value("sentinel_decode_errors_total") or 0.0


FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(linktype=st.sampled_from(sorted(LINK_NAMES)), data=st.binary(max_size=200))
def test_random_bytes_never_raise_in_any_link_type(linktype: int, data: bytes) -> None:
    dec, metrics, _ = make_decoder()
    dec.handler(linktype)(data, 0, len(data), len(data), 1.0)
    assert errors(metrics) in (0.0, 1.0)
    assert dec.unexpected == 0  # only malformed input, never a decoder bug


@FUZZ
@given(seed=st.sampled_from(SEEDS), edits=st.lists(
    st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=8), cut=st.integers(0, 400),
    pad=st.binary(max_size=16))
def test_mutated_frames_never_raise(seed: bytes, edits: list[Any], cut: int, pad: bytes) -> None:
    frame = bytearray(seed)
    for pos, value in edits:
        if pos < len(frame):
            frame[pos] = value
    data = bytes(frame[: min(cut, len(frame))]) + pad
    dec, metrics, _ = make_decoder()
    # inside a larger buffer, as frames sit in a pcap file or the ring
    buf = b"\xaa" * 7 + data + b"\xbb" * 64
    dec.handler(1)(buf, 7, 7 + len(data), len(data), 2.0)
    assert errors(metrics) in (0.0, 1.0)
    assert dec.unexpected == 0


def test_frames_cut_inside_a_header_are_counted_not_decoded() -> None:
    frame = SEEDS[0]
    for cut in (10, 20, 33, 40):  # inside Ethernet, IPv4, UDP
        dec, metrics, out = make_decoder()
        dec.handler(1)(frame, 0, cut, len(frame), 1.0)
        assert (errors(metrics), out) == (1.0, [])


def test_a_valid_frame_is_not_an_error() -> None:
    for seed in SEEDS:
        dec, metrics, _ = make_decoder()
        dec.handler(1)(seed, 0, len(seed), len(seed), 1.0)
        assert errors(metrics) == 0.0, seed.hex()


@FUZZ
@given(etype=st.sampled_from([0x0800, 0x86DD, 0x0806, 0x8100, 0x88A8, 0x8864, 0x1234]),
       data=st.binary(max_size=120))
def test_live_entry_point_never_raises(etype: int, data: bytes) -> None:
    """What the capture ring calls: the network layer onward, by EtherType."""
    dec, metrics, _ = make_decoder()
    dec.network_handler()(etype, data, 0, len(data), len(data) + 14, 3.0)
    assert errors(metrics) in (0.0, 1.0)
    assert dec.unexpected == 0


TCP_SEEDS = [bytes(f) for f in (
    Ether() / IP(src="10.20.0.11", dst="10.20.0.10") / TCP(sport=40000, dport=5432, flags="S"),
    Ether() / IP(src="10.20.0.10", dst="10.20.0.11") / TCP(sport=5432, dport=40000, flags="SA")
    / (b"p" * 30),
    Ether() / IPv6(src="2001:db8::1", dst="2001:db8::2") / TCP(sport=1, dport=443, flags="FA"),
    Ether() / IPv6(src="2001:db8::1", dst="2001:db8::2") / TCP(sport=1, dport=443, flags="R")
    / (b"q" * 20),
)]


@FUZZ
@given(seed=st.sampled_from(TCP_SEEDS), edits=st.lists(
    st.tuples(st.integers(12, 80), st.integers(0, 255)), max_size=4), cut=st.integers(14, 120))
def test_fast_path_decodes_exactly_as_the_general_path(seed: bytes, edits: list[Any],
                                                        cut: int) -> None:
    """Ethernet/IPv4-or-IPv6/TCP takes a shortcut; it must agree with the long way round."""
    frame = bytearray(seed)
    for pos, value in edits:
        if pos < len(frame):
            frame[pos] = value
    data = bytes(frame[:cut])
    fast, fast_m, fast_out = make_decoder()
    slow, slow_m, slow_out = make_decoder()
    for t in (1.0, 2.0):  # twice: the second packet meets the flow the first one made
        fast.handler(1)(data, 0, len(data), len(data), t)
        etype = int.from_bytes(data[12:14], "big")
        slow.network_handler()(etype, data, 14, len(data), len(data), t)
    fast.flows.flush(3.0)
    slow.flows.flush(3.0)
    assert [e.to_dict() for e in fast_out] == [e.to_dict() for e in slow_out]
    assert errors(fast_m) == errors(slow_m)
