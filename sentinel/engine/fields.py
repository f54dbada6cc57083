"""Event field names, their value types, and field references with transforms.

A rule names a field as ``qname``, a transformed field as ``qname|parent`` or
``qname|longest_label``, and a joined pair as ``dst_ip+dst_port`` (text
``"203.0.113.50:443"``, IPv6 bracketed) — a :class:`FieldRef` compiles such a
name once into a getter that returns the value, or None when it is absent.
"""

from __future__ import annotations

import ipaddress
import math
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sentinel.events import COMMON_FIELDS, KIND_FIELDS, Event

# Value types a field can have; a field not listed below is text.
INT, FLOAT, BOOL, LIST, IP, STR = "int", "float", "bool", "list", "ip", "str"

_TYPES: dict[str, str] = {
    **{f: INT for f in (
        "src_port", "dst_port", "type", "code", "bytes_out", "bytes_in", "bytes_out_delta",
        "bytes_in_delta", "packets", "ip_version", "ports", "hosts", "connections", "probes",
        "answered", "failures_before", "src_failures_before",
        "uid_before", "uid_after", "gid_before", "gid_after", "size_before", "size_after",
    )},
    "duration": FLOAT,
    **{f: BOOL for f in (
        "src_internal", "dst_internal", "is_response", "final", "is_executable", "is_setuid",
        "is_setgid", "offline", "probe", "midstream", "established", "hosts_capped",
        "success", "invalid_user", "removable",
    )},
    "path_tags": LIST,
    "changed": LIST,
    **{f: IP for f in ("src_ip", "dst_ip", "sender_ip", "target_ip", "redirected_ip")},
    # rcode is text (NOERROR, NXDOMAIN); modes are octal text ("0644"), so that an
    # unquoted 0644 in a rule (a YAML number) is reported instead of never matching
}

#: Fields whose few values make a poor index (used to rank index candidates).
LOW_CARDINALITY = frozenset({
    "kind", "host", "source", "proto", "direction", "src_internal", "dst_internal", "iface",
    "tcp_flags", "op", "qtype", "is_response", "rcode", "final", "offline", "is_executable",
    "is_setuid", "is_setgid", "changed", "type", "code", "success", "invalid_user",
    "removable", "method", "service", "subsystem", "devtype", "bus",
})

NUMERIC = (INT, FLOAT)


def field_type(name: str) -> str:
    """The value type of a plain field name (``str`` unless listed otherwise)."""
    return _TYPES.get(name, STR)


def fields_of(kinds: Iterable[str]) -> set[str]:
    """Every field name an event of any of ``kinds`` can carry."""
    out = set(COMMON_FIELDS)
    for k in kinds:
        out.update(KIND_FIELDS.get(k, ()))
    return out


# -- transforms -------------------------------------------------------------


def _labels(v: str) -> list[str]:
    return [p for p in v.split(".") if p]


# Second-level labels under a two-letter country code that are registries, not
# owners (go.id, co.uk, ac.id, ...): a heuristic in place of the public suffix list.
_SECOND_LEVEL = frozenset({"co", "com", "go", "ac", "or", "net", "org", "gov", "edu", "mil",
                           "sch", "web", "my", "biz", "ne", "gob", "gv"})


def registered_domain(v: str) -> str:
    """``a.b.evil.com`` -> ``evil.com``; ``x.kpu.go.id`` -> ``kpu.go.id`` (heuristic)."""
    labels = _labels(v)
    n = 2
    if len(labels) >= 3 and len(labels[-1]) == 2 and labels[-2] in _SECOND_LEVEL:
        n = 3
    return ".".join(labels[-n:])


def label_entropy(v: str) -> float:
    """Shannon entropy, in bits per character, of the longest DNS label (2 decimals):
    about 3.5 for words, 4 and more for base64 text."""
    label = max(_labels(v), key=len, default="")
    if not label:
        return 0.0
    n = len(label)
    counts: dict[str, int] = {}
    for ch in label:
        counts[ch] = counts.get(ch, 0) + 1
    return round(-sum(c / n * math.log2(c / n) for c in counts.values()), 2)


def parent_domain(v: str) -> str:
    """The name without its leftmost label: ``a.b.c`` -> ``b.c`` (``c`` stays ``c``)."""
    labels = _labels(v)
    return ".".join(labels[1:]) if len(labels) > 1 else ".".join(labels)


@dataclass(frozen=True)
class Transform:
    name: str
    takes: tuple[str, ...]  # value types it accepts
    gives: str
    fn: Callable[[Any], Any]
    doc: str


