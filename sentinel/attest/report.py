"""The incident report: one self-contained HTML page for responders and overseers.

Inline CSS and inline SVG only: no scripts, no fonts, no images from
anywhere, so it opens the same on an air-gapped machine. A Content Security
Policy forbids scripts and remote loads besides. Alert content is attacker
influenced (query names, paths, titles built from them), so every value is
escaped where it is written, with :func:`html.escape`.
"""

from __future__ import annotations

import html
import json
from collections import Counter
from datetime import UTC, tzinfo
from typing import Any

from sentinel import __version__
from sentinel.alert import SEVERITIES, SEVERITY_RANK
from sentinel.attest import incidents
from sentinel.attest.chart import SEVERITY_COLOURS, timeline_svg, zoom
from sentinel.attest.evidence import Entry, Evidence, Recipient, shown
from sentinel.attest.sections import attest_section, delivery_table, n_text
from sentinel.events import format_time, visible
from sentinel.i18n import human_time, text

#: Alert times before this (2000-01-01) cannot come from a running sentinel: a
#: tampered record or a machine clock that was never set.
EARLIEST_PLAUSIBLE = 946684800.0
#: How far past the report's own time an alert may lie (clock drift between hosts).
FUTURE_SLACK = 86400.0

_STATUS_CLASS = {"delivered": "ok", "pending": "warn", "failed": "bad", "unknown": "warn",
                 "not routed": "muted"}

_CSS = """
:root { color-scheme: light; }
body { font: 14px/1.45 "DejaVu Sans", system-ui, sans-serif; color: #1c2529; margin: 0;
  background: #fff; }
main { max-width: 1200px; margin: 0 auto; padding: 16px 10px 40px; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 26px 0 8px; border-bottom: 2px solid #cfd8dc; padding-bottom: 3px; }
.meta { color: #455a64; margin: 0; }
.chips { display: flex; flex-wrap: wrap; gap: 8px; margin: 12px 0 0; }
.chip { border-radius: 4px; padding: 5px 10px; font-weight: bold; border: 1px solid; }
.ok { color: #1b5e20; background: #e8f5e9; border-color: #a5d6a7; }
.warn { color: #7a4f01; background: #fff8e1; border-color: #ffe082; }
.bad { color: #fff; background: #b71c1c; border-color: #b71c1c; }
.muted { color: #78909c; }
svg.timeline { display: block; max-width: 100%; height: auto; }
svg.timeline text { font: 11px "DejaVu Sans", sans-serif; fill: #37474f; }
svg.timeline text.win { fill: #2e7d32; font-weight: bold; }
table { border-collapse: collapse; width: 100%; margin: 6px 0; }
th { background: #263238; color: #fff; text-align: left; padding: 6px 7px; font-size: 13px; }
td { padding: 5px 7px; border-bottom: 1px solid #e0e0e0; vertical-align: top;
  overflow-wrap: anywhere; }
tbody tr:nth-child(even) td { background: #f5f7f8; }
.sev { display: inline-block; min-width: 62px; text-align: center; color: #fff;
  border-radius: 3px; padding: 1px 6px; font-size: 12px; font-weight: bold; }
.st { display: inline-block; margin: 1px 3px 1px 0; padding: 0 5px; border-radius: 3px;
  border: 1px solid; font-size: 12px; white-space: nowrap; }
details summary { cursor: pointer; color: #1565c0; white-space: nowrap; }
td.t { white-space: nowrap; }
pre { white-space: pre-wrap; overflow-wrap: anywhere; background: #f5f5f5; padding: 6px;
  margin: 4px 0; font: 12px/1.35 "DejaVu Sans Mono", monospace; }
code { font: 12px "DejaVu Sans Mono", monospace; overflow-wrap: anywhere; }
.num { text-align: right; }
footer { color: #78909c; margin-top: 30px; font-size: 12px; }
dl.routing { display: grid; grid-template-columns: max-content 1fr; gap: 0 8px; margin: 0; }
dl.routing dt { color: #546e7a; }
dl.routing dd { margin: 0; }
td.links a { display: inline-block; margin: 0 4px 2px 0; color: #1565c0; }
"""


