"""Hostile sequences never break the decoder: mutated fragments (reassembled, then decoded),
neighbour discovery, DNS over TCP streams, probes. Only malformed input is counted."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.dns import DNS, DNSQR
from scapy.layers.inet import IP, TCP, UDP, fragment
from scapy.layers.inet6 import (
    ICMPv6ND_NA,
    ICMPv6ND_RA,
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptSrcLLAddr,
    IPv6,
    IPv6ExtHdrFragment,
    fragment6,
)
from scapy.layers.l2 import Ether
from test_net_fuzz import make_decoder

_Q = DNS(rd=1, qd=DNSQR(qname="x" * 30 + ".exfil.example"))
_MSG = bytes(_Q)
_STREAM = len(_MSG).to_bytes(2, "big") + _MSG

SEQUENCES: list[list[bytes]] = [
    [bytes(Ether() / f) for f in fragment(
        IP(src="10.20.0.66", dst="10.20.0.10", id=5) / UDP(dport=53) / _Q, fragsize=16)],
    [bytes(Ether() / f) for f in fragment(
        IP(src="10.20.0.66", dst="10.20.0.10", id=6) / TCP(dport=22, flags="S"), fragsize=8)],
    [bytes(Ether() / f) for f in fragment6(
        IPv6(src="2001:db8::66", dst="2001:db8::10") / IPv6ExtHdrFragment(id=7)
        / UDP(dport=53) / _Q, 80)],
    [bytes(Ether() / IPv6(src="fe80::66", dst="ff02::1") / ICMPv6ND_RA()
           / ICMPv6NDOptSrcLLAddr(lladdr="02:00:00:00:06:66")),
     bytes(Ether() / IPv6(src="fe80::66", dst="ff02::1") / ICMPv6ND_NA(tgt="2001:db8::1")
           / ICMPv6NDOptDstLLAddr(lladdr="02:00:00:00:06:66"))],
    [bytes(Ether() / IP(src="10.20.0.10", dst="10.20.0.2") / TCP(sport=4000, dport=53,
                                                                  flags="S", seq=10)),
     bytes(Ether() / IP(src="10.20.0.10", dst="10.20.0.2") / TCP(
         sport=4000, dport=53, flags="PA", seq=13) / _STREAM[2:]),
     bytes(Ether() / IP(src="10.20.0.10", dst="10.20.0.2") / TCP(
         sport=4000, dport=53, flags="PA", seq=11) / _STREAM[:2])],
    [bytes(Ether() / IP(src="10.20.0.66", dst="10.20.0.10") / TCP(dport=p, flags=f))
     for p, f in ((22, "F"), (23, ""), (80, "FPU"), (443, "A"))],
]

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(seq=st.sampled_from(SEQUENCES), edits=st.lists(
    st.tuples(st.integers(0, 20), st.integers(0, 200), st.integers(0, 255)), max_size=10),
    order=st.permutations(range(8)), dup=st.booleans())
def test_mutated_sequences_never_raise(seq: list[bytes], edits: list[Any], order: list[int],
                                       dup: bool) -> None:
    frames = [bytearray(f) for f in seq]
    for which, pos, value in edits:
        f = frames[which % len(frames)]
        if pos < len(f):
            f[pos] = value
    ordered = [bytes(frames[i]) for i in order if i < len(frames)]
    if dup:
        ordered += ordered[:2]
    dec, _, _ = make_decoder()
    for i, data in enumerate(ordered):
        dec.handler(1)(data, 0, len(data), len(data), 1.0 + i * 0.01)
    dec.flows.flush(5.0)
    assert dec.unexpected == 0  # only malformed input, never a decoder bug
