"""The report's incident groups: the alerts of one actor, together.

A responder asks "who did what" before "what happened at 13:05": a scan from
one address, a run of changes to one file. Alerts are grouped by the
``incident`` key a rule gives them (``scan:10.20.5.7``), else by the event's
source address (network) or path (files), else by rule. Every value is
attacker influenced and escaped where it is written.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import tzinfo
from typing import Any

from sentinel.alert import SEVERITY_RANK
from sentinel.attest.evidence import Entry
from sentinel.events import visible
from sentinel.i18n import human_time, text


def _e(value: object) -> str:
    # controls and bidi overrides (U+202E) in names are shown escaped, not rendered
    return html.escape(visible(str(value)), quote=True)


@dataclass
class Group:
    """The alerts of one incident or source, in time order."""

    kind: str  # incident | source | file | rule: what the key is
    key: str
    entries: list[Entry] = field(default_factory=list)

    @property
    def worst(self) -> str:
        return max((str(e.alert.get("severity", "info")) for e in self.entries),
                   key=lambda s: SEVERITY_RANK.get(s, 0))

    @property
    def rules(self) -> list[str]:
        return sorted({str(e.alert.get("rule", "")) for e in self.entries})


def group_key(alert: dict[str, Any]) -> tuple[str, str]:
    """``(kind, key)`` of the group an alert belongs to."""
    incident = alert.get("incident")
    if isinstance(incident, str) and incident:
        return "incident", incident
    event = alert.get("event")
    event = event if isinstance(event, dict) else {}
    kind = str(event.get("kind", ""))
    if kind.startswith("net.") and event.get("src_ip") is not None:
        return "source", str(event["src_ip"])
    if kind == "net.arp" and event.get("sender_ip") is not None:
        return "source", str(event["sender_ip"])
    if kind.startswith("fim.") and event.get("path") is not None:
        return "file", str(event["path"])
    return "rule", str(alert.get("rule", ""))


def groups(entries: list[Entry]) -> list[Group]:
    """Groups in the time order of their first alert; ``entries`` already in time order."""
    found: dict[tuple[str, str, str], Group] = {}
    for e in sorted(entries, key=lambda e: (e.time, e.seq)):
        kind, key = group_key(e.alert)
        event = e.alert.get("event")
        # two file names that differ only in bytes that are not UTF-8 share their text;
        # the base64 twin the event carries for such a name tells them apart
        twin = str(event.get("path_b64") or "") if kind == "file" and isinstance(event, dict) \
            else ""
        found.setdefault((kind, key, twin), Group(kind, key)).entries.append(e)
    return list(found.values())


def _times(entry: Entry, tz: tzinfo) -> str:
    """UTC as journaled, and local time beside it, on two lines."""
    utc = _e(entry.alert.get("time", ""))
    try:
        local = _e(human_time(entry.time, tz))
    except (OverflowError, ValueError, OSError):
        local = "?"  # a tampered time no date in this zone can hold
    return f"<code>{utc}</code><br><code>{local}</code>"


#: Links shown per group: a flood of thousands of alerts from one source must not
#: bury the table in numbers; the first ones and the last one are what a reader opens.
MAX_LINKS = 12


def _links(entries: list[Entry], lang: str) -> str:
    def link(i: int, e: Entry) -> str:
        return f'<a href="#alert-{_e(e.alert.get("id", ""))}">{i}</a>'

    numbered = list(enumerate(entries, 1))
    if len(numbered) <= MAX_LINKS:
        return " ".join(link(i, e) for i, e in numbered)
    hidden = len(numbered) - MAX_LINKS
    more = text(lang, "… {n} more").format(n=hidden)
    return (" ".join(link(i, e) for i, e in numbered[:MAX_LINKS - 1])
            + f' <span class="muted">{_e(more)}</span> ' + link(*numbered[-1]))


_KIND_TEXT = {"incident": "incident", "source": "source address", "file": "file",
              "rule": "rule"}


def section(entries: list[Entry], lang: str, tz: tzinfo,
            badge: Callable[[str], str], implausible: Callable[[Entry], bool]) -> str:
    """The incidents table: one row per group, linking to its alert rows.

    ``badge`` renders a severity, ``implausible`` tells a flagged entry (both from
    the report, so the two tables look and judge alike).
    """
    if not entries:
        return f"<p>{_e(text(lang, 'No alerts in this window.'))}</p>"
    rows = []
    for n, g in enumerate(groups(entries), 1):
        links = _links(g.entries, lang)
        odd = sum(1 for e in g.entries if implausible(e))
        flag = (f' <span class="st bad implausible">{_e(text(lang, "time implausible"))}'
                "</span>" if odd else "")
        rows.append(
            f'<tr id="incident-{n}"><td>{_e(text(lang, _KIND_TEXT[g.kind]))}<br>'
            f"<b><code>{_e(g.key)}</code></b>{flag}</td>"
            f'<td class="num">{len(g.entries)}</td><td>{badge(g.worst)}</td>'
            f"<td class=t>{_times(g.entries[0], tz)}</td>"
            f"<td class=t>{_times(g.entries[-1], tz)}</td>"
            f"<td>{'<br>'.join(f'<code>{_e(r)}</code>' for r in g.rules)}</td>"
            f'<td class="links">{links}</td></tr>')
    heads = ("Incident or source", "Alerts", "Most severe", "First (UTC / local)",
             "Last (UTC / local)", "Rules", "Alert rows")
    return ('<table id="incidents"><thead><tr>'
            + "".join(f"<th>{_e(text(lang, h))}</th>" for h in heads)
            + f"</tr></thead><tbody>\n{''.join(rows)}\n</tbody></table>")