def _e(value: object) -> str:
    # controls and bidi overrides (U+202E) in names are shown escaped, not rendered
    return html.escape(visible(str(value)), quote=True)


def _when(ts: float | None, none: str) -> str:
    return format_time(ts) if ts is not None else none


def _time_cell(text: str) -> str:
    """An RFC 3339 time on two lines (date, then time), escaped."""
    date, sep, rest = text.partition("T")
    return f"{_e(date)}<br>{_e(rest)}" if sep else _e(text)


def _sev_badge(sev: str, lang: str = "en") -> str:
    colour = SEVERITY_COLOURS.get(sev, SEVERITY_COLOURS["info"])
    text_colour = "#1c2529" if sev == "medium" else "#fff"
    return (f'<span class="sev" style="background:{colour};color:{text_colour}">'
            f"{_e(text(lang, sev))}</span>")


def _chip(ok: bool | None, text: str) -> str:
    cls = "ok" if ok else ("warn" if ok is None else "bad")
    return f'<span class="chip {cls}">{_e(text)}</span>'


def summary_line(event: dict[str, Any], lang: str = "en") -> str:
    """A short text of what happened, by event kind (unescaped; the caller escapes)."""
    g = event.get
    kind = str(g("kind", ""))

    def t(template: str, **values: object) -> str:
        # the values are inserted, never parsed: braces in a query name stay braces
        return text(lang, template).format(**values)

    if kind in ("net.connection", "net.flow"):
        return (f"{g('proto', '')} {g('src_ip')}:{g('src_port')} → {g('dst_ip')}:{g('dst_port')}"
                f" ({text(lang, str(g('direction', '')))})")
    if kind == "net.dns":
        return t("{qname} {qtype} from {src} to {dst}", qname=g("qname"), qtype=g("qtype", ""),
                 src=g("src_ip"), dst=g("dst_ip"))
    if kind == "net.arp":
        return t("{op} {ip} is at {mac}", op=g("op"), ip=g("sender_ip"), mac=g("sender_mac"))
    if kind == "net.icmp":
        return t("{src} → {dst} type {type} code {code}", src=g("src_ip"), dst=g("dst_ip"),
                 type=g("type"), code=g("code"))
    if kind.startswith("fim."):
        shown = str(g("path"))
        if g("dest_path"):
            shown += f" → {g('dest_path')}"
        changed = g("changed")
        if isinstance(changed, list) and changed:
            shown += f" ({t('changed')}: {', '.join(str(c) for c in changed)})"
        return shown
    return kind


def _shown_title(a: dict[str, Any], lang: str) -> object:
    """The alert's title in the report's language when the alert carries it."""
    texts = a.get("i18n")
    chosen = texts.get(lang) if isinstance(texts, dict) else None
    return chosen["title"] if isinstance(chosen, dict) and "title" in chosen \
        else a.get("title", "")


def _local_cell(entry: Entry, tz: tzinfo) -> str:
    """The alert's time in the display zone, on two lines (date, then time and zone)."""
    try:
        shown = human_time(entry.time, tz)
    except (OverflowError, ValueError, OSError):
        # a tampered time past what a date can hold in this zone: the UTC cell shows it
        return "?"
    date, _, rest = shown.partition(" ")
    return f"{_e(date)}<br>{_e(rest)}"



def implausible(entry: Entry, generated: float) -> bool:
    """True when the alert's time cannot be right: before 2000 or a day past the report.

    Such a record is still shown (it may be the trace of tampering), flagged, and
    kept out of the timeline, whose span it would otherwise stretch to centuries.
    """
    return entry.time < EARLIEST_PLAUSIBLE or entry.time > generated + FUTURE_SLACK


