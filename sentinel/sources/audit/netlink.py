"""The kernel audit subsystem over NETLINK_AUDIT: status, enable, watch rules.

Plain sockets and :mod:`struct` (the layouts are those of ``linux/audit.h``):
``AUDIT_GET``/``AUDIT_SET`` read and switch the status, ``AUDIT_ADD_RULE``,
``AUDIT_DEL_RULE`` and ``AUDIT_LIST_RULES`` carry ``struct audit_rule_data``.
The kernel only answers a process of the initial user and PID namespaces with
``CAP_AUDIT_CONTROL``; every refusal comes back as an :class:`AuditError`
holding the errno, so the caller can say why attribution is blind.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from dataclasses import dataclass

NETLINK_AUDIT = 9
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
AUDIT_GET = 1000
AUDIT_SET = 1001
AUDIT_ADD_RULE = 1011
AUDIT_DEL_RULE = 1012
AUDIT_LIST_RULES = 1013
AUDIT_STATUS_ENABLED = 0x1
AUDIT_FILTER_EXIT = 0x04
AUDIT_ALWAYS = 2
AUDIT_WATCH = 105
AUDIT_PERM = 106
AUDIT_DIR = 107
AUDIT_FILTERKEY = 210
AUDIT_EQUAL = 0x40000000
AUDIT_PERM_WRITE = 2
AUDIT_PERM_ATTR = 8
AUDIT_BITMASK_SIZE = 64
AUDIT_MAX_FIELDS = 64
#: The multicast group every audit record is sent to (needs CAP_AUDIT_READ).
AUDIT_NLGRP_READLOG = 1

#: The key sentinel's rules carry (``auditctl -k sentinel``); other rules are never touched.
RULE_KEY = b"sentinel"

_HDR = struct.Struct("=IHHII")
_STATUS = struct.Struct("=11I")
_RULE_HEAD = struct.Struct(f"=3I{AUDIT_BITMASK_SIZE}I")
_RULE_FIELDS = struct.Struct(f"={AUDIT_MAX_FIELDS}I")
_RULE_SIZE = _RULE_HEAD.size + 3 * _RULE_FIELDS.size + 4


class AuditError(OSError):
    """The kernel refused an audit request (errno says why), or answered nonsense."""


@dataclass(frozen=True)
class Status:
    """The part of ``struct audit_status`` sentinel uses."""

    #: 0 off, 1 on, 2 on and locked (no change until reboot)
    enabled: int
    #: the registered audit daemon (auditd), 0 when none
    pid: int
    #: records the kernel dropped (backlog full, rate limit)
    lost: int
    backlog: int


@dataclass(frozen=True, order=True)
class WatchRule:
    """One exit-filter rule: writes and attribute changes of ``path`` (a subtree when
    ``subtree``), with a key. Paths are bytes, as the kernel compares them."""

    path: bytes
    subtree: bool
    key: bytes = RULE_KEY

    def encode(self) -> bytes:
        """``struct audit_rule_data`` as ``auditctl -w PATH -p wa -k KEY`` sends it."""
        fields = [AUDIT_DIR if self.subtree else AUDIT_WATCH, AUDIT_PERM, AUDIT_FILTERKEY]
        values = [len(self.path), AUDIT_PERM_WRITE | AUDIT_PERM_ATTR, len(self.key)]
        buf = self.path + self.key
        mask = [0xFFFFFFFF] * AUDIT_BITMASK_SIZE  # every syscall: the perm field selects
        pad = [0] * (AUDIT_MAX_FIELDS - len(fields))
        return (_RULE_HEAD.pack(AUDIT_FILTER_EXIT, AUDIT_ALWAYS, len(fields), *mask)
                + _RULE_FIELDS.pack(*fields, *pad) + _RULE_FIELDS.pack(*values, *pad)
                + _RULE_FIELDS.pack(*([AUDIT_EQUAL] * len(fields)), *pad)
                + struct.pack("=I", len(buf)) + buf)


def decode_rule(data: bytes) -> WatchRule | None:
    """The watch rule in one ``AUDIT_LIST_RULES`` answer, None for any other rule."""
    if len(data) < _RULE_SIZE:
        return None
    head = _RULE_HEAD.unpack_from(data, 0)
    flags, count = head[0], head[2]
    off = _RULE_HEAD.size
    fields = _RULE_FIELDS.unpack_from(data, off)
    values = _RULE_FIELDS.unpack_from(data, off + _RULE_FIELDS.size)
    (buflen,) = struct.unpack_from("=I", data, off + 3 * _RULE_FIELDS.size)
    buf = data[_RULE_SIZE:_RULE_SIZE + buflen]
    if flags != AUDIT_FILTER_EXIT or count > AUDIT_MAX_FIELDS:
        return None
    path: bytes | None = None
    subtree = False
    key = b""
    pos = 0
    for f, v in zip(fields[:count], values[:count], strict=True):
        if f in (AUDIT_WATCH, AUDIT_DIR, AUDIT_FILTERKEY):
            text = buf[pos:pos + v]
            pos += v
            if f == AUDIT_FILTERKEY:
                key = text
            else:
                path, subtree = text, f == AUDIT_DIR
        elif f not in (AUDIT_PERM,):
            return None
    if path is None:
        return None
    return WatchRule(path, subtree, key)


def open_socket(groups: int = 0) -> socket.socket:
    """A NETLINK_AUDIT socket; ``groups`` a multicast bit mask (1 << (group - 1))."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_AUDIT)
    try:
        sock.bind((0, groups))
    except OSError:
        sock.close()
        raise
    return sock


