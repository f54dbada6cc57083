"""Which FIM events are safe in the journal, and so which baseline changes may be written.

Every event the FIM source sends gets a number and an ``ack``; the daemon calls
the ``ack`` once the event's alerts are in the journal (True) or when one could
not be journaled (False). :class:`Outbox` keeps the events not yet known to be
safe: :meth:`Outbox.safe` is the highest number below which every event was
acknowledged, the bound up to which the baseline file may take changes. An
event refused by the journal is sent again after a backoff (:class:`Retry`),
never counted as safe meanwhile. Acknowledgements arrive on another thread and
are handed to the FIM worker through its queue (``wake``), so the bookkeeping
itself needs no lock.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable
from typing import Any

from sentinel import logs
from sentinel.events import Event
from sentinel.pipeline import Emit

_log = logs.get("fim")

#: Backoff of re-sending refused events and of failed commits: the first wait,
#: doubling up to the last.
RETRY_MIN = 1.0
RETRY_MAX = 30.0
#: At stop, how long to wait for the acknowledgements of events already sent.
ACK_WAIT = 3.0


class Retry:
    """Backoff for one thing that can fail and recover, logging each change of state once."""

    def __init__(self, failed_event: str, recovered_event: str, detail: str) -> None:
        self._events = (failed_event, recovered_event)
        self._detail = detail
        self.failing = False
        self.due = 0.0
        self._wait = RETRY_MIN

    def failed(self, now: float, **context: Any) -> None:
        """One failure: the first starts the backoff; one after a retry doubles it."""
        if not self.failing:
            self.failing = True
            self._wait = RETRY_MIN
            _log.error(self._events[0], detail=self._detail, retry_in=self._wait, **context)
        elif now >= self.due:
            self._wait = min(self._wait * 2, RETRY_MAX)
        else:
            return  # another failure of the same attempt: already scheduled
        self.due = now + self._wait

    def recovered(self) -> None:
        self.failing = False
        _log.info(self._events[1])


class Outbox:
    """Events sent and not yet acknowledged, by number (one FIM run's worth)."""

    def __init__(self, emit: Emit, wake: Callable[[Any], None]) -> None:
        self._emit = emit
        self._wake = wake
        #: number of the last event sent: what a baseline change made now is tagged with
        self.sent = 0
        self._open: dict[int, Event] = {}
        self._failed: dict[int, Event] = {}  # refused by the journal: sent again
        self._acks_seen = False
        self._resend = Retry("fim_alerts_not_journaled", "fim_alerts_journaled_again",
                             "alerts of file changes could not be journaled; the changes are"
                             " held (not taken into the baseline) and sent again")

    def send(self, ev: Event) -> None:
        """Number ``ev``, give it its ``ack`` and emit it (may block: back-pressure)."""
        self.sent += 1
        seq = self.sent
        wake = self._wake

        def ack(ok: bool) -> None:
            wake(("ack", seq, ok))

        ev.ack = ack
        self._open[seq] = ev
        self._emit(ev)

    def acked(self, seq: int, ok: bool) -> None:
        """The daemon's answer for event ``seq`` (taken from the worker's queue)."""
        self._acks_seen = True
        ev = self._open.pop(seq, None)
        if ev is None:
            return
        if not ok:
            self._failed[seq] = ev
            self._resend.failed(time.monotonic(), held=len(self._failed))
        elif self._resend.failing and not self._failed:
            self._resend.recovered()

    def safe(self) -> int:
        """The highest event number up to which every event's alerts are journaled."""
        return min(min(self._open, default=self.sent + 1),
                   min(self._failed, default=self.sent + 1)) - 1

    def unacknowledged(self) -> int:
        return len(self._open) + len(self._failed)

    def resend_due(self) -> float | None:
        """When refused events are to be sent again (None when there are none)."""
        return self._resend.due if self._failed else None

    def send_again(self) -> None:
        """Send the refused events again, oldest first: the journal may take them now."""
        failed, self._failed = self._failed, {}
        for seq in sorted(failed):
            self._open[seq] = failed[seq]
            self._emit(failed[seq])

    def await_acks(self, q: queue.Queue[Any], wait: float = ACK_WAIT) -> None:
        """At stop: take acknowledgements from ``q`` for up to ``wait`` seconds.

        Skipped when nothing was ever acknowledged: whoever takes the events
        then does not acknowledge (a test's collector), and nothing will come.
        """
        if not self._acks_seen:
            return
        deadline = time.monotonic() + wait
        while self._open and (left := deadline - time.monotonic()) > 0:
            try:
                item = q.get(timeout=left)
            except queue.Empty:
                break
            if isinstance(item, tuple) and item[0] == "ack":
                self.acked(item[1], item[2])
