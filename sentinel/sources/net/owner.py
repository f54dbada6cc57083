"""Which process owns a connection: the local end of live connections, named (#19).

With ``attribution.connections`` on, the live network source hands every
``net.connection`` and ``net.tcp_synack`` whose ``src`` is this host (an
outbound connection, a port answering) to :class:`ConnectionOwners` instead
of the engine. Its one worker thread (``connections-owner``):

1. asks the kernel for the socket (:mod:`sockdiag`): its uid and inode, while
   the socket still exists: done first, for every waiting event, because a
   short-lived connection's socket is gone within milliseconds;
2. finds the process holding the inode in /proc (:mod:`procs`) within the
   search's deadline (``deadline`` after the search began: time for a few full
   passes of /proc on a busy machine, counted from the search, not from the
   hand-over, so a worker that was kept waiting still gets its search);
3. fills :data:`sentinel.events.ACTOR_FIELDS` (``process_via`` "socket") and
   ``process``, one line for people, then passes the event on.

The decoder thread never waits for a lookup: when the queue is full the event
goes on at once with ``process_unknown`` "lookup queue full". An event that
cannot be attributed says why in ``process_unknown`` (see :data:`REASONS`).
When the netlink socket cannot be opened the component ``connections-owner``
is down (``/healthz``), one log line says so and one when it works again.
"""

from __future__ import annotations

import contextlib
import os
import queue
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from sentinel import actors, logs
from sentinel.actors import Users
from sentinel.events import Event, name_fields
from sentinel.metrics import Metrics
from sentinel.sources.net.procs import ProcessInfo, ProcIndex, Search, can_see_other_users
from sentinel.sources.net.procs import read_process as _read_process
from sentinel.sources.net.sockdiag import DiagRefused, SockDiag, SockInfo

log = logs.get("net.owner")

COMPONENT = "connections-owner"
#: the kinds looked up, when their src is this host
LOOKED_UP = frozenset({"net.connection", "net.tcp_synack"})
LOCAL_SRC = frozenset({"outbound", "local"})
#: how long one search of /proc may take (a full pass is ~10 ms on a test machine
#: with 280 processes; on a loaded one, other threads hold the interpreter for
#: several ms at a time)
DEADLINE = 0.05
QUEUE_SIZE = 1024
#: events taken from the queue at once (their sockets are looked up first)
BATCH = 64
#: a netlink socket that could not be opened is tried again this often
REOPEN_EVERY = 5.0

CLOSED = "socket closed before lookup"
OTHER_USER = "process of another user not visible: needs CAP_SYS_PTRACE"
EXITED = "process exited before lookup"
NO_PROCESS = "socket held by no process"
LATE = "lookup deadline passed"
RATE_LIMITED = "process lookup rate limited"
QUEUE_FULL = "lookup queue full"
RAW = "crafted packet, no socket"
UNAVAILABLE = "socket lookup unavailable"
FAILED = "socket lookup failed"

#: every reason, and its ``outcome`` label in sentinel_connection_owner_lookups_total
REASONS: dict[str, str] = {
    CLOSED: "socket_closed", OTHER_USER: "other_user", EXITED: "process_exited",
    NO_PROCESS: "no_process", LATE: "deadline", RATE_LIMITED: "rate_limited",
    QUEUE_FULL: "queue_full", RAW: "raw_packet", UNAVAILABLE: "unavailable", FAILED: "error",
}
OUTCOMES = ("resolved", *REASONS.values())

#: TCP states of a socket its process has closed (FIN_WAIT1/2, TIME_WAIT, CLOSE,
#: LAST_ACK, CLOSING); TIME_WAIT and NEW_SYN_RECV are mini sockets without a uid
_CLOSING = frozenset({4, 5, 6, 7, 9, 11})
TIME_WAIT, NEW_SYN_RECV = 6, 12

_Item = tuple[Event, Callable[[Event], None]]


def _packed(text: str) -> bytes:
    return socket.inet_pton(socket.AF_INET6 if ":" in text else socket.AF_INET, text)


