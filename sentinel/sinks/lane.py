"""A delivery lane: one spool, one URL, one named worker thread.

Every URL of every target gets its own lane, so a dead or slow endpoint only
ever delays its own alerts. The worker sends the spool oldest first; on a
retriable outcome the whole lane backs off (the endpoint is down, trying the
next alert would not help), on a permanent one the alert is dead-lettered and
the next one goes at once. Subclasses say how records become requests.

A poison alert, one the endpoint answers with a retriable status every time
while it takes the others, must not block the lane: a batch refused with an
answer is halved on each try until the alert is alone, and an alert refused
:data:`REQUEUE_AFTER` times goes behind the others and is parked with a
backoff of its own, while the rest are sent at once. A 429 or a Retry-After
still backs the whole lane off: that endpoint asked us to slow down.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any

from sentinel import logs
from sentinel.metrics import Metrics
from sentinel.sinks.http import Backoff, Outcome, Transport, safe_url
from sentinel.sinks.spool import Record, Spool

#: Failed attempts (with an HTTP answer) after which an alert is retried behind the others.
REQUEUE_AFTER = 3
#: Poison alerts remembered with their own retry time at most.
_PARKED_MAX = 10_000
#: Longest sleep between two looks at the spool (a reload overlap may add rows to it).
IDLE_WAIT = 1.0


def _log() -> Any:
    # looked up per use: a logger bound at import would miss logs.configure()
    return logs.get("delivery")


class Lane:
    """The worker loop shared by the ``json`` and ``alertmanager`` formats."""

    page_size = 64

    def __init__(
        self,
        name: str,
        spool: Spool,
        transport: Transport,
        backoff: Backoff,
        metrics: Metrics,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self.spool = spool
        self.transport = transport
        self.backoff = backoff
        self.metrics = metrics
        self.clock = clock
        self._url = safe_url(transport.url)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._blocked_until = 0.0
        self._batch = self.page_size  # halved while the endpoint refuses whole batches
        self._parked: dict[str, float] = {}  # alert id -> not before (poison alerts)
        self._up = metrics.component_up.labels(f"delivery:{name}")
        self._depth = metrics.delivery_queue_depth.labels(name)
        self._oldest = metrics.delivery_oldest_pending.labels(name)
        self._last_oldest = 0.0
        self._thread = threading.Thread(target=self._run, name=f"delivery-{name}", daemon=True)

    # -- what a format provides ------------------------------------------

    def encode(self, records: list[Record]) -> list[list[Record]]:
        """Split a page into requests (one record each unless overridden)."""
        return [[r] for r in records]

    def post(self, records: list[Record], now: float) -> Outcome:
        """Send one request carrying ``records``."""
        raise NotImplementedError

    def delivered(self, records: list[Record], now: float) -> None:
        """Called after ``records`` were accepted."""

    def tick(self, now: float) -> float | None:
        """Periodic work besides the spool; returns seconds until it is next due."""
        return None

    # -- lifecycle -------------------------------------------------------

    def start(self) -> None:
        # read at scrape time, so they stay true while a request is in flight (a
        # receiver that takes its time must not look like an empty queue)
        self._depth.set_function(lambda: self.spool.depth)
        self._oldest.set_function(self._oldest_age)
        self._thread.start()

    def _oldest_age(self) -> float:
        try:
            oldest = self.spool.oldest()
        except Exception:
            # a spool closed by a reload, or a failing disk: the last known age
            return self._last_oldest
        self._last_oldest = 0.0 if oldest is None else max(0.0, self.clock() - oldest)
        return self._last_oldest

    def wake(self) -> None:
        """Something was spooled: look at the spool now."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def join(self, timeout: float) -> bool:
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def alive(self) -> bool:
        return self._thread.is_alive()

    # -- the loop --------------------------------------------------------

    def _run(self) -> None:
        self._up.set(1)
        errors = 0
        try:
            while not self._stop.is_set():
                now = self.clock()
                try:
                    wait = self._step(now)
                    self._keep_floor()
                    errors = 0
                except Exception as exc:
                    # a spool or encoding fault must not end the lane: count, log once, go on
                    self.metrics.deliveries.labels(self.name, "error").inc()
                    if errors == 0 and isinstance(exc, sqlite3.OperationalError):
                        # disk full, I/O error: the condition, not our code, is the news
                        _log().error("delivery_loop_error", detail="retrying", target=self.name,
                                     url=self._url, error=str(exc),
                                     spool=str(self.spool.path))
                    elif errors == 0:
                        _log().exception("delivery_loop_error", detail="retrying", target=self.name,
                                       url=self._url)
                    errors += 1
                    wait = min(IDLE_WAIT * errors, 30.0)
                if wait > 0:
                    self._wake.wait(min(wait, IDLE_WAIT))
                    self._wake.clear()
        finally:
            self._up.set(0)
            self.transport.close()

    def _keep_floor(self) -> None:
        # the floor only guides the re-queue after a corrupt spool: a full disk
        # that keeps it from being written must not stop delivery
        with contextlib.suppress(OSError, sqlite3.Error):
            self.spool.write_floor()

    def _step(self, now: float) -> float:
        if now < self._blocked_until:
            return self._blocked_until - now
        due = self.tick(now)
        if now < self._blocked_until:  # the tick's request failed
            return self._blocked_until - now
        # always look: another Delivery on this spool (a reload overlap) may have added rows
        if records := self.spool.page(self.page_size):
            ready = [r for r in records if self._parked.get(r.id, 0.0) <= now]
            if not ready:  # only parked poison: wait for the first to be due
                return min(self._parked[r.id] for r in records) - now
            self._send_page(ready, now)
            return 0.0
        return IDLE_WAIT if due is None else max(0.0, due)

    def _send_page(self, records: list[Record], now: float) -> None:
        while records and not self._stop.is_set():
            # split again after each request: the batch size changes with the answers
            group = self.encode(records)[0]
            if not self.attempt(group, now):
                return
            records = records[len(group):]
            now = self.clock()

    def batches(self, records: list[Record]) -> list[list[Record]]:
        """``records`` in requests of the lane's current batch size (for batching formats)."""
        n = self._batch
        return [records[i:i + n] for i in range(0, len(records), n)]

    def attempt(self, group: list[Record], now: float) -> bool:
        """Post one request and act on the outcome; False when the lane must back off."""
        out = self.post(group, now)
        if out.result == "ok":
            self.spool.delete([r.seq for r in group])
            self.metrics.deliveries.labels(self.name, "success").inc(len(group))
            self.delivered(group, now)
            self.succeeded()
            for r in group:
                self._parked.pop(r.id, None)
            self._batch = min(self.page_size, self._batch * 2)
            return True
        if out.result == "fail":
            if len(group) > 1:
                # one bad alert must not take its batch with it: find it
                return all(self.attempt([r], self.clock()) for r in group)
            rec = group[0]
            self._parked.pop(rec.id, None)
            self.spool.kill(rec, self.clock(), out.status, out.reason)
            self.metrics.deliveries.labels(self.name, "failed").inc()
            _log().error("delivery_refused", detail="alert kept in the dead-letter table",
                       target=self.name, url=self._url, alert_id=rec.id, reason=out.reason,
                       spool=str(self.spool.path))
            return True
        self.metrics.deliveries.labels(self.name, "retry").inc(len(group))
        answered = out.status is not None
        if len(group) > 1 and answered:
            # the endpoint answers but refuses the batch: one alert in it may be what it
            # chokes on. Halve the batches until it is alone, so the others get through
            self._batch = max(1, len(group) // 2)
        if len(group) == 1 and answered and group[0].attempts + 1 >= REQUEUE_AFTER:
            # the endpoint keeps refusing this one alert: retry it behind the others
            rec = group[0]
            self.spool.requeue(rec)
            throttled = out.status == 429 or out.retry_after is not None
            if not throttled:
                # a poison alert, not an endpoint that is down or asks us to slow down:
                # park it with its own backoff and let the rest go on now
                self._park(rec)
                return True
        else:
            self.spool.bump([r.seq for r in group])
        self.failed(out)
        return False

    def _park(self, rec: Record) -> None:
        if len(self._parked) >= _PARKED_MAX:
            self._parked.clear()  # only a delay is lost: they are still spooled
        tries = rec.attempts + 1 - REQUEUE_AFTER
        delay = min(self.backoff.maximum, self.backoff.initial * 2 ** min(tries, 30))
        self._parked[rec.id] = self.clock() + delay
        _log().debug("alert_refused_again", detail="retried after the others", target=self.name,
                     alert_id=rec.id, retry_in=round(delay, 3))

    def succeeded(self) -> None:
        if self.backoff.failures:
            _log().info("delivery_recovered", target=self.name, url=self._url,
                      failed_attempts=self.backoff.failures)
        self.backoff.reset()

    def failed(self, out: Outcome) -> None:
        """Back the lane off after a retriable outcome."""
        first = self.backoff.failures == 0
        delay = self.backoff.next_delay(out.retry_after)
        self._blocked_until = self.clock() + delay
        log = _log().warning if first else _log().debug
        log("delivery failed; retrying", target=self.name, url=self._url, reason=out.reason,
            retry_in=round(delay, 3), retry_after=out.retry_after, pending=self.spool.depth)
