"""Rule examples: events a rule must match, and events it must not.

An example is one event (a mapping with ``kind:``), a sequence
``{events: [...]}`` (for thresholds and change rules), or a generated run
``{repeat: N, every: 1s, event: {...}}`` where ``{i}`` in a text value becomes
1..N (a port scan in one line). Events without a ``time`` are spaced one
``every`` (default 1s) apart from the POSIX epoch.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sentinel.engine.fields import BOOL, FLOAT, INT, IP, LIST, STR, field_type, fields_of, ip_int
from sentinel.events import KIND_FIELDS, SOURCES, Event, parse_time
from sentinel.located import Checker, Mark, Node, type_name

_FORMS = ("an example is an event (a mapping with kind:), {events: [event, ...]}, or"
          " {repeat: N, every: 1s, event: {...}}")


@dataclass(frozen=True)
class Example:
    """Events fed to a fresh engine holding only the rule: ``expect`` an alert or not."""

    events: tuple[Event, ...]
    expect: bool
    mark: Mark
    label: str


def read_examples(c: Checker, node: Node) -> tuple[Example, ...]:
    """The ``examples:`` mapping of a rule; problems go to ``c``."""
    m = c.mapping(node, "examples", ("match", "no_match"))
    if m is None:
        return ()
    out: list[Example] = []
    for key in ("match", "no_match"):
        if key not in m or (items := c.seq(m[key], f"examples.{key}")) is None:
            continue
        for i, item in enumerate(items):
            where = f"examples.{key}[{i}]"
            events = _example(c, item, where)
            if events:
                out.append(Example(tuple(events), key == "match", item.mark, where))
    return tuple(out)


def _example(c: Checker, node: Node, where: str) -> list[Event] | None:
    v = node.value
    if not isinstance(v, dict):
        c.error(node.mark, f"{where}: {_FORMS}; got {type_name(v)}")
        return None
    if "kind" in v:
        ev = _event(c, node, where, 0.0, None)
        return [ev] if ev else None
    if "events" in v:
        m = c.mapping(node, where, ("events", "every"))
        every = c.duration(m["every"], f"{where}.every") if m and "every" in m else 1.0
        items = c.seq(v["events"], f"{where}.events")
        if items is None or every is None:
            return None
        if not items:
            c.error(v["events"].mark, f"{where}.events is empty")
            return None
        evs = [_event(c, n, f"{where}.events[{k}]", k * every, None) for k, n in enumerate(items)]
        return None if any(e is None for e in evs) else [e for e in evs if e is not None]
    if "repeat" in v:
        m = c.mapping(node, where, ("repeat", "every", "event"), required=("repeat", "event"))
        if m is None or "event" not in m:
            return None
        n = c.integer(m["repeat"], f"{where}.repeat", 1, 10000)
        every = c.duration(m["every"], f"{where}.every") if "every" in m else 1.0
        if n is None or every is None:
            return None
        first = _event(c, m["event"], f"{where}.event", 0.0, 1)
        if first is None:
            return None
        base = first.time
        out = [first]
        for k in range(2, n + 1):
            ev = _event(c, m["event"], f"{where}.event", 0.0, k)
            if ev is None:
                return None
            ev.time = base + (k - 1) * every
            out.append(ev)
        return out
    c.error(node.mark, f"{where}: {_FORMS}")
    return None


def _event(c: Checker, node: Node, where: str, default_time: float,
           index: int | None) -> Event | None:
    if not isinstance(node.value, dict):
        c.error(node.mark, f"{where}: an event is a mapping with kind: and its fields, got"
                f" {type_name(node.value)}")
        return None
    kind_node = node.value.get("kind")
    if kind_node is None:
        c.error(node.mark, f"{where}: the event has no kind; valid: " + ", ".join(KIND_FIELDS))
        return None
    kind = kind_node.value
    if not isinstance(kind, str) or kind not in KIND_FIELDS:
        shown = repr(kind) if isinstance(kind, str) else type_name(kind_node.plain())
        c.error(kind_node.mark, f"{where}: unknown event kind {shown}; valid: "
                + ", ".join(KIND_FIELDS))
        return None
    known = fields_of([kind])
    fields: dict[str, Any] = {}
    t = default_time
    host = "example"
    ok = True
    for key, vnode in node.value.items():
        kmark = node.key_marks[key]
        if key == "kind":
            continue
        if key not in known:
            c.error(kmark, f"{where}: {kind} has no field {key!r}; valid: "
                    + ", ".join(sorted(known)))
            ok = False
            continue
        value = vnode.plain()
        if index is not None and isinstance(value, str) and "{i}" in value:
            value = value.replace("{i}", str(index))
            if field_type(key) in (INT, FLOAT) and value.isdigit():
                value = int(value)
        if key == "time":
            parsed = _time(value)
            if parsed is None:
                c.error(vnode.mark, f"{where}.time: {value!r} is not a time; valid: RFC 3339"
                        " with an offset such as \"2024-02-14T13:05:00+07:00\", or seconds")
                ok = False
            else:
                t = parsed
            continue
        if key == "host":
            host = str(value)
            continue
        if key == "source":
            continue
        problem = _type_problem(key, value)
        if problem:
            c.error(vnode.mark, f"{where}.{key}: {problem}")
            ok = False
            continue
        fields[key] = value
    if not ok:
        return None
    return Event(kind, t, host, SOURCES[kind], fields)


def _time(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, datetime):
        return value.timestamp() if value.tzinfo is not None else None
    if isinstance(value, str):
        try:
            return parse_time(value)
        except ValueError:
            return None
    return None


def _type_problem(key: str, value: Any) -> str | None:
    t = field_type(key)
    if value is None:
        return "no value; leave the field out instead"
    if t == INT and (isinstance(value, bool) or not isinstance(value, int)):
        return f"must be a whole number, got {type_name(value)}"
    if t == FLOAT and (isinstance(value, bool) or not isinstance(value, int | float)):
        return f"must be a number, got {type_name(value)}"
    if t == BOOL and not isinstance(value, bool):
        return f"must be true or false, got {type_name(value)}"
    if t == LIST and not (isinstance(value, list) and all(isinstance(x, str) for x in value)):
        return f"must be a list of text, got {type_name(value)}"
    if t == IP and (not isinstance(value, str) or ip_int(value) is None):
        return f"{value!r} is not an IP address"
    if t == STR and not isinstance(value, str):
        return f"must be text, got {type_name(value)}; quote it"
    return None
