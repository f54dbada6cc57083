"""NETLINK_SOCK_DIAG requests and answers, against the running kernel: real sockets on
loopback (IPv4 and IPv6), each found by its addresses with its uid and inode."""

from __future__ import annotations

import errno
import os
import socket
import struct
import subprocess
import sys
from collections.abc import Iterator

import pytest

from sentinel.sources.net.sockdiag import (
    MSG_LEN,
    NLMSG_ERROR,
    SOCK_DIAG_BY_FAMILY,
    TCP_LISTEN,
    SockDiag,
    SockInfo,
    pack_request,
    parse_reply,
)

LOOPBACKS = [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")]


@pytest.fixture
def diag() -> Iterator[SockDiag]:
    d = SockDiag()
    yield d
    d.close()


def packed(family: int, addr: str) -> bytes:
    return socket.inet_pton(family, addr)


def test_the_request_is_an_inet_diag_req_v2_with_an_exact_sockid() -> None:
    src, dst = packed(socket.AF_INET, "10.20.0.10"), packed(socket.AF_INET, "203.0.113.50")
    msg = pack_request(7, socket.AF_INET, socket.IPPROTO_TCP, src, 40000, dst, 443)
    # nlmsghdr (16) + inet_diag_req_v2 (8) + inet_diag_sockid (48)
    assert len(msg) == 72
    length, mtype, flags, seq, pid = struct.unpack_from("=IHHII", msg)
    assert (length, mtype, flags, seq, pid) == (72, SOCK_DIAG_BY_FAMILY, 1, 7, 0)
    assert msg[16:20] == bytes([socket.AF_INET, socket.IPPROTO_TCP, 0, 0])
    assert struct.unpack_from("=I", msg, 20) == (0xFFFFFFFF,)  # every state
    assert struct.unpack_from("!HH", msg, 24) == (40000, 443)  # ports in network order
    assert msg[28:32] == src and msg[44:48] == dst  # addresses padded to 16 bytes
    assert msg[32:44] == bytes(12) and msg[48:60] == bytes(12)
    assert struct.unpack_from("=III", msg, 60) == (0, 0xFFFFFFFF, 0xFFFFFFFF)  # no cookie


def test_replies_error_stale_and_truncated_messages_are_told_apart() -> None:
    err = struct.pack("=IHHII", 36, NLMSG_ERROR, 0, 5, 0) + struct.pack("=i", -errno.EPERM)
    err += bytes(16)
    assert parse_reply(err, 5) == errno.EPERM
    assert parse_reply(err, 6) is None  # an answer to another request
    short = struct.pack("=IHHII", 16 + MSG_LEN, SOCK_DIAG_BY_FAMILY, 0, 5, 0) + bytes(10)
    assert parse_reply(short, 5) == errno.EBADMSG  # length beyond the datagram
    assert parse_reply(b"\x01\x02", 5) is None
    lying = struct.pack("=IHHII", 4, SOCK_DIAG_BY_FAMILY, 0, 5, 0)
    assert parse_reply(lying, 5) == errno.EBADMSG


@pytest.mark.parametrize(("family", "addr"), LOOPBACKS)
def test_a_tcp_connection_is_found_with_its_inode_and_uid(diag: SockDiag, family: int,
                                                          addr: str) -> None:
    with socket.socket(family) as server, socket.socket(family) as client:
        server.bind((addr, 0))
        server.listen()
        client.connect(server.getsockname()[:2])
        lport, rport = client.getsockname()[1], server.getsockname()[1]
        got = diag.tcp(packed(family, addr), lport, packed(family, addr), rport)
        assert isinstance(got, SockInfo)
        assert (got.family, got.sport, got.dport) == (family, lport, rport)
        assert got.inode == os.fstat(client.fileno()).st_ino
        assert got.uid == os.geteuid()


@pytest.mark.parametrize(("family", "addr"), LOOPBACKS)
def test_a_listener_is_found_by_its_local_port_alone(diag: SockDiag, family: int,
                                                     addr: str) -> None:
    wildcard = "::" if family == socket.AF_INET6 else "0.0.0.0"
    with socket.socket(family) as bound, socket.socket(family) as anywhere:
        bound.bind((addr, 0))
        bound.listen()
        anywhere.bind((wildcard, 0))
        anywhere.listen()
        for s in (bound, anywhere):
            port = s.getsockname()[1]
            got = diag.tcp_listener(packed(family, addr), port)
            assert isinstance(got, SockInfo)
            assert got.state == TCP_LISTEN
            assert got.inode == os.fstat(s.fileno()).st_ino


def test_a_dual_stack_listener_is_found_for_an_ipv4_address(diag: SockDiag) -> None:
    with socket.socket(socket.AF_INET6) as s:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        s.bind(("::", 0))
        s.listen()
        got = diag.tcp_listener(packed(socket.AF_INET, "127.0.0.1"), s.getsockname()[1])
        assert got is not None and got.inode == os.fstat(s.fileno()).st_ino


@pytest.mark.parametrize(("family", "addr"), LOOPBACKS)
def test_a_udp_sender_is_found_connected_or_not(diag: SockDiag, family: int,
                                                addr: str) -> None:
    with socket.socket(family, socket.SOCK_DGRAM) as sink, \
            socket.socket(family, socket.SOCK_DGRAM) as loose, \
            socket.socket(family, socket.SOCK_DGRAM) as tied:
        sink.bind((addr, 0))
        dst = sink.getsockname()[:2]
        loose.sendto(b"x", dst)
        tied.connect(dst)
        tied.send(b"y")
        for s in (loose, tied):
            got = diag.udp(packed(family, addr), s.getsockname()[1], packed(family, addr),
                           dst[1])
            assert got is not None and got.inode == os.fstat(s.fileno()).st_ino


@pytest.mark.parametrize(("family", "addr"), LOOPBACKS)
def test_a_socket_that_is_gone_is_none(diag: SockDiag, family: int, addr: str) -> None:
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.bind((addr, 0))
    port = s.getsockname()[1]
    s.close()
    a = packed(family, addr)
    assert diag.udp(a, port, a, 9) is None
    assert diag.tcp(a, port, a, 9) is None
    assert diag.tcp_listener(a, port) is None


def test_the_uid_is_the_socket_owner_s_not_the_asker_s(diag: SockDiag) -> None:
    """A socket made by another user (nobody, via setpriv) carries that user's uid."""
    if os.geteuid() != 0:
        pytest.skip("needs root to run a process as another user")
    code = ("import socket,sys;s=socket.socket();s.bind(('127.0.0.1',0));s.listen();"
            "print(s.getsockname()[1],flush=True);sys.stdin.read()")
    p = subprocess.Popen(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                          sys.executable, "-c", code], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None
        port = int(p.stdout.readline())
        got = diag.tcp_listener(packed(socket.AF_INET, "127.0.0.1"), port)
        assert got is not None and got.uid == 65534 and got.inode > 0
    finally:
        assert p.stdin is not None
        p.stdin.close()
        p.wait(timeout=10)
