"""`sentinel delivery status|retry`: what each webhook target still owes, and re-sending
the alerts a receiver refused for good (dead letters) once it has been fixed."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from sentinel.commands import add_config_arg, subparser


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparser(
        sub,
        "delivery",
        "show the webhook backlog; re-send refused alerts",
        "Work with the delivery spools of the webhook targets.\n"
        "  status  per target: alerts pending, the oldest one's age, and dead letters\n"
        "          (alerts a receiver refused for good: a 4xx other than 408/429).\n"
        "  retry   move dead letters back into the queue, e.g. after fixing a\n"
        "          receiver's secret; a running daemon sends them within a second.\n"
        "Exit codes of status: 0 nothing refused; 1 dead letters exist (each listed with\n"
        "  its rule, title and time from the journal) or a spool is corrupt or unreadable;\n"
        "  2 on errors. retry: 0, or 2 on errors.",
        "sentinel delivery retry bawaslu -c /etc/sentinel/config.yaml",
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", parser_class=type(p))
    st = actions.add_parser(
        "status", help="pending alerts and dead letters per target",
        description="Per target (per URL of an Alertmanager cluster): alerts pending, the"
        " oldest pending alert's age, and every dead letter with its HTTP status and the"
        " alert's rule, title and time (read from the journal).",
        epilog="exit status:\n  0  no dead letters, every spool readable\n"
        "  1  dead letters exist, or a spool is corrupt or unreadable\n  2  error\n"
        "example:\n  sentinel delivery status -c /etc/sentinel/config.yaml --format json",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arg(st)
    st.add_argument("--format", choices=("text", "json"), default="text",
                    help="output format (default: text)")
    st.set_defaults(func=status)
    rt = actions.add_parser(
        "retry", help="re-queue dead letters",
        description="Move dead letters back into their target's queue (all targets, or"
        " those named), to be sent again; --id picks single alerts.",
        epilog="example:\n  sentinel delivery retry ministry-csirt --id 0193f1c2-...",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arg(rt)
    rt.add_argument("targets", nargs="*", metavar="TARGET", help="target names (default: all)")
    rt.add_argument("--id", dest="ids", action="append", default=[], metavar="ALERT_ID",
                    help="only this alert (repeatable)")
    rt.set_defaults(func=retry)
    p.set_defaults(func=lambda _args: _usage(p))


def _usage(p: argparse.ArgumentParser) -> int:
    p.print_help(sys.stderr)
    return 2


def _lanes(args: argparse.Namespace, secrets: bool) -> list[tuple[str, str, Any]]:
    """(target, lane, spool path) of every configured URL; ``secrets`` for what sends."""
    return _lanes_of(_config(args, secrets))


def _config(args: argparse.Namespace, secrets: bool) -> Any:
    from sentinel.config_reader import load_config

    return load_config(args.config, secrets=secrets)


def _lanes_of(config: Any) -> list[tuple[str, str, Any]]:
    from sentinel.sinks import lane_name, spool_path

    return [(hook.name, lane_name(hook, i), spool_path(config, hook, i))
            for hook in config.outputs.webhooks for i in range(len(hook.urls))]


def _journaled(config: Any, ids: set[str]) -> dict[str, dict[str, Any]]:
    """The journaled alerts of ``ids`` (a dead letter's rule, title and time).

    Read without the journal key (status needs no secrets); an unreadable line is
    skipped: the dead letter is still listed, by id, with what is unknown said so.
    """
    from sentinel.sinks.journal import journal_files

    found: dict[str, dict[str, Any]] = {}
    if not ids:
        return found
    try:
        files = journal_files(config.in_state(config.outputs.journal.path))
    except OSError:
        return found
    for f in files:
        try:
            fh = f.open("rb")
        except OSError:
            continue
        with fh:
            for raw in fh:
                try:
                    alert = json.loads(raw)["alert"]
                except (ValueError, KeyError, TypeError):
                    continue
                if isinstance(alert, dict) and alert.get("id") in ids:
                    found[str(alert["id"])] = alert
    return found


def _shown(value: object) -> str:
    """A journaled text for a terminal: control characters (escape sequences that could
    rewrite what the operator sees) and bidi overrides shown as escapes."""
    from sentinel.events import visible

    return visible(str(value))


def _open(path: Path) -> tuple[Any, str | None]:
    """The spool at ``path``, or None and why it cannot be read."""
    import sqlite3  # here, not at the top: `sentinel --help` must stay light

    from sentinel.sinks.spool import Spool, SpoolCorrupt

    try:
        return Spool(path), None
    except SpoolCorrupt as exc:
        return None, (f"{exc}; the daemon moves it aside at its next start and sends again"
                      " from the journal what it had not delivered")
    except (OSError, sqlite3.Error) as exc:
        return None, f"cannot read the spool {path}: {exc}"


def status(args: argparse.Namespace) -> int:
    """Exit 0; 1 when dead letters exist or a spool cannot be read; 2 errors."""
    now = time.time()
    config = _config(args, secrets=False)
    rows = []
    for target, lane, path in _lanes_of(config):
        row: dict[str, Any] = {"target": target, "lane": lane, "pending": 0,
                               "oldest_pending_seconds": None, "dead": [], "problem": None}
        if path.exists():
            spool, problem = _open(path)
            row["problem"] = problem
            if spool is not None:
                try:
                    oldest = spool.oldest()
                    row["pending"] = spool.depth
                    row["oldest_pending_seconds"] = (None if oldest is None
                                                     else round(now - oldest, 1))
                    row["dead"] = [{"id": i, "status": st, "reason": why}
                                   for i, st, why in spool.dead()]
                finally:
                    spool.close()
        rows.append(row)
    journaled = _journaled(config, {d["id"] for r in rows for d in r["dead"]})
    for r in rows:
        for d in r["dead"]:
            a = journaled.get(d["id"], {})
            d.update(rule=a.get("rule"), title=a.get("title"), time=a.get("time"))
    code = 1 if any(r["problem"] or r["dead"] for r in rows) else 0
    if args.format == "json":
        print(json.dumps({"targets": rows}))
        return code
    for r in rows:
        if r["problem"]:
            print(f"{r['lane']}: UNREADABLE: {r['problem']}")
            continue
        age = r["oldest_pending_seconds"]
        since = f", oldest {age:.0f}s" if age is not None else ""
        print(f"{r['lane']}: {r['pending']} pending{since}, {len(r['dead'])} dead")
        for d in r["dead"]:
            if d["rule"] is None:
                what = "(not in the journal)"
            else:
                what = f"{_shown(d['time'])} {_shown(d['rule'])}: {_shown(d['title'])}"
            status = f"HTTP {d['status']}: " if d["status"] else ""
            print(f"  dead {_shown(d['id'])} {what} -- {status}{_shown(d['reason'])}")
    return code


def retry(args: argparse.Namespace) -> int:
    """Exit 0, or 2 for an unknown target or a spool that cannot be read."""
    lanes = _lanes(args, secrets=True)
    known = {t for t, _, _ in lanes}
    unknown = [t for t in args.targets if t not in known]
    if unknown:
        print(f"sentinel delivery retry: no target {', '.join(unknown)} in {args.config};"
              f" targets: {', '.join(sorted(known)) or 'none'}", file=sys.stderr)
        return 2
    total = 0
    failed = False
    for target, lane, path in lanes:
        if (args.targets and target not in args.targets) or not path.exists():
            continue
        spool, problem = _open(path)
        if spool is None:
            print(f"sentinel delivery retry: {lane}: {problem}", file=sys.stderr)
            failed = True
            continue
        try:
            n = spool.revive(args.ids)
        finally:
            spool.close()
        if n:
            print(f"{lane}: {n} dead letter(s) queued again")
        total += n
    if not total:
        print("no dead letters to queue again")
    return 2 if failed else 0
