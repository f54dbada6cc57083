"""Alerts sentinel raises about itself: built here, not by the rule engine.

They do not go through the rule pack, so nobody can switch them off by editing
a rule file (which is one of the things they report). Each has a fixed rule
id, listed in rules/README.md; its event has ``kind`` ``sentinel.<what>`` and
``source`` ``sentinel``.
"""

from __future__ import annotations

from typing import Any

from sentinel.alert import Alert
from sentinel.config import Config
from sentinel.events import format_time
from sentinel.i18n import alert_texts

SOURCE = "sentinel"
TAG = "sentinel-self"

RELOAD_CHANGED = "sentinel-config-changed"
ADDRESSES_CHANGED = "sentinel-addresses-changed"
BASELINE_MISSING = "sentinel-baseline-missing"
JOURNAL_TRUNCATED = "sentinel-journal-truncated"
CAPTURE_QUIET = "sentinel-capture-quiet"
CAPTURE_RESUMED = "sentinel-capture-resumed"
MOUNT_OVER_WATCHED = "sentinel-mount-over-watched"
HEARTBEAT = "sentinel-heartbeat"

#: Every rule id above with its usual severity, for the metrics' zero series.
RULES: dict[str, str] = {
    RELOAD_CHANGED: "high",
    ADDRESSES_CHANGED: "info",
    BASELINE_MISSING: "critical",
    JOURNAL_TRUNCATED: "critical",
    CAPTURE_QUIET: "high",
    CAPTURE_RESUMED: "info",
    MOUNT_OVER_WATCHED: "critical",
}


def in_schedule(config: Config, now: float) -> list[str]:
    """The named schedules with a window open at ``now``."""
    return sorted(name for name, wins in config.schedules.items()
                  if any(w.contains(now) for w in wins))


def self_alert(config: Config, rule: str, title: str, severity: str, now: float,
               kind: str, description: str, indonesian: tuple[str, str],
               **fields: Any) -> Alert:
    """An alert about sentinel itself; ``fields`` go into its event.

    ``title`` and ``description`` are English, ``indonesian`` the same two in
    Bahasa Indonesia: the alert shows the site's language and carries both.
    """
    event: dict[str, Any] = {"kind": f"sentinel.{kind}", "time": format_time(now),
                             "host": config.host.name, "source": SOURCE, **fields}
    shown, extra = alert_texts(config.language,
                               {"en": (title, description), "id": indonesian})
    return Alert(rule=rule, title=shown, severity=severity, time=now, host=config.host.name,
                 source=SOURCE, tags=(TAG,), event=event, extra=extra)
