"""The capture filter's DNS test run in libpcap's own BPF interpreter, without root.

:func:`dns_program` at ``base=0`` reads a raw IP packet from its first byte; the
kernel runs the same instructions at SKF_NET_OFF (live tests in test_net_live.py).
Each crafted packet must come out whole (DNS) or cut to snaplen (anything else).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import struct

import pytest
from scapy.layers.dns import DNS, DNSQR
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import (
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
    PadN,
)
from scapy.packet import Packet

from sentinel.sources.net import bpf

KEEP, CUT = 65535, 96


def _libpcap() -> ctypes.CDLL:
    name = ctypes.util.find_library("pcap")
    if name is None:
        pytest.skip("needs libpcap (Debian package libpcap0.8)")
    return ctypes.CDLL(name)


def run(prog: list[bpf.Insn], packet: bytes) -> int:
    """libpcap's bpf_filter(): how many bytes the program keeps of ``packet``."""
    lib = _libpcap()
    raw = b"".join(struct.pack("HBBI", *insn) for insn in prog)
    insns = ctypes.create_string_buffer(raw, len(raw))
    buf = ctypes.create_string_buffer(packet, len(packet))
    lib.bpf_filter.restype = ctypes.c_uint
    lib.bpf_filter.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_uint, ctypes.c_uint]
    return int(lib.bpf_filter(insns, buf, len(packet), len(packet)))


QUERY = DNS(qd=DNSQR(qname="a" * 60 + ".kpu.go.id"))
V4 = IP(src="10.20.0.50", dst="10.20.0.2")
V6 = IPv6(src="2001:db8::50", dst="2001:db8::2")

CASES: list[tuple[str, Packet, int]] = [
    ("IPv4 UDP to 53", V4 / UDP(sport=4000, dport=53) / QUERY, KEEP),
    ("IPv4 UDP from 53", V4 / UDP(sport=53, dport=4000) / QUERY, KEEP),
    ("IPv4 TCP to 53", V4 / TCP(sport=4000, dport=53, flags="PA") / QUERY, KEEP),
    ("IPv4 UDP elsewhere", V4 / UDP(sport=4000, dport=5353) / (b"x" * 300), CUT),
    ("IPv4 ICMP", V4 / ICMP() / (b"x" * 300), CUT),
    ("IPv6 UDP to 53", V6 / UDP(sport=4000, dport=53) / QUERY, KEEP),
    ("IPv6 TCP from 53", V6 / TCP(sport=53, dport=4000, flags="PA") / QUERY, KEEP),
    ("IPv6 hop-by-hop then UDP 53",
     V6 / IPv6ExtHdrHopByHop() / UDP(sport=4000, dport=53) / QUERY, KEEP),
    ("IPv6 hop-by-hop then TCP 53",
     V6 / IPv6ExtHdrHopByHop() / TCP(dport=53, flags="PA") / QUERY, KEEP),
    ("IPv6 routing, destination options then UDP 53",
     V6 / IPv6ExtHdrRouting() / IPv6ExtHdrDestOpt() / UDP(sport=4000, dport=53) / QUERY, KEEP),
    ("IPv6 24-byte destination options then UDP 53",  # the length field is used
     V6 / IPv6ExtHdrDestOpt(options=[PadN(optdata=b"\0" * 18)]) / UDP(sport=4000, dport=53)
     / QUERY, KEEP),
    ("IPv6 first fragment of UDP 53",
     V6 / IPv6ExtHdrFragment(offset=0, m=1, id=7) / UDP(sport=4000, dport=53) / QUERY, KEEP),
    # fragments are kept whole, whatever they carry: reassembly needs all their bytes
    ("IPv6 later fragment", V6 / IPv6ExtHdrFragment(offset=100, m=0, id=7, nh=17)
     / (b"\x00\x35\x00\x35" + b"x" * 300), KEEP),
    ("IPv6 first fragment of UDP elsewhere",
     V6 / IPv6ExtHdrFragment(offset=0, m=1, id=8) / UDP(sport=4000, dport=9) / (b"x" * 300),
     KEEP),
    ("IPv6 atomic fragment of UDP elsewhere",  # offset 0, no more: no reassembly, cut
     V6 / IPv6ExtHdrFragment(offset=0, m=0, id=9) / UDP(sport=4000, dport=9) / (b"x" * 300),
     CUT),
    ("IPv4 first fragment of UDP elsewhere",
     IP(src="10.20.0.50", dst="10.20.0.2", flags="MF") / UDP(sport=4000, dport=9)
     / (b"x" * 300), KEEP),
    ("IPv4 later fragment", IP(src="10.20.0.50", dst="10.20.0.2", frag=100, proto=17)
     / (b"x" * 300), KEEP),
    ("IPv6 hop-by-hop then UDP elsewhere",
     V6 / IPv6ExtHdrHopByHop() / UDP(sport=4000, dport=123) / (b"x" * 300), CUT),
    ("IPv6 four extension headers then UDP 53",
     V6 / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt() / IPv6ExtHdrRouting()
     / IPv6ExtHdrDestOpt() / UDP(sport=4000, dport=53) / QUERY, KEEP),
    ("IPv6 more extension headers than walked: kept whole",
     V6 / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt() / IPv6ExtHdrRouting()
     / IPv6ExtHdrDestOpt() / IPv6ExtHdrDestOpt() / UDP(sport=4000, dport=9) / (b"x" * 300), KEEP),
]


@pytest.mark.parametrize(("name", "packet", "want"), CASES, ids=[c[0] for c in CASES])
def test_dns_program_keeps_dns_whole_and_cuts_the_rest(name: str, packet: Packet,
                                                       want: int) -> None:
    if "24-byte" in name:
        assert len(packet[IPv6ExtHdrDestOpt]) - len(packet[UDP]) == 24
    assert run(bpf.dns_program(KEEP, CUT, base=0), bytes(packet)) == want


def test_libpcaps_own_ipv6_test_cut_dns_behind_a_hop_by_hop_header() -> None:
    """Why the IPv6 part is ours: libpcap's program only reads the fixed next header."""
    theirs = bpf.relocate_to_network(bpf.libpcap_program("udp port 53 or tcp port 53"),
                                     KEEP, CUT, base=0)
    packet = bytes(V6 / IPv6ExtHdrHopByHop() / UDP(sport=4000, dport=53) / QUERY)
    assert run(theirs, packet) == CUT
    assert run(bpf.dns_program(KEEP, CUT, base=0), packet) == KEEP


def test_capture_program_loads_from_the_network_header_only() -> None:
    """Compiled for the kernel: every packet load is relative to SKF_NET_OFF (or an
    ancillary SKF_AD field), so it works on any link type; no jump leaves the program."""
    prog = bpf.capture_program(200)
    assert len(prog) < 256
    for n, (code, jt, jf, k) in enumerate(prog):
        cls, mode = code & 0x07, code & 0xE0
        if cls == 0x00 and mode in (0x20, 0x40):  # LD ABS / IND
            signed = k - 2**32 if k >= 2**31 else k
            assert -0x100000 <= signed < -0x100000 + 0x10000 or \
                -0x1000 <= signed < -0x1000 + 64, (n, hex(k))
        if cls == 0x05:  # JMP
            if code == 0x05:
                assert n + 1 + k < len(prog)
            else:
                assert n + 1 + max(jt, jf) < len(prog)
    assert prog[-1][0] == 0x06  # the last instruction returns: nothing falls off the end
