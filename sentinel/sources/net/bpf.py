"""The kernel filter for live capture: classic BPF compiled with libpcap, then composed.

The filter runs on every packet the interface sees, before the kernel copies
it to the capture ring, and decides how many bytes of it to keep:

* loopback's outgoing copy of each packet is dropped (the incoming copy is
  kept), so a packet on ``lo`` is seen once, as libpcap does for ``any``;
* ARP, IPv4 and IPv6 are kept, everything else (LLDP, STP, ...) dropped;
* DNS (TCP or UDP port 53) and IP fragments (IPv4 and IPv6) are kept whole, so
  long names decode and fragmented datagrams can be reassembled, and every other
  packet is cut to ``snaplen`` bytes — enough for the headers, while the wire
  length still reaches the flow counters. A frame no longer than ``snaplen`` is
  kept whole without looking further: a load past a frame's end ends a classic
  BPF program with "drop", so a truncated frame (a MAC flooder's 34-byte frames
  claim a TCP header they lack) would otherwise never reach the decoder.

For IPv4 the port test is libpcap's own code for ``ip and (udp port 53 or tcp
port 53)`` on raw IP, with its packet loads moved to the kernel's network-header
offset (``SKF_NET_OFF``), so one program serves every link type, ``any``
included. libpcap's IPv6 test only looks at the fixed header's next-header
field, so DNS behind an extension header (hop-by-hop, routing, destination
options, a first fragment) was cut to snaplen; the IPv6 part is written here
and walks up to ``MAX_IPV6_EXT`` extension headers (classic BPF has no loops:
the walk is unrolled). A packet with more than that is kept whole: a real one
never carries so many, a hostile one is not cut where the rules cannot see it.

:func:`dns_program` takes the offset of the network header, so the same code
runs in libpcap's own interpreter over raw IP packets (``base=0``) in tests that
need no root, and in the kernel at ``SKF_NET_OFF``.
"""

from __future__ import annotations

import functools
import socket
import struct

SO_ATTACH_FILTER = 26
_DLT_RAW = 12  # libpcap's DLT for raw IP on Linux
# fragments too (more-fragments set or an offset): reassembly needs all their bytes
_DNS_FILTER_V4 = "ip and (udp port 53 or tcp port 53 or ip[6:2] & 0x3fff != 0)"
#: IPv6 extension headers walked before the transport header; more: kept whole.
MAX_IPV6_EXT = 4
#: Bytes kept of a DNS packet (a whole message).
DNS_SNAPLEN = 65535

_SKF_AD_OFF = -0x1000
_SKF_AD_PROTOCOL, _SKF_AD_PKTTYPE, _SKF_AD_HATYPE = 0, 4, 28
_SKF_NET_OFF = -0x100000
_LD_W_ABS, _JEQ_K, _RET_K, _LD_W_LEN, _JGT_K = 0x20, 0x15, 0x06, 0x80, 0x25
_LD_B_ABS, _LD_B_IND, _LD_H_IND, _LD_MEM, _ST = 0x30, 0x50, 0x48, 0x60, 0x02
_LDX_IMM, _TAX, _TXA, _JA, _JSET_K = 0x01, 0x07, 0x87, 0x05, 0x45
_ADD_K, _ADD_X, _AND_K, _LSH_K = 0x04, 0x0C, 0x54, 0x64
_IPPROTO_HOPOPTS, _IPPROTO_ROUTING, _IPPROTO_FRAGMENT, _IPPROTO_DSTOPTS = 0, 43, 44, 60
_ARPHRD_LOOPBACK, _PACKET_OUTGOING = 772, 4

Insn = tuple[int, int, int, int]  # code, jt, jf, k


def _u32(value: int) -> int:
    return value & 0xFFFFFFFF


@functools.lru_cache(maxsize=8)
def libpcap_program(expr: str, linktype: int = _DLT_RAW) -> tuple[Insn, ...]:
    """``expr`` compiled by libpcap (through scapy) for ``linktype``; compiled once."""
    from scapy.arch.common import compile_filter

    prog = compile_filter(expr, linktype=linktype)
    return tuple((i.code, i.jt, i.jf, i.k) for i in (prog.bf_insns[n] for n in range(prog.bf_len)))


