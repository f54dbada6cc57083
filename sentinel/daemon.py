"""`sentinel run`: wiring, lifecycle, signals, sd_notify and reload.

Sources push events into one bounded queue; a single engine thread takes them,
runs the rules and hands alerts to the delivery sink (journal, then the
webhook spools). The main thread only waits for signals, pings the systemd
watchdog while the engine thread is healthy, and performs reloads.

Reload (SIGHUP, or an edit of the config file or a rule file): the new config
and rules are loaded and compiled beside the running ones and swapped in only
when valid and every rule example passes; otherwise every problem is logged,
the failure counted, and the running set stays.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import gc
import os
import queue
import signal
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from prometheus_client import CollectorRegistry

from sentinel import __version__, logs
from sentinel.alert import Alert
from sentinel.attest import Attestor
from sentinel.config import Config, KeySource
from sentinel.config_reader import load_config
from sentinel.engine import Engine, RuleSet, check_examples, load_rules
from sentinel.events import Event
from sentinel.hostinfo import (
    GATEWAY_LIST,
    AddressLooks,
    AddressNotices,
    addresses_of,
    learnable_gateways,
    local_addresses,
    local_gateways,
    with_own_addresses,
)
from sentinel.keys import KeyUnavailable, key_path, load_key
from sentinel.located import ProblemError
from sentinel.metrics import Metrics
from sentinel.notify import Notifier
from sentinel.parts import (
    Parts,
    Rebuild,
    build_parts,
    build_sources,
    parts_differ,
    take_own_addresses,
)
from sentinel.selfwatch import SelfGuard
from sentinel.selfwatch.own_files import with_own_files
from sentinel.sinks import JournalError
from sentinel.sources.fim import BaselineError
from sentinel.sources.fim.source import FimSource
from sentinel.watchfiles import FileWatch

log = logs.get("daemon")

#: How long SIGTERM may take: stop sources, drain the queue, close sinks.
STOP_BUDGET = 8.0
#: Events waiting for the engine; sources block (back-pressure) when it is full.
QUEUE_SIZE = 50_000
#: How often the capture interfaces' own addresses are compared with those counted
#: (also at the next tick after the kernel's notice of an address or route change).
ADDRESS_CHECK = 10.0
#: The engine thread must loop at least this often to count as healthy.
ENGINE_STALL = 30.0


def load_all(path: Path) -> tuple[Config, RuleSet]:
    """Config and compiled rules, or ProblemError with every problem found."""
    # sentinel's own files (config, rules, keys, unit, package) are always watched, and
    # its own addresses are its own even where the config does not list them
    config, _ = with_own_addresses(with_own_files(load_config(path)))
    rules = load_rules(config)
    problems = check_examples(rules)
    if problems:
        raise ProblemError(problems)
    return config, rules


class Daemon:
    """The running daemon. ``run()`` blocks until SIGTERM/SIGINT."""

    def __init__(
        self,
        config_path: Path,
        config: Config,
        rules: RuleSet,
        metrics: Metrics | None = None,
        notifier: Notifier | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config_path = config_path
        self.config = config
        self.metrics = metrics or Metrics(CollectorRegistry())
        self.notifier = notifier or Notifier()
        self.clock = clock
        self.engine = Engine(rules, host=config.host.name, metrics=self.metrics,
                             storm=config.rules.storm)
        self.queue: queue.Queue[Event | None] = queue.Queue(QUEUE_SIZE)
        # file events go ahead of the network queue: a packet flood (up to QUEUE_SIZE
        # events waiting) must not hold back the alert of a changed file
        self.files: collections.deque[Event] = collections.deque()
        self._stop = threading.Event()
        self._abandon = threading.Event()  # stopping, out of time: leave the queue as is
        self._reload = threading.Event()
        self._signalled = 0  # SIGTERM/SIGINT seen (set by the handler, read by the main loop)
        self._hup = False  # SIGHUP seen
        self._notices: AddressNotices | None = None
        #: key files this start made (sentinel's own, where the config puts them)
        self._made: list[str] = []
        self._looks = AddressLooks(time.monotonic(), ADDRESS_CHECK)
        # the learned addresses and gateways a reload was asked for
        self._addresses_tried: tuple[frozenset[Any], frozenset[Any]] | None = None
        self._sink_lock = threading.Lock()
        self._engine_beat = time.monotonic()
        self._submit_failing = False
        self._engine_thread = threading.Thread(
            target=self._engine_loop, name="engine", daemon=True
        )
        self._parts: Parts | None = None
        self._watch: FileWatch | None = None
        # sentinel's alerts about itself (reload changes, a cut journal, a deleted baseline)
        self.guard = SelfGuard(config, self.metrics, self._submit_self, clock)
        self.attestor = Attestor(
            config, self.metrics, clock,
            rules_digest=self._rules_digest,
            journal_head=self._journal_head,
        )

    def _zero_alert_series(self, rules: RuleSet) -> None:
        """Export 0 for every rule's alert counter, so that the first alert is an increase."""
        for rule in rules:
            for sev in {rule.severity, *(s for _, s in rule.severity_during)}:
                self.metrics.alerts.labels(rule.id, sev)

    def _rules_digest(self) -> str:
        # looked up at each call: a reload swaps the engine's rule set
        return self.engine.rules.digest()

    def _journal_head(self) -> tuple[int, str]:
        with self._sink_lock:
            assert self._parts is not None
            return self._parts.sink.journal_head()

    # -- the event path ----------------------------------------------------

    def emit(self, event: Event) -> None:
        """Called by sources; blocks while the engine is behind, never raises."""
        if event.source == "fim":
            while len(self.files) >= QUEUE_SIZE and not self._stop.is_set():
                time.sleep(0.01)
            self.files.append(event)
            with contextlib.suppress(queue.Full):  # wakes the engine; a full queue needs no wake
                self.queue.put_nowait(None)
            return
        while not self._stop.is_set():
            try:
                self.queue.put(event, timeout=0.5)
                return
            except queue.Full:
                continue
        # stopping: the engine still drains what is queued, so keep this one too
        with contextlib.suppress(queue.Full):
            self.queue.put(event, timeout=1.0)

    def _engine_loop(self) -> None:
        last_tick = 0.0
        while not self._abandon.is_set():
            self._engine_beat = time.monotonic()
            while self.files:
                ev = self.files.popleft()
                self._handle(self.engine.process, ev, ev.ack)
            try:
                item = self.queue.get(timeout=0.5)
            except queue.Empty:
                item = None
                if self._stop.is_set() and not self.files:
                    break
            if item is not None:
                self._handle(self.engine.process, item, item.ack)
            now = self.clock()
            if now - last_tick >= 1.0:
                last_tick = now
                self._handle(self.engine.advance, now)

    def _handle(self, step: Callable[[Any], list[Any]], arg: Any,
                ack: Callable[[bool], None] | None = None) -> None:
        """Run one engine step and submit its alerts.

        ``ack`` (an event's) hears True once every alert is in the journal, at once
        when there is none, or False when one could not be submitted: the source
        may then take the change into its baseline, or must send it again.
        """
        try:
            alerts = step(arg)
        except Exception:
            # one bad event must not stop the engine; it is logged with context (and
            # counts as handled: sending it again would fail the same way)
            log.exception("engine_error", item=repr(arg)[:200])
            alerts = []
        waiting = _Journaled(len(alerts), ack)
        for alert in alerts:
            with self._sink_lock:
                assert self._parts is not None
                sink = self._parts.sink
                try:
                    # in the journal now, or later from the sink's retry thread when the
                    # journal cannot be written (a full disk): the ack waits for that
                    sink.submit(alert, on_journaled=lambda _seq: waiting.one_done())
                except Exception as exc:
                    waiting.failed()
                    self.guard.submit_failed()
                    if not self._submit_failing:
                        # one line when submitting starts to fail, one when it works again
                        log.error("alert_submit_failed", alert_id=alert.id, rule=alert.rule,
                                  error=str(exc))
                    self._submit_failing = True
                else:
                    if self._submit_failing:
                        self._submit_failing = False
                        log.info("alert_submit_recovered")
                self.guard.journaled(sink)

    def _submit_self(self, alert: Alert) -> None:
        """Deliver an alert sentinel raises about itself (not from a rule)."""
        self.metrics.alerts.labels(alert.rule, alert.severity).inc()
        with self._sink_lock:
            assert self._parts is not None
            sink = self._parts.sink
            try:
                sink.submit(alert)
            except Exception:
                log.exception("alert_submit_failed", alert_id=alert.id, rule=alert.rule)
                self.guard.submit_failed()
            self.guard.journaled(sink)

    # -- components ----------------------------------------------------------

    def health(self) -> dict[str, bool]:
        """Liveness of every worker, for /healthz and the systemd watchdog."""
        out = {"engine": self._engine_healthy()}
        parts = self._parts
        if parts is not None:
            for src in parts.sources:
                out[src.name] = src.alive()
                # a source with several workers names each (network:eth0), for /healthz
                out.update(getattr(src, "components", dict)())
            out.update(parts.sink.health())  # journal, each spool, the delivery workers
        out.update(self.guard.health())
        for name, up in out.items():
            self.metrics.component_up.labels(name).set(1 if up else 0)
        return out

    def _engine_healthy(self) -> bool:
        return (
            self._engine_thread.is_alive()
            and time.monotonic() - self._engine_beat < ENGINE_STALL
        )

    # -- lifecycle -----------------------------------------------------------

    def run(self) -> int:
        self.metrics.start_time.set(time.time())
        self.metrics.config_last_reload_time.set(time.time())
        self.metrics.info.info(self._identity())
        self._zero_alert_series(self.engine.rules)
        self._install_signals()
        self._make_key(self.config.outputs.journal.key, "journal")
        self._parts = build_parts(self.config, self.metrics, self.health)
        # before FIM makes a new baseline and before anything else is journaled
        self.guard.at_start(self._parts.sink)
        self._make_baseline_key()
        self._tell_fim_keys_made()
        if self._parts.server is not None:
            self._parts.server.start()
        self._engine_thread.start()
        # FIM reconciles offline changes inside start(), before READY
        for src in self._parts.sources:
            src.start(self.emit)
        self.guard.start_mounts(lambda: self._parts.sources if self._parts else [])
        self._watch = FileWatch(self._watched_files(), self.config.rules.reload_debounce,
                                self._reload.set)
        self._watch.start()
        # what start-up built lives as long as the daemon: keep it out of every GC pass
        gc.freeze()
        self.notifier.ready(f"watching; {len(self.engine.rules)} rules")
        log.info("started", version=__version__, host=self.config.host.name,
                 rules=len(self.engine.rules),
                 sources=[s.name for s in self._parts.sources])
        _log_learned(None, self.config)
        self._notices = AddressNotices.open()
        if self._notices is None:
            log.warning("address_notices_unavailable",
                        detail=f"address changes are polled every {ADDRESS_CHECK:g} s")
        self._main_loop()
        return self._shutdown()

    def _make_key(self, source: KeySource, what: str) -> bool:
        """A first start makes the journal's and the baseline's key files. Outside the
        state dir (as at the reference site) they are sentinel's own files, but the
        config was read before they existed: made before file watching is built, its
        first baseline holds them. Made later, a key went unwatched until a restart,
        which then reported it as created while sentinel was stopped (a false alarm).
        True when the key was made (and the config's own files now hold it)."""
        path = key_path(source, self.config.state_dir)
        if path is None or os.path.lexists(path):
            return False
        load_key(source, self.config.state_dir, create=True, what=what)
        self.config = with_own_files(self.config)
        self._made.append(os.fsdecode(os.path.abspath(path)))
        return True

    def _make_baseline_key(self) -> None:
        """The baseline's key, made with the baseline at a first start (a baseline whose
        key is gone is reported as untrusted, not signed anew), after the start checks
        looked for an earlier run (the key is evidence of one): file watching, built
        but not started, is built again to hold it."""
        config, parts = self.config, self._parts
        assert parts is not None
        if config.in_state(config.fim.baseline).exists():
            return
        if self._make_key(config.fim.key, "fim"):
            fresh = build_sources(self.config, self.metrics, frozenset({"fim"}))
            parts.sources[:] = [*fresh, *(s for s in parts.sources if s.name != "fim")]

    def _tell_fim_keys_made(self) -> None:
        """A key this start made beside a baseline made before (by `baseline init`): new
        to the baseline, it is no change."""
        assert self._parts is not None
        for src in self._parts.sources:
            if isinstance(src, FimSource):
                src.made_by_start = frozenset(self._made)

    def _identity(self) -> dict[str, str]:
        h = self.config.host
        out = {"host": h.name}
        if h.site:
            out["site"] = h.site
        if h.region:
            out["region"] = h.region
        return out

    def _install_signals(self) -> None:
        # A handler runs between two bytecodes of the main thread, which may hold a
        # lock at that moment (the log writer's, an Event's): a handler that logs or
        # sets an Event can deadlock the daemon at SIGTERM. So it only notes the
        # signal, and the main loop acts on it within a tick.
        def on_stop(signum: int, _: FrameType | None) -> None:
            self._signalled = signum

        def on_hup(_: int, __: FrameType | None) -> None:
            self._hup = True

        signal.signal(signal.SIGTERM, on_stop)
        signal.signal(signal.SIGINT, on_stop)
        signal.signal(signal.SIGHUP, on_hup)

    def _main_loop(self) -> None:
        interval = self.notifier.watchdog_interval
        tick = min(interval, 1.0) if interval else 1.0
        last_ping = 0.0
        while not self._stop.is_set():
            self._stop.wait(tick if not (self._reload.is_set() or self._hup) else 0)
            if self._signalled:
                log.info("signal", signal=signal.Signals(self._signalled).name)
                self._stop.set()
                break
            if self._hup:
                self._hup = False
                self._reload.set()
            if self._reload.is_set() and not self._stop.is_set():
                self._reload.clear()
                self.reload()
            now = time.monotonic()
            if interval and now - last_ping >= interval and self._engine_healthy():
                self.notifier.watchdog()
                last_ping = now
            if self._notices is not None and self._notices.changed():
                self._looks.noticed(now)
            via = self._looks.due(now)
            if via is not None and self._check_own_addresses(via):
                self._looks.changed(now)
            self.health()
            if self._parts is not None:
                self.guard.tick(self._parts.sink, len(self.engine.rules))
            # on start, at schedule boundaries and every attest.interval (once a key exists)
            self.attestor.maybe_attest()

    def _check_own_addresses(self, via: str = "poll") -> bool:
        """Reload when the capture interfaces gained or lost an address the config does
        not list (an autoconfigured IPv6 address arriving after start, a renumbering),
        or a default route through a gateway it does not list (a router advertisement,
        a new lease): the reload adds them to host.addresses, tally_server and
        gateway_ip as at start. ``via``: what prompted the look (the kernel's
        ``notice`` of a change, or the ``poll``). True when a reload was asked for."""
        config = self.config
        listed = set(config.host.addresses) - set(config.learned_addresses)
        listed_gws = addresses_of(config.lists.get(GATEWAY_LIST, ())) - set(
            config.learned_gateways)
        try:
            found = local_addresses(config.network.interfaces)
            gateways = local_gateways(config.network.interfaces)
        except OSError:
            return False
        learned = {a for a in found if a not in listed}
        gws = ({g for g in learnable_gateways(gateways) if g not in listed_gws}
               if GATEWAY_LIST in config.lists else set())
        now = (frozenset(learned), frozenset(gws))
        had = (frozenset(config.learned_addresses), frozenset(config.learned_gateways))
        # once per change: a reload refused (a bad file on disk) is not retried in a loop
        if now not in (had, self._addresses_tried):
            self._addresses_tried = now
            log.info("own_addresses_changed", addresses=sorted(str(a) for a in learned),
                     gateways=sorted(str(g) for g in gws), via=via)
            self._reload.set()
            return True
        return False

    def reload(self) -> bool:
        """Load config and rules beside the running ones; swap only if all is valid."""
        self.notifier.reloading()
        try:
            config, rules = load_all(self.config_path)
        except ProblemError as exc:
            for p in exc.problems:
                log.error("reload_rejected", problem=str(p))
            return self._refuse(f"{len(exc.problems)} problem(s)")
        except Exception as exc:
            # whatever a hostile file still finds must not end the daemon: refuse it
            log.exception("reload_rejected", error=str(exc)[:500], error_type=type(exc).__name__)
            return self._refuse(type(exc).__name__)
        old_config, old_rules = self.config, self.engine.rules
        try:
            if parts_differ(self.config, config):
                self._rebuild(config)
            assert self._parts is not None
            take_own_addresses(self._parts, config)
            self.config = config
            # atomic: on failure the running rules stay
            self.engine.swap(rules, storm=config.rules.storm)
        except Exception as exc:
            # a valid config that cannot be applied (a port taken, a key unreadable):
            # the running parts stay, as for an invalid one
            log.exception("reload_rejected", error=str(exc)[:500],
                          error_type=type(exc).__name__)
            return self._refuse(f"cannot apply: {type(exc).__name__}")
        self._zero_alert_series(rules)
        _log_learned(old_config, config)
        change = self.guard.reloaded(old_config, config, old_rules, rules)
        if change is not None:
            self.attestor.note_change(change)
        self.attestor.reconfigure(config)
        assert self._watch is not None
        self._watch.set_paths(self._watched_files())
        self.metrics.config_reloads.labels("success").inc()
        self.metrics.config_last_reload_success.set(1)
        self.metrics.config_last_reload_time.set(time.time())
        self.notifier.send("READY=1", f"STATUS=watching; {len(rules)} rules")
        log.info("reloaded", rules=len(rules))
        return True

    def _refuse(self, why: str) -> bool:
        """A refused reload: counted, logged once, and the running set stays."""
        log.error("reload_failed", reason=why,
                  detail="the running config and rules stay in force")
        self.metrics.config_reloads.labels("failure").inc()
        self.metrics.config_last_reload_success.set(0)
        self.notifier.send("READY=1", "STATUS=reload failed; previous rules running")
        return False

    def _rebuild(self, config: Config) -> None:
        """Build the changed parts beside the running ones; switch only when all started."""
        assert self._parts is not None
        rebuild = Rebuild(self._parts, self.config, config, self.metrics, self.health)
        rebuild.prepare()

        def install(parts: Parts) -> None:
            self._parts = parts

        rebuild.commit(self.emit, install, self._sink_lock, STOP_BUDGET / 2)

    def _watched_files(self) -> list[Path]:
        return [self.config_path.resolve(), *self.engine.rules.files,
                *self.config.rules.paths]

    def _shutdown(self) -> int:
        deadline = time.monotonic() + STOP_BUDGET
        self.notifier.stopping()
        log.info("stopping")
        if self._notices is not None:
            self._notices.close()
        parts = self._parts
        assert parts is not None
        if self._watch is not None:
            self._watch.stop()
        self.guard.stop()
        for src in parts.sources:
            try:
                src.stop()
            except Exception:
                log.exception("source_stop_failed", source=src.name)
        # the engine thread drains what is queued, then exits (stop flag is set)
        self._engine_thread.join(max(0.1, deadline - time.monotonic() - 3.0))
        if self._engine_thread.is_alive():
            # out of time (a flood's backlog): the events still queued are given up, but
            # what the engine folded so far must not be, so it stops taking events
            self._abandon.set()
            self._engine_thread.join(1.0)
            log.error("engine_drain_timeout", pending=self.queue.qsize())
        if not self._engine_thread.is_alive():
            # suppression periods and storm folds still open end now: their counts go out
            self._handle(self.engine.flush, self.clock())
        with self._sink_lock:
            parts.sink.close(max(0.1, deadline - time.monotonic()))
            self.guard.flush(parts.sink, force=True)  # sign the final head
        if parts.server is not None:
            parts.server.stop()
        log.info("stopped")
        return 0


