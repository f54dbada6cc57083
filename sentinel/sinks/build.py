"""Building the :class:`~sentinel.sinks.delivery.Delivery` from the config.

Opens the journal, then every target's spools. Before the lanes start, each
lane is told what it owes from the journal (records past the last one its
spool took) and that is spooled, so an alert journaled just before a crash
is still sent. A spool that is not a sound database is moved aside (the daemon
must not restart-loop on it), replaced by an empty one that re-queues from its
last recorded floor, and reported with an alert of its own.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sentinel import logs
from sentinel.alert import Alert
from sentinel.config import Config, WebhookConfig
from sentinel.i18n import alert_texts
from sentinel.keys import load_key
from sentinel.metrics import Metrics
from sentinel.sinks.alertmanager import AlertmanagerLane, am_item, api_url
from sentinel.sinks.delivery import Delivery, Target
from sentinel.sinks.http import Backoff, Transport, safe_url
from sentinel.sinks.journal import Journal, open_journal
from sentinel.sinks.lane import Lane
from sentinel.sinks.router import Route
from sentinel.sinks.spool import Spool, SpoolCorrupt, move_aside, read_floor
from sentinel.sinks.webhook import JsonLane, json_payload

#: The rule id of the alert sentinel raises about its own delivery path.
SPOOL_CORRUPT_RULE = "sentinel-spool-corrupt"


def _log() -> Any:
    # looked up per use: a logger bound at import would miss logs.configure()
    return logs.get("delivery")


def lane_name(hook: WebhookConfig, i: int) -> str:
    """The name of URL ``i``'s lane: the target's, with ``[i]`` when it has several URLs."""
    return f"{hook.name}[{i}]" if len(hook.urls) > 1 else hook.name


def spool_path(config: Config, hook: WebhookConfig, i: int) -> Path:
    """Where URL ``i`` of ``hook`` spools its alerts."""
    # lane 0 keeps the target's plain spool name, so growing a one-URL target
    # into a list does not strand what is pending
    return config.state_dir / "spool" / (f"{hook.name}.{i}.db" if i else f"{hook.name}.db")


class _Opened:
    """Spools opened at start, and the corrupt ones found on the way."""

    def __init__(self) -> None:
        self.corrupt: list[tuple[str, Path, str]] = []  # lane, moved to, error
        self.floors: dict[str, int] = {}  # lane -> journal seq to re-queue from


def _open_spool(name: str, path: Path, durable: bool, metrics: Metrics, opened: _Opened
                ) -> Spool:
    try:
        # lazy: a full disk at start must not keep the daemon from starting
        return Spool(path, durable, lazy=True)
    except SpoolCorrupt as exc:
        floor = read_floor(path)
        aside = move_aside(path)
        metrics.spool_corrupt.labels(name).inc()
        _log().error("spool_corrupt", target=name, error=str(exc.__cause__ or exc),
                     moved_to=str(aside), requeue_from_journal_seq=floor,
                     detail="a new spool takes over; what was not delivered is queued"
                            " again from the journal")
        opened.corrupt.append((name, aside, str(exc.__cause__ or exc)))
        # no floor file: every alert the journal holds for the lane goes out again
        # (at least once: a receiver deduplicates by alert id)
        opened.floors[name] = floor if floor is not None else 0
        return Spool(path, durable, lazy=True)


def _lane(hook: WebhookConfig, i: int, config: Config, metrics: Metrics,
          clock: Callable[[], float], durable: bool, opened: _Opened) -> Lane:
    name = lane_name(hook, i)
    spool = _open_spool(name, spool_path(config, hook, i), durable, metrics, opened)
    backoff = Backoff(hook.retry_initial, hook.retry_max)
    if hook.format == "alertmanager":
        transport = Transport(hook, api_url(hook.urls[i]), clock)
        return AlertmanagerLane(name, spool, transport, backoff, metrics, clock, hook.secret,
                                hook.resend_interval, hook.resolve_after)
    transport = Transport(hook, hook.urls[i], clock)
    return JsonLane(name, spool, transport, backoff, metrics, clock, hook.secret)


def build_delivery(config: Config, metrics: Metrics, clock: Callable[[], float] = time.time
                   ) -> Delivery:
    """Open the journal and every target's spools, re-queue what the journal holds that
    a lane never took, and start the workers.

    Whatever the spools hold from an earlier run is delivered first. Raises
    ``KeyUnavailable`` or ``JournalError`` (one clear message) when the journal key
    or file cannot be used.
    """
    jc = config.outputs.journal
    key = load_key(jc.key, config.state_dir, create=True, what="journal")
    journal = open_journal(config.in_state(jc.path), key, jc.fsync, jc.fsync_interval,
                           jc.rotate_size, on_record=metrics.journal_records.inc)
    _log().info("journal_opened", path=str(journal.path), records=journal.head()[0],
                fsync=jc.fsync)
    opened = _Opened()
    try:
        targets = _targets(config, metrics, clock, jc.fsync == "record", opened)
    except BaseException:
        journal.close()
        raise
    delivery = Delivery(journal, targets, metrics, clock)
    _settle(delivery, journal, opened)
    delivery.start()
    for name, aside, error in opened.corrupt:
        delivery.submit(corrupt_spool_alert(config, name, aside, error, clock()))
    return delivery


def _settle(delivery: Delivery, journal: Journal, opened: _Opened) -> None:
    """Tell each lane what it owes the journal, and spool it before the lanes start."""
    head = journal.head()[0]
    for lane in delivery.lanes():
        floor = opened.floors.get(lane.name)
        if lane.spool.problem is not None:
            delivery.settle_later(lane, head if floor is None else min(floor, head))
            continue
        if floor is not None:
            lane.spool.set_taken(floor - 1)
        taken = lane.spool.taken
        if taken is None:
            # a new target, or a spool from before journal marks: it starts at the head
            lane.spool.set_taken(head - 1)
        elif taken + 1 < head:
            delivery.owe_from(lane, taken + 1)
    if not delivery.catch_up():
        _log().error("requeue_from_journal_failed", detail="retrying in the background")


def corrupt_spool_alert(config: Config, lane: str, aside: Path, error: str, now: float
                        ) -> Alert:
    """The alert that says a lane's spool was corrupt and moved aside."""
    title, extra = alert_texts(config.language, {
        "en": (f"Delivery spool of {lane} was corrupt and was replaced",
               "The spool could not be read as a database. It was moved aside for"
               " inspection; alerts it held that were not delivered are queued again from"
               " the journal (some may arrive twice)."),
        "id": (f"Spool pengiriman {lane} rusak dan telah diganti",
               "Spool tidak dapat dibaca sebagai basis data. Spool dipindahkan untuk"
               " diperiksa; peringatan di dalamnya yang belum terkirim diantrekan lagi dari"
               " jurnal (sebagian mungkin tiba dua kali)."),
    })
    return Alert(
        rule=SPOOL_CORRUPT_RULE,
        title=title,
        severity="high",
        time=now,
        host=config.host.name,
        source="sentinel",
        tags=("sentinel", "delivery"),
        event={"kind": "sentinel.spool_corrupt", "target": lane, "moved_to": str(aside),
               "error": error[:300]},
        extra=extra,
    )


def _targets(config: Config, metrics: Metrics, clock: Callable[[], float], durable: bool,
             opened: _Opened) -> list[Target]:
    targets: list[Target] = []
    for hook in config.outputs.webhooks:
        if not hook.verify_tls:
            _log().warning("tls_verification_off", target=hook.name)
        lanes = [_lane(hook, i, config, metrics, clock, durable, opened)
                 for i in range(len(hook.urls))]
        payload = (_am_payload(config, hook) if hook.format == "alertmanager"
                   else json_payload(hook.language, config.display_zone(), config.timezone))
        targets.append(Target(hook.name, Route(hook), payload, lanes))
        _log().info("delivery_target", target=hook.name, format=hook.format,
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
            _log().warning("spool_without_target", detail="its alerts are not sent",
                           spool=str(p))