class AuditControl:
    """Requests to the kernel over one NETLINK_AUDIT socket (not thread-safe)."""

    def __init__(self, timeout: float = 2.0) -> None:
        self._sock = open_socket()
        self._sock.settimeout(timeout)
        self._seq = 0

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> AuditControl:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def status(self) -> Status:
        for mtype, data in self._request(AUDIT_GET, b"", ack=False):
            if mtype == AUDIT_GET and len(data) >= 32:
                v = _STATUS.unpack((data + bytes(_STATUS.size))[:_STATUS.size])
                return Status(enabled=v[1], pid=v[3], lost=v[6], backlog=v[7])
        msg = "no AUDIT_GET answer from the kernel"
        raise AuditError(errno.EPROTO, msg)

    def set_enabled(self, enabled: int) -> None:
        body = _STATUS.pack(AUDIT_STATUS_ENABLED, enabled, *([0] * 9))
        self._request(AUDIT_SET, body)  # an error answer raises

    def add(self, rule: WatchRule) -> None:
        """Add ``rule``; an identical rule already there is not an error."""
        try:
            self._request(AUDIT_ADD_RULE, rule.encode())
        except AuditError as exc:
            if exc.errno != errno.EEXIST:
                raise

    def delete(self, rule: WatchRule) -> None:
        """Delete ``rule``; a rule already gone is not an error."""
        try:
            self._request(AUDIT_DEL_RULE, rule.encode())
        except AuditError as exc:
            if exc.errno != errno.ENOENT:
                raise

    def rules(self) -> list[WatchRule]:
        """The watch rules the kernel holds now (other kinds of rules left out)."""
        out: list[WatchRule] = []
        for mtype, data in self._request(AUDIT_LIST_RULES, b"", ack=False, multi=True):
            if mtype == AUDIT_LIST_RULES and (r := decode_rule(data)) is not None:
                out.append(r)
        return out

    # -- the exchange --------------------------------------------------------

    def _request(self, mtype: int, body: bytes, ack: bool = True,
                 multi: bool = False) -> list[tuple[int, bytes]]:
        self._seq += 1
        seq = self._seq
        flags = NLM_F_REQUEST | (NLM_F_ACK if ack else 0)
        self._sock.send(_HDR.pack(_HDR.size + len(body), mtype, flags, seq, 0) + body)
        out: list[tuple[int, bytes]] = []
        while True:
            try:
                data = self._sock.recv(1 << 16)
            except TimeoutError:
                msg = f"the kernel did not answer audit request {mtype}"
                raise AuditError(errno.ETIMEDOUT, msg) from None
            done = False
            for rtype, rseq, payload in _messages(data):
                if rseq != seq:
                    continue  # an answer to an earlier request that timed out
                if rtype == NLMSG_ERROR:
                    (err,) = struct.unpack_from("=i", payload, 0) if len(payload) >= 4 else (0,)
                    if err < 0:
                        raise AuditError(-err, f"audit request {mtype}: {os.strerror(-err)}")
                    done = True  # the ack
                elif rtype == NLMSG_DONE:
                    done = True
                else:
                    out.append((rtype, payload))
                    done = done or (not multi and not ack)
            if done:
                return out


def _messages(data: bytes) -> list[tuple[int, int, bytes]]:
    """(type, seq, payload) of each netlink message in one datagram."""
    out: list[tuple[int, int, bytes]] = []
    off = 0
    while off + _HDR.size <= len(data):
        length, mtype, _flags, seq, _pid = _HDR.unpack_from(data, off)
        if length < _HDR.size:
            break
        out.append((mtype, seq, data[off + _HDR.size:off + length]))
        off += (length + 3) & ~3
    return out


def messages(data: bytes) -> list[tuple[int, bytes]]:
    """(type, payload) of each netlink message in one datagram from the multicast group."""
    return [(t, p) for t, _, p in _messages(data)]
