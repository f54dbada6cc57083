"""The end of the pipeline: journal, then the spool of every lane that takes the alert.

:meth:`Delivery.submit` journals an alert and spools it for each target its
routing picks; the lanes deliver from the spools. When a write fails, the
alert is not lost:

* **The journal cannot be written** (disk full, I/O error): the alert is held
  in memory, in order, behind any already held, and a named retry thread
  appends the held alerts again with backoff (no busy loop). While any is
  held the ``journal`` component is down (``/healthz`` 503), the
  ``sentinel_journal_held_alerts`` gauge counts them, and one log line marks
  the start and one the end of the spell. At :data:`MAX_HELD` alerts
  ``submit`` blocks its caller (back-pressure) rather than drop one. Held
  alerts are in memory only: a crash loses them, which is why a source must
  not treat an alert as safe before it is journaled (``on_journaled``).
* **A lane's spool cannot be written**: the alert is in the journal, so the
  lane owes the journal from that record on; the retry thread re-reads the
  journal and spools what the lane takes once the spool works again. The
  ``spool:<lane>`` component is down meanwhile. At start, every lane owes
  what the journal holds past the last record its spool took: that covers a
  crash between the two writes, and a corrupt spool's replacement.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sentinel import logs
from sentinel.alert import Alert
from sentinel.metrics import Metrics
from sentinel.sinks.journal import Journal, JournalError, alert_json, records_after
from sentinel.sinks.lane import Lane
from sentinel.sinks.router import Route

#: Alerts held in memory while the journal cannot be written; past it, submit blocks.
MAX_HELD = 10_000
#: First and longest wait between two retries of a failing journal or spool.
RETRY_FIRST = 0.05
RETRY_MAX = 2.0
#: Held alerts appended per hold of the lock, so that submit is never held up long.
_BATCH = 256


def _log() -> Any:
    # looked up per use: a logger bound at import would miss logs.configure()
    return logs.get("delivery")


@dataclass
class Target:
    """One configured webhook: its routing, what it spools, and its lanes."""

    name: str
    route: Route
    payload: Callable[[Alert, bytes], bytes]
    lanes: list[Lane]


@dataclass
class _Held:
    alert: Alert
    body: bytes
    on_journaled: Callable[[int], None] | None
    since: float = field(default_factory=time.monotonic)


Acks = list[tuple[Callable[[int], None], int]]

# Deliveries started and not closed: at a reload the old one hands what it holds
# in memory to the new one on the same journal instead of losing it at close
_live: list[Delivery] = []
_live_lock = threading.Lock()


class Delivery:
    """Journal plus delivery to every target; satisfies ``sentinel.pipeline.AlertSink``."""

    name = "delivery"

    def __init__(self, journal: Journal, targets: list[Target], metrics: Metrics,
                 clock: Callable[[], float] = time.time) -> None:
        self.journal = journal
        self.targets = targets
        self.metrics = metrics
        self.clock = clock
        # one lock keeps journal order and spool order the same
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)
        self._held: deque[_Held] = deque()
        self._failing: str | None = None  # why the journal cannot be written
        self._failing_since = 0.0
        self._owed: dict[str, int] = {}  # lane -> first journal seq it has not spooled
        self._unsettled: dict[str, int] = {}  # lane whose spool did not open -> head then
        self._target_of = {lane.name: t for t in targets for lane in t.lanes}
        self._lane = {lane.name: lane for t in targets for lane in t.lanes}
        self._kick = threading.Event()
        self._closed = False
        self._retry = threading.Thread(target=self._retry_loop, name="delivery-retry",
                                       daemon=True)
        metrics.journal_held.set(0)
        metrics.component_up.labels("journal").set(1)

    def start(self) -> None:
        with _live_lock:
            _live.append(self)
        for lane in self.lanes():
            self.metrics.component_up.labels(f"spool:{lane.name}").set(
                0 if lane.name in self._owed else 1)
            lane.start()
        self._retry.start()

    def lanes(self) -> list[Lane]:
        return [lane for t in self.targets for lane in t.lanes]

    # -- taking alerts ---------------------------------------------------

    def submit(self, alert: Alert, on_journaled: Callable[[int], None] | None = None) -> bool:
        """Journal the alert, then spool it for every target that takes it.

        True when the alert is in the journal on return; ``on_journaled(seq)``
        has then been called. False when it is held in memory because the
        journal cannot be written: ``on_journaled`` is called later, from the
        retry thread, once it is. A source that must not move on before its
        alert is safe (the FIM baseline) waits for that call. Blocks while
        :data:`MAX_HELD` alerts are held; raises ``JournalError`` only once closed.
        """
        body = alert_json(alert)
        with self._lock:
            while len(self._held) >= MAX_HELD and not self._closed:
                self._room.wait(1.0)
            if self._closed:
                msg = "delivery is closed; the alert was not journaled"
                raise JournalError(msg)
            if self._held:  # behind those already waiting: the journal keeps their order
                self._hold(_Held(alert, body, on_journaled))
                return False
            try:
                seq = self.journal.append(body)
            except JournalError as exc:
                self._journal_failed(exc)
                self._hold(_Held(alert, body, on_journaled))
                return False
            woken = self._spool(alert, body, seq)
        for lane in woken:
            lane.wake()
        if on_journaled is not None:
            on_journaled(seq)
        return True

    def _hold(self, held: _Held) -> None:
        self._held.append(held)
        self.metrics.journal_held.set(len(self._held))

    def _journal_failed(self, exc: JournalError) -> None:
        self.metrics.journal_write_failures.inc()
        if self._failing is None:
            self._failing, self._failing_since = str(exc), time.monotonic()
            self.metrics.component_up.labels("journal").set(0)
            _log().error("journal_write_failing", error=str(exc), path=str(self.journal.path),
                         detail="alerts are held in memory and retried; /healthz is 503"
                                " until they are journaled")
            self._kick.set()

    def _spool(self, alert: Alert, body: bytes, seq: int) -> list[Lane]:
        """Spool journal record ``seq`` for every lane that takes it (lock held)."""
        now = self.clock()
        woken = []
        routed = [t.name for t in self.targets if t.route(alert)]
        # one line per alert, so that whoever reads the log sees what was detected;
        # high and critical at warning priority (journalctl -p warning)
        emit = _log().warning if alert.severity in ("critical", "high") else _log().info
        emit("alert", severity=alert.severity, rule=alert.rule, title=alert.title,
             alert_id=alert.id, count=alert.count, journal_seq=seq, targets=routed)
        for target in self.targets:
            if target.name not in routed:
                continue
            payload = target.payload(alert, body)
            for lane in target.lanes:
                if lane.name in self._owed:
                    continue  # the lane catches up from the journal, in order
                try:
                    lane.spool.insert(alert.id, payload, now, seq)
                except Exception as exc:
                    self._owe(lane, seq, exc)
                    continue
                woken.append(lane)
        return woken

    def _owe(self, lane: Lane, seq: int, exc: Exception) -> None:
        self.metrics.spool_write_failures.labels(lane.name).inc()
        self.metrics.deliveries.labels(lane.name, "error").inc()
        self._owed[lane.name] = seq
        self.metrics.component_up.labels(f"spool:{lane.name}").set(0)
        _log().error("spool_write_failing", target=lane.name, error=str(exc),
                     spool=str(lane.spool.path), from_journal_seq=seq,
                     detail="the alerts are in the journal; they are spooled from it when"
                            " the spool can be written again")
        self._kick.set()

    def adopt(self, held: deque[_Held]) -> None:
        """Take alerts another Delivery held (a reload): they go before this one's."""
        with self._lock:
            held.extend(self._held)
            self._held = held
            self.metrics.journal_held.set(len(held))
            if self._failing is None:
                self._failing, self._failing_since = "held by the previous Delivery", \
                    time.monotonic()
                self.metrics.component_up.labels("journal").set(0)
        self._kick.set()

    def owe_from(self, lane: Lane, seq: int) -> None:
        """Start-up: ``lane`` has not spooled journal records from ``seq`` on."""
        with self._lock:
            self._owed[lane.name] = seq

    def settle_later(self, lane: Lane, head: int) -> None:
        """Start-up: ``lane``'s spool cannot be opened yet, so what it owes is unknown;
        once it opens, it owes from its own mark (or from ``head``, the journal's head
        at start, for a new spool)."""
        with self._lock:
            self._unsettled[lane.name] = head
            self._owed[lane.name] = head
        _log().error("spool_unavailable", target=lane.name, spool=str(lane.spool.path),
                     error=lane.spool.problem,
                     detail="the lane takes alerts from the journal once it can open it")

    # -- the retry thread ------------------------------------------------

    def _retry_loop(self) -> None:
        delay = RETRY_FIRST
        while not self._closed:
            with self._lock:
                busy = bool(self._held or self._owed)
            self._kick.wait(delay if busy else 1.0)
            self._kick.clear()
            if self._closed:
                return
            try:
                ok = self.catch_up()
            except Exception:
                _log().exception("delivery_retry_error")
                ok = False
            delay = RETRY_FIRST if ok else min(delay * 2, RETRY_MAX)

    def catch_up(self) -> bool:
        """Journal what is held, spool what lanes owe; True when nothing is left."""
        acks: Acks = []
        woken: set[Lane] = set()
        ok = True
        try:
            while ok:
                with self._lock:
                    if not self._held:
                        break
                    ok = self._journal_held(acks, woken)
            for name in list(self._owed):
                ok = self._catch_up_lane(self._lane[name], woken) and ok
        finally:
            for lane in woken:
                lane.wake()
            for ack, seq in acks:
                ack(seq)
        return ok

    def _journal_held(self, acks: Acks, woken: set[Lane]) -> bool:
        for _ in range(_BATCH):
            if not self._held:
                break
            h = self._held[0]
            try:
                seq = self.journal.append(h.body)
            except JournalError as exc:
                self.metrics.journal_write_failures.inc()
                self._failing = str(exc)
                return False
            self._held.popleft()
            woken.update(self._spool(h.alert, h.body, seq))
            if h.on_journaled is not None:
                acks.append((h.on_journaled, seq))
        self.metrics.journal_held.set(len(self._held))
        self._room.notify_all()
        if not self._held and self._failing is not None:
            _log().info("journal_write_recovered", path=str(self.journal.path),
                        failing_for=round(time.monotonic() - self._failing_since, 1))
            self._failing = None
            self.metrics.component_up.labels("journal").set(1)
        return True

    def _catch_up_lane(self, lane: Lane, woken: set[Lane]) -> bool:
        """Spool for ``lane`` what the journal holds from its owed seq on."""
        target = self._target_of[lane.name]
        if lane.name in self._unsettled:
            try:
                taken = lane.spool.taken  # opens the spool, or raises again
                head0 = self._unsettled[lane.name]
                if taken is None:
                    lane.spool.set_taken(head0 - 1)
            except Exception:
                return False
            with self._lock:
                del self._unsettled[lane.name]
                self._owed[lane.name] = head0 if taken is None else min(taken + 1, head0)
        while True:
            with self._lock:
                start = self._owed.get(lane.name)
                head = self.journal.head()[0]
                if start is None:
                    return True
                if start >= head:
                    del self._owed[lane.name]
                    self.metrics.component_up.labels(f"spool:{lane.name}").set(1)
                    _log().info("spool_caught_up", target=lane.name, journal_seq=head)
                    return True
            # read outside the lock: submit goes on meanwhile (and skips this lane)
            n = 0
            for seq, data, body in records_after(self.journal.path, self.journal.key, start - 1):
                if seq >= head:
                    break
                try:
                    alert = Alert.from_dict(data)
                    routed = target.route(alert)
                    payload = target.payload(alert, body) if routed else b""
                except Exception:
                    # a record with a verified MAC but not an alert's shape: written by
                    # an older or newer sentinel; it cannot be routed, so say so
                    _log().error("journal_record_not_alert", detail="not queued", seq=seq,
                                 target=lane.name)
                    continue
                if routed:
                    try:
                        lane.spool.insert(alert.id, payload, self.clock(), seq)
                    except Exception as exc:
                        with self._lock:
                            self._owed[lane.name] = seq
                        self.metrics.spool_write_failures.labels(lane.name).inc()
                        _log().debug("spool_still_failing", target=lane.name, error=str(exc))
                        return False
                    n += 1
                    woken.add(lane)
            with self._lock:
                self._owed[lane.name] = head
            if n:
                _log().info("alerts_queued_again_from_journal", target=lane.name,
                            alerts=n, journal_seq_from=start, journal_seq_to=head - 1)

    # -- state -----------------------------------------------------------

    @property
    def held(self) -> int:
        """Alerts accepted but not yet in the journal (in memory only)."""
        with self._lock:
            return len(self._held)

    def health(self) -> dict[str, bool]:
        """Each part's health, for /healthz: the journal, each spool, the workers."""
        with self._lock:
            out = {"journal": not self._held and self.journal.alive()}
            out.update({f"spool:{n}": n not in self._owed for n in self._lane})
        out[self.name] = self._retry.is_alive() and all(ln.alive() for ln in self.lanes())
        return out

    def alive(self) -> bool:
        return all(self.health().values())

    def drain(self, timeout: float) -> dict[str, int]:
        """Wait up to ``timeout`` s for every lane's spool to empty.

        Returns what is still pending per lane (empty when all was delivered). A
        lane whose endpoint is down keeps its alerts; they go out at the next start.
        """
        deadline = time.monotonic() + timeout
        while True:
            pending = {lane.name: lane.spool.depth for lane in self.lanes() if lane.spool.depth}
            if not pending or time.monotonic() >= deadline:
                return pending
            time.sleep(0.02)

    def close(self, timeout: float) -> None:
        """Stop the workers (waiting up to ``timeout`` s); undelivered alerts stay spooled."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._room.notify_all()
            held, self._held = self._held, deque()
        self._kick.set()
        lost = len(held)
        with _live_lock:
            if self in _live:
                _live.remove(self)
            heir = next((d for d in reversed(_live) if d.journal is self.journal), None)
        if heir is not None and held:
            # a reload: the new Delivery on the same journal takes them, in order
            heir.adopt(held)
            lost = 0
        if lost:
            _log().error("alerts_lost_at_shutdown", alerts=lost,
                         detail="the journal could not be written until the end; a source"
                                " that waits for on_journaled reports them again")
        deadline = time.monotonic() + timeout
        lanes = self.lanes()
        for lane in lanes:
            lane.stop()
        # the retry thread writes into the spools: it ends before they close
        if self._retry.is_alive():
            self._retry.join(max(0.1, deadline - time.monotonic()))
        joined = []
        for lane in lanes:
            if lane.join(max(0.0, deadline - time.monotonic())):
                joined.append(lane)
            else:
                _log().warning("delivery_worker_busy_at_stop", target=lane.name,
                               detail="its alerts stay spooled")
        pending = {lane.name: lane.spool.depth for lane in joined if lane.spool.depth}
        if pending:
            _log().warning("undelivered_at_stop", pending=pending,
                           detail="they stay spooled and are sent after the next start")
        for lane in joined:
            lane.spool.close()
        with self._lock:
            self.journal.close()

    def journal_head(self) -> tuple[int, str]:
        """(records in the journal, MAC of the last one): what an attestation signs."""
        return self.journal.head()