class _Journaled:
    """Counts one event's alerts into the journal and calls its ``ack`` once.

    ``one_done`` may come from another thread (a sink that journals held alerts
    later), hence the lock.
    """

    def __init__(self, alerts: int, ack: Callable[[bool], None] | None) -> None:
        self._left = alerts
        self._ack = ack
        self._lock = threading.Lock()
        if alerts == 0:
            self._call(True)

    def _call(self, ok: bool) -> None:
        with self._lock:
            ack, self._ack = self._ack, None
        if ack is not None:
            ack(ok)

    def one_done(self) -> None:
        with self._lock:
            self._left -= 1
            done = self._left == 0
        if done:
            self._call(True)

    def failed(self) -> None:
        self._call(False)


#: What the daemon learns from the kernel: (Config field, log event, its key, where to
#: list them so that the line goes).
_LEARNED = (
    ("learned_addresses", "own_addresses", "addresses",
     "the capture interfaces have them; list them in host.addresses and tally_server"),
    ("learned_gateways", "gateways", "gateways",
     "the default routes lead through them; list them in gateway_ip"),
)


def _log_learned(before: Config | None, now: Config) -> None:
    """One line when the addresses added to host.addresses and tally_server change, and
    one when the gateways added to gateway_ip do (``before`` None: at start)."""
    for field, event, key, where in _LEARNED:
        was = getattr(before, field) if before else ()
        got = getattr(now, field)
        if got != was and got:
            log.info(f"{event}_added", **{key: [str(a) for a in got]},
                     hint=f"{where} to make this line go")
        elif was and not got:
            log.info(f"{event}_listed")


