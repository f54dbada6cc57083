"""The report's delivery and attestation tables, in the report's language.

Every value is escaped where it is written: recipient names and routing come
from the config, attestation fields from files in the state folder that an
intruder may have edited.
"""

from __future__ import annotations

import html
from collections import Counter

from sentinel.attest.evidence import Evidence, Recipient
from sentinel.events import visible
from sentinel.i18n import text

_COUNTED = ("delivered", "pending", "failed", "not routed", "unknown")


def _e(value: object) -> str:
    # controls and bidi overrides (U+202E) in names are shown escaped, not rendered
    return html.escape(visible(str(value)), quote=True)


def n_text(lang: str, n: int, one: str, many: str) -> str:
    """``one`` or ``many`` (templates with ``{n}``) in ``lang``, filled with ``n``."""
    return text(lang, one if n == 1 else many).format(n=n)


def _routing(r: Recipient, lang: str, site_language: str) -> str:
    """Everything that decides what this recipient takes, none of it left out."""
    hook = r.hook

    def names(values: tuple[str, ...]) -> str:
        return (", ".join(f"<code>{_e(v)}</code>" for v in values) if values
                else f'<span class="muted">{_e(text(lang, "any"))}</span>')

    def nothing(values: tuple[str, ...]) -> str:
        return (", ".join(f"<code>{_e(v)}</code>" for v in values) if values
                else f'<span class="muted">{_e(text(lang, "none"))}</span>')

    language = hook.language or site_language
    items = [
        ("format", _e(hook.format)),
        ("min severity", _e(text(lang, hook.min_severity))),
        ("include tags", names(hook.include_tags)),
        ("exclude tags", nothing(hook.exclude_tags)),
        ("include rules", names(hook.include_rules)),
        ("exclude rules", nothing(hook.exclude_rules)),
        ("language", _e(language) + ("" if hook.language else
                                     f' <span class="muted">({_e(text(lang, "the site"))})'
                                     "</span>")),
    ]
    return '<dl class="routing">' + "".join(
        f"<dt>{_e(text(lang, k))}</dt><dd>{v}</dd>" for k, v in items) + "</dl>"


def delivery_table(ev: Evidence, lang: str, site_language: str) -> str:
    if not ev.recipients:
        return f"<p>{_e(text(lang, NO_RECIPIENTS))}</p>"
    rows = []
    for r in ev.recipients:
        c = Counter(r.status(e.alert)[0] for e in ev.entries)
        note = "" if r.readable else \
            f'<br><span class="muted">{_e(r.said_problem.shown(lang))}</span>'
        rows.append(
            f"<tr><td><b>{_e(r.name)}</b><br><code>{_e(r.url)}</code>{note}</td>"
            f"<td>{_routing(r, lang, site_language)}</td>"
            + "".join(f'<td class="num">{c.get(k, 0)}</td>' for k in _COUNTED)
            + "</tr>")
    heads = ("Recipient", "Routing", "Delivered", "Pending", "Failed", "Not routed", "Unknown")
    return ('<table id="delivery"><thead><tr>'
            + "".join(f"<th>{_e(text(lang, h))}</th>" for h in heads)
            + f"</tr></thead><tbody>{''.join(rows)}</tbody></table>"
            f'<p class="muted">{_e(text(lang, DELIVERY_NOTE))}</p>')


NO_RECIPIENTS = "No webhook recipients are configured: alerts are in the journal only."
DELIVERY_NOTE = ("Delivered: taken by the recipient under the current routing and no longer"
                 " in its spool. Pending: still being retried. Failed: refused for good (kept"
                 " in the spool's dead-letter table).")


def attest_section(ev: Evidence, lang: str) -> str:
    def t(english: str) -> str:
        return _e(text(lang, english))

    st = ev.attest
    if not st.attestations:
        return f"<p>{_e(st.key_said.shown(lang))}.</p>"
    chain = st.chain
    verdict = ("chain valid back to sequence 0" if chain is not None and chain.ok
               else "NOT VALID" if chain is not None else "not checked")
    held = n_text(lang, len(st.attestations), "{n} attestation in", "{n} attestations in")
    parts = [f"<p>{_e(held)} <code>{_e(st.folder)}</code>; {t(verdict)}"
             f" ({_e(st.key_said.shown(lang))}).</p>"]
    if chain is not None and (chain.problems or chain.warnings):
        parts.append("<ul>" + "".join(f"<li>{_e(p)}</li>" for p in chain.problems)
                     + "".join(f'<li class="muted">{t("warning")}: {_e(w)}</li>'
                               for w in chain.warnings) + "</ul>")
    rows = []
    for a in reversed(st.attestations[-50:]):
        s = a.statement
        base = s.get("baseline") if isinstance(s.get("baseline"), dict) else {}
        journal = s.get("journal") if isinstance(s.get("journal"), dict) else {}
        assert isinstance(base, dict) and isinstance(journal, dict)
        match = st.journal_match.get(a.sequence)
        jtext = {True: "matches the journal", False: "DOES NOT match the journal",
                 None: "not checked"}[match]
        jcls = {True: "ok", False: "bad", None: "warn"}[match]
        active = [n for n, v in (s.get("schedules") or {}).items()
                  if isinstance(v, dict) and v.get("active")]
        rows.append(
            f"<tr><td class=num>{a.sequence}</td><td><code>{_e(s.get('time', ''))}</code></td>"
            f"<td>{_e(s.get('reason', ''))}</td>"
            f"<td>{_e(base.get('status', ''))}, {_e(base.get('leaf_count'))} {t('files')}<br>"
            f"<code>{_e(base.get('merkle_root'))}</code></td>"
            f"<td>{_e(journal.get('records'))} {t('records')} "
            f'<span class="st {jcls}">{t(jtext)}</span></td>'
            f"<td>{_e(', '.join(active)) if active else t('none')}</td></tr>")
    heads = ("Seq", "Time", "Why", "Baseline (Merkle root)", "Journal head", "Windows open")
    parts.append('<table id="attestations"><thead><tr>'
                 + "".join(f"<th>{t(h)}</th>" for h in heads)
                 + f"</tr></thead><tbody>{''.join(rows)}</tbody></table>")
    if len(st.attestations) > 50:
        older = n_text(lang, len(st.attestations) - 50, "The {n} older one is in the folder.",
                       "The {n} older ones are in the folder.")
        parts.append(f'<p class="muted">{_e(older)}</p>')
    return "\n".join(parts)
