"""Value sets: the compiled form of a list (inline, or named in config or rule files).

One named list may hold site facts of several shapes — addresses, CIDRs,
ports, domains, ``"ip:port"`` pairs. Compiled for a field, a list keeps the
items that fit the field's type: addresses and networks become sorted ranges
searched by bisection, ``ip:port`` items match a joined ``dst_ip+dst_port``
(the address part may be a CIDR), everything else becomes a hash set.
"""

from __future__ import annotations

import ipaddress
from bisect import bisect_right
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sentinel.engine.fields import BOOL, FLOAT, INT, IP, LIST, STR, ip_int, join_endpoint

Range = tuple[int, int, int]  # version, first, last


def parse_net(item: Any) -> Range | None:
    """An address or CIDR as (version, first, last), or None."""
    if not isinstance(item, str):
        return None
    try:
        net = ipaddress.ip_network(item.strip(), strict=False)
    except ValueError:
        return None
    return net.version, int(net.network_address), int(net.broadcast_address)


class NetSet:
    """Address ranges of both IP versions; membership by bisection."""

    def __init__(self, ranges: Iterable[Range]) -> None:
        by_version: dict[int, list[tuple[int, int]]] = {4: [], 6: []}
        for v, lo, hi in ranges:
            by_version[v].append((lo, hi))
        self._starts: dict[int, list[int]] = {}
        self._ends: dict[int, list[int]] = {}
        for v, items in by_version.items():
            merged: list[list[int]] = []
            for lo, hi in sorted(items):
                if merged and lo <= merged[-1][1] + 1:
                    merged[-1][1] = max(merged[-1][1], hi)
                else:
                    merged.append([lo, hi])
            self._starts[v] = [m[0] for m in merged]
            self._ends[v] = [m[1] for m in merged]

    def __bool__(self) -> bool:
        return any(self._starts.values())

    def has(self, text: Any) -> bool:
        if not isinstance(text, str):
            return False
        parsed = ip_int(text)
        if parsed is None:
            return False
        v, n = parsed
        starts = self._starts[v]
        i = bisect_right(starts, n) - 1
        return i >= 0 and n <= self._ends[v][i]


def _endpoint(item: Any) -> tuple[Range, int] | None:
    """``"10.0.0.1:443"``, ``"10.20.0.0/24:53"``, ``"[2001:db8::1]:443"`` -> (range, port)."""
    if not isinstance(item, str):
        return None
    text = item.strip()
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
    else:
        host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        return None
    net = parse_net(host)
    return (net, int(port)) if net else None


def _number(item: Any) -> int | float | None:
    if isinstance(item, bool):
        return None
    if isinstance(item, int | float):
        return item
    if isinstance(item, str) and item.strip().isdigit():
        return int(item)
    return None


@dataclass(frozen=True)
class ValueSet:
    """A compiled list for one field type: ``has(value)`` is membership."""

    has: Callable[[Any], bool]
    exact: frozenset[Any]  # hashable values an index may use
    nets: tuple[Range, ...]  # address ranges an index may use
    size: int
    #: True when ``has`` is exactly "in exact" (or "in nets" for addresses), so an
    #: index built from them finds every value that matches
    indexable: bool


def build_value_set(items: Sequence[Any], typ: str) -> tuple[ValueSet, list[int]]:
    """Compile ``items`` for a field of type ``typ``; also return the indexes that do not fit."""
    exact: set[Any] = set()
    nets: list[Range] = []
    endpoints: dict[int, list[Range]] = {}
    bad: list[int] = []
    for i, item in enumerate(items):
        if typ in (INT, FLOAT):
            n = _number(item)
            if n is None:
                bad.append(i)
            else:
                exact.add(n)
        elif typ == BOOL:
            if isinstance(item, bool):
                exact.add(item)
            else:
                bad.append(i)
        elif typ == IP:
            r = parse_net(item)
            if r is None:
                bad.append(i)
            else:
                nets.append(r)
        elif not isinstance(item, str):
            bad.append(i)
        else:  # text, items of list fields, joined ip:port pairs
            text = item
            ep = _endpoint(text)
            if ep is not None:
                (v, lo, hi), port = ep
                if lo == hi:
                    addr = str(ipaddress.ip_address(lo))
                    exact.add(join_endpoint(addr, port))
                else:
                    endpoints.setdefault(port, []).append((v, lo, hi))
            exact.add(text)
    exact_f = frozenset(exact)
    has = _membership(typ, exact_f, NetSet(nets), {p: NetSet(r) for p, r in endpoints.items()})
    size = len(items) - len(bad)
    indexable = typ != FLOAT and not endpoints
    return ValueSet(has, exact_f, tuple(nets), size, indexable), bad


def _membership(
    typ: str, exact: frozenset[Any], nets: NetSet, endpoints: dict[int, NetSet]
) -> Callable[[Any], bool]:
    if typ == IP:
        return nets.has
    if typ in (STR, LIST) and endpoints:
        def str_has(v: Any) -> bool:
            if v in exact:
                return True
            ep = _endpoint(v)
            if ep is None:
                return False
            (_v, lo, _hi), port = ep
            ns = endpoints.get(port)
            return ns is not None and ns.has(str(ipaddress.ip_address(lo)))
        return str_has

    def plain_has(v: Any) -> bool:
        try:
            return v in exact
        except TypeError:
            return False
    return plain_has


def normalize_domain(item: str) -> str:
    d = item.strip().lower()
    if d.startswith("*."):
        d = d[2:]
    return d.strip(".")


def domain_matcher(domains: Iterable[str]) -> Callable[[Any], bool]:
    """True for a name equal to a listed domain or under it, on a dot boundary."""
    names = frozenset(normalize_domain(d) for d in domains)

    def under(v: Any) -> bool:
        if not isinstance(v, str):
            return False
        v = v.lower().rstrip(".")
        if v in names:
            return True
        i = v.find(".")
        while i != -1:
            if v[i + 1:] in names:
                return True
            i = v.find(".", i + 1)
        return False
    return under