class ConnectionOwners:
    """Looks up the process of local connection events on a worker, then emits them."""

    def __init__(self, metrics: Metrics, *, deadline: float = DEADLINE,
                 queue_size: int = QUEUE_SIZE, proc: str = "/proc",
                 open_diag: Callable[[], SockDiag] = SockDiag,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.deadline = deadline
        self.proc = proc
        self.clock = clock
        self._open_diag = open_diag
        self._counts = {o: metrics.connection_owner_lookups.labels(o) for o in OUTCOMES}
        self._queue: queue.Queue[_Item] = queue.Queue(queue_size)
        self.index = ProcIndex(proc, clock=clock)
        self.users = Users()
        self._diag: SockDiag | None = None
        self._tried = -REOPEN_EVERY
        self._up: bool | None = None  # None until the first open attempt
        self._euid = os.geteuid()
        self._ptrace = can_see_other_users()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> None:
        self._stop.clear()
        self._reopen()
        if not self._ptrace:
            log.warning("connections_owner_limited", detail="processes of other users than"
                        f" uid {self._euid} cannot be named: needs CAP_SYS_PTRACE")
        self._thread = threading.Thread(target=self._run, name=COMPONENT, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """After the captures stopped: every waiting event is looked up and emitted."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        self._drain()
        if self._diag is not None:
            self._diag.close()
            self._diag = None

    def alive(self) -> bool:
        """The netlink socket is open and the worker runs."""
        return bool(self._up) and self._thread is not None and self._thread.is_alive()

    def _set_up(self, up: bool, error: str = "") -> None:
        if up == self._up:
            return
        if up:
            log.info("connections_owner_up", detail="connection events name their process")
        else:
            log.error("connections_owner_down", error=error,
                      detail="connection events carry no process (process_unknown says"
                             f" {UNAVAILABLE!r}) until the kernel's sock_diag can be opened;"
                             f" retried every {REOPEN_EVERY:g}s")
        self._up = up

    def _reopen(self) -> SockDiag | None:
        if self._diag is None and self.clock() - self._tried >= REOPEN_EVERY:
            self._tried = self.clock()
            try:
                self._diag = self._open_diag()
            except OSError as exc:
                self._set_up(False, str(exc))
            else:
                self._set_up(True)
        return self._diag

    # -- the event path ----------------------------------------------------

    def wrap(self, emit: Callable[[Event], None]) -> Callable[[Event], None]:
        """``emit`` with the local connection events going through the lookup first."""
        def owned(ev: Event) -> None:
            if ev.kind in LOOKED_UP and ev.fields.get("direction") in LOCAL_SRC:
                self.submit(ev, emit)
            else:
                emit(ev)
        return owned

    def submit(self, ev: Event, emit: Callable[[Event], None]) -> None:
        """Queue ``ev`` for its lookup; a full queue sends it on at once, unattributed."""
        try:
            self._queue.put_nowait((ev, emit))
        except queue.Full:
            ev.fields.update(self._unknown(QUEUE_FULL))
            emit(ev)

    def _run(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=0.2)
            except queue.Empty:
                if self._stop.is_set():
                    return
                self._reopen()
                continue
            items = [first]
            while len(items) < BATCH:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            self._handle(items)

    def _drain(self) -> None:
        items: list[_Item] = []
        with contextlib.suppress(queue.Empty):
            while True:
                items.append(self._queue.get_nowait())
        if items:
            self._handle(items)

    def _handle(self, items: list[_Item]) -> None:
        try:
            filled = self.resolve([ev for ev, _ in items])
        except Exception as exc:  # the worker must not die: count, log, go on
            log.exception("connections_owner_error", error=str(exc))
            filled = [self._unknown(FAILED) for _ in items]
        for (ev, emit), fields in zip(items, filled, strict=True):
            ev.fields.update(fields)
            emit(ev)

    # -- the lookup ----------------------------------------------------------

    def resolve(self, events: list[Event]) -> list[dict[str, Any]]:
        """The actor fields of each event, searching /proc for up to ``deadline``."""
        socks = [self._socket(ev) for ev in events]
        inodes = {s.inode for s in socks
                  if isinstance(s, SockInfo) and s.inode and self._visible(s)}
        search = self.index.find(inodes, self.clock() + self.deadline) if inodes else Search({})
        return [self._fields(s, search) for s in socks]

    def _visible(self, s: SockInfo) -> bool:
        return self._ptrace or s.uid == self._euid

    def _socket(self, ev: Event) -> SockInfo | str:
        f = ev.fields
        if f.get("probe"):
            return RAW  # a FIN/NULL/Xmas probe is written by a raw socket, not a connection
        diag = self._reopen()
        if diag is None:
            return UNAVAILABLE
        try:
            src, sport = _packed(f["src_ip"]), int(f["src_port"])
            dst, dport = _packed(f["dst_ip"]), int(f["dst_port"])
            if ev.kind == "net.tcp_synack":
                # the listener, not the half-open connection (which no file holds yet);
                # a listener closed after its accept (nc -l) leaves the accepted socket
                got = diag.tcp_listener(src, sport) or diag.tcp(src, sport, dst, dport)
            elif f.get("proto") == "udp":
                got = diag.udp(src, sport, dst, dport)
            else:
                got = diag.tcp(src, sport, dst, dport)
        except DiagRefused:
            return FAILED
        except OSError as exc:
            diag.close()
            self._diag = None
            self._tried = self.clock()
            self._set_up(False, str(exc))
            return FAILED
        except (KeyError, TypeError, ValueError):
            return FAILED
        return CLOSED if got is None else got

    def _fields(self, s: SockInfo | str, search: Search) -> dict[str, Any]:
        if isinstance(s, str):
            return self._unknown(s)
        if not s.inode:
            # no file holds it: closed by its process and lingering (FIN_WAIT, TIME_WAIT:
            # such a socket's uid is not kept), or not accepted yet
            if s.state in _CLOSING:
                return self._unknown(CLOSED, None if s.state == TIME_WAIT else s.uid)
            return self._unknown(NO_PROCESS, None if s.state == NEW_SYN_RECV else s.uid)
        where = search.found.get(s.inode)
        if where is None:
            if not self._visible(s):
                why = OTHER_USER
            elif search.stopped == "deadline":
                why = LATE
            elif search.stopped == "budget":
                why = RATE_LIMITED
            else:
                why = OTHER_USER if search.hidden else NO_PROCESS
            return self._unknown(why, s.uid)
        pid = where[0]
        info = self.read_process(pid)
        # confirmed after reading: a pid reused between the scan and the reads is not named
        if info is None or self.index.owner(s.inode) != where:
            return self._unknown(EXITED, s.uid)
        self.index.note(pid)
        return self._known(info)

    def read_process(self, pid: int) -> ProcessInfo | None:
        return _read_process(self.proc, pid)

    def _known(self, p: ProcessInfo) -> dict[str, Any]:
        self._counts["resolved"].inc()
        user, login_user = self.users.name(p.uid), self.users.name(p.login_uid)
        exe = name_fields(p.exe, "process_exe")
        return {
            "process_pid": p.pid, "process_ppid": p.ppid, **exe,
            "process_command": p.command, "process_uid": p.uid, "process_user": user,
            "process_login_uid": p.login_uid, "process_login_user": login_user,
            "process_session": p.session, "process_via": "socket", "process_unknown": None,
            "process": actors.known(exe["process_exe"] or p.command, p.pid, p.uid, user,
                                    p.login_uid, login_user),
        }

    def _unknown(self, why: str, uid: int | None = None) -> dict[str, Any]:
        self._counts[REASONS[why]].inc()
        user = self.users.name(uid)
        return {
            "process_pid": None, "process_ppid": None, "process_exe": None,
            "process_exe_b64": None, "process_command": None, "process_uid": uid,
            "process_user": user, "process_login_uid": None, "process_login_user": None,
            "process_session": None, "process_via": "socket", "process_unknown": why,
            "process": actors.unknown(why, uid, user),
        }
