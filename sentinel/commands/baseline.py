"""`sentinel baseline init|verify`: make the signed baseline, or compare disk with it."""

from __future__ import annotations

import argparse
import json
import os
import stat
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sentinel.commands import add_config_arg, subparser
from sentinel.config import Config
from sentinel.config_reader import load_config
from sentinel.events import Event

EXIT_OK, EXIT_DRIFT, EXIT_ERROR = 0, 1, 2


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparser(
        sub,
        "baseline",
        "create or verify the signed file-integrity baseline",
        "Manage the signed baseline of every path under fim.paths.\n"
        "  init    hash every watched path into a new signed baseline (replacing any old"
        " one);\n          makes the key file if absent. Exit 0, or 2 on error.\n"
        "  verify  compare disk with the baseline through the FIM rules; alerts as JSON"
        " lines.\n          Exit 0 no drift, 1 drift found, 2 error or invalid signature.",
        "sentinel baseline verify -c /etc/sentinel/config.yaml --events",
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", parser_class=type(p))
    init = actions.add_parser(
        "init", help="hash every watched path into a new signed baseline",
        description="Hash every path under fim.paths (a worker per core; a progress bar on a"
        " TTY) and write a new signed baseline, replacing the old one. Files that vanish or"
        " cannot be read are reported on stderr, not fatal. Refused (exit 2) while the"
        " daemon runs: stop it first, then start it again on the new baseline.",
    )
    add_config_arg(init)
    init.set_defaults(func=run_init)
    verify = actions.add_parser(
        "verify", help="compare disk with the baseline; alerts (or --events) as JSON lines",
        description="Compare every watched path with the signed baseline (read-only) and run"
        " the differences through the rules. Exit 0 no drift, 1 drift, 2 error or a"
        " baseline that fails its signature.",
    )
    add_config_arg(verify)
    verify.add_argument("--events", action="store_true",
                        help="print the drift events instead of the alerts")
    verify.set_defaults(func=run_verify)
    p.set_defaults(func=lambda _: _usage(p))


def _usage(p: argparse.ArgumentParser) -> int:
    p.print_usage(sys.stderr)
    print("sentinel baseline: choose an action: init or verify", file=sys.stderr)
    return EXIT_ERROR


def _fail(what: str, exc: object) -> int:
    print(f"sentinel baseline {what}: {exc}", file=sys.stderr)
    return EXIT_ERROR


def _scope(config: Config) -> Any:
    from sentinel.sources.fim.scan import Scope

    # as the daemon's file watching: the baseline is never in scope, its key is when listed
    return Scope.from_config(config, [config.in_state(config.fim.baseline)])


def run_init(args: argparse.Namespace) -> int:
    from sentinel.selfwatch.own_files import with_own_files
    from sentinel.sources.fim.baseline import hold_lock

    config = with_own_files(load_config(args.config, secrets=False))
    if not config.fim.paths:
        return _fail("init", f"{config.source}: fim.paths is empty; nothing to watch")
    path = config.in_state(config.fim.baseline)
    try:
        lock = hold_lock(path)
    except BlockingIOError:
        return _fail("init", f"{path} is in use by the running daemon (or another init); stop"
                     " it first (systemctl stop sentinel), run init, then start it again")
    try:
        return _init(config, path)
    finally:
        os.close(lock)


def _init(config: Config, path: Path) -> int:
    from sentinel.keys import KeyUnavailable, load_key
    from sentinel.selfwatch.own_files import with_own_files
    from sentinel.sources.fim.baseline import Baseline
    from sentinel.sources.fim.scan import snapshot_all

    try:
        key = load_key(config.fim.key, config.state_dir, create=True, what="fim")
    except (KeyUnavailable, OSError) as exc:
        return _fail("init", exc)
    # a key made just now is one of sentinel's own files: in the baseline from the start
    config = with_own_files(config)
    started = time.perf_counter()
    scope = _scope(config)
    items = list(scope.walk())
    total = sum(st.st_size for _, st in items if stat.S_ISREG(st.st_mode))
    bar, progress = _progress(total)
    try:
        scan = snapshot_all(items, progress=progress)
    finally:
        if bar is not None:
            bar.close()
    for problem in scan.problems:
        print(f"warning: {problem}", file=sys.stderr)
    try:
        Baseline.create(path, key, scan.records.values()).close()
    except OSError as exc:
        return _fail("init", f"cannot write {path}: {exc.strerror}")
    own = _own(scope, scan.records)
    files = sum(1 for p, r in scan.records.items() if r.type == "file" and p not in own)
    elapsed = time.perf_counter() - started
    print(f"baseline: {len(scan.records) - len(own)} paths ({files} files,"
          f" {scan.bytes_hashed / 2**20:,.1f} MiB hashed) and {len(own)} of sentinel's own"
          f" (tag sentinel-self) in {elapsed:.2f} s -> {path}", file=sys.stderr)
    return EXIT_OK


def _own(scope: Any, paths: Any) -> set[str]:
    """The paths that are sentinel's own files, counted apart from the operator's."""
    from sentinel.selfwatch.alerts import TAG

    return {p for p in paths if scope.tags(p) == (TAG,)}


def _progress(total: int) -> tuple[Any, Callable[[int], None] | None]:
    """A tqdm bar on stderr when it is a terminal; hashing threads share it."""
    if not sys.stderr.isatty():
        return None, None
    from tqdm import tqdm

    bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc="hashing",
               file=sys.stderr)
    lock = threading.Lock()

    def update(n: int) -> None:
        with lock:
            bar.update(n)

    return bar, update


