"""The rule index: which rules could match an event, found without testing them all.

Rules are split by event kind. Within a kind, every hint of every rule counts
(a hint is a promise from the condition: "this can only hold when dst_ip is in
these ranges", "... when qname is under kpu.go.id"): one lookup per hinted
field gives the set of rules that field allows, as a bit mask over the kind's
rules, and the candidates are the rules every field allows. So a rule needs
all of its indexed tests to hold before it is evaluated, not only its best
one: a thousand rules that each name their own server cost a few mask
operations, not a thousand evaluations. Lookups are a hash probe for values,
a bisection of elementary address ranges for networks, a probe per dot-suffix
for domains. The index only narrows: each candidate is still tested in full.

Entries are anything with ``order``, ``kinds`` and ``hints`` — rules, or the
engine's groups of identical rules.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterable, Sequence
from operator import attrgetter
from typing import Any, Protocol

from sentinel.engine.fields import LIST, field_type, ip_int
from sentinel.engine.lists import Range
from sentinel.engine.matchers import Hint
from sentinel.events import COMMON_FIELDS, Event

_ORDER = attrgetter("order")
#: Candidate tuples remembered per mask (bounds memory; the same few masks recur).
_MASK_CACHE = 4096


class Entry(Protocol):
    """What the index files: a rule, or a group of rules that decide alike."""

    @property
    def order(self) -> int: ...
    @property
    def kinds(self) -> frozenset[str]: ...
    @property
    def hints(self) -> list[Hint]: ...


class RangeIndex:
    """Bit masks by address range: the entries whose ranges cover an address."""

    def __init__(self, entries: Iterable[tuple[Range, int]], base: int) -> None:
        self._starts: dict[int, list[int]] = {4: [], 6: []}
        self._masks: dict[int, list[int]] = {4: [], 6: []}
        self._base = base
        by_version: dict[int, list[tuple[int, int, int]]] = {4: [], 6: []}
        for (v, lo, hi), bit in entries:
            by_version[v].append((lo, hi, bit))
        for v, items in by_version.items():
            # sweep: at each boundary the covering set changes; store it per segment
            opens: dict[int, list[int]] = {}
            closes: dict[int, list[int]] = {}
            for lo, hi, bit in items:
                opens.setdefault(lo, []).append(bit)
                closes.setdefault(hi + 1, []).append(bit)
            active: dict[int, int] = {}  # bit -> how many of its ranges are open
            mask = base
            for p in sorted(opens.keys() | closes.keys()):
                for bit in closes.get(p, ()):
                    active[bit] -= 1
                    if not active[bit]:
                        del active[bit]
                        mask &= ~bit
                for bit in opens.get(p, ()):
                    active[bit] = active.get(bit, 0) + 1
                    mask |= bit
                self._starts[v].append(p)
                self._masks[v].append(mask | base)

    def lookup(self, text: Any) -> int:
        if not isinstance(text, str):
            return self._base
        parsed = ip_int(text)
        if parsed is None:
            return self._base
        v, n = parsed
        i = bisect_right(self._starts[v], n) - 1
        return self._masks[v][i] if i >= 0 else self._base


class FieldIndex:
    """One hinted field: the mask of entries it allows for the event's value.

    ``base`` is the entries with no hint on the field (the field does not
    constrain them); a value adds the entries whose hint it satisfies.
    """

    def __init__(self, name: str, base: int, exact: dict[Any, int],
                 nets: list[tuple[Range, int]], domains: dict[str, int],
                 get: Callable[[Event], Any] | None) -> None:
        self.name = name
        self.base = base
        self.is_list = get is None and field_type(name) == LIST
        # the value with ``base`` folded in: a scalar lookup is one dict probe
        self._exact = {v: m | base for v, m in exact.items()}
        self.exact_get = self._exact.get
        self.ranges = self._ranges = RangeIndex(nets, base) if nets else None
        self._domains = domains
        #: the field read straight from ``ev.fields`` and looked up by value alone
        #: (exact values, address ranges): the candidate loop inlines these
        self.plain: str | None = None
        if get is not None:
            self.get = get
        elif name in COMMON_FIELDS:
            self.get = lambda ev: ev.get(name)
        else:
            self.get = lambda ev: ev.fields.get(name)
            if not self.is_list and not domains:
                self.plain = name

    def allows(self, ev: Event) -> int:
        try:
            v = self.get(ev)
        except Exception:  # a transform that fails here fails in the rule, which
            return -1  # reports it: let every entry through
        if v is None:  # every indexed test is positive: a missing field fails it
            return self.base
        if self.is_list and isinstance(v, list | tuple):
            mask = self.base
            for x in v:
                mask |= self._one(x)
            return mask
        return self._one(v)

    def _one(self, v: Any) -> int:
        try:
            mask = self._exact.get(v, self.base)
        except TypeError:  # an unhashable value equals no listed value
            mask = self.base
        if self._ranges is not None:
            mask |= self._ranges.lookup(v)
        if self._domains and isinstance(v, str):
            mask |= self._domain_mask(v)
        return mask

    def _domain_mask(self, v: str) -> int:
        # the same walk as lists.domain_matcher: the name, then each dot-suffix
        name = v.lower().rstrip(".")
        domains = self._domains
        mask = domains.get(name, 0)
        i = name.find(".")
        while i != -1:
            mask |= domains.get(name[i + 1:], 0)
            i = name.find(".", i + 1)
        return mask


class KindIndex:
    """The entries of one event kind and their hinted fields."""

    def __init__(self, entries: Sequence[Any], kind: str | None = None) -> None:
        kept: list[tuple[Any, dict[str, Hint]]] = []
        for entry in sorted(entries, key=_ORDER):
            hints: list[Hint] = entry.hints
            if kind is not None:
                # a test of ``kind`` is decided here, once: never per event
                if any(h.field == "kind" and kind not in h.exact for h in hints):
                    continue  # it cannot hold for this kind
                hints = [h for h in hints if h.field != "kind"]
            by_field: dict[str, Hint] = {}
            for h in hints:
                # several hints on one field all hold; the narrowest is enough
                old = by_field.get(h.field)
                if old is None or _width(h) < _width(old):
                    by_field[h.field] = h
            kept.append((entry, by_field))
        self.entries: tuple[Any, ...] = tuple(e for e, _ in kept)
        self.all = (1 << len(kept)) - 1
        names = sorted({f for _, fs in kept for f in fs})
        fields = [self._field(name, kept) for name in names]
        # the fields that rule out the most entries first: the mask empties soonest
        fields.sort(key=lambda f: (f.base.bit_count(), f.name))
        self.fields = tuple(fields)
        self._by_mask: dict[int, tuple[Any, ...]] = {}

    @staticmethod
    def _field(name: str, kept: list[tuple[Any, dict[str, Hint]]]) -> FieldIndex:
        base = 0
        exact: dict[Any, int] = {}
        nets: list[tuple[Range, int]] = []
        domains: dict[str, int] = {}
        get = None
        for i, (_, by_field) in enumerate(kept):
            bit = 1 << i
            h = by_field.get(name)
            if h is None:
                base |= bit
                continue
            get = get or h.get
            for v in h.exact:
                exact[v] = exact.get(v, 0) | bit
            nets.extend((r, bit) for r in h.nets)
            for d in h.domains:
                domains[d] = domains.get(d, 0) | bit
        return FieldIndex(name, base, exact, nets, domains, get)

    def candidates(self, ev: Event) -> Sequence[Any]:
        mask = self.all
        fields = ev.fields
        for f in self.fields:
            name = f.plain
            if name is None:
                mask &= f.allows(ev)
            else:  # FieldIndex.allows and _one for a plain field, without the calls
                v = fields.get(name)
                if v is None:
                    mask &= f.base
                else:
                    try:
                        m = f.exact_get(v, f.base)
                    except TypeError:  # an unhashable value equals no listed value
                        m = f.base
                    ranges = f.ranges
                    if ranges is not None:
                        m |= ranges.lookup(v)
                    mask &= m
            if not mask:
                return ()
        got = self._by_mask.get(mask)
        if got is None:
            if len(self._by_mask) >= _MASK_CACHE:
                self._by_mask.clear()
            entries = self.entries
            picked = []
            m = mask
            while m:
                low = m & -m
                picked.append(entries[low.bit_length() - 1])
                m ^= low
            got = self._by_mask[mask] = tuple(picked)
        return got


def _width(h: Hint) -> int:
    return len(h.exact) + len(h.nets) + len(h.domains)


class RuleIndex:
    """Candidate entries for an event, in rule order: ``index.candidates(event)``."""

    def __init__(self, entries: Sequence[Any]) -> None:
        by_kind: dict[str, list[Any]] = {}
        for entry in entries:
            for kind in entry.kinds:
                by_kind.setdefault(kind, []).append(entry)
        self._kinds = {k: KindIndex(es, k) for k, es in by_kind.items()}

    def candidates(self, ev: Event) -> Sequence[Any]:
        ki = self._kinds.get(ev.kind)
        return ki.candidates(ev) if ki is not None else ()

