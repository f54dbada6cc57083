"""Helpers for engine tests: write rule files, load them, build events."""

from __future__ import annotations

import textwrap
from datetime import datetime
from pathlib import Path
from typing import Any

from sentinel.config import Window
from sentinel.engine import Engine, RuleSet, load_rule_files
from sentinel.events import SOURCES, Event
from sentinel.located import Mark


def write(folder: Path, text: str, name: str = "rules.yaml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def windows(*spans: tuple[str, str]) -> tuple[Window, ...]:
    return tuple(Window(datetime.fromisoformat(a), datetime.fromisoformat(b)) for a, b in spans)


def load(folder: Path, text: str, lists: dict[str, tuple[Any, ...]] | None = None,
         schedules: dict[str, tuple[Window, ...]] | None = None,
         name: str = "rules.yaml") -> RuleSet:
    path = write(folder, text, name)
    marks = {n: Mark("config.yaml", i + 1, 3) for i, n in enumerate(lists or {})}
    return load_rule_files([path], lists or {}, marks, schedules or {}, origin="config.yaml")


def ev(kind: str, t: float = 0.0, **fields: Any) -> Event:
    return Event(kind, t, "tally-01", SOURCES[kind], fields)


def conn(t: float = 0.0, **fields: Any) -> Event:
    base: dict[str, Any] = {"proto": "tcp", "src_ip": "10.20.0.50", "src_port": 40000,
                            "dst_ip": "10.20.0.10", "dst_port": 443, "direction": "inbound",
                            "src_internal": True, "dst_internal": True, "iface": "eth0",
                            "tcp_flags": "S"}
    base.update(fields)
    return Event("net.connection", t, "tally-01", "network", base)


def fired(engine: Engine, *events: Event) -> list[str]:
    """The rule ids of every alert the events raise, in order."""
    return [a.rule for e in events for a in engine.process(e)]


def rule(match: str, kind: str = "net.connection", extra: str = "", rid: str = "r") -> str:
    """A one-rule file; ``match`` and ``extra`` are YAML indented for a rule body."""
    body = textwrap.indent(textwrap.dedent(match).strip("\n"), "      ")
    more = textwrap.indent(textwrap.dedent(extra).strip("\n"), "    ") if extra else ""
    return (f"rules:\n  - id: {rid}\n    title: t\n    severity: high\n    kind: {kind}\n"
            f"    match:\n{body}\n{more}\n")
