"""The FIM source: startup reconciliation, then live inotify events, then rescans.

Every raw inotify event only says "look at this path". The worker thread
compares what is on disk with the baseline record and reports the difference,
then updates the record (:mod:`sentinel.sources.fim.reconcile`); a second event
about the same change finds nothing new. That is what makes each change
reported exactly once, whichever of the live watch, the startup
reconciliation or a rescan sees it first.

Three holds (:mod:`sentinel.sources.fim.holds`) shape the live events:

- A path not in the baseline waits ``SETTLE`` seconds after its last event
  before it is reported as created. An editor's atomic save (write a temp
  file, rename it over the real one) therefore reports one ``fim.modified``
  of the real path and nothing for the temp file. A path that appears and is
  gone again within the hold leaves no trace and is not reported.
- An ``IN_MOVED_FROM`` waits ``PAIR_WAIT`` for its ``IN_MOVED_TO``: paired,
  a move within the scope is one ``fim.moved``; unpaired, the path left the
  scope and is reported deleted.
- Content is hashed on ``IN_CLOSE_WRITE``. A writer that keeps a file open is
  checked after ``QUIET`` seconds without writes (or ``QUIET_MAX`` at most).

Renaming a known file over another known file reports ``fim.modified`` of the
destination and ``fim.deleted`` of the source.

At least once from the file to the journal: every event carries an ``ack``
that the daemon calls once the event's alerts are in the journal (or no rule
matched). The view the worker compares with moves at once, so a change is
reported once while sentinel runs; the baseline file takes a change only
when every event up to the one that reported it was acknowledged
(:meth:`Baseline.flush` up to that sequence number). A crash in between
leaves the change out of the file, and the next start reports it again. An
event whose alerts could not be journaled (a full disk) is sent again with
backoff, never committed meanwhile (:mod:`sentinel.sources.fim.acks`).
"""

from __future__ import annotations

import functools
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any

from sentinel import logs
from sentinel.config import Config
from sentinel.events import Event, shown_name
from sentinel.keys import KeyUnavailable, load_key
from sentinel.metrics import Metrics
from sentinel.pipeline import Emit
from sentinel.sources.audit import FileAttribution, build_file_attribution
from sentinel.sources.fim.acks import Outbox, Retry
from sentinel.sources.fim.baseline import Baseline, BaselineError, hold_lock
from sentinel.sources.fim.changes import diff
from sentinel.sources.fim.holds import Holds
from sentinel.sources.fim.reconcile import RESCANNED, WHILE_STOPPED, Reconciler
from sentinel.sources.fim.scan import Scope, snapshot_all
from sentinel.sources.fim.watcher import Raw, Watcher

_log = logs.get("fim")
_STOP = object()
FLUSH_EVERY = 1.0