def _alert_row(entry: Entry, recipients: list[Recipient], generated: float, lang: str = "en",
               tz: tzinfo = UTC) -> str:
    a = entry.alert
    event = a.get("event") if isinstance(a.get("event"), dict) else {}
    assert isinstance(event, dict)
    statuses = []
    for r in recipients:
        status, detail = r.status(a)
        if status == "not routed":
            continue
        if status == "pending":
            n = r.pending.get(str(a.get("id", "")), 0)
            detail = n_text(lang, n, "{n} failed attempt so far", "{n} failed attempts so far")
        elif status == "unknown" and not r.readable:
            detail = r.said_problem.shown(lang)
        else:
            detail = text(lang, detail)
        statuses.append(f'<span class="st {_STATUS_CLASS[status]}" title="{_e(detail)}">'
                        f"{_e(r.name)}: {_e(text(lang, status))}</span>")
    none, record = _e(text(lang, "none")), _e(text(lang, "journal record"))
    mac = "" if entry.mac_ok is not False else \
        f' <span class="st bad">{_e(text(lang, "record fails its MAC"))}</span>'
    if implausible(entry, generated):
        mac += (' <span class="st bad implausible">'
                f'{_e(text(lang, "time implausible: tampered record or unset clock"))}</span>')
    body = json.dumps(a, indent=2, ensure_ascii=False, sort_keys=True)
    # line by line: the JSON's own line breaks stay, what its strings hold is escaped
    pre = "\n".join(_e(line) for line in body.split("\n"))
    return (
        f'<tr id="alert-{_e(a.get("id", ""))}">'
        f"<td class=t><code>{_time_cell(str(a.get('time', '')))}</code></td>"
        f"<td class=t><code>{_local_cell(entry, tz)}</code></td>"
        f"<td>{_sev_badge(str(a.get('severity', 'info')), lang)}</td>"
        f"<td><code>{_e(a.get('rule', ''))}</code></td>"
        f"<td>{_e(_shown_title(a, lang))}{mac}</td>"
        f"<td>{_e(summary_line(event, lang))}</td>"
        f'<td class="num">{_e(a.get("count", 1))}</td>'
        f"<td>{''.join(statuses) or f'<span class=muted>{none}</span>'}</td>"
        f"<td><details><summary>{_e(event.get('kind', 'event'))}</summary>"
        f"<p>id <code>{_e(a.get('id', ''))}</code>, {record} {entry.seq}</p>"
        f"<pre>{pre}</pre></details></td></tr>"
    )


def _alerts_table(ev: Evidence, lang: str = "en", tz: tzinfo = UTC) -> str:
    if not ev.entries:
        return f"<p>{_e(text(lang, 'No alerts in this window.'))}</p>"
    rows = "\n".join(_alert_row(e, ev.recipients, ev.generated, lang, tz) for e in ev.entries)
    heads = ("Time (UTC)", "Local time", "Severity", "Rule", "Title", "What", "Count",
             "Delivery", "Event")
    return ('<table id="alerts"><thead><tr>'
            + "".join(f"<th>{_e(text(lang, h))}</th>" for h in heads)
            + f"</tr></thead><tbody>\n{rows}\n</tbody></table>")


def _chips(ev: Evidence, lang: str) -> str:
    def t(english: str) -> str:
        return text(lang, english)

    j = ev.journal
    jtext = t("journal intact" if j.ok else "journal TAMPERED" if j.ok is False
              else "journal not checked")
    a = ev.attest
    if not a.attestations:
        atext, aok = t("no attestations"), None
    else:
        aok = a.ok
        atext = (n_text(lang, len(a.attestations), "{n} attestation valid",
                        "{n} attestations valid") if aok else
                 t("attestations NOT VALID") if aok is False else t("attestations not checked"))
    pending = sum(1 for r in ev.recipients for e in ev.entries if r.status(e.alert)[0]
                  in ("pending", "unknown"))
    failed = sum(1 for r in ev.recipients for e in ev.entries if r.status(e.alert)[0] == "failed")
    dtext = (n_text(lang, failed, "{n} delivery failed", "{n} deliveries failed") if failed
             else n_text(lang, pending, "{n} delivery pending", "{n} deliveries pending")
             if pending else t("every delivery done"))
    dok = False if failed else (None if pending else True)
    odd = sum(1 for e in ev.entries if implausible(e, ev.generated))
    otext = _chip(False, n_text(lang, odd, "{n} alert with an implausible time",
                                "{n} alerts with an implausible time")) if odd else ""
    return ('<div class="chips">' + _chip(j.ok, jtext) + _chip(aok, atext)
            + _chip(dok, dtext) + otext + "</div>")


