"""Per-rule memory: threshold windows, last values for change rules, suppression folds.

Every store is bounded: an ordered dict kept in least-recently-used order (a
touched key is moved to the end), and when it grows past its cap the oldest entry
goes and ``on_evict`` counts it. The stores are OrderedDicts, not dicts: taking a
plain dict's oldest entry walks past every slot freed at its front since the dict
was last resized, which a flood from ever new sources turns into thousands of
steps an event; an OrderedDict's is one step. Time is the caller's (event or
``advance`` time), never the wall clock, so replay behaves like live.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sentinel.alert import Alert
from sentinel.config import StormConfig
from sentinel.engine.rules import Change, Suppress, Threshold
from sentinel.events import Event, format_time
from sentinel.i18n import storm_texts, summary_texts

Key = tuple[Any, ...]
_MAX_SUM_ENTRIES = 4096


@dataclass(slots=True)
class Window:
    """One group's sliding window. Keeps only what decides the threshold."""

    last: float = 0.0
    fired: bool = False
    times: deque[float] = field(default_factory=deque)  # count: the newest at_least times
    seen: dict[Any, float] = field(default_factory=dict)  # distinct: value -> last seen
    amounts: deque[tuple[float, float]] = field(default_factory=deque)  # sum
    total: float = 0.0


class ThresholdState:
    """Sliding windows by group; ``add`` says when a group crosses ``at_least``."""

    def __init__(self, spec: Threshold, cap: int, on_evict: Callable[[], None]) -> None:
        self.spec = spec
        self.cap = spec.max_groups or cap
        self.on_evict = on_evict
        self.groups: OrderedDict[Key, Window] = OrderedDict()
        self._need = int(spec.at_least)
        self.measure = {"count": self._count, "distinct": self._distinct,
                        "sum": self._sum}[spec.measure]
        # read once here rather than through the spec at every event
        self._key_of = spec.key_of
        self._get = spec.field.get if spec.field is not None else None
        self._window = spec.window
        self._at_least = spec.at_least

    def see(self, ev: Event) -> tuple[Key, float, int] | None:
        """Account ``ev`` in its group: (group key, measured value, events it stands for)
        when the group crosses now; None otherwise, or when the measured field is missing.
        """
        get = self._get
        value = None
        if get is not None:
            value = get(ev)
            if value is None:
                return None
            if type(value) is list:  # a list field's value as a hashable
                value = tuple(value)
        key = self._key_of(ev)
        crossed = self.add(key, ev.time, value)
        return None if crossed is None else (key, *crossed)

    def add(self, key: Key, t: float, value: Any) -> tuple[float, int] | None:
        """Account one event; (measured value, events it stands for) when crossed now."""
        groups = self.groups
        w = groups.get(key)
        if w is None:
            if len(groups) >= self.cap:
                groups.popitem(last=False)
                self.on_evict()
            w = groups[key] = Window()
        else:
            groups.move_to_end(key)
        if t > w.last:  # noqa: PLR1730 (max() costs a call per event)
            w.last = t
        measured, events = self.measure(w, t, t - self._window, value)
        if measured >= self._at_least:
            if not w.fired:
                w.fired = True
                return measured, events
        else:
            w.fired = False
        return None

    def _count(self, w: Window, t: float, horizon: float, _: Any) -> tuple[float, int]:
        times = w.times
        times.append(t)
        if len(times) > self._need:  # only the newest at_least times can decide
            times.popleft()
        while times and times[0] <= horizon:
            times.popleft()
        return float(len(times)), len(times)

    def _distinct(self, w: Window, t: float, horizon: float, value: Any) -> tuple[float, int]:
        seen = w.seen
        seen.pop(value, None)
        seen[value] = t
        if len(seen) > self._need:  # the newest at_least values decide
            del seen[next(iter(seen))]
        while seen:
            oldest = next(iter(seen))
            if seen[oldest] > horizon:
                break
            del seen[oldest]
        return float(len(seen)), len(seen)

    def _sum(self, w: Window, t: float, horizon: float, value: Any) -> tuple[float, int]:
        amount = _number(value)
        w.amounts.append((t, amount))
        w.total += amount
        if len(w.amounts) > _MAX_SUM_ENTRIES:
            # fold the two oldest into one at the later time: bounded memory,
            # the folded amount may stay in the window a little longer
            (_, a1), (t2, a2) = w.amounts.popleft(), w.amounts.popleft()
            w.amounts.appendleft((t2, a1 + a2))
        while w.amounts and w.amounts[0][0] <= horizon:
            w.total -= w.amounts.popleft()[1]
        return w.total, len(w.amounts)

    def expire(self, now: float) -> None:
        """Drop groups with nothing left in their window (the oldest-touched first)."""
        horizon = now - self.spec.window
        groups = self.groups
        while groups:
            key = next(iter(groups))
            if groups[key].last > horizon:
                break
            del groups[key]