class FimSource:
    """File integrity source (satisfies :class:`sentinel.pipeline.Source`)."""

    name = "fim"
    #: Directories left without a watch (inotify limit) are rescanned this often.
    UNWATCHED_POLL = 10.0

    def __init__(self, config: Config, metrics: Metrics,
                 clock: Callable[[], float] = time.time) -> None:
        self._config = config
        self._metrics = metrics
        self._clock = clock
        self._host = config.host.name
        self.baseline_path = config.in_state(config.fim.baseline)
        self._lock_fd: int | None = None
        # the baseline changes at every commit: never in scope. Its key is (sentinel's
        # own files list it when it lies outside the state dir): a swapped key is an
        # alert at once, not only a failed signature at the next start
        self.scope = Scope.from_config(config, [self.baseline_path])
        self._interval = config.fim.rescan_interval
        self._q: queue.Queue[Any] = queue.Queue()
        # Held by the worker while it handles an item or fires its timers, so idle()
        # never sees the gap between a path leaving the holds and its report.
        self._step = threading.Lock()
        self._worker: threading.Thread | None = None
        self._watcher: Watcher | None = None
        self._emit: Emit | None = None
        self.trusted = False
        #: sentinel's own files this start made (its keys, where the config put them):
        #: new in the start's comparison with the baseline, they are recorded unreported
        self.made_by_start: frozenset[str] = frozenset()
        #: paths a reload added to fim.paths: what the start finds under them is their
        #: first sight, recorded unreported (it was not watched, so nothing "changed")
        self.added_roots: frozenset[str] = frozenset()
        #: who changed a file (attribution.files: audit), None when off
        self.attribution: FileAttribution | None = build_file_attribution(config, metrics)
        self._reset()

    def _reset(self) -> None:
        self._stopping = threading.Event()
        self._q = queue.Queue()  # nothing left over from a previous run
        self._holds = Holds()
        self._rescan_reasons: dict[str | None, set[str]] = {}
        self._rescanning: int | None = None
        self._unwatched: set[str] = set()
        self._last_flush = 0.0
        self._next_poll = time.monotonic() + self.UNWATCHED_POLL
        self._next_periodic = time.monotonic() + self._interval
        # events not yet known to be journaled; acknowledgements come back on the queue
        self._out = Outbox(self._emit_event, self._q.put)
        # what changed, reported once; the baseline lives there once open
        self._rec = Reconciler(self.scope, self._holds, self._out, self._metrics,
                               self.attribution, self._host, self._clock,
                               lambda: self._watcher)
        self._commits = Retry("fim_baseline_commit_failed", "fim_baseline_commit_recovered",
                              "the baseline cannot be written (disk full?); changes stay"
                              " pending and are written when it can be")

    # -- Source protocol -------------------------------------------------

    def start(self, emit: Emit) -> None:
        """Open (or create) the baseline, watch, reconcile offline changes, then go live.

        Returns once every change made while sentinel was stopped has been
        emitted with ``offline: true``. A first run records the baseline and
        emits nothing. A baseline that fails its signature is reported as one
        ``fim.baseline_invalid`` event and left untouched on disk; live
        watching goes on against a fresh in-memory snapshot until an operator
        re-establishes trust with ``sentinel baseline init``.
        """
        self._emit = emit
        self._reset()
        if self.attribution is not None:
            # before the watch: a change from here on can find its record
            self.attribution.start()
        for entry in self._config.fim.paths:
            if not os.path.lexists(entry.path):
                # not an error: the parent's watch reports it as created when it appears
                detail = ("watched for; reported as created when it appears"
                          if entry.path.parent.is_dir() else
                          "its folder does not exist either: found at the next full rescan"
                          " (fim.rescan_interval)")
                _log.warning("fim_path_missing", path=str(entry.path), detail=detail)
        try:
            self._lock_fd = hold_lock(self.baseline_path)
        except BlockingIOError:
            msg = (f"{self.baseline_path} is in use by another sentinel process (a daemon, or"
                   " `sentinel baseline init` still running)")
            raise BaselineError(msg) from None
        key: bytes | None = None
        invalid: str | None = None
        first_run = not self.baseline_path.exists()
        try:
            key = load_key(self._config.fim.key, self._config.state_dir, create=first_run,
                           what="fim")
            if not first_run:
                self._rec.baseline = Baseline.open(self.baseline_path, key)
        except (BaselineError, KeyUnavailable) as exc:
            if first_run:
                raise
            invalid = str(exc)
        self._start_watcher()
        if invalid is not None:
            self._untrusted(invalid)
        elif self._rec.baseline is None:
            assert key is not None
            scan = snapshot_all(self.scope.walk())
            self._rec.baseline = Baseline.create(self.baseline_path, key, scan.records.values())
            self.trusted = True
            self._metrics.fim_baseline_valid.set(1)
            _log.info("fim_baseline_created", path=str(self.baseline_path),
                      files=len(scan.records))
        else:
            self.trusted = True
            self._metrics.fim_baseline_valid.set(1)
            self._rescan({"startup"}, None)
        assert self._rec.baseline is not None
        self._commit()
        self._metrics.fim_watched_files.set(len(self._rec.baseline))
        baseline = self._rec.baseline
        self._metrics.fim_oldest_uncommitted.set_function(
            lambda: baseline.oldest_pending(time.monotonic()))
        self._worker = threading.Thread(target=self._run, name="fim-worker", daemon=True)
        self._worker.start()

    def stop(self) -> None:
        """Stop the worker (``emit`` is not called after this returns) and the watches."""
        self._stopping.set()  # cuts a rescan in progress short
        if self._worker is not None:
            self._q.put(_STOP)
            self._worker.join(timeout=30)
            self._worker = None
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher = None
        if self._rec.baseline is not None:
            # changes whose alerts are not known to be journaled stay out of the file
            self._rec.baseline.close(self._out.safe())
            self._rec.baseline = None
            self._metrics.fim_oldest_uncommitted.set_function(lambda: 0.0)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        if self.attribution is not None:
            self.attribution.stop()

    def components(self) -> dict[str, bool]:
        """``attribution``: whether file changes are named with their process."""
        return {} if self.attribution is None else {"attribution": self.attribution.alive()}

    def alive(self) -> bool:
        """True while the worker and the inotify reader threads run."""
        worker_ok = self._worker is not None and self._worker.is_alive()
        return worker_ok and (self._watcher is None or self._watcher.alive())

    def idle(self) -> bool:
        """True when nothing is queued, in hand or held (new paths, moves, open writers).

        Right after a change the kernel may not have delivered its event yet, so
        "idle" alone does not mean "caught up"; tests pair it with a marker file.
        Waits for the worker's current step (a path being checked is in neither
        the queue nor the holds).
        """
        with self._step:
            return not (self._holds.waiting() or self._rescan_reasons) \
                and self._q.unfinished_tasks == 0

    def unacknowledged(self) -> int:
        """Events sent whose alerts are not known to be in the journal yet."""
        return self._out.unacknowledged()

    # -- startup helpers --------------------------------------------------

    def _start_watcher(self) -> None:
        try:
            self._watcher = Watcher(self.scope, self._q.put, self._overflowed,
                                    self._watch_limit, time.monotonic, self._reader_error)
            self._watcher.start()
        except OSError as exc:
            # No inotify instance at all (EMFILE): rescans are all that is left.
            self._watcher = None
            _log.error("fim_inotify_unavailable", error=str(exc),
                       hint="raise fs.inotify.max_user_instances; until then changes are"
                       " found only by periodic rescans")
            self._metrics.fim_rescans.labels("watch_limit").inc()

    def _untrusted(self, reason: str) -> None:
        self.trusted = False
        self._metrics.fim_baseline_valid.set(0)
        _log.error("fim_baseline_invalid", path=str(self.baseline_path), reason=reason,
                   hint="not trusted; re-establish with `sentinel baseline init`")
        ev = Event("fim.baseline_invalid", self._clock(), self._host, "fim",
                   {"path": str(self.baseline_path), "reason": reason})
        self._rec.send(ev)
        scan = snapshot_all(self.scope.walk())
        # In memory only: the file on disk stays as found, for the operator.
        self._rec.baseline = Baseline.create(None, os.urandom(32), scan.records.values())

    # -- triggers from the reader thread -----------------------------------

    def request_rescan(self, reason: str, under: str | None = None) -> None:
        """Rescan ``under`` (None: everything) soon, e.g. after the mount table changed."""
        self._q.put(("rescan", reason, under))

    def _overflowed(self) -> None:
        _log.warning("fim_inotify_overflow", hint="events were lost; rescanning everything")
        self._q.put(("rescan", "overflow", None))

    def _reader_error(self, what: str) -> None:
        self._metrics.fim_errors.labels("event").inc()
        _log.exception("fim_reader_failed", item=shown_name(what[:300]))

    def _watch_limit(self, path: str, exc: OSError) -> None:
        # Polled until a watch can be added (set.add is atomic: two threads call this).
        self._unwatched.add(path)
        if self._rescanning == threading.get_ident():
            # The rescan that hit the limit is itself looking at this path.
            return
        _log.error("fim_watch_limit", path=shown_name(path), error=exc.strerror,
                   hint="raise fs.inotify.max_user_watches; changes below this directory"
                   " are found by rescans only")
        self._q.put(("rescan", "watch_limit", path))

    # -- the worker ---------------------------------------------------------

    def _run(self) -> None:
        while True:
            now = time.monotonic()
            held = self._holds.next_due()
            due = min(held if held is not None else now + 3600, self._next_periodic,
                      self._next_poll if self._unwatched else now + 3600,
                      resend if (resend := self._out.resend_due()) is not None else now + 3600,
                      self._commits.due if self._commits.failing else now + 3600)
            try:
                item = self._q.get(timeout=max(0.0, due - now)) if due > now else \
                    self._q.get_nowait()
            except queue.Empty:
                item = None
            if item is _STOP:
                self._guard(functools.partial(self._out.await_acks, self._q), "acks at stop")
                break
            with self._step:
                if item is not None:
                    self._guard(functools.partial(self._handle, item), item)
                self._guard(self._fire_due, "timers")
                if self._q.empty():
                    self._guard(self._idle, "idle")
            if item is not None:
                self._q.task_done()
        self._commit()

    def _guard(self, fn: Callable[[], None], what: Any) -> None:
        try:
            fn()
        except Exception:
            # One bad item must not stop the watch: counted, logged, and the
            # periodic rescan will look at the path again.
            self._metrics.fim_errors.labels("event").inc()
            _log.exception("fim_item_failed", item=repr(what)[:300])

    def _idle(self) -> None:
        if self._rescan_reasons:
            # Cleared only once done, so idle() stays false while rescanning.
            reasons = self._rescan_reasons
            try:
                if None in reasons:
                    self._rescan(set().union(*reasons.values()), None)
                else:
                    for under, why in reasons.items():
                        self._rescan(why, under)
            finally:
                self._rescan_reasons = {}
        assert self._rec.baseline is not None
        self._metrics.fim_watched_files.set(len(self._rec.baseline))
        # Commits (each an fsync) at most every FLUSH_EVERY, so a burst of
        # changes does not wait on the disk once per change. A crash loses at
        # most that much: those changes are then reported again, never lost.
        if not self._rec.baseline.pending or self._commits.failing:
            return  # a failing commit is retried by its own timer
        now = time.monotonic()
        if now >= self._last_flush + FLUSH_EVERY:
            self._commit()
            self._last_flush = now
        else:
            self._holds.flush_at(self._last_flush + FLUSH_EVERY)

    def _handle(self, item: Any) -> None:
        if isinstance(item, Raw):
            self._rec.raw(item)
            return
        if item[0] == "ack":
            self._out.acked(item[1], item[2])
            return
        _, reason, under = item
        self._rescan_reasons.setdefault(under, set()).add(reason)

    def _fire_due(self) -> None:
        now = time.monotonic()
        for kind, path, last in self._holds.due(now):
            if kind == "flush":
                if not self._commits.failing:
                    self._commit()
                self._last_flush = now
            elif kind == "from":
                assert path is not None
                self._rec.moved_away(path)
            else:  # a new path has settled, or a writer has gone quiet
                assert path is not None
                self._rec.check(path, seen=last)
        if (resend := self._out.resend_due()) is not None and now >= resend:
            self._out.send_again()
        if self._commits.failing and now >= self._commits.due:
            self._commit()
        if now >= self._next_periodic:
            self._rescan({"periodic"}, None)
        if self._unwatched and now >= self._next_poll:
            # Retry the watch and look for changes that no event will announce:
            # a quick look (what stat shows) this often, contents at each full rescan.
            for d in sorted(self._unwatched):
                self._unwatched.discard(d)
                self._rescan({"watch_limit"}, d, quick=True)
            self._next_poll = time.monotonic() + self.UNWATCHED_POLL

    # -- reporting -------------------------------------------------------

    def _emit_event(self, ev: Event) -> None:
        assert self._emit is not None
        self._emit(ev)

    def _commit(self) -> None:
        """Write the acknowledged changes to the baseline file; back off while it fails."""
        assert self._rec.baseline is not None
        try:
            self._rec.baseline.flush(self._out.safe())
        except (sqlite3.Error, OSError) as exc:
            self._metrics.fim_errors.labels("commit").inc()
            self._commits.failed(time.monotonic(), held=self._rec.baseline.pending, error=str(exc))
            return
        if self._commits.failing:
            self._commits.recovered()

    # -- rescans -----------------------------------------------------------

    def _first_sight(self, path: str, added: frozenset[str]) -> bool:
        """Whether the entry that watches ``path`` is one a reload just added."""
        entry = self.scope.entry_for(path)
        return entry is not None and str(entry.path) in added

    def _rescan(self, reasons: set[str], under: str | None, quick: bool = False) -> None:
        """Compare disk with the baseline (all, or below ``under``); report offline.

        ``quick`` re-reads only files whose size, mtime or inode changed.
        """
        assert self._rec.baseline is not None
        for r in sorted(reasons):
            self._metrics.fim_rescans.labels(r).inc()
        self._rescanning = threading.get_ident()
        self._rec.offline_why = (WHILE_STOPPED if "startup" in reasons
                             else f"{RESCANNED} ({', '.join(sorted(reasons))})")
        try:
            if self._watcher is not None:
                self._watcher.ensure(under)
            scan = snapshot_all(self.scope.walk(under, tracked=self._rec.baseline.__contains__),
                                known=self._rec.baseline.get if quick else None,
                                cancelled=self._stopping.is_set)
            if scan.cancelled:
                return  # stopping: a partial scan must not be taken for deletions
            self._rec.problems(scan.problems)
            old = self._rec.baseline.at_and_under(under)
            for p in [p for p in old if p not in scan.records and self.scope.entry_for(p) is None]:
                self._rec.baseline.delete(p, self._out.sent)  # no longer in scope (config changed)
                del old[p]
            start = "startup" in reasons
            made = self.made_by_start if start else frozenset()
            added = self.added_roots if start else frozenset()
            first_sight = 0
            for change in diff(old, scan.records):
                self._holds.release(change.path)
                if change.dest is not None:
                    self._holds.release(change.dest)
                if change.kind == "fim.created" and change.path in made:
                    continue  # a key this start made: recorded below, not a change
                if change.kind == "fim.created" and added and self._first_sight(change.path,
                                                                                added):
                    first_sight += 1  # a path just added to the config: its first sight
                    continue
                self._rec.report(change, offline=True)
            if added:
                _log.info("fim_paths_added", paths=list(added), files=first_sight,
                          detail="recorded as they are; changes from now on are reported")
            for rec in scan.records.values():
                self._rec.baseline.put(rec, self._out.sent)
        finally:
            self._rescanning = None
        if under is None:
            self._next_periodic = time.monotonic() + self._interval
        self._commit()
        _log.info("fim_rescan", reasons=sorted(reasons), under=under,
                  files=len(scan.records))


def build_fim_source(config: Config, metrics: Metrics,
                     clock: Callable[[], float] = time.time) -> FimSource | None:
    """The FIM source for ``config``, or None when ``fim.paths`` is empty."""
    if not config.fim.paths:
        return None
    return FimSource(config, metrics, clock)

