"""What the incident report shows, gathered from the state folder (read only).

The journal's alerts in the time window, the journal's chain check, each
delivery recipient's status per alert (from its spool), and the attestation
chain with a cross-check of each attestation's journal head against the
journal itself. Nothing here writes; a part that cannot be read is reported
as such, never guessed.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sentinel.alert import Alert
from sentinel.attest.keys import AttestKeyError, load_private_key, load_public_key
from sentinel.attest.statement import Attestation, ChainReport, load_folder, verify_chain
from sentinel.config import Config, WebhookConfig
from sentinel.events import parse_time
from sentinel.i18n import text
from sentinel.keys import KeyUnavailable, load_key
from sentinel.sinks import lane_name, spool_path
from sentinel.sinks.http import safe_url
from sentinel.sinks.journal import decode_record, journal_files
from sentinel.sinks.router import Route
from sentinel.sinks.verify import JournalReport, verify_journal


@dataclass(frozen=True)
class Said:
    """A text for people: an English template and its values, so the report shows it
    in its own language while the command line keeps the English."""

    template: str
    values: tuple[tuple[str, object], ...] = ()

    def __str__(self) -> str:
        return self.template.format(**dict(self.values))

    def shown(self, lang: str) -> str:
        # values are inserted, never parsed as templates: braces in a path stay braces
        return text(lang, self.template).format(**dict(self.values))


def said(template: str, **values: object) -> Said:
    return Said(template, tuple(values.items()))


def shown(value: Said | str, lang: str) -> str:
    """``value`` in ``lang``: a :class:`Said` translated, a plain str as it is."""
    return value.shown(lang) if isinstance(value, Said) else value


@dataclass
class Entry:
    """One journaled alert. ``mac_ok`` is None when the journal key is unavailable."""

    seq: int
    alert: dict[str, Any]
    time: float
    mac_ok: bool | None


@dataclass
class JournalStatus:
    path: Path
    ok: bool | None  # None: not checked (no key or no journal)
    said: Said | str  # a plain str is shown as is, in every language
    records: int = 0
    unreadable_lines: int = 0

    @property
    def summary(self) -> str:
        return str(self.said)


@dataclass
class Recipient:
    """One delivery lane (a webhook URL) and what its spool still holds."""

    name: str
    url: str
    spool: Path
    hook: WebhookConfig
    readable: bool = False
    said_problem: Said = field(default_factory=lambda: said(""))
    pending: dict[str, int] = field(default_factory=dict)  # alert id -> failed attempts
    dead: dict[str, str] = field(default_factory=dict)  # alert id -> why
    _seen: dict[str, tuple[str, str]] = field(default_factory=dict, repr=False)

    @property
    def problem(self) -> str:
        return str(self.said_problem)

    def status(self, alert: dict[str, Any]) -> tuple[str, str]:
        """``(delivered|pending|failed|not routed|unknown, detail)`` for one alert."""
        aid = str(alert.get("id", ""))
        if aid not in self._seen:
            self._seen[aid] = self._status(aid, alert)
        return self._seen[aid]

    def _status(self, aid: str, alert: dict[str, Any]) -> tuple[str, str]:
        if aid in self.dead:
            return "failed", self.dead[aid]
        if aid in self.pending:
            n = self.pending[aid]
            return "pending", f"{n} failed attempt{'s' if n != 1 else ''} so far"
        try:
            routed = Route(self.hook)(Alert.from_dict(alert))
        except (KeyError, TypeError, ValueError):
            return "unknown", "the journaled alert is malformed"
        if not routed:
            return "not routed", "this recipient does not take this alert"
        if not self.readable:
            return "unknown", str(self.said_problem)
        return "delivered", "accepted by the recipient (no longer in the spool)"


@dataclass
class AttestationStatus:
    folder: Path
    attestations: list[Attestation] = field(default_factory=list)
    chain: ChainReport | None = None
    journal_match: dict[int, bool | None] = field(default_factory=dict)  # sequence -> match
    key_said: Said = field(default_factory=lambda: said(""))

    @property
    def key_note(self) -> str:
        return str(self.key_said)

    @property
    def ok(self) -> bool | None:
        if not self.attestations or self.chain is None:
            return None
        return self.chain.ok and all(v is not False for v in self.journal_match.values())


@dataclass
class Evidence:
    host: str
    generated: float
    since: float | None
    until: float | None
    entries: list[Entry]
    journal: JournalStatus
    recipients: list[Recipient]
    attest: AttestationStatus
    windows: list[tuple[str, float, float]]


def read_recipients(config: Config) -> list[Recipient]:
    out = []
    for hook in config.outputs.webhooks:
        for i, url in enumerate(hook.urls):
            r = Recipient(lane_name(hook, i), safe_url(url), spool_path(config, hook, i), hook)
            _read_spool(r)
            out.append(r)
    return out


def _read_spool(r: Recipient) -> None:
    if not r.spool.exists():
        r.said_problem = said("no spool at {spool}: nothing was queued for it on this host",
                              spool=r.spool)
        return
    try:
        db = sqlite3.connect(f"file:{r.spool}?mode=ro", uri=True)
        try:
            r.pending = {row[0]: int(row[1]) for row in
                         db.execute("SELECT id, attempts FROM pending")}
            for aid, status, reason in db.execute("SELECT id, status, reason FROM dead"):
                r.dead[aid] = f"HTTP {status}: {reason}" if status else str(reason)
        finally:
            db.close()
    except sqlite3.Error as exc:
        r.said_problem = said("cannot read the spool {spool}: {why}", spool=r.spool, why=exc)
        return
    r.readable = True


def read_journal(config: Config, since: float | None, until: float | None,
                 want_macs: set[int]) -> tuple[list[Entry], JournalStatus, dict[int, str]]:
    """The window's alerts, the chain check, and the MACs of the records in ``want_macs``."""
    path = config.in_state(config.outputs.journal.path)
    key_problem = ""
    try:
        key: bytes | None = load_key(config.outputs.journal.key, config.state_dir,
                                     create=False, what="journal")
    except KeyUnavailable as exc:
        key, key_problem = None, str(exc)
    entries: list[Entry] = []
    macs: dict[int, str] = {}
    unreadable = 0
    for f in journal_files(path):
        with f.open("rb") as fh:
            for raw in fh:
                line = raw.rstrip(b"\n")
                rec, ok = _record(key, line)
                if rec is None:
                    unreadable += 1
                    continue
                seq = int(rec["seq"])
                if seq in want_macs:
                    macs[seq] = str(rec["mac"])
                alert = rec["alert"]
                try:
                    t = parse_time(str(alert["time"]))
                except (KeyError, TypeError, ValueError, OverflowError):
                    # shown and flagged as implausible, not hidden: a time that does
                    # not parse may be the trace of tampering
                    t = float("-inf")
                inside = (since is None or t >= since) and (until is None or t < until)
                if inside or t == float("-inf"):
                    entries.append(Entry(seq, alert, t, ok))
    status = _check(path, key, key_problem, unreadable)
    # time order, not journal order: delivery retries and clock steps journal alerts out
    # of order; a record whose time does not parse (-inf) sorts first, still flagged
    entries.sort(key=lambda e: (e.time, e.seq))
    return entries, status, macs


