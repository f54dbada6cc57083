"""The kernel filter for live capture: classic BPF compiled with libpcap, then composed.

The filter runs on every packet the interface sees, before the kernel copies
it to the capture ring, and decides how many bytes of it to keep:

* loopback's outgoing copy of each packet is dropped (the incoming copy is
  kept), so a packet on ``lo`` is seen once, as libpcap does for ``any``;
* ARP, IPv4 and IPv6 are kept, everything else (LLDP, STP, ...) dropped;
* DNS (TCP or UDP port 53) and IP fragments are kept whole, so long names decode
  and fragmented datagrams can be reassembled, and every other packet is cut to
  ``snaplen`` bytes — enough for the headers, while the wire
  length still reaches the flow counters.

The port test is libpcap's own code for ``udp port 53 or tcp port 53`` on raw
IP, with its packet loads moved to the kernel's network-header offset
(``SKF_NET_OFF``), so one program serves every link type, ``any`` included.
"""

from __future__ import annotations

import functools
import socket
import struct

SO_ATTACH_FILTER = 26
_DLT_RAW = 12  # libpcap's DLT for raw IP on Linux
# IP fragments (IPv4 with more-fragments or an offset; IPv6 whose first header is a
# fragment header) are kept whole too: reassembly needs every byte of them
_DNS_FILTER = ("udp port 53 or tcp port 53 or (ip and ip[6:2] & 0x3fff != 0)"
               " or (ip6 and ip6[6] == 44)")
#: Bytes kept of a DNS packet (a whole message).
DNS_SNAPLEN = 65535

_SKF_AD_OFF = -0x1000
_SKF_AD_PROTOCOL, _SKF_AD_PKTTYPE, _SKF_AD_HATYPE = 0, 4, 28
_SKF_NET_OFF = -0x100000
_LD_W_ABS, _JEQ_K, _RET_K = 0x20, 0x15, 0x06
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


def relocate_to_network(prog: tuple[Insn, ...], keep: int, other: int) -> list[Insn]:
    """Move packet loads to the network header; accepts keep ``keep`` bytes, rejects ``other``."""
    out: list[Insn] = []
    for code, jt, jf, k in prog:
        cls, mode = code & 0x07, code & 0xE0
        new_k = k
        if cls in (0x00, 0x01) and mode in (0x20, 0x40, 0xA0):  # LD/LDX with ABS, IND, MSH
            new_k = _u32(k + _SKF_NET_OFF)
        elif code == _RET_K:
            new_k = keep if k else other
        out.append((code, jt, jf, new_k))
    return out


def capture_program(snaplen: int) -> list[Insn]:
    """The whole filter (see the module docstring)."""
    dns = relocate_to_network(libpcap_program(_DNS_FILTER), DNS_SNAPLEN, snaplen)
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
    ]
    return head + dns


def attach(sock: socket.socket, prog: list[Insn]) -> None:
    """Attach a classic BPF program to ``sock`` (SO_ATTACH_FILTER)."""
    import ctypes  # here, not at import: replay never attaches a filter

    raw = b"".join(struct.pack("HBBI", *insn) for insn in prog)
    insns = ctypes.create_string_buffer(raw, len(raw))
    fprog = struct.pack("HL", len(prog), ctypes.addressof(insns))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
