"""Live capture from an AF_PACKET socket through a TPACKET_V3 memory-mapped ring.

The kernel fills blocks of the ring with frames (cut to the filter's length,
see :mod:`sentinel.sources.net.bpf`) and hands a block over when it is full
or ``RETIRE_MS`` old; the capture thread walks the block in place and gives it
back. One ``poll`` per block instead of one ``recv`` per packet is what lets a
Python decoder keep up with a saturated link.

Each frame header carries what the kernel already knows: the capture time,
the length on the wire, where the network header starts and its EtherType
(``sockaddr_ll``), so live frames are decoded from the network layer on and
any link type works, ``any`` included.
"""

from __future__ import annotations

import errno
import mmap
import select
import socket
import struct
import threading
from collections.abc import Callable
from typing import cast

from sentinel.sources.net import bpf

SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP, PACKET_RX_RING, PACKET_STATISTICS, PACKET_VERSION = 1, 5, 6, 10
TPACKET_V3, PACKET_MR_PROMISC, ETH_P_ALL = 2, 1, 0x0003
TP_STATUS_USER = 1
BLOCK_SIZE = 1 << 20
FRAME_SIZE = 1 << 11
RETIRE_MS = 50
#: Bytes kept of a frame at least, whatever network.snaplen says: Ethernet,
#: two VLAN tags, IPv6 with a few extension headers and TCP with options.
MIN_SNAPLEN = 160
#: tpacket3_hdr is 48 bytes; sockaddr_ll follows at TPACKET_ALIGN(48).
_SLL_OFFSET = 48

_BLOCK = struct.Struct("=III").unpack_from  # block_status, num_pkts, offset_to_first_pkt
_FRAME = struct.Struct("=IIIIIIHH").unpack_from  # next, sec, nsec, snaplen, len, status, mac, net
_SLL = struct.Struct("!H").unpack_from  # sll_protocol, network order (after sll_family)
_IFINDEX = struct.Struct("=i").unpack_from  # sll_ifindex, host order
_STATS = struct.Struct("=III").unpack  # packets, drops, freeze count (reading resets them)
_RELEASE = b"\0\0\0\0"

#: Decodes one frame from its network header: (EtherType, buf, offset, end, wire length,
#: time, offset of the sender's 6-byte MAC in buf or -1 when the link has none).
NetworkHandler = Callable[[int, bytes, int, int, int, float, int], None]


class RingCapture:
    """An open capture on one interface (or ``any``). Close it with :meth:`close`."""

    def __init__(self, iface: str, snaplen: int, buffer_size: int) -> None:
        self.iface = iface
        self.block_nr = max(4, buffer_size // BLOCK_SIZE)
        # protocol 0: receive nothing until the filter and ring are in place
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        self.ring: mmap.mmap | None = None
        try:
            self._setup(snaplen)
        except BaseException:
            self.close()
            raise

    def _setup(self, snaplen: int) -> None:
        s = self.sock
        bpf.attach(s, bpf.capture_program(max(snaplen, MIN_SNAPLEN)))
        s.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V3)
        frames = self.block_nr * (BLOCK_SIZE // FRAME_SIZE)
        req = struct.pack("=7I", BLOCK_SIZE, self.block_nr, FRAME_SIZE, frames, RETIRE_MS, 0, 0)
        s.setsockopt(SOL_PACKET, PACKET_RX_RING, req)
        self.ring = mmap.mmap(s.fileno(), BLOCK_SIZE * self.block_nr, mmap.MAP_SHARED,
                              mmap.PROT_READ | mmap.PROT_WRITE)
        if self.iface == "any":
            self._bind_any()
        else:
            s.bind((self.iface, ETH_P_ALL))
            ifindex = socket.if_nametoindex(self.iface)
            mreq = struct.pack("=iHH8s", ifindex, PACKET_MR_PROMISC, 0, b"")
            s.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)

    def _bind_any(self) -> None:
        # Python's bind needs an interface name; ifindex 0 (every interface) needs libc
        import ctypes
        import ctypes.util

        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        # struct sockaddr_ll: family, protocol (network order), ifindex 0 = all interfaces
        addr = struct.pack("=HHiHBB8s", socket.AF_PACKET, socket.htons(ETH_P_ALL), 0, 0, 0, 0,
                           b"")
        if libc.bind(self.sock.fileno(), addr, len(addr)) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"bind to all interfaces: {errno.errorcode.get(err, err)}")

    def close(self) -> None:
        try:
            if self.ring is not None:
                self.ring.close()
        finally:
            self.sock.close()

    def drops(self) -> int:
        """Packets the kernel dropped since the last call (PACKET_STATISTICS)."""
        _, dropped, _ = _STATS(self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 12))
        return int(dropped)

    def run(self, handle: NetworkHandler, stop: threading.Event,
            on_block: Callable[[int], None], on_idle: Callable[[], None],
            set_iface: Callable[[str], None] | None = None) -> None:
        """Read until ``stop`` is set; raise OSError when the socket fails.

        ``on_block(n)`` follows each block of ``n`` frames, ``on_idle()`` each
        poll that found nothing (at least every 200 ms). With ``set_iface``
        (for ``any``), it is told the interface of each frame that differs
        from the previous one's.
        """
        assert self.ring is not None
        mapped = self.ring
        ring = cast(bytes, mapped)  # an mmap indexes and slices like bytes
        poller = select.poll()
        poller.register(self.sock.fileno(), select.POLLIN | select.POLLERR)
        names: dict[int, str] = {}
        current = -1
        index = 0
        nblocks = self.block_nr
        while not stop.is_set():
            base = index * BLOCK_SIZE
            status, count, first = _BLOCK(ring, base + 8)
            if not status & TP_STATUS_USER:
                for _, flags in poller.poll(200):
                    if flags & select.POLLERR:
                        err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                        raise OSError(err, f"capture on {self.iface}: "
                                      f"{errno.errorcode.get(err, 'socket error')}")
                on_idle()
                continue
            p = base + first
            for _ in range(count):
                nxt, sec, nsec, snap, length, _, mac, net = _FRAME(ring, p)
                etype = _SLL(ring, p + _SLL_OFFSET + 2)[0]
                if set_iface is not None and (
                    ifindex := _IFINDEX(ring, p + _SLL_OFFSET + 4)[0]) != current:
                    current = ifindex
                    name = names.get(ifindex)
                    if name is None:
                        name = names[ifindex] = _ifname(ifindex)
                    set_iface(name)
                # sockaddr_ll's sll_addr: the sender's link-layer address, sll_halen long
                sll = p + _SLL_OFFSET
                handle(etype, ring, p + net, p + mac + snap, length, sec + nsec * 1e-9,
                       sll + 12 if ring[sll + 11] == 6 else -1)
                p += nxt
            mapped[base + 8 : base + 12] = _RELEASE
            index = (index + 1) % nblocks
            on_block(count)


def _ifname(ifindex: int) -> str:
    try:
        return socket.if_indextoname(ifindex)
    except OSError:
        return str(ifindex)

