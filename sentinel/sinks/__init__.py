"""The end of the pipeline: journal -> router -> one delivery lane per target URL.

:func:`build_delivery` makes the :class:`Delivery` the daemon hands alerts to.
``submit`` journals the alert (durable per the journal's fsync policy), picks
the targets that take it (:mod:`sentinel.sinks.router`) and writes it into the
spool of each of their lanes; the lanes' workers deliver from there, so an
alert accepted by ``submit`` survives outages, restarts and crashes.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sentinel import logs
from sentinel.alert import Alert
from sentinel.config import Config, WebhookConfig
from sentinel.metrics import Metrics
from sentinel.sinks.alertmanager import AlertmanagerLane, am_item, api_url
from sentinel.sinks.http import Backoff, Transport, safe_url
from sentinel.sinks.journal import Journal, JournalError, alert_json, open_journal
from sentinel.sinks.keys import JournalKeyError, load_key
from sentinel.sinks.lane import Lane
from sentinel.sinks.router import Route
from sentinel.sinks.spool import Spool
from sentinel.sinks.verify import JournalReport, verify_journal
from sentinel.sinks.webhook import JsonLane, json_payload

__all__ = [
    "Delivery",
    "JournalError",
    "JournalKeyError",
    "JournalReport",
    "build_delivery",
    "lane_name",
    "spool_path",
    "verify_journal",
]



def _log() -> Any:
    # looked up per use: a logger bound at import would miss logs.configure()
    return logs.get("delivery")


@dataclass
class Target:
    """One configured webhook: its routing, what it spools, and its lanes."""

    name: str
    route: Route
    payload: Callable[[Alert, bytes], bytes]
    lanes: list[Lane]


class Delivery:
    """Journal plus delivery to every target; satisfies ``sentinel.pipeline.AlertSink``."""

    name = "delivery"

    def __init__(self, journal: Journal, targets: list[Target], metrics: Metrics,
                 clock: Callable[[], float] = time.time) -> None:
        self.journal = journal
        self.targets = targets
        self.metrics = metrics
        self.clock = clock
        # one lock keeps journal order and spool order the same
        self._lock = threading.Lock()
        self._closed = False

    def start(self) -> None:
        for lane in self.lanes():
            lane.start()

    def lanes(self) -> list[Lane]:
        return [lane for t in self.targets for lane in t.lanes]

    def submit(self, alert: Alert) -> None:
        """Journal the alert, then spool it for every target that takes it.

        Returns once it is durable. Raises ``JournalError`` when the journal
        cannot be written; a failing spool is counted and logged and the other
        targets still get the alert.
        """
        body = alert_json(alert)
        woken: list[Lane] = []
        with self._lock:
            self.journal.append(body)
            now = self.clock()
            for target in self.targets:
                if not target.route(alert):
                    continue
                payload = target.payload(alert, body)
                for lane in target.lanes:
                    try:
                        lane.spool.insert(alert.id, payload, now)
                    except Exception:
                        self.metrics.deliveries.labels(lane.name, "error").inc()
                        _log().exception("cannot spool alert; it is in the journal only",
                                       target=lane.name, alert_id=alert.id)
                        continue
                    woken.append(lane)
        for lane in woken:
            lane.wake()

    def drain(self, timeout: float) -> dict[str, int]:
        """Wait up to ``timeout`` s for every lane's spool to empty.

        Returns what is still pending per lane (empty when all was delivered). A
        lane whose endpoint is down keeps its alerts; they go out at the next start.
        """
        deadline = time.monotonic() + timeout
        while True:
            pending = {lane.name: lane.spool.depth for lane in self.lanes() if lane.spool.depth}
            if not pending or time.monotonic() >= deadline:
                return pending
            time.sleep(0.02)

    def close(self, timeout: float) -> None:
        """Stop the workers (waiting up to ``timeout`` s); undelivered alerts stay spooled."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        deadline = time.monotonic() + timeout
        lanes = self.lanes()
        for lane in lanes:
            lane.stop()
        for lane in lanes:
            if lane.join(max(0.0, deadline - time.monotonic())):
                lane.spool.close()
            else:
                _log().warning("delivery worker still busy at shutdown; its alerts stay spooled",
                             target=lane.name)
        with self._lock:
            self.journal.close()

    def alive(self) -> bool:
        return self.journal.alive() and all(lane.alive() for lane in self.lanes())

    def journal_head(self) -> tuple[int, str]:
        """(records in the journal, MAC of the last one): what an attestation signs."""
        return self.journal.head()