def _number(v: Any) -> float:
    if isinstance(v, bool):
        return 0.0
    try:
        return float(v)
    except (TypeError, ValueError):
        return 0.0


class ChangeState:
    """The last value seen per key; ``see`` returns the previous value when it changed."""

    _NONE = object()

    def __init__(self, spec: Change, cap: int, on_evict: Callable[[], None]) -> None:
        self.spec = spec
        self.cap = spec.max_keys or cap
        self.on_evict = on_evict
        self.values: OrderedDict[Key, Any] = OrderedDict()

    def see(self, key: Key, value: Any) -> tuple[bool, Any]:
        values = self.values
        prev = values.get(key, self._NONE)
        if prev is self._NONE:
            if len(values) >= self.cap:
                values.popitem(last=False)
                self.on_evict()
        else:
            values.move_to_end(key)
        values[key] = value
        if prev is self._NONE or prev == value:
            return False, None
        return True, prev


@dataclass(slots=True)
class Fold:
    """A key's open suppression period: its first alert, or what builds it when needed
    (an alert the storm limit folded is built only if a summary must name it)."""

    made: Alert | Callable[[], Alert]
    end: float
    total: int
    group: dict[str, Any]
    first_count: int

    @property
    def first(self) -> Alert:
        made = self.made
        if not isinstance(made, Alert):
            made = self.made = made()
        return made


class SuppressState:
    """Folds repeats of a key within a period into the first alert's count."""

    def __init__(self, spec: Suppress, cap: int, on_evict: Callable[[], None]) -> None:
        self.spec = spec
        self.cap = spec.max_keys or cap
        self.on_evict = on_evict
        self.folds: OrderedDict[Key, Fold] = OrderedDict()  # by period start, so by end

    def flush(self, now: float) -> list[Alert]:
        """Close every open fold as of ``now``: the summaries of all that folded repeats."""
        out: list[Alert] = []
        for fold in self.folds.values():
            out.extend(summarize(fold, self.spec, at=min(fold.end, now)))
        self.folds.clear()
        return out

    def fold_into(self, key: Key, at: float, count: int) -> bool:
        """Fold a repeat of ``key`` at ``at`` into its open period, if there is one.

        True when folded: the caller then need not build the alert at all, which a
        flood from one source would otherwise cost per event. False: :meth:`offer`.
        """
        fold = self.folds.get(key)
        if fold is None or at >= fold.end:
            return False
        fold.total += count
        return True

    def offer(self, key: Key, alert: Alert, group: dict[str, Any]) -> list[Alert]:
        """The alerts to emit for ``alert``: itself when new, a summary of a finished fold."""
        out = self.open(key, alert, alert.time, alert.count, group)
        if out is None:
            return []
        out.append(alert)
        return out

    def open(self, key: Key, made: Alert | Callable[[], Alert], at: float, count: int,
             group: dict[str, Any]) -> list[Alert] | None:
        """Open ``key``'s period with its first alert (or what builds it), and return the
        summaries of folds this closes; None when ``at`` falls in an open period, which
        then counts it."""
        out: list[Alert] = []
        fold = self.folds.get(key)
        if fold is not None:
            if at < fold.end:
                fold.total += count
                return None
            del self.folds[key]
            out.extend(summarize(fold, self.spec))
        if len(self.folds) >= self.cap:
            # an evicted fold still reports what it folded, early rather than never,
            # dated now: its period's end is still to come
            _, evicted = self.folds.popitem(last=False)
            out.extend(summarize(evicted, self.spec, at=min(evicted.end, at)))
            self.on_evict()
        self.folds[key] = Fold(made, at + self.spec.period, count, group, count)
        return out

    def expire(self, now: float) -> list[Alert]:
        out: list[Alert] = []
        while self.folds:
            key = next(iter(self.folds))
            fold = self.folds[key]
            if fold.end > now:
                break
            del self.folds[key]
            out.extend(summarize(fold, self.spec))
        return out


