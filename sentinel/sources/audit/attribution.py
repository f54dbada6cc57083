"""Who changed a watched file: the kernel's audit records, kept ready for FIM events.

At start: audit is switched on when off (logged, and
``sentinel_attribution_audit_was_off`` set: processes forked before that are
never audited), one exit-filter rule per watched path is added (``-w PATH -p
wa -k sentinel``, a subtree rule for a folder), and a reader joins the
multicast group every audit record is sent to. A keeper checks every
``KEEP_EVERY`` seconds, and at once when a configuration change record
arrives, that audit is still on and the rules are still there (``auditctl
-D``, an auditd restart, remove them): it adds them again, logged once. It
also writes a canary file under its own rule from a fresh thread (a thread
made after audit was on is audited) and expects the record back: records
that do not arrive (sentinel in another network namespace, where the kernel
does not send them) are blindness too.

Whatever stops attribution (no CAP_AUDIT_CONTROL or CAP_AUDIT_READ, a kernel
without audit, a locked audit config without sentinel's rules, rules that
cannot be added again, records that do not arrive) makes the ``attribution``
health component and ``sentinel_attribution_up`` 0, with one log line per
change of state. At a clean stop sentinel's own rules are deleted, and audit
switched off again when sentinel switched it on and no other rule of
sentinel's remains.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sentinel import logs
from sentinel.actors import Users
from sentinel.events import shown_name
from sentinel.metrics import Metrics
from sentinel.sources.audit.index import (
    FITS,
    NO_RECORD,
    UNAVAILABLE,
    RecordIndex,
    actor_fields,
    unknown_fields,
)
from sentinel.sources.audit.netlink import (
    AUDIT_NLGRP_READLOG,
    RULE_KEY,
    AuditControl,
    AuditError,
    WatchRule,
    messages,
    open_socket,
)
from sentinel.sources.audit.records import AUDIT_CONFIG_CHANGE, Assembler

if TYPE_CHECKING:  # the FIM source imports this package: no import back at run time
    from sentinel.sources.fim.changes import Change

_log = logs.get("attribution")

KEEP_EVERY = 10.0
#: After a configuration-change record, how long the keeper lets the burst go on.
SETTLE = 0.1
#: How long a live FIM event waits for its record still on its way from the kernel
#: when the barrier cannot be used (its last canary did not come back).
WAIT = 0.02
#: How long a live event whose record is not in yet waits for the kernel's sender to
#: catch up (a busy machine), at most.
BARRIER_MAX = 1.0
#: A barrier is shared only by changes whose events were read this long before it began.
SHARE_MARGIN = 0.002
#: How long the canary's record may take to come back.
CANARY_WAIT = 2.0
CANARY_NAME = "audit-canary"


def watch_rules(paths: list[tuple[bytes, bool]]) -> list[WatchRule]:
    """One rule per watched path: a subtree rule for an existing folder that is
    watched recursively, else a rule on the name (it also sees it appear)."""
    out: set[WatchRule] = set()
    for path, recursive in paths:
        p = path.rstrip(b"/") or b"/"
        out.add(WatchRule(p, recursive and os.path.isdir(p)))
    return sorted(out)


class FileAttribution:
    """The audit side of file attribution; :meth:`for_change` names the process."""

    def __init__(self, paths: list[tuple[bytes, bool]], state_dir: Path, metrics: Metrics,
                 control: Callable[[], AuditControl] = AuditControl) -> None:
        self._metrics = metrics
        self._control_factory = control
        self.canary = os.fsencode(state_dir / CANARY_NAME)
        self.rules = [*watch_rules(paths), WatchRule(self.canary, False)]
        self.index = RecordIndex()
        self.users = Users()
        self.assembler = Assembler(key=RULE_KEY)
        self.up = False
        self.reason = "not started"
        self._enabled_by_us = False
        self._added: set[WatchRule] = set()
        self._absent: set[WatchRule] = set()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._barrier_ok = True
        self._barrier_began = -1.0  # monotonic start of the last barrier that came back
        self._readded = False
        self._threads: list[threading.Thread] = []
        self._sock: socket.socket | None = None
        self._kernel_lost: int | None = None
        self._reader_failed: str | None = None
        self.checks = 0  # keeper rounds done: the first one may find audit off

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        """Set audit up and start reading; never raises (a failure is "down")."""
        self._stop.clear()
        self._metrics.attribution_up.labels("fim").set(0)
        try:
            self._sock = open_socket(1 << (AUDIT_NLGRP_READLOG - 1))
            self._sock.settimeout(0.5)
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        except OSError as exc:
            self._sock = None
            self._reader_failed = (f"cannot read audit records ({exc.strerror}; needs"
                                   " CAP_AUDIT_READ and a kernel with audit)")
        if self._sock is not None:
            self._spawn("sentinel-audit-reader", self._read_loop)
        self._check()
        self._spawn("sentinel-audit-keeper", self._keep_loop)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        for th in self._threads:
            th.join(timeout=5)
        self._threads = []
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if not self._added and not self._enabled_by_us:
            self._set(False, "stopped", quiet=True)
            return
        try:
            with self._control_factory() as ctl:
                for rule in sorted(self._added):
                    ctl.delete(rule)
                self._added.clear()
                left = [r for r in ctl.rules() if r.key == RULE_KEY]
                if self._enabled_by_us and not left and ctl.status().enabled == 1:
                    ctl.set_enabled(0)
                    _log.info("audit_disabled_again", detail="sentinel had enabled it")
        except OSError as exc:
            _log.warning("audit_cleanup_failed", error=str(exc),
                         hint="sentinel's rules may remain: auditctl -l -k sentinel")
        self._enabled_by_us = False
        self._set(False, "stopped", quiet=True)

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        th = threading.Thread(target=target, name=name, daemon=True)
        th.start()
        self._threads.append(th)

    def alive(self) -> bool:
        """Up, and every thread of it running (a dead reader is blindness too)."""
        return self.up and all(th.is_alive() for th in self._threads)

    # -- lookups (the FIM worker) ------------------------------------------------

    def actor(self, kind: str, names: list[bytes], inodes: list[int],
              wait: float = WAIT, seen: float | None = None) -> dict[str, Any]:
        """ACTOR_FIELDS for a live change of ``names`` (the inodes as fallback);
        ``seen``: when its last inotify event was read (monotonic), if known."""
        if not self.up:
            out = unknown_fields(UNAVAILABLE + self.reason)
        else:
            fits = FITS.get(kind, FITS["fim.modified"])
            # The newest record of the path may be of an earlier change (a write, then
            # a chmod whose record is still on its way): first let every record of a
            # call that ended before now come in. A barrier costs a canary round trip
            # (about a millisecond on an idle kernel) and waits for a busy one; if the
            # last one failed, a fixed short wait instead, so a flood of events while
            # records do not come back is not slowed by a second each (the keeper's
            # next good canary turns barriers on again). A barrier begun after the
            # change's event was read is as good as a new one: in a burst, the events
            # queued behind one barrier share it. Only events read SHARE_MARGIN before
            # it began: a writer's call could still be ending right after its event
            # was queued, and a barrier made for the event itself would start later
            if seen is not None and self._barrier_ok and \
                    seen < self._barrier_began - SHARE_MARGIN:
                barrier = True
                self._metrics.attribution_barriers.labels("shared").inc()
            else:
                barrier = self._barrier_ok and self._caught_up()
            rec = self.index.wait_for(names, inodes, wait, fits)
            if rec is None and barrier:
                # the writer's call was still running at the first barrier (its
                # inotify event is queued inside the call, its record at the end):
                # it has had ``wait`` to end, so a second one settles it
                self._caught_up()
                rec = self.index.find(names, inodes, fits)
            out = (actor_fields(rec, self.users) if rec is not None
                   else unknown_fields(NO_RECORD))
        self._metrics.attributions.labels(
            "unknown" if out["process_unknown"] else "known").inc()
        return out

    def _caught_up(self) -> bool:
        """A barrier: the canary's record is back. The kernel sends records in order, so
        every record of a call that ended before is in too. A busy machine delays the
        kernel's sender; this waits for it rather than guessing how long."""
        began = time.monotonic()
        self._barrier_ok = self._canary_back(BARRIER_MAX)
        self._metrics.attribution_barriers.labels("made").inc()
        if self._barrier_ok:
            self._barrier_began = began
        return self._barrier_ok

    def for_change(self, change: Change, offline_why: str | None,
                   seen: float | None = None) -> dict[str, Any]:
        """ACTOR_FIELDS of one FIM change; ``offline_why`` when it was found by a
        comparison (startup, rescan), not as it happened: no record can be its;
        ``seen``: when the change's last inotify event was read (monotonic)."""
        if offline_why is not None:
            self._metrics.attributions.labels("unknown").inc()
            return unknown_fields(offline_why)
        names = [os.fsencode(p) for p in (change.path, change.dest) if p is not None]
        inodes = [r.inode for r in (change.after, change.before) if r is not None]
        return self.actor(change.kind, names, inodes, seen=seen)

    # -- the keeper ------------------------------------------------------------

    def _keep_loop(self) -> None:
        while not self._stop.is_set():
            if self._wake.wait(KEEP_EVERY):
                # a configuration change: `auditctl -D` deletes rule after rule, so
                # let the burst end before looking
                self._stop.wait(SETTLE)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                self._check()
            except Exception as exc:  # the keeper must not die: blind until it works again
                _log.exception("attribution_check_failed")
                self._set(False, f"check failed: {type(exc).__name__}")

    def _check(self) -> None:
        """Audit on, rules present, records arriving: else down, saying why."""
        try:
            with self._control_factory() as ctl:
                for _ in range(5):  # again while rules go on being removed meanwhile
                    why = self._configure(ctl)
                    if why is not None or not self._readded:
                        break
        except AuditError as exc:
            why = f"audit request refused: {exc.strerror}"
            if exc.errno in (errno.EPERM, errno.ECONNREFUSED):
                why += (" (sentinel needs CAP_AUDIT_CONTROL and CAP_AUDIT_READ, in the host's"
                        " user and PID namespaces)")
        except OSError as exc:
            why = (f"no kernel audit ({exc.strerror}: needs CAP_AUDIT_CONTROL and a kernel"
                   " built with audit)")
        if why is None and self._reader_failed is not None:
            why = self._reader_failed
        if why is None:
            why = self._canary()
        self.checks += 1
        self._set(why is None, why or "")

    def _configure(self, ctl: AuditControl) -> str | None:
        st = ctl.status()
        if self._kernel_lost is not None and st.lost > self._kernel_lost:
            self._metrics.audit_records_lost.labels("kernel").inc(st.lost - self._kernel_lost)
        self._kernel_lost = st.lost
        have = {r for r in ctl.rules() if r.key == RULE_KEY}
        missing = [r for r in self.rules if r not in have]
        if st.enabled == 2:
            if missing:
                return ("audit is locked (enabled=2) and sentinel's rules are not loaded: add"
                        " them to the boot audit rules (-w PATH -p wa -k sentinel)")
            return None
        if st.enabled == 0:
            first = not self._enabled_by_us and self.checks == 0
            ctl.set_enabled(1)
            self._enabled_by_us = self._enabled_by_us or first
            if first:
                self._metrics.attribution_audit_was_off.set(1)
                _log.warning("audit_enabled", detail="kernel audit was off; sentinel enabled"
                             " it. Processes started before now are not audited and their"
                             " changes are not attributed: boot with audit=1")
            else:
                _log.warning("audit_reenabled", detail="kernel audit was switched off under"
                             " sentinel; enabled again")
        self._readded = bool(missing)
        if missing:
            gone = [r for r in missing if r in self._added]
            os.makedirs(os.path.dirname(self.canary), mode=0o700, exist_ok=True)
            for rule in missing:
                try:
                    ctl.add(rule)
                except AuditError as exc:
                    if exc.errno != errno.ENOENT or rule.path == self.canary:
                        raise
                    # its folder does not exist (yet): the next check tries again, and
                    # the folder's creation is seen by the rule on the nearest parent
                    if rule not in self._absent:
                        self._absent.add(rule)
                        _log.warning("audit_watch_pending", path=shown_name(rule.path),
                                     detail="its folder does not exist; added once it does")
                    continue
                self._absent.discard(rule)
                self._added.add(rule)
            if gone:
                self._metrics.audit_rules_readded.inc()
                _log.warning("audit_rules_readded", rules=len(gone),
                             detail="sentinel's audit rules were removed (auditctl -D, an"
                             " auditd restart); added again")
        return None

    def _canary_back(self, timeout: float) -> bool:
        """Write the canary and wait for its record. The write is made by a new thread:
        the kernel gives an audit context to a task made after audit was first on, and
        sentinel's own threads may be older than that (sentinel switched it on)."""
        last = self.index.find([self.canary], [])
        path = os.fsdecode(self.canary)

        def touch() -> None:
            with contextlib.suppress(OSError):  # then no record comes back: the caller says so
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))

        th = threading.Thread(target=touch, name="sentinel-audit-canary", daemon=True)
        th.start()
        th.join(timeout=timeout)
        found = self.index.wait_for([self.canary], [], timeout,
                                    after=-1 if last is None else last.serial)
        return found is not None

    def _canary(self) -> str | None:
        """The keeper's proof that records arrive."""
        back = self._canary_back(CANARY_WAIT)
        self._barrier_ok = back
        if not back:
            return ("audit records do not arrive (sentinel in another network namespace,"
                    " where the kernel sends none? the audit backlog full?)")
        return None

    def _set(self, up: bool, reason: str, quiet: bool = False) -> None:
        changed = up != self.up or (not up and reason != self.reason)
        self.up, self.reason = up, reason
        self._metrics.attribution_up.labels("fim").set(1 if up else 0)
        if not changed or quiet:
            return
        if up:
            _log.info("attribution_up", rules=len(self.rules))
        else:
            _log.error("attribution_down", reason=reason,
                       detail="file changes are reported without the process behind them")

    # -- the reader --------------------------------------------------------------

    def _read_loop(self) -> None:
        sock = self._sock
        assert sock is not None
        lost = dict(self.assembler.lost)
        dropping = failing = False
        while not self._stop.is_set():
            try:
                data = sock.recv(1 << 16)
            except TimeoutError:
                data = b""
            except OSError as exc:
                if self._stop.is_set():
                    break
                # ENOBUFS: the receive buffer overflowed, records were dropped (one line
                # per burst; the counter has every one)
                self._metrics.audit_records_lost.labels("socket").inc()
                if not dropping:
                    _log.warning("audit_records_dropped", error=exc.strerror,
                                 detail="changes in this moment may be reported without"
                                 " their process")
                dropping = True
                continue
            dropping = dropping and not data
            try:
                self._take(data)
                failing = False
            except Exception:  # the reader must not die: logged once, and on it goes
                self._metrics.audit_records_lost.labels("unparseable").inc()
                if not failing:
                    _log.exception("audit_reader_failed")
                failing = True
            for reason, n in self.assembler.lost.items():
                if n > lost[reason]:
                    self._metrics.audit_records_lost.labels(reason).inc(n - lost[reason])
            lost = dict(self.assembler.lost)

    def _take(self, data: bytes) -> None:
        now = time.monotonic()
        done = self.assembler.expire(now)
        for mtype, payload in messages(data):
            if mtype == AUDIT_CONFIG_CHANGE:
                self._wake.set()  # a rule removed, audit switched: check now
            done.extend(self.assembler.feed(mtype, payload, now))
        for rec in done:
            self.index.add(rec)
