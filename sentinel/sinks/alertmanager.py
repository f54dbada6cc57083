"""The ``alertmanager`` format: POST alerts to Alertmanager's ``/api/v2/alerts``.

Each alert becomes one Alertmanager alert:

* labels ``alertname`` (the rule id), ``severity``, ``host``, ``source``, and
  ``site`` / ``region`` when ``host.site`` / ``host.region`` are configured;
* annotations ``summary`` (the title), ``description`` (the rule's description,
  else a one-line digest of the event), ``alert_id`` and ``tags``;
* annotations ``time_local`` and ``timezone``: the alert's time in the display zone;
  summary and description in the target's ``language`` (else the site's);
* ``startsAt`` the alert's time, ``endsAt`` ``resolve_after`` past its first
  delivery.

Alertmanager identifies an alert by its label set, so alerts of one rule on one
host fold into one. The lane keeps each label set it has delivered in the
spool's ``active`` table and re-sends it every ``resend_interval`` with the
latest ``endsAt`` of everything folded into it (an Alertmanager that restarted
and lost its memory learns it again), then, once that time has passed, sends it
one last time with that ``endsAt`` so that the cluster marks it resolved — and
never earlier, because every post carries the latest end.

With a list of URLs (an HA cluster) every URL has its own lane: every alert
reaches every node. With a secret, it is sent as ``Authorization: Bearer``
(for a proxy in front of Alertmanager); there is no Standard Webhooks
signature, since Alertmanager does not check one.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, tzinfo
from typing import Any

from sentinel.alert import Alert
from sentinel.config import HostConfig, Secret
from sentinel.events import format_time, visible
from sentinel.i18n import local_iso, localize
from sentinel.i18n import text as text_in
from sentinel.metrics import Metrics
from sentinel.sinks.http import Backoff, Outcome, Transport
from sentinel.sinks.lane import Lane
from sentinel.sinks.spool import Active, Record, Spool

API_PATH = "/api/v2/alerts"
_DIGEST_MAX = 400


def api_url(url: str) -> str:
    """The alerts endpoint for a base URL (a URL already ending in it is kept)."""
    base = url.split("?", 1)[0].rstrip("/")
    return url if base.endswith(API_PATH) else base + API_PATH


def am_item(alert: Alert, host: HostConfig, language: str | None = None,
            tz: tzinfo = UTC, tz_name: str = "UTC") -> dict[str, Any]:
    """The Alertmanager alert for ``alert``, without ``endsAt`` (set when sent).

    ``language`` picks the title and description among the alert's ``i18n`` (None:
    the site's); ``tz`` is the zone of the ``time_local`` annotation.
    """
    labels = {"alertname": alert.rule, "severity": alert.severity, "host": alert.host,
              "source": alert.source}
    if host.site:
        labels["site"] = host.site
    if host.region:
        labels["region"] = host.region
    incident = alert.extra.get("incident")
    if isinstance(incident, str) and incident:
        labels["incident"] = incident
    # what a notification gathers (the route's group_by: [site, group]): one incident
    # (what one source did in one scan, whatever rules it raised), else one rule
    labels["group"] = incident if isinstance(incident, str) and incident else alert.rule
    shown = localize({"title": alert.title, "description": alert.extra.get("description"),
                      "i18n": alert.extra.get("i18n")}, language, tz, tz_name)
    lang = shown.get("language", alert.extra.get("language", "en"))
    description = shown.get("description")
    if not isinstance(description, str) or not description:
        description = _digest(alert, lang if isinstance(lang, str) else "en")
    return {
        "labels": labels,
        "annotations": {
            "summary": shown["title"],
            "description": description,
            "alert_id": alert.id,
            "tags": ",".join(alert.tags),
            "time_local": local_iso(alert.time, tz),
            "timezone": tz_name,
        },
        "startsAt": format_time(alert.time),
    }


def _digest(alert: Alert, lang: str = "en") -> str:
    ev = alert.event
    fields = ", ".join(f"{k}={v}" for k, v in ev.items()
                       if k not in ("kind", "time", "host", "source")
                       and isinstance(v, str | int | float | bool) and v != "")
    text = f"{ev.get('kind', alert.source)}: {fields}" if fields else str(ev.get("kind", ""))
    if alert.count > 1:
        text = f"{alert.count} {text_in(lang, 'events; first')}: {text}"
    # people read it: controls and bidi overrides in names are shown escaped
    return visible(text[:_DIGEST_MAX])


def fingerprint(item: dict[str, Any]) -> str:
    return json.dumps(item["labels"], sort_keys=True, separators=(",", ":"))


class AlertmanagerLane(Lane):
    """Delivers to one Alertmanager node: new alerts in batches, then re-sends."""

    def __init__(
        self,
        name: str,
        spool: Spool,
        transport: Transport,
        backoff: Backoff,
        metrics: Metrics,
        clock: Callable[[], float] = time.time,
        secret: Secret | None = None,
        resend_interval: float = 60.0,
        resolve_after: float = 300.0,
    ) -> None:
        super().__init__(name, spool, transport, backoff, metrics, clock)
        self._auth = {"Authorization": f"Bearer {secret.reveal()}"} if secret else {}
        self.resend_interval = resend_interval
        self.resolve_after = resolve_after

    def encode(self, records: list[Record]) -> list[list[Record]]:
        return self.batches(records)

    def post(self, records: list[Record], now: float) -> Outcome:
        ends = format_time(now + self.resolve_after)
        items = [{**json.loads(r.body), "endsAt": ends} for r in records]
        return self._send(items)

    def delivered(self, records: list[Record], now: float) -> None:
        ends_at = now + self.resolve_after
        next_send = min(now + self.resend_interval, ends_at)
        self.spool.activate([
            Active(fingerprint(json.loads(r.body)), r.body, ends_at, next_send) for r in records
        ])

    def tick(self, now: float) -> float | None:
        due = self.spool.due(now, self.page_size)
        if due:
            items = [{**json.loads(a.body), "endsAt": format_time(a.ends_at)} for a in due]
            out = self._send(items)
            if out.result == "retry":
                self.metrics.deliveries.labels(self.name, "retry").inc(len(due))
                self.failed(out)
                return None
            self.metrics.deliveries.labels(self.name, "success" if out.result == "ok"
                                           else "failed").inc(len(due))
            for a in due:
                if a.ends_at <= now or out.result == "fail":
                    # resolved in Alertmanager now (or refused: nothing more to do)
                    self.spool.resolved(a.fingerprint, a.ends_at)
                else:
                    self.spool.reschedule(a.fingerprint,
                                          min(now + self.resend_interval, a.ends_at))
            if out.result == "ok":
                self.succeeded()
        nxt = self.spool.next_due()
        return None if nxt is None else nxt - self.clock()

    def _send(self, items: list[dict[str, Any]]) -> Outcome:
        body = json.dumps(items, separators=(",", ":"), ensure_ascii=False).encode()
        return self.transport.post(body, self._auth or None)
