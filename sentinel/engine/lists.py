"""Value sets: the compiled form of a list (inline, or named in config or rule files).

A list holds site facts of one shape for each way a rule uses it — addresses
or networks, ports, ``"ip:port"`` pairs, MACs, domains: :func:`item_problem`
says why an item does not fit a use, and the rule compiler reports it at the
item (a silently dropped entry would blind a rule). Compiled for a field,
addresses and networks become sorted ranges searched by bisection, ``ip:port``
items match a joined ``dst_ip+dst_port`` (the address part may be a CIDR),
everything else becomes a hash set.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from bisect import bisect_right
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sentinel.engine.fields import (
    BOOL,
    FLOAT,
    INT,
    IP,
    LIST,
    STR,
    FieldRef,
    ip_int,
    join_endpoint,
    remember_last,
)

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


# -- the shapes a list item may need to have -------------------------------------

NETWORK, PORT, WHOLE, NUMBER, TRUTH, ENDPOINT, MAC, DOMAIN, TEXT = (
    "network", "port", "whole", "number", "truth", "endpoint", "mac", "domain", "text")

#: what a valid item of each shape looks like, for messages
SHAPE_VALID: dict[str, str] = {
    NETWORK: "an address or a network, e.g. 10.20.0.10, 10.20.0.0/24, 2001:db8::/48",
    PORT: "a port number 0-65535, e.g. 443",
    WHOLE: "a whole number",
    NUMBER: "a number",
    TRUTH: "true or false",
    ENDPOINT: "\"address:port\" (the address may be a network), e.g. \"203.0.113.50:443\","
              " \"10.20.0.0/24:53\", \"[2001:db8::1]:443\"",
    MAC: "a MAC address in lower case, e.g. \"02:00:00:00:00:10\" (quote it)",
    DOMAIN: "a domain name, e.g. kpu.go.id",
    TEXT: "text (quote values YAML would read as numbers or true/false)",
}

_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_LABEL = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$")


#: a list name as the config accepts it; anything else given to cidr is a literal
LIST_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]*$")
_PORTS = frozenset({"src_port", "dst_port"})
_MACS = frozenset({"sender_mac", "target_mac", "src_mac", "dst_mac"})


def shape_of(ref: FieldRef, positive: str) -> str:
    """The shape every item of a list must have to be used by ``ref`` with the operator
    ``positive`` (``in`` for ``not_in``: a test and its negation take the same items)."""
    if positive == "cidr" or ref.type == IP:
        return NETWORK
    if positive == "domain_in":
        return DOMAIN
    if ref.type == INT:
        return PORT if ref.plain in _PORTS else WHOLE
    if ref.type == FLOAT:
        return NUMBER
    if ref.type == BOOL:
        return TRUTH
    if ref.plain in _MACS:
        return MAC
    parts = [p.strip() for p in ref.text.split("+")]
    if len(parts) == 2 and parts[0].endswith("_ip") and parts[1].endswith("_port"):
        return ENDPOINT
    return TEXT


def network_problem(item: Any) -> str | None:
    """Why ``item`` is not an address or network (strict: no host bits), or None."""
    if not isinstance(item, str):
        return f"{item!r} is not an address or network"
    text = item.strip()
    try:
        ipaddress.ip_network(text, strict=True)
    except ValueError:
        pass
    else:
        return None
    addr, slash, prefix = text.partition("/")
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return f"{item!r} is not an address or network"
    if not slash:
        return f"{item!r} is not an address or network"
    if not prefix.isdigit() or int(prefix) > ip.max_prefixlen:
        return (f"{item!r} is not a valid network: the prefix length of an IPv{ip.version}"
                f" network is a number from /0 to /{ip.max_prefixlen}")
    # a network with host bits set is refused rather than normalised: the writer
    # may have meant the network or the single host, and the two differ widely
    net = ipaddress.ip_network(text, strict=False)
    return (f"{item!r} has host bits set; write the network {net} or the single address"
            f" {ip}")


def domain_problem(item: Any, wildcard: bool) -> str | None:
    """Why ``item`` is not a domain name (lower case; ``*.`` allowed with ``wildcard``)."""
    if not isinstance(item, str):
        return f"{item!r} is not a domain name"
    d = item.strip()
    if wildcard and d.startswith("*."):
        d = d[2:]
    d = d.removesuffix(".")
    labels = d.lower().split(".")
    if not d or len(d) > 253 or not all(_LABEL.match(lab) for lab in labels):
        return f"{item!r} is not a domain name"
    if d != d.lower():
        return f"{item!r}: write domain names in lower case, as sentinel writes qname"
    return None


def item_problem(shape: str, item: Any) -> str | None:
    """Why ``item`` does not have ``shape`` (one of the shape names above), or None."""
    if shape == NETWORK:
        return network_problem(item)
    if shape in (PORT, WHOLE):
        n = _number(item)
        if n is None or isinstance(n, float):
            return f"{item!r} is not a whole number"
        if shape == PORT and not 0 <= n <= 65535:
            return f"{item!r} is not a port (0-65535)"
        return None
    if shape == NUMBER:
        return None if _number(item) is not None else f"{item!r} is not a number"
    if shape == TRUTH:
        return None if isinstance(item, bool) else f"{item!r} is not true or false"
    if not isinstance(item, str):
        return f"YAML read {item!r} here, which is not text"
    if shape == ENDPOINT:
        text = item.strip()
        host = text[1:].partition("]:")[0] if text.startswith("[") else text.rpartition(":")[0]
        if _endpoint(text) is None:
            return f"{item!r} is not \"address:port\""
        return network_problem(host)
    if shape == MAC:
        if _MAC.match(item.strip().lower()) is None:
            return f"{item!r} is not a MAC address"
        if item != item.lower():
            return f"{item!r}: write MAC addresses in lower case, as sentinel writes them"
        return None
    if shape == DOMAIN:
        return domain_problem(item, wildcard=True)
    return None


def normalize_domain(item: str) -> str:
    d = item.strip().lower()
    if d.startswith("*."):
        d = d[2:]
    return d.strip(".")


def domain_matcher(domains: Iterable[str]) -> Callable[[Any], bool]:
    """True for a name equal to a listed domain or under it, on a dot boundary.

    Rules naming the same domains share one matcher, which keeps its last answer:
    the DNS rules of a pack ask it about the same name, one after the other.
    """
    return _domain_matcher(frozenset(normalize_domain(d) for d in domains))


@functools.lru_cache(maxsize=256)
def _domain_matcher(names: frozenset[str]) -> Callable[[Any], bool]:
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
    return remember_last(under)