def _window(ev: Evidence, lang: str = "en") -> str:
    if ev.since is None and ev.until is None:
        return text(lang, "every journaled alert")
    return (f"{text(lang, 'alerts from')} {_when(ev.since, text(lang, 'the first'))}"
            f" {text(lang, 'until')} {_when(ev.until, text(lang, 'now'))}")


def render(ev: Evidence, language: str = "en", tz: tzinfo = UTC,
           site_language: str | None = None) -> str:
    """The whole page; headings and titles in ``language``, local times in ``tz``.

    ``site_language`` is the one a recipient without its own ``language`` gets
    (the report's own language when not given).
    """
    def t(english: str) -> str:
        return _e(text(language, english))

    plotted = [e for e in ev.entries if not implausible(e, ev.generated)]
    start, end = zoom([e.time for e in plotted], ev.since, ev.until,
                      (ev.generated - 3600, ev.generated))
    # a --since or --until the reader typed may itself lie before 2000: the chart's
    # labels cannot go before year 1, so its span is clamped to plausible times
    start = min(max(start, EARLIEST_PLAUSIBLE), ev.generated + FUTURE_SLACK)
    end = min(max(end, EARLIEST_PLAUSIBLE), ev.generated + FUTURE_SLACK)
    chart = timeline_svg([(e.time, str(e.alert.get("severity", "info"))) for e in plotted],
                         start, max(end, start + 60), ev.windows,
                         tr=lambda english: text(language, english))
    by_sev = Counter(str(e.alert.get("severity", "info")) for e in ev.entries)
    worst = max(by_sev, key=lambda s: SEVERITY_RANK.get(s, 0), default=None)
    counts = ", ".join(f"{by_sev[s]} {text(language, s)}" for s in SEVERITIES
                       if by_sev[s]) or text(language, "none")
    title = f"{text(language, 'Incident report')}: {ev.host}"
    unreadable = ("; " + n_text(language, ev.journal.unreadable_lines,
                                "{n} line could not be read as a record",
                                "{n} lines could not be read as records")
                  if ev.journal.unreadable_lines else "")
    return f"""<!DOCTYPE html>
<html lang="{_e(language)}"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)}</title><style>{_CSS}</style></head>
<body><main>
<header><h1>{_e(title)}</h1>
<p class="meta">{t("Host")} <b>{_e(ev.host)}</b> · {_e(_window(ev, language))} ·
{t("generated")} {_e(format_time(ev.generated))} {t("by sentinel")}
{_e(__version__)}</p>
<p class="meta">{len(ev.entries)} {t("alerts")} ({_e(counts)}){"; " + t("most severe") + ": "
                                                          + t(worst) if worst else ""}</p>
{_chips(ev, language)}</header>
<section><h2>{t("Timeline")}</h2>
{chart}</section>
<section><h2>{t("Incidents and sources")}</h2>
{incidents.section(ev.entries, language, tz, lambda s: _sev_badge(s, language),
                   lambda e: implausible(e, ev.generated))}</section>
<section><h2>{t("Alerts")}</h2>
{_alerts_table(ev, language, tz)}</section>
<section><h2>{t("Delivery per recipient")}</h2>
{delivery_table(ev, language, site_language or language)}</section>
<section><h2>{t("Journal")}</h2>
<p>{_chip(ev.journal.ok, shown(ev.journal.said, language))}</p>
<p class="muted"><code>{_e(ev.journal.path)}</code>{unreadable}</p></section>
<section><h2>{t("Attestations")}</h2>
{attest_section(ev, language)}</section>
<footer>{t("Generated")} {_e(format_time(ev.generated))} ({_e(human_time(ev.generated, tz))})
{t("on")} {_e(ev.host)}. {t("Times are UTC, with local time beside them.")}
{t("This page has no scripts and loads nothing from the network.")}</footer>
</main></body></html>
"""
