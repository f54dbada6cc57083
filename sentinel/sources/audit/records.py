"""Audit records, from the text the kernel sends to one event.

The kernel writes one syscall as several records sharing a serial,
``audit(SEC.MS:SERIAL): ...``: SYSCALL (who: pid, ppid, uid, auid, ses, exe,
comm), CWD, one PATH per name it resolved, PROCTITLE (the command line, NUL
separated), then EOE. :class:`Assembler` joins them into one :class:`Record`.

Every value a process controls (names, exe, comm, the command line) is written
by the kernel either quoted (only printable ASCII, no quote, no space) or as
upper-case hex (anything else), so splitting a record on spaces is exact and
decoding is lossless: names stay bytes.

Memory is bounded: an event whose EOE never comes is let go after
``timeout`` seconds, and at most ``max_pending`` events are open at once;
both are counted, as is any record that cannot be parsed. Garbage never
raises.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass, field

AUDIT_SYSCALL = 1300
AUDIT_PATH = 1302
AUDIT_CONFIG_CHANGE = 1305
AUDIT_CWD = 1307
AUDIT_EOE = 1320
AUDIT_PROCTITLE = 1327
_PARTS = (AUDIT_PATH, AUDIT_CWD, AUDIT_PROCTITLE)

#: uid/auid/ses the kernel writes for "not set" ((u32)-1)
UNSET = 4294967295

_HEAD = re.compile(rb"audit\((\d+)\.(\d+):(\d+)\):\s?")
_HEX = re.compile(rb"(?:[0-9A-F]{2})+")


@dataclass(frozen=True)
class PathItem:
    """One name the syscall resolved: absolute (joined to the CWD when relative)."""

    name: bytes
    #: NORMAL, PARENT, CREATE, DELETE or UNKNOWN
    nametype: str
    inode: int | None


@dataclass
class Record:
    """One audited syscall, its records joined."""

    serial: int
    time: float
    syscall: int | None = None
    #: the audit arch (AUDIT_ARCH_X86_64 0xc000003e...): syscall numbers depend on it
    arch: int | None = None
    success: bool | None = None
    pid: int | None = None
    ppid: int | None = None
    uid: int | None = None
    auid: int | None = None
    ses: int | None = None
    exe: bytes | None = None
    comm: bytes | None = None
    key: bytes | None = None
    cwd: bytes | None = None
    #: the command line as the kernel saw it (cut at 128 bytes by the kernel), NULs kept
    proctitle: bytes | None = None
    paths: list[PathItem] = field(default_factory=list)
    #: raw PATH items before the CWD is known: (name, nametype, inode)
    _raw_paths: list[tuple[bytes | None, str, int | None]] = field(default_factory=list)

    def command(self) -> bytes | None:
        """The command line with its NUL separators as spaces (comm when it is absent)."""
        if self.proctitle is not None:
            return self.proctitle.rstrip(b"\0").replace(b"\0", b" ")
        return self.comm

    def finish(self) -> Record:
        """Resolve the names against the CWD (called once the event is complete)."""
        for name, nametype, inode in self._raw_paths:
            if name is None:
                continue
            full = name
            if not name.startswith(b"/") and self.cwd is not None:
                full = self.cwd.rstrip(b"/") + b"/" + name
            self.paths.append(PathItem(_tidy(full), nametype, inode))
        self._raw_paths = []
        return self


def _tidy(name: bytes) -> bytes:
    """``/a/./b/`` as ``/a/b``: lexical only (``..`` is kept: it may cross a symlink)."""
    parts = [p for p in name.split(b"/") if p not in (b"", b".")]
    return b"/" + b"/".join(parts)


def value(raw: bytes) -> bytes | None:
    """An untrusted value as the kernel wrote it: quoted text, hex, or ``(null)``."""
    if len(raw) >= 2 and raw[:1] == b'"' and raw[-1:] == b'"':
        return raw[1:-1]
    if raw in (b"(null)", b"(none)", b"?"):
        return None
    if _HEX.fullmatch(raw):
        return bytes.fromhex(raw.decode("ascii"))
    return raw


def fields(body: bytes) -> dict[bytes, bytes]:
    """``key=value`` pairs of one record body (the first of a repeated key wins)."""
    out: dict[bytes, bytes] = {}
    for token in body.split():
        k, sep, v = token.partition(b"=")
        if sep and k not in out:
            out[k] = v
    return out


def _int(raw: bytes | None, base: int = 10) -> int | None:
    if raw is None:
        return None
    try:
        return int(raw, base)
    except ValueError:
        return None


def header(payload: bytes) -> tuple[float, int, bytes] | None:
    """(time, serial, body) of one record, None when it has no ``audit(...)`` head."""
    m = _HEAD.match(payload)
    if m is None:
        return None
    sec, ms, serial = m.groups()
    return int(sec) + int(ms) / 1000.0, int(serial), payload[m.end():].rstrip(b"\0\n")


class Assembler:
    """Joins the records of each event; feed it every message of the multicast group."""

    def __init__(self, timeout: float = 2.0, max_pending: int = 256,
                 key: bytes | None = None) -> None:
        self.timeout = timeout
        self.max_pending = max_pending
        #: only SYSCALL records with this key start an event (None: every one)
        self.key = key
        self._open: OrderedDict[int, tuple[float, Record]] = OrderedDict()
        #: why records were lost: unparseable, incomplete (timed out), overflow
        self.lost: dict[str, int] = {"unparseable": 0, "incomplete": 0, "overflow": 0}

    def pending(self) -> int:
        return len(self._open)

    def feed(self, mtype: int, payload: bytes, now: float) -> list[Record]:
        """The events this message completes (and those it pushes out), never raising."""
        try:
            return self._feed(mtype, payload, now)
        except Exception:  # a record no branch expected: counted, the stream goes on
            self.lost["unparseable"] += 1
            return []

    def _feed(self, mtype: int, payload: bytes, now: float) -> list[Record]:
        done = self.expire(now)
        if mtype not in (AUDIT_SYSCALL, AUDIT_EOE, *_PARTS):
            return done
        head = header(payload)
        if head is None:
            self.lost["unparseable"] += 1
            return done
        ts, serial, body = head
        if mtype == AUDIT_SYSCALL:
            rec = _syscall(serial, ts, fields(body))
            if rec is None:
                self.lost["unparseable"] += 1
            elif self.key is None or rec.key == self.key:
                if len(self._open) >= self.max_pending:
                    self._open.popitem(last=False)
                    self.lost["overflow"] += 1
                self._open[serial] = (now, rec)
            return done
        opened = self._open.get(serial)
        if opened is None:
            return done  # an event of another rule, or one let go already
        rec = opened[1]
        if mtype == AUDIT_EOE:
            del self._open[serial]
            done.append(rec.finish())
        elif mtype == AUDIT_CWD:
            rec.cwd = value(fields(body).get(b"cwd", b"(null)"))
        elif mtype == AUDIT_PROCTITLE:
            rec.proctitle = value(fields(body).get(b"proctitle", b"(null)"))
        else:
            f = fields(body)
            nametype = f.get(b"nametype", b"UNKNOWN").decode("ascii", "replace")
            rec._raw_paths.append((value(f.get(b"name", b"(null)")), nametype,
                                   _int(f.get(b"inode"))))
        return done

    def expire(self, now: float) -> list[Record]:
        """Events older than ``timeout`` without their EOE: counted, and still used
        when they hold a SYSCALL record (what they say is true, if incomplete)."""
        out: list[Record] = []
        while self._open:
            serial, (seen, rec) = next(iter(self._open.items()))
            if now - seen < self.timeout:
                break
            del self._open[serial]
            self.lost["incomplete"] += 1
            out.append(rec.finish())
        return out


def _syscall(serial: int, ts: float, f: dict[bytes, bytes]) -> Record | None:
    if b"pid" not in f:
        return None
    success = f.get(b"success")
    return Record(
        serial=serial, time=ts,
        syscall=_int(f.get(b"syscall")), arch=_int(f.get(b"arch"), 16),
        success=None if success is None else success == b"yes",
        pid=_int(f.get(b"pid")), ppid=_int(f.get(b"ppid")),
        uid=_int(f.get(b"uid")), auid=_int(f.get(b"auid")), ses=_int(f.get(b"ses")),
        exe=value(f.get(b"exe", b"(null)")), comm=value(f.get(b"comm", b"(null)")),
        key=value(f.get(b"key", b"(null)")),
    )


def config_change(payload: bytes) -> dict[bytes, bytes] | None:
    """The fields of an AUDIT_CONFIG_CHANGE record (a rule removed, audit switched)."""
    head = header(payload)
    return None if head is None else fields(head[2])
