"""Segments of known flows skip building the flow key; whole conversations must not notice.

The decoder's Ethernet fast path finds a TCP flow by the segment's address and
port bytes as they stand in its headers. Those keys must follow the flow table
exactly: through port reuse, idle expiry, eviction at capacity and flushes.
Random conversations go through the fast path and through the general path
(the link layer already parsed, as the live ring hands it over); both must
produce the same events.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether

from sentinel.commands.replay import empty_config
from sentinel.events import Event
from sentinel.metrics import Metrics
from sentinel.sources.net.decode import Decoder
from sentinel.sources.net.emitter import EventMaker
from sentinel.sources.net.flows import FlowTable

HOSTS4 = ("10.20.0.10", "10.20.0.11", "10.20.5.7")
HOSTS6 = ("2001:db8::10", "2001:db8:1::7")
PORTS = (22, 443, 40000, 40001)
FLAGS = ("S", "SA", "A", "PA", "FA", "R", "A", "PA", "A")
_FRAMES: dict[tuple[Any, ...], bytes] = {}


def _frame(v6: bool, s: int, d: int, sport: int, dport: int, flags: str) -> bytes:
    """An Ethernet/IP/TCP frame with one byte of data (built once: scapy is slow)."""
    k = (v6, s, d, sport, dport, flags)
    if k not in _FRAMES:
        ip: Any = (IPv6(src=HOSTS6[s % 2], dst=HOSTS6[d % 2]) if v6 else
                   IP(src=HOSTS4[s], dst=HOSTS4[d]))
        _FRAMES[k] = bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / ip
                           / TCP(sport=sport, dport=dport, flags=flags) / b"x")
    return _FRAMES[k]


def _decoder(max_flows: int) -> tuple[Decoder, list[Event]]:
    metrics = Metrics()
    out: list[Event] = []
    maker = EventMaker(empty_config(), metrics, out.append, "t")
    # a short timeout and interval so that expiry and interim reports happen
    flows = FlowTable(maker, metrics, timeout=5, interval=3, max_flows=max_flows)
    return Decoder(flows, maker, metrics), out


segment = st.tuples(
    st.booleans(),  # IPv6
    st.integers(0, 2), st.integers(0, 2),  # sender, receiver
    st.sampled_from(PORTS), st.sampled_from(PORTS),
    st.sampled_from(FLAGS),
    st.floats(0, 4),  # seconds since the previous segment
)


def _both_ways(segments: list[Any], max_flows: int) -> tuple[list[Any], list[Any]]:
    """The events of ``segments`` through the fast path and through the general one."""
    fast, fast_out = _decoder(max_flows)
    slow, slow_out = _decoder(max_flows)
    handle_fast = fast.handler(1)
    handle_slow = slow.network_handler()
    t = 1_707_890_400.0
    for v6, s, d, sport, dport, flags, gap in segments:
        t += gap
        frame = _frame(v6, s, d, sport, dport, flags)
        handle_fast(frame, 0, len(frame), len(frame), t)
        handle_slow(int.from_bytes(frame[12:14], "big"), frame, 14, len(frame), len(frame), t)
    fast.flows.flush(t + 1)
    slow.flows.flush(t + 1)
    assert fast.unexpected == slow.unexpected == 0
    return [e.to_dict() for e in fast_out], [e.to_dict() for e in slow_out]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(segments=st.lists(segment, min_size=1, max_size=30), max_flows=st.integers(1, 4))
def test_known_flow_shortcut_agrees_with_the_general_path(segments: list[Any],
                                                          max_flows: int) -> None:
    """Port reuse, expiry, eviction and flushes reach the shortcut's keys too."""
    fast, slow = _both_ways(segments, max_flows)
    assert fast == slow


def test_a_flow_with_itself_counts_its_bytes_on_one_side() -> None:
    """Same address and port at both ends: one wire key, the general path's side."""
    fast, slow = _both_ways([(False, 0, 0, 22, 22, "A", 1.0), (False, 0, 0, 22, 22, "A", 1.0)],
                            10)
    assert fast == slow
    assert (fast[-1]["bytes_out"], fast[-1]["bytes_in"]) == (0, 110)


def test_data_segments_of_a_known_flow_take_the_shortcut() -> None:
    """After the handshake, a data segment is accounted by its wire key alone."""
    dec, out = _decoder(10)
    c2s = Ether() / IP(src="10.20.0.11", dst="10.20.0.10")
    s2c = Ether() / IP(src="10.20.0.10", dst="10.20.0.11")
    frames = [bytes(c2s / TCP(sport=40000, dport=5432, flags="S")),
              bytes(s2c / TCP(sport=5432, dport=40000, flags="SA"))]
    for i, f in enumerate(frames):
        dec.handler(1)(f, 0, len(f), len(f), 1.0 + i)
    data = bytes(c2s / TCP(sport=40000, dport=5432, flags="PA") / (b"d" * 100))
    wire = data[14 + 12 : 14 + 24]
    assert dec.flows.tcp_known(3.0, len(data), wire, 0x18)
    (flow,) = dec.flows.flows.values()
    assert (flow.packets, flow.bytes_out) == (3, len(frames[0]) + len(data))
    dec.flows.flush(4.0)
    assert not dec.flows.tcp_known(5.0, len(data), wire, 0x18)  # flushed: the long way
    assert [e.kind for e in out] == ["net.connection", "net.tcp_synack", "net.established",
                                     "net.flow"]
