"""`sentinel report`: render the journal into one self-contained HTML incident report."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from sentinel.commands import add_config_arg, subparser
from sentinel.config_reader import load_config
from sentinel.events import parse_time
from sentinel.located import parse_duration

if TYPE_CHECKING:
    from sentinel.attest.evidence import Evidence


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparser(
        sub,
        "report",
        "render the alert journal as a self-contained HTML incident report",
        "Render the journal's alerts into one HTML page for responders and overseers: a"
        " timeline of alerts by severity zoomed to their span, the alerts grouped by incident"
        " or source, a table of the alerts in time order with their events, each recipient's"
        " routing and delivery status, and the journal and attestation checks. The page has"
        " no scripts and loads nothing, so it opens offline.\nT is an RFC 3339 time"
        " (2024-02-14T13:00:00+07:00) or a duration before now (24h, 7d).\nExit 0 written and"
        " everything verifies; 1 written, but the journal or the attestations do not verify"
        " (tampered, or present and not checkable: stderr says why); 2 error, nothing"
        " written.",
        "sentinel report -c /etc/sentinel/config.yaml --since 24h -o incident.html",
    )
    add_config_arg(p)
    p.add_argument("--since", metavar="T", help="only alerts at or after T")
    p.add_argument("--until", metavar="T", help="only alerts before T")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="FILE.html",
                   help="where to write the page")
    p.add_argument("--pubkey", type=Path, metavar="KEY",
                   help="the attestations' public key (default: attest.pub beside the"
                        " private key)")
    p.set_defaults(func=run)


def parse_when(text: str, now: float) -> float:
    """An RFC 3339 time, or a duration meaning that long before ``now``."""
    secs = parse_duration(text)
    if secs is not None:
        return now - secs
    try:
        return parse_time(text)
    except ValueError:
        msg = (f"{text!r} is not a time; valid: RFC 3339 with an offset"
               " (2024-02-14T13:00:00+07:00) or a duration before now (30m, 24h, 7d)")
        raise ValueError(msg) from None


def run(args: argparse.Namespace) -> int:
    """Exit 0 written and verified, 1 written but not verified, 2 error."""
    from sentinel.attest.evidence import gather
    from sentinel.attest.report import render

    config = load_config(args.config, secrets=False)
    now = time.time()
    try:
        since = parse_when(args.since, now) if args.since else None
        until = parse_when(args.until, now) if args.until else None
    except ValueError as exc:
        print(f"sentinel report: {exc}", file=sys.stderr)
        return 2
    if since is not None and until is not None and until <= since:
        print("sentinel report: --until must be after --since", file=sys.stderr)
        return 2
    try:
        ev = gather(config, since, until, now, args.pubkey)
        page = render(ev, config.language, config.display_zone(), config.language)
        tmp = args.output.with_name(f".{args.output.name}.tmp")
        tmp.write_text(page, encoding="utf-8")
        os.replace(tmp, args.output)
    except OSError as exc:
        print(f"sentinel report: {exc}", file=sys.stderr)
        return 2
    journal = ("intact" if ev.journal.ok else "TAMPERED" if ev.journal.ok is False
               else "not checked")
    attest = ev.attest.ok
    print(f"{args.output}: {len(ev.entries)} alerts; journal {journal}; attestations"
          f" {'valid' if attest else 'NOT VALID' if attest is False else 'not checked'}")
    problems = unverified(ev)
    for p in problems:
        print(f"sentinel report: {p}", file=sys.stderr)
    return 1 if problems else 0


def unverified(ev: Evidence) -> list[str]:
    """Why the page cannot be trusted as a whole; empty when everything verifies.

    A journal or attestations that exist but cannot be checked (a missing key)
    count: a reader must not take an unchecked page for a checked one. No
    journal (nothing was ever alerted) and no attestations (attestation off)
    do not: there is nothing to verify.
    """
    from sentinel.sinks.journal import journal_files

    out = []
    j = ev.journal
    if j.ok is False:
        out.append(f"the journal does not verify: {j.summary}")
    elif j.ok is None and any(journal_files(j.path)):
        out.append(f"the journal is {j.summary}")
    a = ev.attest
    if a.attestations and a.ok is False:
        bad = [str(s) for s, m in sorted(a.journal_match.items()) if m is False]
        why = "; ".join(a.chain.problems) if a.chain is not None and a.chain.problems else ""
        if bad:
            why = (why + "; " if why else "") + ("the journal no longer matches the head"
                                                 f" signed by attestation {', '.join(bad)}")
        out.append(f"the attestations do not verify: {why or 'chain not valid'}")
    elif a.attestations and a.ok is None:
        out.append(f"the attestations are not checked: {a.key_note}")
    return out