def relocate_to_network(prog: tuple[Insn, ...], keep: int, other: int,
                        base: int = _SKF_NET_OFF) -> list[Insn]:
    """Move packet loads to the network header at ``base``; accepts keep ``keep`` bytes,
    rejects ``other``."""
    out: list[Insn] = []
    for code, jt, jf, k in prog:
        cls, mode = code & 0x07, code & 0xE0
        new_k = k
        if cls in (0x00, 0x01) and mode in (0x20, 0x40, 0xA0):  # LD/LDX with ABS, IND, MSH
            new_k = _u32(k + base)
        elif code == _RET_K:
            new_k = keep if k else other
        out.append((code, jt, jf, new_k))
    return out


def ipv6_dns_program(keep: int, other: int, base: int = _SKF_NET_OFF) -> list[Insn]:
    """IPv6 (known to be IPv6): ``keep`` bytes of DNS over UDP or TCP behind up to
    MAX_IPV6_EXT extension headers and of every fragment, ``other`` bytes of anything
    else."""
    asm = _Asm()
    asm.op(_LD_B_ABS, _u32(base + 6))  # the fixed header's next header
    asm.op(_LDX_IMM, 40)  # X: where the header it names starts
    for i in range(MAX_IPV6_EXT + 1):
        asm.label(f"hdr{i}")
        if i == MAX_IPV6_EXT:
            asm.op(_RET_K, keep)  # deeper than any real packet: whole, not cut blind
            break
        asm.jeq(17, "ports", None)
        asm.jeq(6, "ports", None)
        asm.jeq(_IPPROTO_HOPOPTS, f"ext{i}", None)
        asm.jeq(_IPPROTO_ROUTING, f"ext{i}", None)
        asm.jeq(_IPPROTO_DSTOPTS, f"ext{i}", None)
        asm.jeq(_IPPROTO_FRAGMENT, f"frag{i}", "cut")
        asm.label(f"ext{i}")  # next header at +0, length in 8-octet units past 8 at +1
        asm.op(_LD_B_IND, _u32(base + 0))
        asm.op(_ST, 0)
        asm.op(_LD_B_IND, _u32(base + 1))
        asm.op(_ADD_K, 1)
        asm.op(_LSH_K, 3)
        asm.op(_ADD_X, 0)
        asm.op(_TAX, 0)
        asm.op(_LD_MEM, 0)
        asm.ja(f"hdr{i + 1}")
        asm.label(f"frag{i}")  # 8 bytes; a real fragment is kept whole, for reassembly
        asm.op(_LD_H_IND, _u32(base + 2))
        asm.jset(0xFFF9, "keep", None)  # an offset, or more fragments to come
        asm.op(_LD_B_IND, _u32(base + 0))
        asm.op(_ST, 0)
        asm.op(_TXA, 0)
        asm.op(_ADD_K, 8)
        asm.op(_TAX, 0)
        asm.op(_LD_MEM, 0)
        asm.ja(f"hdr{i + 1}")
    asm.label("ports")  # source and destination port: the same place in UDP and TCP
    asm.op(_LD_H_IND, _u32(base + 0))
    asm.jeq(53, "keep", None)
    asm.op(_LD_H_IND, _u32(base + 2))
    asm.jeq(53, "keep", "cut")
    asm.label("keep")
    asm.op(_RET_K, keep)
    asm.label("cut")
    asm.op(_RET_K, other)
    return asm.assemble()


def dns_program(keep: int, other: int, base: int = _SKF_NET_OFF) -> list[Insn]:
    """From the network header at ``base``: ``keep`` bytes of DNS, ``other`` of the rest."""
    v4 = relocate_to_network(libpcap_program(_DNS_FILTER_V4), keep, other, base)
    v6 = ipv6_dns_program(keep, other, base)
    head: list[Insn] = [
        (_LD_B_ABS, 0, 0, _u32(base + 0)),
        (_AND_K, 0, 0, 0xF0),
        (_JEQ_K, len(v4), 0, 0x60),  # IPv6 -> past libpcap's IPv4 program
    ]
    return head + v4 + v6


