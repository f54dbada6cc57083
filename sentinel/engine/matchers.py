"""Compiled matchers: what a condition becomes, and how parts combine.

A :class:`Cond` is a closure over an event plus :class:`Hint` s — promises the
index uses ("this can only hold when dst_port is 22 or 23"). ``all_``/``any_``
combine parts (plain loops: a generator in all()/any() costs more on this hot
path); ``field_fn`` turns a value test into an event test with the rules for
missing fields, list fields and negation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any

from sentinel.engine.lists import Range
from sentinel.events import Event

Test = Callable[[Any], bool]
Match = Callable[[Event], bool]


@dataclass(frozen=True)
class Hint:
    """A promise from a rule's condition: it can only hold when ``field`` is in these.

    The value must equal one of ``exact``, or (an address) fall in one of ``nets``,
    or (a name) be one of ``domains`` or under one. ``field`` is a plain field
    name, or the text of a transformed or joined reference whose ``get`` reads it.
    """

    field: str
    exact: frozenset[Any]
    nets: tuple[Range, ...]
    score: int
    domains: frozenset[str] = frozenset()
    get: Callable[[Event], Any] | None = dc_field(default=None, compare=False)


@dataclass
class Cond:
    """A compiled condition: ``fn(event)`` decides; ``hints`` are what the index may use."""

    fn: Match
    hints: list[Hint] = dc_field(default_factory=list)


def field_fn(get: Callable[[Event], Any], test: Test, negate: bool, is_list: bool) -> Match:
    """An event test from a value test: missing is false (true when negated), lists any-of."""
    if is_list:
        def on_list(ev: Event) -> bool:
            v = get(ev)
            if v is None:
                return negate
            if not isinstance(v, list | tuple):  # a producer sent one value: test it alone
                return test(v) is not negate
            for x in v:
                if test(x):
                    return not negate
            return negate
        return on_list
    if negate:
        def negated(ev: Event) -> bool:
            v = get(ev)
            return v is None or not test(v)
        return negated

    def positive(ev: Event) -> bool:
        v = get(ev)
        return v is not None and test(v)
    return positive


def all_(parts: list[Cond]) -> Cond:
    """Every part holds; every part's hints hold too."""
    hints = [h for p in parts for h in p.hints]
    if len(parts) == 1:
        return Cond(parts[0].fn, hints)
    fns = tuple(p.fn for p in parts)
    if len(fns) == 2:
        a, b = fns
        return Cond(lambda ev: a(ev) and b(ev), hints)

    def all_fn(ev: Event) -> bool:
        for f in fns:  # noqa: SIM110
            if not f(ev):
                return False
        return True
    return Cond(all_fn, hints)


def any_(parts: list[Cond]) -> Cond:
    """One part holds; hints only where every branch promises the same field."""
    if len(parts) == 1:
        return parts[0]
    fns = tuple(p.fn for p in parts)
    hints = _union_hints(parts)

    def any_fn(ev: Event) -> bool:
        for f in fns:  # noqa: SIM110
            if f(ev):
                return True
        return False
    return Cond(any_fn, hints)


def _union_hints(parts: list[Cond]) -> list[Hint]:
    """Hints that hold for an any-of: a field every branch promises, values united.

    ``[{proto: tcp, dst_port: [21, 23]}, {proto: udp, dst_port: 69}]`` can only hold
    when dst_port is 21, 23 or 69 (and proto tcp or udp).
    """
    out: list[Hint] = []
    fields = set.intersection(*({h.field for h in p.hints} for p in parts))
    for name in sorted(fields):
        picked = []
        for p in parts:
            # within a branch every hint holds; the narrowest is enough
            mine = [h for h in p.hints if h.field == name]
            picked.append(min(mine, key=lambda h: len(h.exact) + len(h.nets) + len(h.domains)))
        # any branch's promise may be the one that holds: the union of all of them
        out.append(Hint(name, frozenset().union(*(h.exact for h in picked)),
                        tuple(r for h in picked for r in h.nets),
                        min(h.score for h in picked),
                        frozenset().union(*(h.domains for h in picked)), picked[0].get))
    return out
