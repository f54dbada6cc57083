"""What the FIM worker is waiting on, with one timer queue for all of it.

- new paths settling before they are reported as created (``SETTLE`` after
  their last event, ``SETTLE_MAX`` at most);
- files written without a close yet (checked after ``QUIET`` without writes,
  ``QUIET_MAX`` at most);
- ``IN_MOVED_FROM`` events waiting ``PAIR_WAIT`` for their ``IN_MOVED_TO``;
- the next baseline commit.

Pure bookkeeping, no I/O: :meth:`Holds.due` says what has come due and the
worker decides what that means. Timers are lazy: a later deadline is found,
and re-queued, when the earlier one fires, so a path written a thousand times
has one timer, not a thousand.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterator

SETTLE = 0.2
SETTLE_MAX = 5.0
PAIR_WAIT = 0.1
QUIET = 2.0
QUIET_MAX = 30.0


class Holds:
    """Held paths, open writers, unpaired moves and a pending commit, by deadline."""

    def __init__(self) -> None:
        self._new: dict[str, tuple[float, float, float]] = {}  # path -> (first, due, last)
        self._dirty: dict[str, tuple[float, float]] = {}  # path -> (first write, last write)
        self._from: dict[int, tuple[str, float]] = {}  # cookie -> (path, due)
        self._flush = False
        self._heap: list[tuple[float, int, str, object]] = []
        self._seq = itertools.count()

    def _push(self, due: float, kind: str, key: object) -> None:
        heapq.heappush(self._heap, (due, next(self._seq), kind, key))

    # -- new paths ----------------------------------------------------------

    def hold(self, path: str, now: float) -> None:
        """Hold ``path`` as new; each further event moves its deadline on."""
        held = self._new.get(path)
        first = held[0] if held is not None else now
        due = min(first + SETTLE_MAX, now + SETTLE)
        self._new[path] = (first, due, now)
        if held is None:
            self._push(due, "new", path)

    def is_held(self, path: str) -> bool:
        return path in self._new

    def release(self, path: str) -> bool:
        """Stop holding ``path`` (it was reported some other way); True if it was held."""
        return self._new.pop(path, None) is not None

    # -- writers without a close ---------------------------------------------

    def wrote(self, path: str, now: float) -> None:
        span = self._dirty.get(path)
        self._dirty[path] = (span[0] if span is not None else now, now)
        if span is None:
            self._push(now + QUIET, "dirty", path)

    def closed(self, path: str) -> None:
        self._dirty.pop(path, None)

    # -- moves -------------------------------------------------------------

    def moved_from(self, cookie: int, path: str, now: float) -> None:
        self._from[cookie] = (path, now + PAIR_WAIT)
        self._push(now + PAIR_WAIT, "from", cookie)

    def moved_to(self, cookie: int) -> str | None:
        """The source path of a move's second half, if its first half is held."""
        src = self._from.pop(cookie, None)
        return src[0] if src is not None else None

    # -- commits -----------------------------------------------------------

    def flush_at(self, due: float) -> None:
        """Ask for one commit at ``due`` (a request while one is pending is merged)."""
        if not self._flush:
            self._flush = True
            self._push(due, "flush", None)

    # -- timers ------------------------------------------------------------

    def next_due(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def due(self, now: float) -> Iterator[tuple[str, str | None, float | None]]:
        """What has come due: ("new", path, last), ("dirty", path, last), ("from", path,
        None), ("flush", None, None); ``last``: the time of the path's last event.

        "from" is a move whose other half never came: its source left the scope.
        """
        while self._heap and self._heap[0][0] <= now:
            _, _, kind, key = heapq.heappop(self._heap)
            if kind == "new":
                assert isinstance(key, str)
                held = self._new.get(key)
                if held is None:
                    continue
                if held[1] > now:
                    self._push(held[1], kind, key)
                    continue
                del self._new[key]
                yield kind, key, held[2]
            elif kind == "dirty":
                assert isinstance(key, str)
                span = self._dirty.get(key)
                if span is None:
                    continue
                when = min(span[0] + QUIET_MAX, span[1] + QUIET)
                if when > now:
                    self._push(when, kind, key)
                    continue
                del self._dirty[key]
                yield kind, key, span[1]
            elif kind == "from":
                assert isinstance(key, int)
                src = self._from.pop(key, None)
                if src is not None:
                    yield kind, src[0], None
            else:
                self._flush = False
                yield kind, None, None

    def waiting(self) -> bool:
        """True while a path is held, a writer is open or a move is unpaired."""
        return bool(self._new or self._dirty or self._from)