def summarize(fold: Fold, spec: Suppress, at: float | None = None) -> list[Alert]:
    """The summary alert of a finished fold, if it folded more than its first alert.

    It is dated at the period's end, or ``at`` when the fold is closed early.
    """
    if fold.total <= fold.first_count:
        return []
    first = fold.first
    title, texts = summary_texts(first.extra, first.title, fold.total, spec.period)
    return [Alert(
        rule=first.rule,
        title=title,
        severity=first.severity,
        time=fold.end if at is None else at,
        host=first.host,
        source=first.source,
        tags=first.tags,
        event=first.event,
        count=fold.total,
        # repeats: the events beyond the first alert's, which that alert already counted
        extra={**first.extra, **texts, "summary": True, "first_alert": first.id,
               "group": fold.group, "period_seconds": spec.period,
               "repeats": fold.total - first.count},
    )]


@dataclass(slots=True)
class StormFold:
    first: Alert
    total: int = 0  # the events the folded alerts stood for (their counts added)
    alerts: int = 0
    last: float = 0.0
    sample: list[dict[str, Any]] = field(default_factory=list)


class StormState:
    """One rule's alert rate: fixed windows of ``period`` from its first alert.

    ``on_change(True)`` / ``on_change(False)`` is called when a storm starts (the first alert
    folded) and when it ends (a whole period with nothing to fold), so the
    caller logs once per change of state.
    """

    def __init__(self, limit: StormConfig, on_change: Callable[[bool], None]) -> None:
        self.limit = limit
        self.on_change = on_change
        self.window_end = math.inf
        self.passed = 0
        self.fold: StormFold | None = None
        self.storming = False
        self.folded_total = 0  # alerts folded since this state began (for tests, metrics)

    def offer(self, alert: Alert, key: dict[str, Any]) -> list[Alert]:
        """``[alert]`` while under the limit; past it, ``[]`` and the alert is folded."""
        out = self.expire(alert.time) if alert.time >= self.window_end else []
        if self.window_end == math.inf:
            self.window_end = alert.time + self.limit.period
            self.passed = 0
        if self.passed < self.limit.max_alerts:
            self.passed += 1
            out.append(alert)
            return out
        fold = self.fold
        if fold is None:
            fold = self.fold = StormFold(alert)
            if not self.storming:
                self.storming = True
                self.on_change(True)
        # what the alert adds to the true count: a suppression summary's count includes
        # its first alert, which was counted on its own (shown or folded)
        self.fold_in(alert.extra["repeats"] if alert.extra.get("summary") else alert.count,
                     alert.time, key)
        return out

    def folding(self, at: float) -> bool:
        """Whether an alert at ``at`` would be folded into a fold already open: then the
        caller need not build it, only :meth:`fold_in` its count (a flood of alerts from
        ever new sources would otherwise cost a whole alert each)."""
        return at < self.window_end and self.fold is not None

    def fold_in(self, count: int, at: float, key: dict[str, Any]) -> None:
        """Count one folded alert of ``count`` events at ``at`` (a fold is open)."""
        fold = self.fold
        assert fold is not None
        fold.total += count
        fold.alerts += 1
        fold.last = max(fold.last, at)
        self.folded_total += 1
        if len(fold.sample) < self.limit.sample and key not in fold.sample:
            fold.sample.append(key)

    def expire(self, now: float) -> list[Alert]:
        """Close the window if it ended by ``now``: its summary, if it folded anything."""
        if now < self.window_end:  # also while idle: no window is open (math.inf)
            return []
        out = self.flush(self.window_end)
        if out:  # still storming: the next window follows on directly
            self.window_end += self.limit.period
            if now >= self.window_end:  # and it too is over, with nothing in it
                self.window_end = math.inf
        else:
            self.window_end = math.inf
        self.passed = 0
        if self.window_end == math.inf and self.storming:
            self.storming = False
            self.on_change(False)
        return out

    def flush(self, at: float) -> list[Alert]:
        """The summary of what the current window folded, dated ``at``; the fold is reset."""
        fold, self.fold = self.fold, None
        if fold is None:
            return []
        first = fold.first
        title, texts = storm_texts(first.extra, first.title, fold.alerts,
                                   self.limit.max_alerts, self.limit.period)
        # the first alert's description and language, not its summary keys: a storm
        # summary stands for its own count
        kept: dict[str, Any] = {k: first.extra[k] for k in ("description", "language")
                                if k in first.extra}
        return [Alert(
            rule=first.rule,
            title=title,
            severity=first.severity,
            time=at,
            host=first.host,
            source=first.source,
            tags=first.tags,
            event=first.event,
            count=fold.total,
            extra={**kept, **texts, "storm": True, "folded_alerts": fold.alerts,
                   "sample": fold.sample,
                   "first_folded": format_time(first.time), "last_folded": format_time(fold.last),
                   "max_alerts": self.limit.max_alerts, "period_seconds": self.limit.period},
        )]