def run_daemon(config_path: Path) -> int:
    """Entry point of `sentinel run`: 0 on a clean stop, 2 on a bad config at start."""
    import sys

    logs.configure()
    try:
        config, rules = load_all(config_path)
    except ProblemError as exc:
        print(exc.render(), file=sys.stderr)
        return 2
    except Exception as exc:
        # an input fault no check names yet: one clear line and exit 2 (the unit does not
        # restart on 2), never a traceback and a restart loop
        print(f"sentinel: cannot load {config_path} and its rules: {type(exc).__name__}:"
              f" {str(exc)[:500]}", file=sys.stderr)
        return 2
    daemon = Daemon(config_path, config, rules)
    try:
        return daemon.run()
    except (OSError, BaselineError, JournalError, KeyUnavailable, sqlite3.Error) as exc:
        if _disk_full(exc):
            # not the operator's config: once space is freed a start works, so exit 1
            # and let the unit restart it (RestartSec) rather than wait for a person
            print(f"sentinel: cannot start: the disk is full ({exc}); free space in"
                  f" {config.state_dir}: the service is restarted until it starts",
                  file=sys.stderr)
            return 1
        # the metrics port taken, a key that cannot be read, the state dir in use by
        # another sentinel: a clear line, not a traceback, and no restart loop
        print(f"sentinel: cannot start: {exc}", file=sys.stderr)
        return 2


def _disk_full(exc: BaseException | None) -> bool:
    """True when ``exc`` or what caused it is a full disk or quota (ENOSPC, EDQUOT, or
    SQLite's "database or disk is full")."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if isinstance(exc, sqlite3.Error) and "disk is full" in str(exc):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False