def _record(key: bytes | None, line: bytes) -> tuple[dict[str, Any] | None, bool | None]:
    if key is not None:
        decoded = decode_record(key, line)
        if decoded is None:
            return None, None
        return (decoded[0], decoded[1]) if isinstance(decoded[0].get("alert"), dict) \
            else (None, None)
    try:
        rec = json.loads(line)
    except ValueError:
        return None, None
    if not isinstance(rec, dict) or not isinstance(rec.get("alert"), dict) \
            or not isinstance(rec.get("seq"), int):
        return None, None
    return rec, None


def _check(path: Path, key: bytes | None, key_problem: str, unreadable: int) -> JournalStatus:
    if key is None:
        return JournalStatus(path, None, said("not checked: {why}", why=key_problem),
                             unreadable_lines=unreadable)
    try:
        rep: JournalReport = verify_journal(path, key)
    except FileNotFoundError:
        return JournalStatus(path, None, said("no journal at {path}: no alerts were recorded",
                                              path=path))
    except OSError as exc:
        return JournalStatus(path, False, said("cannot read the journal: {why}", why=exc))
    if not rep.ok:
        return JournalStatus(path, False, said(
            "TAMPERED at {where}: {why}; {records} records verified before it",
            where=rep.where(), why=rep.problem, records=rep.records), rep.records, unreadable)
    if rep.truncated is not None:
        return JournalStatus(path, True, said(
            "intact: {records} records in {files} file(s), head {head}; the last line"
            " ({file}:{line}) is incomplete, as a crash mid-write leaves it",
            records=rep.records, files=len(rep.files), head=rep.head, file=rep.truncated[0],
            line=rep.truncated[1]), rep.records, unreadable)
    return JournalStatus(path, True, said(
        "intact: {records} records in {files} file(s), head {head}", records=rep.records,
        files=len(rep.files), head=rep.head), rep.records, unreadable)


def read_attestations(config: Config, pubkey: Path | None) -> AttestationStatus:
    """Every attestation of ``attest.dir`` and the latest one's chain check."""
    folder = config.in_state(config.attest.dir)
    st = AttestationStatus(folder, load_folder(folder))
    if not st.attestations:
        st.key_said = said("no attestations in {folder}", folder=folder)
        return st
    private = config.in_state(config.attest.key_file)
    candidates = [pubkey] if pubkey is not None else [private.with_suffix(".pub")]
    for p in candidates:
        if p.exists():
            try:
                public = load_public_key(p)
            except AttestKeyError as exc:
                st.key_said = said("{why}", why=exc)
                return st
            st.key_said = said("checked with the public key {key}", key=p)
            break
    else:
        try:
            public = load_private_key(private).public_key()
        except AttestKeyError as exc:
            st.key_said = said("not checked: no public key given and {why}", why=exc)
            return st
        st.key_said = said("checked with the public half of {key}", key=private)
    st.chain = verify_chain(st.attestations[-1], st.attestations, public)
    return st


def gather(config: Config, since: float | None, until: float | None, now: float,
           pubkey: Path | None = None) -> Evidence:
    """Everything the report shows."""
    attest = read_attestations(config, pubkey)
    want = {int(a.statement["journal"]["records"]) - 1 for a in attest.attestations
            if isinstance(a.statement.get("journal"), dict)
            and isinstance(a.statement["journal"].get("records"), int)}
    entries, journal, macs = read_journal(config, since, until, want)
    for a in attest.attestations:
        j = a.statement.get("journal") or {}
        n = j.get("records")
        if n == 0:
            attest.journal_match[a.sequence] = True
        elif isinstance(n, int):
            # a record the attestation vouched for that is gone or changed is a mismatch
            attest.journal_match[a.sequence] = macs.get(n - 1) == j.get("head")
        else:
            attest.journal_match[a.sequence] = None
    windows = [(name, w.start.timestamp(), w.end.timestamp())
               for name, ws in sorted(config.schedules.items()) for w in ws]
    return Evidence(config.host.name, now, since, until, entries, journal,
                    read_recipients(config), attest, windows)