def lane_name(hook: WebhookConfig, i: int) -> str:
    """The name of URL ``i``'s lane: the target's, with ``[i]`` when it has several URLs."""
    return f"{hook.name}[{i}]" if len(hook.urls) > 1 else hook.name


def spool_path(config: Config, hook: WebhookConfig, i: int) -> Path:
    """Where URL ``i`` of ``hook`` spools its alerts."""
    # lane 0 keeps the target's plain spool name, so growing a one-URL target
    # into a list does not strand what is pending
    return config.state_dir / "spool" / (f"{hook.name}.{i}.db" if i else f"{hook.name}.db")


def _lane(hook: WebhookConfig, i: int, config: Config, metrics: Metrics,
          clock: Callable[[], float], durable: bool) -> Lane:
    name = lane_name(hook, i)
    spool = Spool(spool_path(config, hook, i), durable)
    backoff = Backoff(hook.retry_initial, hook.retry_max)
    if hook.format == "alertmanager":
        transport = Transport(hook, api_url(hook.urls[i]), clock)
        return AlertmanagerLane(name, spool, transport, backoff, metrics, clock, hook.secret,
                                hook.resend_interval, hook.resolve_after)
    transport = Transport(hook, hook.urls[i], clock)
    return JsonLane(name, spool, transport, backoff, metrics, clock, hook.secret)


def build_delivery(config: Config, metrics: Metrics, clock: Callable[[], float] = time.time
                   ) -> Delivery:
    """Open the journal and every target's spools and start the workers.

    Whatever the spools hold from an earlier run is delivered first. Raises
    ``JournalKeyError`` or ``JournalError`` (one clear message) when the journal key
    or file cannot be used.
    """
    jc = config.outputs.journal
    key = load_key(jc.key, config.state_dir)
    journal = open_journal(config.in_state(jc.path), key, jc.fsync, jc.fsync_interval,
                           jc.rotate_size, on_record=metrics.journal_records.inc)
    try:
        targets = _targets(config, metrics, clock, durable=jc.fsync == "record")
    except BaseException:
        journal.close()
        raise
    delivery = Delivery(journal, targets, metrics, clock)
    delivery.start()
    return delivery


def _targets(config: Config, metrics: Metrics, clock: Callable[[], float], durable: bool
             ) -> list[Target]:
    targets: list[Target] = []
    for hook in config.outputs.webhooks:
        if not hook.verify_tls:
            _log().warning("TLS verification is off for this target", target=hook.name)
        lanes = [_lane(hook, i, config, metrics, clock, durable) for i in range(len(hook.urls))]
        payload = (_am_payload(config, hook) if hook.format == "alertmanager"
                   else json_payload(hook.language, config.display_zone(), config.timezone))
        targets.append(Target(hook.name, Route(hook), payload, lanes))
        _log().info("delivery target", target=hook.name, format=hook.format,
                  urls=[safe_url(u) for u in hook.urls],
                  pending=sum(ln.spool.depth for ln in lanes))
    _warn_orphans(config.state_dir / "spool", {ln.spool.path for t in targets for ln in t.lanes})
    return targets


def _am_payload(config: Config, hook: WebhookConfig) -> Callable[[Alert, bytes], bytes]:
    host, tz = config.host, config.display_zone()

    def payload(alert: Alert, body: bytes) -> bytes:
        item = am_item(alert, host, hook.language, tz, config.timezone)
        return json.dumps(item, separators=(",", ":"), ensure_ascii=False).encode()
    return payload


def _warn_orphans(folder: Path, used: set[Path]) -> None:
    if not folder.is_dir():
        return
    for p in sorted(folder.glob("*.db")):
        if p not in used:
            _log().warning("a spool belongs to no configured target; its alerts are not sent",
                         spool=str(p))
