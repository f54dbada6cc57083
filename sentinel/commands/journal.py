"""`sentinel journal verify`: check the alert journal's hash chain.

Exit 0 when the chain is intact, 1 when it was tampered with (the first bad
record is named as FILE:LINE, or records were cut off the end: the chain is
shorter than the head the daemon signed beside it, ``PATH.head``, or than the
latest attestation's journal head), 2 on an error (no journal, no key, bad
config).
An incomplete last line is what a crash mid-write leaves behind: it is
reported on a ``warning:`` line but is not tampering, so the exit code stays 0.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sentinel.commands import add_config_arg, subparser
from sentinel.config import Config
from sentinel.config_reader import load_config


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparser(
        sub,
        "journal",
        "check the alert journal's hash chain",
        "Work with the alert journal.\n\n"
        "journal verify [PATH]: check the keyed hash chain of the journal at PATH (default:"
        " outputs.journal.path of the config) and of its rotated PATH.N files.\nExit 0 intact"
        " (an incomplete last line left by a crash is reported as a warning), 1 tampered"
        " (the first bad record is named as FILE:LINE, or records were cut off the end:"
        " fewer than the signed head PATH.head or the latest attestation says), 2 error.",
        "sentinel journal verify /var/lib/sentinel/alerts.jsonl -c /etc/sentinel/config.yaml",
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", parser_class=type(p))
    v = actions.add_parser(
        "verify", help="check the hash chain",
        description="Check the journal's keyed hash chain, across its rotated files.\nExit 0"
        " intact (an incomplete last line left by a crash is a warning, not tampering),"
        " 1 tampered (the first bad record is named as FILE:LINE, or records were cut off"
        " the end: fewer than the signed head PATH.head or the latest attestation says),"
        " 2 error.",
        epilog="examples:\n  sentinel journal verify -c /etc/sentinel/config.yaml\n"
        "  sentinel journal verify /backup/alerts.jsonl --key-file /etc/sentinel/keys/journal.key",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    v.add_argument("path", nargs="?", type=Path, metavar="PATH",
                   help="the journal file (default: from the config)")
    add_config_arg(v)
    v.add_argument("--key-file", type=Path, metavar="FILE",
                   help="the journal's HMAC key file (default: from the config)")
    v.set_defaults(func=verify)
    p.set_defaults(func=lambda _args: _usage(p))


def _usage(p: argparse.ArgumentParser) -> int:
    p.print_help(sys.stderr)
    return 2


def _cut(path: Path, key: bytes, head: tuple[int, str], config: Config | None) -> str | None:
    """What a signed head (the marker beside the journal, the latest attestation) says is
    missing from the end of an intact chain, or None."""
    from sentinel.selfwatch.journal_head import HeadMarker, attested_head, check_head

    try:
        signed = HeadMarker(path, key).read()
    except ValueError as exc:
        return f"{exc}"
    witnesses = [(signed, "head marker")] if signed is not None else []
    if signed is None and head[0]:
        print(f"warning: {path}: no signed head marker beside it ({path.name}.head);"
              " records cut off the end are found only against an attestation")
    if config is not None:
        att = attested_head(config.in_state(config.attest.dir), config.host.name)
        if att is not None:
            witnesses.append(att)
    for witness_head, witness in witnesses:
        found = check_head(path, key, head, witness_head, witness)
        if found is not None:
            return found.describe(path)
    return None


def verify(args: argparse.Namespace) -> int:
    from sentinel.keys import KeyUnavailable, load_key, read_existing_key
    from sentinel.sinks import verify_journal

    path: Path | None = args.path
    config = None
    try:
        if args.key_file is not None and path is not None:
            key = read_existing_key(args.key_file, "journal")
        else:
            config = load_config(args.config, secrets=False)
            if path is None:
                path = config.in_state(config.outputs.journal.path)
            key = (read_existing_key(args.key_file, "journal") if args.key_file is not None
                   else load_key(config.outputs.journal.key, config.state_dir, create=False,
                                 what="journal"))
        report = verify_journal(path, key)
    except (KeyUnavailable, OSError) as exc:
        print(f"sentinel journal verify: {exc}", file=sys.stderr)
        return 2
    if report.truncated is not None:
        f, line = report.truncated
        print(f"warning: {f}:{line}: the last record is incomplete (the writer stopped"
              " mid-write, e.g. a crash); not counted, not tampering")
    if not report.ok:
        print(f"{report.where()}: {report.problem}")
        print(f"{path}: TAMPERED: {report.records} records verified before the first bad one")
        return 1
    cut = _cut(path, key, (report.records, report.head), config)
    if cut is not None:
        print(cut)
        print(f"{path}: TAMPERED: the chain of {report.records} records is intact but shorter"
              " than what was signed")
        return 1
    print(f"{path}: intact: {report.records} records in {len(report.files)} file(s),"
          f" head {report.head}")
    return 0
