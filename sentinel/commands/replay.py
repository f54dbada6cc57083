"""`sentinel replay`: capture files through the live decoder, flows and rules.

Without ``-c``, the default config is used when it exists; when it does not,
replay runs with an empty config (no rules, no host addresses, so every event's
``direction`` is ``transit``) so that ``sentinel replay --events file.pcap``
works for rule writers on any machine.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import socket
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from sentinel.commands import subparser
from sentinel.config import DEFAULT_CONFIG, Config, HostConfig
from sentinel.config_reader import load_config

EXIT_OK, EXIT_ERROR = 0, 2
#: Events (and the ticks between them) decoded before the engine takes them, in order:
#: decoding a run and then matching it keeps each one's working set in the CPU caches
#: (about a tenth faster than alternating per event); alerts are the same, in the same order.
BATCH = 256


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparser(
        sub,
        "replay",
        "run capture files through the network rules",
        "Run pcap/pcapng files through the same decoder, flow logic and rules as live"
        " capture, driven by packet time.\nAlerts go to stdout as JSON lines (--events: the"
        " events instead), a summary to stderr.\nExit 0 when done (undecodable packets are"
        " counted, not fatal), 2 for an unreadable file or a bad config.\nWithout -c and"
        f" without {DEFAULT_CONFIG}, runs with an empty config (no rules).",
        "sentinel replay --events capture.pcapng",
    )
    p.add_argument("pcaps", nargs="+", type=Path, metavar="PCAP", help="pcap or pcapng files")
    p.add_argument("-c", "--config", type=Path, default=None, metavar="CONFIG",
                   help=f"configuration file (default: {DEFAULT_CONFIG} if it exists)")
    p.add_argument("--events", action="store_true",
                   help="print the events (JSON lines) instead of the alerts")
    p.add_argument("--deliver", action="store_true",
                   help="also deliver alerts to the journal and webhooks of the config")
    p.add_argument("--drain-timeout", type=float, default=30.0, metavar="SECONDS",
                   help="with --deliver: how long to wait for the webhooks to take every"
                   " alert before exiting; what is left stays spooled (default: 30)")
    p.set_defaults(func=run)


def empty_config() -> Config:
    """The config replay uses when none is given and the default does not exist."""
    return Config(source=Path("<empty>"), host=HostConfig(socket.gethostname(), ()),
                  state_dir=Path("/var/lib/sentinel"))


def _logs_on_first_record() -> None:
    """Set sentinel's logging up on stderr at the first record, then hand it on.

    The decoder and the engine log only when something fails, through stdlib
    logging; loading the structured-logging stack up front would cost every
    replay about a tenth of its start-up. (logging itself is imported here, not
    at the top: the CLI imports every command module at each start.)
    """
    import logging

    class LogsOnFirstRecord(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            from sentinel import logs

            logs.configure(stream=sys.stderr)  # replaces this handler on the root logger
            logging.getLogger().handle(record)

    root = logging.getLogger()
    root.handlers[:] = [LogsOnFirstRecord()]
    root.setLevel(logging.WARNING)


def run(args: argparse.Namespace) -> int:
    # stdout carries only alerts or events: logs go to stderr, set up before anything logs
    if args.deliver:  # the sinks log through structlog
        from sentinel import logs

        logs.configure(stream=sys.stderr)
    else:
        _logs_on_first_record()
    from sentinel.metrics import Metrics
    from sentinel.sources.net import ReplayStats, iter_pcap_events
    from sentinel.sources.net.pcapfile import CaptureFile, CaptureFileError

    if args.config is not None:
        config = load_config(args.config, secrets=args.deliver)
    elif DEFAULT_CONFIG.exists():
        config = load_config(DEFAULT_CONFIG, secrets=args.deliver)
    else:
        config = empty_config()
    for path in args.pcaps:  # every file readable before any output
        try:
            CaptureFile(path).close()
        except CaptureFileError as exc:
            print(f"sentinel replay: {exc}", file=sys.stderr)
            return EXIT_ERROR
    metrics = Metrics()
    out = sys.stdout
    kinds: Counter[str] = Counter()
    rules: Counter[str] = Counter()
    stats = ReplayStats()
    engine: Any = None
    delivery: Any = None
    if not args.events:
        from sentinel.engine import Engine, load_rules

        engine = Engine(load_rules(config), host=config.host.name, metrics=metrics,
                        storm=config.rules.storm)
    if args.deliver:
        from sentinel.keys import KeyUnavailable
        from sentinel.sinks import JournalError, build_delivery

        try:
            delivery = build_delivery(config, metrics)
        except (JournalError, KeyUnavailable, OSError) as exc:
            print(f"sentinel replay: cannot deliver: {exc}", file=sys.stderr)
            return EXIT_ERROR

    def publish(alerts: list[Any]) -> None:
        for alert in alerts:
            rules[alert.rule] += 1
            out.write(json.dumps(alert.to_dict()) + "\n")
            if delivery is not None:
                delivery.submit(alert)

    batch: list[Any] = []  # events, and tick times (floats) where time passed a second

    def run_batch() -> None:
        for item in batch:
            if type(item) is float:
                publish(engine.advance(item))
            else:
                publish(engine.process(item))
        batch.clear()

    def tick(now: float) -> None:
        if engine is not None:
            batch.append(now)

    # What start-up built (modules, config, the compiled rules) lives as long as the
    # process: the cyclic collector need not walk it again and again. The per-packet
    # objects hold no cycles and go with their last reference, so it may run rarely
    # too (every 10,000 new container objects instead of 700). Both are undone at the
    # end, for a caller that goes on after replay (a test, say).
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(10_000, 50, 100)
    started = time.perf_counter()
    last = 0.0
    try:
        for event in iter_pcap_events(args.pcaps, config, metrics, on_tick=tick, stats=stats):
            kinds[event.kind] += 1
            last = event.time
            if engine is None:
                out.write(json.dumps(event.to_dict()) + "\n")
            else:
                batch.append(event)
                if len(batch) >= BATCH:
                    run_batch()
        if engine is not None:
            run_batch()
            publish(engine.advance(last))
            publish(engine.flush(last))  # open suppression and storm folds: their counts
        out.flush()
        if delivery is not None:
            for lane, n in delivery.drain(args.drain_timeout).items():
                print(f"sentinel replay: {n} alert(s) not yet taken by {lane}; they stay"
                      " spooled and go out at the next start on this state_dir",
                      file=sys.stderr)
    except BrokenPipeError:  # the reader (e.g. `head`) has seen enough
        sys.stderr.close()
        return EXIT_OK
    except CaptureFileError as exc:  # the file changed since the check above
        if engine is not None:  # what was read before the fault still counts
            with contextlib.suppress(BrokenPipeError):
                run_batch()
        print(f"sentinel replay: {exc}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()
        if delivery is not None:
            delivery.close(30.0)
    _summary(stats, kinds, rules, metrics, time.perf_counter() - started)
    return EXIT_OK


def _summary(stats: Any, kinds: Counter[str], rules: Counter[str], metrics: Any,
             elapsed: float) -> None:
    reg = metrics.registry
    errors = int(reg.get_sample_value("sentinel_decode_errors_total") or 0)
    fragments = int(reg.get_sample_value("sentinel_ip_fragments_total") or 0)
    rate = stats.packets / elapsed if elapsed > 0 else 0.0
    err = sys.stderr
    print(f"replay: {stats.packets} packets from {stats.files} file(s) in {elapsed:.2f} s"
          f" ({rate:,.0f} packets/s)", file=err)
    print("events: " + (", ".join(f"{k} {n}" for k, n in sorted(kinds.items())) or "none"),
          file=err)
    print("alerts: " + (", ".join(f"{r} {n}" for r, n in sorted(rules.items())) or "none"),
          file=err)
    print(f"decode errors: {errors}; IP fragments (reassembled or held): {fragments}", file=err)
    for path, linktype in stats.unsupported.items():
        print(f"warning: {path}: link type {linktype} is not supported; its packets count"
              " as decode errors", file=err)
    for path in stats.truncated:
        print(f"warning: {path}: the file ends inside a packet record; read up to it",
              file=err)
