"""Groups of rules that decide alike, and the state a rule carries between events.

A group is the rules with the same ``Rule.behaviour`` (kinds, condition,
schedule, threshold or change) and the same history: its condition is tested
and its threshold or change state updated once per event for all of them. The
engine builds the groups; :class:`PlainIndex` is the reference it is held to.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sentinel.engine.matchers import Hint
from sentinel.engine.rules import Rule
from sentinel.engine.state import ChangeState, StormState, SuppressState, ThresholdState
from sentinel.events import Event


@dataclass
class RuleMemory:
    """The state one rule carries between events (threshold/change shared by its group)."""

    threshold: ThresholdState | None = None
    change: ChangeState | None = None
    suppress: SuppressState | None = None
    storm: StormState | None = None


class Group:
    """Rules that decide alike and share their threshold or change state."""

    def __init__(self, first: Rule, mem: RuleMemory) -> None:
        self.rules: list[Rule] = [first]
        self.order = first.order
        self.kinds: frozenset[str] = first.kinds
        self.hints: list[Hint] = first.hints
        self.match = first.match
        self.active = first.active
        self.threshold = mem.threshold
        self.change = mem.change
        #: ``decide(event)`` for an event that matched: (count, extra), or None when
        #: the threshold or change logic says no alert; picked once here, not per event
        self.decide: Callable[[Event], tuple[int, dict[str, Any]] | None] = _always
        if first.threshold is not None and self.threshold is not None:
            self.decide = self._threshold
        elif first.change is not None and self.change is not None:
            self.decide = self._change

    def _threshold(self, ev: Event) -> tuple[int, dict[str, Any]] | None:
        assert self.threshold is not None
        crossed = self.threshold.see(ev)
        if crossed is None:
            return None
        spec = self.threshold.spec
        key, measured, count = crossed
        return count, {
            "group": {ref.text: v for ref, v in zip(spec.group_by, key, strict=True)},
            "threshold": {"measure": spec.measure, "field": spec.field.text
                          if spec.field else None, "value": _num(measured),
                          "at_least": _num(spec.at_least), "window_seconds": spec.window}}

    def _change(self, ev: Event) -> tuple[int, dict[str, Any]] | None:
        assert self.change is not None
        spec = self.change.spec
        ckey = spec.key_of(ev)
        value = spec.value.get(ev)
        if value is None or None in ckey:
            return None
        changed, previous = self.change.see(ckey, _hashable(value))
        if not changed:
            return None
        return 1, {"key": {ref.text: v for ref, v in zip(spec.key, ckey, strict=True)},
                   "previous": previous, "current": value}


def _always(_: Event) -> tuple[int, dict[str, Any]]:
    return 1, {}


class PlainIndex:
    """The reference: every entry of the event's kind, in order, no narrowing."""

    def __init__(self, entries: Sequence[Group]) -> None:
        self._kinds: dict[str, list[Group]] = {}
        for e in entries:
            for k in e.kinds:
                self._kinds.setdefault(k, []).append(e)

    def candidates(self, ev: Event) -> Sequence[Group]:
        return self._kinds.get(ev.kind, ())


def _hashable(v: Any) -> Any:
    """A field value usable as a dict key (list fields become tuples)."""
    return tuple(v) if type(v) is list else v


def _num(v: float) -> float | int:
    return int(v) if float(v).is_integer() else v