def remember_last(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``fn`` keeping its last answer for a text: the rules reading a transformed name
    (``qname|registered``) ask the same transform about one event's name in turn."""
    last: tuple[Any, Any] = (None, None)

    def remembered(v: Any) -> Any:
        nonlocal last
        seen = last  # one read: another thread's answer is whole, or not there
        if type(v) is str and seen[0] == v:
            return seen[1]
        got = fn(v)
        last = (v, got)
        return got
    return remembered


TRANSFORMS: dict[str, Transform] = {t.name: t for t in (
    Transform("lower", (STR, IP), STR, lambda v: str(v).lower(), "lower case"),
    Transform("len", (STR, IP, LIST), INT, len, "length in characters (or items)"),
    Transform("labels", (STR,), INT, remember_last(lambda v: len(_labels(str(v)))),
              "number of DNS labels"),
    Transform("longest_label", (STR,), INT,
              remember_last(lambda v: max((len(p) for p in _labels(str(v))), default=0)),
              "length of the longest DNS label"),
    Transform("parent", (STR,), STR, remember_last(lambda v: parent_domain(str(v))),
              "the name without its leftmost label"),
    Transform("registered", (STR,), STR, remember_last(lambda v: registered_domain(str(v))),
              "the registered domain (evil.com, kpu.go.id)"),
    Transform("entropy", (STR,), FLOAT, remember_last(lambda v: label_entropy(str(v))),
              "bits per character of the longest DNS label"),
)}


def join_endpoint(ip: Any, port: Any) -> str:
    """``ip:port`` text, the IPv6 address in brackets: ``[2001:db8::1]:443``."""
    text = str(ip)
    if ":" in text:
        return f"[{text}]:{port}"
    return f"{text}:{port}"


# -- compiled references ----------------------------------------------------


Getter = Callable[[Event], Any]


@dataclass(frozen=True)
class FieldRef:
    """A compiled field name: ``text`` as written, its value ``type``, a ``get``ter."""

    text: str
    type: str
    get: Getter
    plain: str | None  # the bare field name when there is no transform or join


class FieldError(ValueError):
    """A field reference that does not fit the rule's event kinds."""


def _base_getter(name: str) -> Getter:
    if name in COMMON_FIELDS:
        def common(ev: Event) -> Any:
            return ev.get(name)
        return common

    def get(ev: Event) -> Any:
        return ev.fields.get(name)
    return get


def _with_transforms(get: Getter, fns: list[Callable[[Any], Any]]) -> Getter:
    if not fns:
        return get

    def apply(v: Any) -> Any:
        for fn in fns:
            v = fn(v)
        return v

    def one(ev: Event) -> Any:
        v = get(ev)
        return None if v is None else apply(v)
    return one


def key_getter(refs: tuple[FieldRef, ...]) -> Callable[[Event], tuple[Any, ...]]:
    """One call that reads every field of a group key (list values become tuples)."""
    gets = tuple(r.get for r in refs)

    def hashable(v: Any) -> Any:
        return tuple(v) if type(v) is list else v
    if not gets:
        return lambda ev: ()
    if len(gets) == 1:
        (g,) = gets
        return lambda ev: (hashable(g(ev)),)
    return lambda ev: tuple(hashable(g(ev)) for g in gets)


def parse_ref(text: str, known: set[str], kinds_shown: str) -> FieldRef:
    """Compile ``text`` (``f``, ``f|t1|t2``, ``a+b``) or raise FieldError saying why."""
    parts = text.split("+")
    if len(parts) > 2:
        msg = f"{text!r} joins more than two fields; valid: one pair such as dst_ip+dst_port"
        raise FieldError(msg)
    refs = [_parse_one(p.strip(), known, kinds_shown) for p in parts]
    if len(refs) == 1:
        return refs[0]
    a, b = refs
    for r in refs:
        if r.type == LIST:
            msg = f"{r.text!r} is a list and cannot be joined"
            raise FieldError(msg)

    def joined(ev: Event) -> Any:
        x, y = a.get(ev), b.get(ev)
        if x is None or y is None:
            return None
        return join_endpoint(x, y)
    return FieldRef(text, STR, joined, None)


def _parse_one(text: str, known: set[str], kinds_shown: str) -> FieldRef:
    name, *tnames = [p.strip() for p in text.split("|")]
    if name not in known:
        valid = ", ".join(sorted(known))
        msg = f"unknown field {name!r} for {kinds_shown}; valid: {valid}"
        raise FieldError(msg)
    typ = field_type(name)
    base_type = typ
    fns: list[Callable[[Any], Any]] = []
    for tn in tnames:
        t = TRANSFORMS.get(tn)
        if t is None:
            msg = f"unknown transform {tn!r} in {text!r}; valid: {', '.join(TRANSFORMS)}"
            raise FieldError(msg)
        if typ not in t.takes:
            msg = f"transform {tn!r} does not apply to {typ_name(typ)} (in {text!r})"
            raise FieldError(msg)
        fns.append(t.fn)
        typ = t.gives
    if base_type == LIST and tnames and tnames[0] != "len":
        msg = f"only the len transform applies to the list field {name!r}"
        raise FieldError(msg)
    get = _with_transforms(_base_getter(name), fns)
    return FieldRef(text, typ, get, name if not tnames else None)


def typ_name(t: str) -> str:
    return {INT: "a number", FLOAT: "a number", BOOL: "a true/false field", LIST: "a list field",
            IP: "an address", STR: "text"}[t]


# -- addresses --------------------------------------------------------------


@lru_cache(maxsize=65536)
def ip_int(text: str) -> tuple[int, int] | None:
    """(version, integer) of an address text, or None; cached for hot paths."""
    # inet_pton is strict (no "10.1" shorthands) and several times faster than ipaddress
    try:
        if ":" in text:
            return 6, int.from_bytes(socket.inet_pton(socket.AF_INET6, text), "big")
        return 4, int.from_bytes(socket.inet_pton(socket.AF_INET, text), "big")
    except (OSError, ValueError, TypeError):
        return None


def normalize_ip(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None