def capture_program(snaplen: int) -> list[Insn]:
    """The whole filter (see the module docstring)."""
    dns = dns_program(DNS_SNAPLEN, snaplen)
    ad = _SKF_AD_OFF
    head: list[Insn] = [
        (_LD_W_ABS, 0, 0, _u32(ad + _SKF_AD_HATYPE)),  # 0
        (_JEQ_K, 0, 2, _ARPHRD_LOOPBACK),  # 1: loopback? -> 2, else -> 4
        (_LD_W_ABS, 0, 0, _u32(ad + _SKF_AD_PKTTYPE)),  # 2
        (_JEQ_K, 5, 0, _PACKET_OUTGOING),  # 3: its outgoing copy -> 9 (drop)
        (_LD_W_ABS, 0, 0, _u32(ad + _SKF_AD_PROTOCOL)),  # 4
        (_JEQ_K, 2, 0, 0x0806),  # 5: ARP -> 8
        (_JEQ_K, 3, 0, 0x0800),  # 6: IPv4 -> 10
        (_JEQ_K, 2, 1, 0x86DD),  # 7: IPv6 -> 10, else -> 9
        (_RET_K, 0, 0, snaplen),  # 8
        (_RET_K, 0, 0, 0),  # 9
        # A frame no longer than snaplen is kept whole whatever it carries: no need to
        # read its ports, and a load past its end would end the program with "drop"
        # (a truncated frame, such as a MAC flooder's, would not be seen at all).
        (_LD_W_LEN, 0, 0, 0),  # 10
        (_JGT_K, 1, 0, snaplen),  # 11: longer -> 13 (the DNS test), else -> 12
        (_RET_K, 0, 0, snaplen),  # 12
    ]
    return head + dns


class _Asm:
    """Classic BPF with labels: jumps go forward only, conditional ones at most 255."""

    def __init__(self) -> None:
        self._ops: list[tuple[int, str | None, str | None, int]] = []
        self._labels: dict[str, int] = {}
        self._ja: dict[int, str] = {}  # index of an unconditional jump -> its label

    def label(self, name: str) -> None:
        self._labels[name] = len(self._ops)

    def op(self, code: int, k: int) -> None:
        self._ops.append((code, None, None, k))

    def jeq(self, k: int, jt: str | None, jf: str | None) -> None:
        self._ops.append((_JEQ_K, jt, jf, k))

    def jset(self, k: int, jt: str | None, jf: str | None) -> None:
        self._ops.append((_JSET_K, jt, jf, k))

    def ja(self, target: str) -> None:
        self._ja[len(self._ops)] = target
        self._ops.append((_JA, None, None, 0))

    def assemble(self) -> list[Insn]:
        out: list[Insn] = []
        for n, (code, jt, jf, k) in enumerate(self._ops):
            def rel(label: str | None, n: int = n) -> int:
                if label is None:
                    return 0  # the next instruction
                off = self._labels[label] - n - 1
                if not 0 <= off <= 255:
                    msg = f"BPF jump to {label} out of range ({off})"
                    raise ValueError(msg)
                return off
            if code == _JA:
                out.append((code, 0, 0, self._labels[self._ja[n]] - n - 1))
            else:
                out.append((code, rel(jt), rel(jf), k))
        return out


def attach(sock: socket.socket, prog: list[Insn]) -> None:
    """Attach a classic BPF program to ``sock`` (SO_ATTACH_FILTER)."""
    import ctypes  # here, not at import: replay never attaches a filter

    raw = b"".join(struct.pack("HBBI", *insn) for insn in prog)
    insns = ctypes.create_string_buffer(raw, len(raw))
    fprog = struct.pack("HL", len(prog), ctypes.addressof(insns))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
