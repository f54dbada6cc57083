"""The Alert: what the engine returns and every sink receives (CONTRACT §4)."""

from __future__ import annotations

import os
import threading
import time as _time
from dataclasses import dataclass, field
from typing import Any

from sentinel.events import format_time

SEVERITIES: tuple[str, ...] = ("critical", "high", "medium", "low", "info")
#: Higher is more severe: ``SEVERITY_RANK["critical"] == 4``.
SEVERITY_RANK: dict[str, int] = {s: len(SEVERITIES) - 1 - i for i, s in enumerate(SEVERITIES)}

_uuid_lock = threading.Lock()
_uuid_last = [0, 0]  # last millisecond, sequence within it


def new_alert_id(now: float | None = None) -> str:
    """A UUIDv7 (RFC 9562): time-ordered, unique, stable once assigned.

    Monotonic within a process even when many ids share one millisecond.
    """
    ms = int((now if now is not None else _time.time()) * 1000)
    with _uuid_lock:
        if ms <= _uuid_last[0]:
            ms = _uuid_last[0]
            _uuid_last[1] += 1
        else:
            _uuid_last[0] = ms
            _uuid_last[1] = int.from_bytes(os.urandom(2), "big") & 0x3FF
        seq = _uuid_last[1] & 0xFFF
    rand = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | seq << 64 | 0b10 << 62 | rand
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@dataclass(slots=True)
class Alert:
    """One alert. ``event`` is the JSON shape of the (first) matching event.

    ``extra`` carries what a rule kind adds: ``group`` for thresholds and
    suppression summaries, ``previous`` for change rules, ``description``.
    """

    rule: str
    title: str
    severity: str
    time: float
    host: str
    source: str
    tags: tuple[str, ...]
    event: dict[str, Any]
    count: int = 1
    id: str = field(default_factory=new_alert_id)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "rule": self.rule,
            "title": self.title,
            "severity": self.severity,
            "time": format_time(self.time),
            "host": self.host,
            "source": self.source,
            "tags": list(self.tags),
            "count": self.count,
        }
        out.update(self.extra)
        out["event"] = self.event
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Alert:
        from sentinel.events import parse_time

        known = {"id", "rule", "title", "severity", "time", "host", "source", "tags", "count",
                 "event"}
        return cls(
            rule=data["rule"],
            title=data["title"],
            severity=data["severity"],
            time=parse_time(data["time"]),
            host=data["host"],
            source=data["source"],
            tags=tuple(data.get("tags", ())),
            event=data.get("event", {}),
            count=int(data.get("count", 1)),
            id=data["id"],
            extra={k: v for k, v in data.items() if k not in known},
        )
