"""One socket, found by its addresses, through the kernel's NETLINK_SOCK_DIAG.

A ``SOCK_DIAG_BY_FAMILY`` request without ``NLM_F_DUMP`` carries an exact
``inet_diag_sockid`` and the kernel answers with that one socket (its state,
owner uid and inode) or ``ENOENT``: a hash lookup in the kernel, tens of
microseconds from Python, with no privilege and no walk of ``/proc/net``. It
sees the sockets of the network namespace sentinel runs in.

Two quirks of the kernel are kept here (``net/ipv4/inet_diag.c``,
``net/ipv4/udp_diag.c``): TCP looks the request up as the socket's own view
(``idiag_src`` is the local end) while UDP looks it up as an incoming packet
would (``idiag_src`` is the remote end); and a TCP lookup with the remote end
zeroed finds the listening socket of a local address and port.
"""

from __future__ import annotations

import errno
import itertools
import os
import socket
import struct
from dataclasses import dataclass

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST = 0x1
NLMSG_ERROR = 2
NLMSG_DONE = 3
#: every TCP state (1 << TCP_ESTABLISHED ... 1 << TCP_NEW_SYN_RECV)
ALL_STATES = 0xFFFFFFFF
#: "no cookie": match on the addresses alone
NO_COOKIE = 0xFFFFFFFF

_NLMSG = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_REQ_HEAD = struct.Struct("=BBBBI")  # family, protocol, ext, pad, states
_PORTS = struct.Struct("!HH")  # sport, dport: network order
_TAIL = struct.Struct("=III")  # ifindex, cookie[2]
_MSG_HEAD = struct.Struct("=BBBB")  # family, state, timer, retrans
_MSG_TAIL = struct.Struct("=IIIII")  # expires, rqueue, wqueue, uid, inode
#: sockid: ports (4) + src (16) + dst (16) + if (4) + cookie (8)
_SOCKID_LEN = 48
MSG_LEN = _MSG_HEAD.size + _SOCKID_LEN + _MSG_TAIL.size  # struct inet_diag_msg: 72

TCP_LISTEN = 10


class DiagRefused(OSError):
    """The kernel answered a lookup with an error other than "no such socket"."""


@dataclass(frozen=True, slots=True)
class SockInfo:
    """What the kernel says of one socket: ``inode`` 0 when no file holds it yet
    (a connection still in a listener's queue, a request socket)."""

    family: int
    state: int
    sport: int
    dport: int
    uid: int
    inode: int


def pack_request(seq: int, family: int, proto: int, src: bytes, sport: int, dst: bytes,
                 dport: int, states: int = ALL_STATES) -> bytes:
    """A whole netlink message asking for the one socket ``src:sport`` - ``dst:dport``.

    ``src``/``dst`` are packed addresses (4 or 16 bytes), put in the kernel's
    fields as given: callers choose the order (see the module docstring).
    """
    body = (_REQ_HEAD.pack(family, proto, 0, 0, states) + _PORTS.pack(sport, dport)
            + src.ljust(16, b"\0") + dst.ljust(16, b"\0") + _TAIL.pack(0, NO_COOKIE, NO_COOKIE))
    return _NLMSG.pack(_NLMSG.size + len(body), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST, seq,
                       0) + body


def parse_reply(data: bytes, seq: int) -> SockInfo | int | None:
    """The answer to request ``seq`` in one datagram: a :class:`SockInfo`, an errno
    (positive; ``ENOENT`` when no such socket), or None when ``data`` holds no
    message of that request (a late answer to an earlier one)."""
    off = 0
    while off + _NLMSG.size <= len(data):
        length, mtype, _flags, mseq, _pid = _NLMSG.unpack_from(data, off)
        if length < _NLMSG.size or off + length > len(data):
            return errno.EBADMSG
        body = off + _NLMSG.size
        if mseq == seq:
            if mtype == NLMSG_ERROR:
                if length < _NLMSG.size + 4:
                    return errno.EBADMSG
                (code,) = struct.unpack_from("=i", data, body)
                return -code if code else errno.ENOENT
            if mtype == SOCK_DIAG_BY_FAMILY:
                if length < _NLMSG.size + MSG_LEN:
                    return errno.EBADMSG
                family, state, _timer, _retrans = _MSG_HEAD.unpack_from(data, body)
                sport, dport = _PORTS.unpack_from(data, body + _MSG_HEAD.size)
                _exp, _rq, _wq, uid, inode = _MSG_TAIL.unpack_from(
                    data, body + _MSG_HEAD.size + _SOCKID_LEN)
                return SockInfo(family, state, sport, dport, uid, inode)
            if mtype == NLMSG_DONE:
                return errno.ENOENT
        off += (length + 3) & ~3  # NLMSG_ALIGN
    return None


class SockDiag:
    """A NETLINK_SOCK_DIAG socket; :meth:`tcp` and :meth:`udp` find one socket.

    Not thread-safe: one owner thread. A socket that does not exist is None;
    :class:`DiagRefused` when the kernel refuses one request; any other OSError
    when the netlink socket itself fails (the caller reopens it).
    """

    def __init__(self, timeout: float = 1.0) -> None:
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG)
        self._sock.settimeout(timeout)
        self._seq = itertools.count(1)

    def close(self) -> None:
        self._sock.close()

    def _ask(self, family: int, proto: int, src: bytes, sport: int, dst: bytes,
             dport: int) -> SockInfo | None:
        seq = next(self._seq) & 0xFFFFFFFF
        self._sock.send(pack_request(seq, family, proto, src, sport, dst, dport))
        while True:
            got = parse_reply(self._sock.recv(8192), seq)
            if got is None:
                continue  # an answer to an earlier request that timed out
            if isinstance(got, SockInfo):
                return got
            if got == errno.ENOENT:
                return None
            raise DiagRefused(got, f"sock_diag: {os.strerror(got)}")

    def tcp(self, local: bytes, lport: int, remote: bytes, rport: int) -> SockInfo | None:
        """The TCP socket of this exact connection (SYN_SENT, established...)."""
        family = socket.AF_INET if len(local) == 4 else socket.AF_INET6
        return self._ask(family, socket.IPPROTO_TCP, local, lport, remote, rport)

    def tcp_listener(self, local: bytes, lport: int) -> SockInfo | None:
        """The socket listening on ``local:lport`` (bound to it, or to the wildcard)."""
        family = socket.AF_INET if len(local) == 4 else socket.AF_INET6
        got = self._ask(family, socket.IPPROTO_TCP, local, lport, bytes(len(local)), 0)
        return got if got is not None and got.state == TCP_LISTEN else None

    def udp(self, local: bytes, lport: int, remote: bytes, rport: int) -> SockInfo | None:
        """The UDP socket that sends from ``local:lport`` to ``remote:rport``
        (connected to it, or bound to the port and not connected)."""
        family = socket.AF_INET if len(local) == 4 else socket.AF_INET6
        # the kernel's UDP lookup takes the request as an incoming packet: remote first
        return self._ask(family, socket.IPPROTO_UDP, remote, rport, local, lport)
