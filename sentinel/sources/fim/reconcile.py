"""How one path's state on disk becomes a reported change, exactly once.

The FIM source's worker hands every "look at this path" here: a raw inotify
event (:meth:`Reconciler.raw`), a held path that has settled, a move whose
other half never came, a difference a rescan found (:meth:`Reconciler.report`).
The :class:`Reconciler` compares the path on disk with its baseline record,
reports the difference (with its process when attribution is on) and updates
the record; a second look at the same change finds nothing new. Holds, the
outbox and the baseline belong to the source; this holds references to them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from sentinel import logs
from sentinel.events import Event, shown_name
from sentinel.metrics import Metrics
from sentinel.sources.audit import FileAttribution
from sentinel.sources.fim.acks import Outbox
from sentinel.sources.fim.baseline import Baseline, FileRecord
from sentinel.sources.fim.changes import Change, compare, make_event, moved
from sentinel.sources.fim.holds import Holds
from sentinel.sources.fim.scan import Scope, record_from_stat, snapshot
from sentinel.sources.fim.watcher import C, Raw, Watcher

_log = logs.get("fim")
#: why a change found offline has no writer (translated in i18n, as actors.DETAILED)
WHILE_STOPPED = "changed while sentinel was not running"
RESCANNED = "seen by rescan"


class Reconciler:
    """Compares paths with the baseline and reports each change once (see module doc)."""

    def __init__(self, scope: Scope, holds: Holds, out: Outbox, metrics: Metrics,
                 attribution: FileAttribution | None, host: str,
                 clock: Callable[[], float], watcher: Callable[[], Watcher | None]) -> None:
        self.scope = scope
        self.holds = holds
        self.out = out
        self.metrics = metrics
        self.attribution = attribution
        self.host = host
        self.clock = clock
        self.watcher = watcher
        #: the source's baseline once it is open or made
        self.baseline: Baseline | None = None
        #: why a change reported offline names no process (set per rescan)
        self.offline_why = RESCANNED

    # -- live events ----------------------------------------------------------

    def raw(self, ev: Raw) -> None:
        """One inotify event: pair a move, hold a new path, wait for a writer to close,
        or check a known path now."""
        now = time.monotonic()
        mask, path = ev.mask, ev.path
        if mask & C.IN_MOVED_FROM:
            self.holds.moved_from(ev.cookie, path, now)
            return
        if mask & C.IN_MOVED_TO:
            src = self.holds.moved_to(ev.cookie)
            if src is not None:
                self.move(src, path)
                return
        if self.holds.is_held(path):
            self.holds.hold(path, now)
            return
        if self.scope.entry_for(path) is None:
            return
        assert self.baseline is not None
        if path not in self.baseline:
            if not mask & (C.IN_DELETE | C.IN_DELETE_SELF):
                self.holds.hold(path, now)
            return
        if mask & C.IN_MODIFY and not mask & C.IN_CLOSE_WRITE:
            self.holds.wrote(path, now)
            return
        self.holds.closed(path)
        self.check(path, seen=ev.seen)

    def check(self, path: str, offline: bool = False, seen: float | None = None) -> None:
        """Compare ``path`` on disk with its record; report and record the difference.

        ``seen``: when the last event about it was read (monotonic), for attribution.
        """
        assert self.baseline is not None
        if self.scope.entry_for(path) is None:
            return
        old = self.baseline.get(path)
        if old is None and self.scope.excluded(path):
            # an exclude hides only what cannot run, and never what is known already
            try:
                if self.scope.hides(path, os.lstat(path).st_mode):
                    return
            except OSError:
                return
        problems: list[str] = []
        new = snapshot(path, problems=problems)
        self.problems(problems)
        if new is None and old is not None and old.type == "dir":
            # Whatever was below a vanished directory is gone too (deepest first).
            for child in reversed(self.baseline.under(path)):
                self.check(child.path, offline, seen)
        change = compare(path, old, new)
        if change is not None:
            self.report(change, offline, seen)
        elif new is not None:
            self.baseline.put(new, self.out.sent)  # e.g. a new mtime: not a change, but current
        if new is not None and new.type == "dir" and (
                old is None or old.type != "dir" or old.inode != new.inode):
            self.adopt(path)

    def adopt(self, directory: str) -> None:
        """A directory new to sentinel: what it holds that sentinel has not seen is new.

        Its watch was added before its event was passed on, so anything made
        before that is found here, and anything after has events of its own.
        """
        assert self.baseline is not None
        now = time.monotonic()
        for p, _ in self.scope.walk(under=directory):
            if p != directory and not self.holds.is_held(p) and p not in self.baseline:
                self.holds.hold(p, now)

    def moved_away(self, path: str) -> None:
        """An IN_MOVED_FROM without its IN_MOVED_TO: moved out of the watched area."""
        assert self.baseline is not None
        watcher = self.watcher()
        if watcher is not None:
            watcher.drop_stale(path)  # watches of a directory now elsewhere
        if path in self.baseline:
            self.check(path)

    def move(self, src: str, dst: str) -> None:
        """A paired move: one ``fim.moved`` (with what it moved below it) when a known
        path moved within the scope; otherwise each end is checked for what it is."""
        assert self.baseline is not None
        self.holds.release(src)
        old = self.baseline.get(src)
        dst_known = dst in self.baseline
        dst_covered = self.scope.entry_for(dst) is not None
        if old is None or not dst_covered or dst_known or self.scope.entry_for(src) is None:
            # A temp file saved over a known path, a move out of the scope, a
            # move in from outside, or a rename over a known file: the state
            # of each end says what happened.
            if dst_covered:
                if dst_known:
                    self.check(dst)
                else:
                    self.holds.hold(dst, time.monotonic())
            if old is not None:
                self.check(src)
            return
        new = snapshot(dst)
        if new is None:
            self.check(src)
            return
        children = self.baseline.under(src) if old.type == "dir" else []
        self.report(moved(old, new), offline=False)
        for child in children:
            self._move_child(child, dst + child.path[len(src):])
        if new.type == "dir":
            self.adopt(dst)

    def _move_child(self, old: FileRecord, path: str) -> None:
        try:
            st = os.lstat(path)
        except OSError:
            st = None
        if st is None or st.st_ino != old.inode:
            self.check(old.path)
            return
        # Same inode, so the same content and link target: no need to re-read them.
        new = record_from_stat(path, st, old.sha256 if old.type == "file" else None,
                               old.target)
        self.report(moved(old, new), offline=False)

    # -- reporting -------------------------------------------------------

    def report(self, change: Change, offline: bool, seen: float | None = None) -> None:
        """Send ``change`` (with its process when attribution is on) and record it in the
        baseline, written to the file once its alerts are journaled."""
        tags = self.scope.change_tags(change.path, change.dest)
        ev = make_event(change, tags, host=self.host, time=self.clock(), offline=offline)
        if self.attribution is not None:
            ev.fields.update(self.attribution.for_change(
                change, self.offline_why if offline else None, seen))
        self.send(ev)
        assert self.baseline is not None
        # tagged with the event's number: written to the file once it is acknowledged
        if change.before is not None and (change.after is None or change.dest is not None):
            self.baseline.delete(change.before.path, self.out.sent)
        if change.after is not None:
            self.baseline.put(change.after, self.out.sent)

    def send(self, ev: Event) -> None:
        """Count ``ev`` and hand it to the outbox (acknowledged once journaled)."""
        self.metrics.events.labels("fim", ev.kind).inc()
        self.out.send(ev)

    def problems(self, problems: list[str]) -> None:
        """Count and log what could not be read (a path is shown escaped)."""
        for p in problems:
            self.metrics.fim_errors.labels("read").inc()
            _log.warning("fim_unreadable", problem=shown_name(p))
