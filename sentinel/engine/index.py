"""The rule index: which rules could match an event, found without testing them all.

Rules are split by event kind. Within a kind each rule is filed under its most
selective required test, if it has one: an equality or ``in`` on a plain field
(a hash lookup by the event's value), or an address test (``cidr``, ``in`` a
list of networks, equality with an address) found by bisecting the elementary
ranges of every filed network. Rules with no such test are always candidates.
The index only narrows: each candidate is still tested in full.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Sequence
from operator import attrgetter
from typing import Any

from sentinel.engine.fields import ip_int
from sentinel.engine.lists import Range
from sentinel.engine.rules import Rule
from sentinel.events import Event

_ORDER = attrgetter("order")
#: Candidate lists remembered per combination of index hits (bounds memory).
_UNION_CACHE = 4096


class RangeIndex:
    """Rules by address range: the rules whose ranges cover an address."""

    def __init__(self, entries: Iterable[tuple[Range, Rule]]) -> None:
        self._starts: dict[int, list[int]] = {4: [], 6: []}
        self._rules: dict[int, list[tuple[Rule, ...]]] = {4: [], 6: []}
        by_version: dict[int, list[tuple[int, int, Rule]]] = {4: [], 6: []}
        for (v, lo, hi), rule in entries:
            by_version[v].append((lo, hi, rule))
        for v, items in by_version.items():
            # sweep: at each boundary the covering set changes; store it per segment
            points = sorted({lo for lo, _, _ in items} | {hi + 1 for _, hi, _ in items})
            opens: dict[int, list[Rule]] = {}
            closes: dict[int, list[Rule]] = {}
            for lo, hi, rule in items:
                opens.setdefault(lo, []).append(rule)
                closes.setdefault(hi + 1, []).append(rule)
            active: dict[int, int] = {}
            by_id: dict[int, Rule] = {}
            for p in points:
                for r in closes.get(p, ()):
                    active[id(r)] -= 1
                    if not active[id(r)]:
                        del active[id(r)]
                for r in opens.get(p, ()):
                    active[id(r)] = active.get(id(r), 0) + 1
                    by_id[id(r)] = r
                self._starts[v].append(p)
                self._rules[v].append(tuple(sorted((by_id[i] for i in active),
                                                   key=lambda r: r.order)))

    def lookup(self, text: Any) -> tuple[Rule, ...]:
        if not isinstance(text, str):
            return ()
        parsed = ip_int(text)
        if parsed is None:
            return ()
        v, n = parsed
        i = bisect_right(self._starts[v], n) - 1
        return self._rules[v][i] if i >= 0 else ()


class KindIndex:
    """The rules of one event kind, filed by field."""

    def __init__(self, rules: Sequence[Rule], kind: str | None = None) -> None:
        self.always: tuple[Rule, ...] = ()
        exact: dict[str, dict[Any, list[Rule]]] = {}
        ranges: dict[str, list[tuple[Range, Rule]]] = {}
        always: list[Rule] = []
        for rule in rules:
            hints = rule.hints
            if kind is not None:
                # a test of ``kind`` is decided here, once: never per event
                if any(h.field == "kind" and kind not in h.exact for h in hints):
                    continue  # it cannot hold for this kind
                hints = [h for h in hints if h.field != "kind"]
            if not hints:
                always.append(rule)
                continue
            best = max(hints, key=lambda h: (h.score, -len(h.exact) - len(h.nets)))
            if best.nets:
                ranges.setdefault(best.field, []).extend((r, rule) for r in best.nets)
            else:
                slot = exact.setdefault(best.field, {})
                for value in best.exact:
                    slot.setdefault(value, []).append(rule)
        self.always = tuple(always)
        self.exact = {f: {v: tuple(rs) for v, rs in slot.items()} for f, slot in exact.items()}
        self.ranges = {f: RangeIndex(es) for f, es in ranges.items()}
        self._fields = tuple(self.exact.items())
        self._range_fields = tuple(self.ranges.items())
        # the rules of a combination of hits, in rule order: the same few recur
        self._unions: dict[tuple[int, ...], tuple[Rule, ...]] = {}

    def candidates(self, ev: Event) -> Sequence[Rule]:
        found: list[Sequence[Rule]] = [self.always] if self.always else []
        fields = ev.fields
        for name, slot in self._fields:
            v = fields.get(name) if name in fields else ev.get(name)
            if v is None:
                continue
            if isinstance(v, list):
                for x in v:
                    if (rs := slot.get(x)) is not None:
                        found.append(rs)
            else:
                try:
                    rs = slot.get(v)
                except TypeError:
                    continue
                if rs is not None:
                    found.append(rs)
        for name, ridx in self._range_fields:
            rs2 = ridx.lookup(fields.get(name))
            if rs2:
                found.append(rs2)
        if not found:
            return ()
        if len(found) == 1:
            return found[0]
        # the hit tuples live as long as the index, so their ids name the combination
        combo = tuple(map(id, found))
        union = self._unions.get(combo)
        if union is None:
            if len(self._unions) >= _UNION_CACHE:
                self._unions.clear()
            unique = {id(r): r for rs in found for r in rs}
            union = self._unions[combo] = tuple(sorted(unique.values(), key=_ORDER))
        return union


class RuleIndex:
    """Candidate rules for an event: ``index.candidates(event)``."""

    def __init__(self, rules: Sequence[Rule]) -> None:
        by_kind: dict[str, list[Rule]] = {}
        for rule in rules:
            for kind in rule.kinds:
                by_kind.setdefault(kind, []).append(rule)
        self._kinds = {k: KindIndex(rs, k) for k, rs in by_kind.items()}

    def candidates(self, ev: Event) -> Sequence[Rule]:
        ki = self._kinds.get(ev.kind)
        return ki.candidates(ev) if ki is not None else ()