def run_verify(args: argparse.Namespace) -> int:
    from sentinel.keys import KeyUnavailable, load_key
    from sentinel.selfwatch.own_files import with_own_files
    from sentinel.sources.fim.baseline import Baseline, BaselineError, BaselineInvalid
    from sentinel.sources.fim.changes import diff, make_event
    from sentinel.sources.fim.scan import snapshot_all

    config = with_own_files(load_config(args.config, secrets=False))
    if not config.fim.paths:
        return _fail("verify", f"{config.source}: fim.paths is empty; nothing to verify")
    out = _Output(config, events=args.events)
    path = config.in_state(config.fim.baseline)
    if not path.exists():
        return _fail("verify", f"no baseline at {path}; create it with: sentinel baseline init")
    try:
        key = load_key(config.fim.key, config.state_dir, create=False, what="fim")
        baseline = Baseline.open(path, key)
    except BaselineInvalid as exc:
        out.send(Event("fim.baseline_invalid", time.time(), config.host.name, "fim",
                       {"path": str(path), "reason": str(exc)}))
        out.finish()
        return _fail("verify", f"the baseline is not trusted: {exc}")
    except (BaselineError, KeyUnavailable) as exc:
        return _fail("verify", exc)
    started = time.perf_counter()
    scope = _scope(config)
    # a known path stays compared even where an exclude would hide a new one
    scan = snapshot_all(scope.walk(tracked=baseline.__contains__))
    # Records of paths no longer in scope (the config changed) are not drift.
    old = {p: r for p, r in baseline.as_dict().items()
           if p in scan.records or scope.entry_for(p) is not None}
    baseline.close()
    now = time.time()
    changes = diff(old, scan.records)
    for change in changes:
        ev = make_event(change, scope.change_tags(change.path, change.dest),
                        host=config.host.name, time=now, offline=True)
        if config.attribution.files != "off":
            # a comparison, not a change as it happened: no audit record can name it
            from sentinel.sources.audit.index import FOUND_BY_VERIFY, unknown_fields

            ev.fields.update(unknown_fields(FOUND_BY_VERIFY))
        out.send(ev)
    out.finish()
    for problem in scan.problems:
        print(f"warning: {problem}", file=sys.stderr)
    own = len(_own(scope, scan.records))
    print(f"verify: {len(scan.records) - own} paths checked (and {own} of sentinel's own) in"
          f" {time.perf_counter() - started:.2f} s; {len(changes)} changed; {out.alerts} alerts",
          file=sys.stderr)
    return EXIT_DRIFT if changes else EXIT_OK


class _Output:
    """Events as JSON lines, or the alerts the rules make of them."""

    def __init__(self, config: Config, events: bool) -> None:
        self.alerts = 0
        self._engine: Any = None
        self._last = 0.0
        if not events:
            from sentinel.engine import Engine, load_rules
            from sentinel.metrics import Metrics

            self._engine = Engine(load_rules(config), host=config.host.name,
                                  metrics=Metrics())

    def send(self, event: Event) -> None:
        self._last = event.time
        if self._engine is None:
            self._write(event.to_dict())
            return
        for alert in self._engine.process(event):
            self._write(alert.to_dict())

    def finish(self) -> None:
        if self._engine is not None:
            for alert in self._engine.advance(self._last):
                self._write(alert.to_dict())
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())

    def _write(self, obj: dict[str, Any]) -> None:
        if "rule" in obj:
            self.alerts += 1
        try:
            sys.stdout.write(json.dumps(obj) + "\n")
        except BrokenPipeError:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
